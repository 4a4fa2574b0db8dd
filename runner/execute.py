"""Running one compiled case: a pure function from the case, the rules to use and the oracles to
compare with, to its `CaseResult`.

Sources meet here by name: "manual" (the catalogue's rules, overridden by the case's rules and the
user's rule sets), each oracle ("torch", "numeric"), and "expected" (the case's golden values).
Every checked tensor is compared pairwise: manual against each oracle, each oracle against the
later ones, and all of them against expected. A case passes when every pair agrees; when it fails,
`runner.localise` names the rule that is wrong.

The oracles of a case are its ``oracles`` when it states them (by name), else those of the caller
(``gradcase run --oracle``, default torch alone).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from runner.compare import DEFAULT_TOLERANCE, EXPECTED_TOLERANCE, Tolerance, compare
from runner.compile import CompiledCase
from runner.dtypes import is_half
from runner.engine import Backward, RuleError, backward, forward
from runner.graph import Graph, Ref
from runner.inputs import make_input, make_upstream
from runner.localise import PROBE_SEED, localise, probe, rule_fault
from runner.memory import memory_refusal
from runner.ops.spec import ShapeError
from runner.oracles import (
    EXPECTED,
    MANUAL,
    ORACLE_NAMES,
    TORCH,
    Oracle,
    Sources,
    oracle_named,
    usable,
)
from runner.report import failure_messages, fault_message, tensor_unchecked
from runner.roundoff import as_dtype, tensor_floors
from runner.rules import RuleSet
from runner.rules.budget import CaseTimeout, case_budget, case_timeout
from runner.torch_side import TorchError
from runner.unchecked import Unchecked, unchecked_grads
from schemas.case import RandomUpstream
from schemas.report import CaseResult, Comparison, RuleUse, Source, TensorCheck


def run_sources(
    case: CompiledCase,
    rules: Sequence[RuleSet] = (),
    oracles: Sequence[Oracle] = (TORCH,),
    *,
    random_upstream: int | None = None,
) -> Sources:
    """Compute every source of ``case``: the manual side with the case's own rules first, then
    ``rules`` in order, then the catalogue; each oracle; the expected literals as arrays.
    ``random_upstream``: a seed to draw the upstream gradient from (standard normal) instead of
    the case's; the expected values then do not apply and are left out.

    Raises `RuleError` (a rule or a forward failed) or `TorchError` (an oracle refused).
    """
    graph = case.graph
    inputs = {}
    for name, plan in case.inputs.items():
        try:
            inputs[name] = make_input(plan)
        except Exception as exc:  # what validation could not foresee, refused as the data's
            raise InvalidInput(f"input '{name}': {type(exc).__name__}: {exc}") from exc
    values = forward(graph, inputs)
    out = values[graph.output]
    shape = graph.shapes[graph.output]
    if random_upstream is None:
        upstream = make_upstream(case.model.upstream, shape, out.dtype)
    else:
        upstream = np.random.default_rng(random_upstream).standard_normal(shape).astype(out.dtype)
    in_force = ([case.rules] if case.rules else []) + list(rules)
    manual = backward(graph, values, upstream, in_force)
    sources = Sources(inputs, upstream, manual, in_force, {MANUAL: values}, {MANUAL: manual.grads})
    for oracle in oracles:
        ref = oracle.run(graph, inputs, upstream)
        sources.values[oracle.name], sources.grads[oracle.name] = ref.values, ref.grads
        sources.projections[oracle.name], sources.skipped[oracle.name] = (
            ref.projections,
            ref.skipped,
        )
        sources.declined[oracle.name] = ref.unchecked
    capped: dict[tuple[str, str], float] = {}
    sources.floors.defer(lambda: _floors(case, sources, oracles, capped), capped)
    sources.unchecked.update(unchecked_grads(graph, values))
    expect = case.model.expect
    golden = random_upstream is None
    sources.values[EXPECTED] = {
        k: np.asarray(v, dtype=np.float64) for k, v in expect.value.items() if golden
    }
    sources.grads[EXPECTED] = {
        k: np.asarray(v, dtype=np.float64) for k, v in expect.grad.items() if golden
    }
    return sources


def _floors(
    case: CompiledCase,
    sources: Sources,
    oracles: Sequence[Oracle],
    capped: dict[tuple[str, str], float] | None = None,
) -> dict[tuple[str, str], float]:
    """The round-off floor of every tensor (`runner.roundoff.tensor_floors`) on the first
    oracle's references; torch runs again to measure its own: in float64 for a float32 or half
    case, in float32 for a float64 case. ``capped``: see `runner.roundoff.floors`."""
    if not oracles:
        return {}
    oracle = oracles[0]
    references = {"value": sources.values[oracle.name], "grad": sources.grads[oracle.name]}
    high = low = None
    if oracle.name == TORCH.name:
        other = "float32" if case.model.dtype == "float64" else "float64"
        cast = {k: as_dtype(v, other) for k, v in sources.inputs.items()}
        try:
            ran = oracle.run(case.graph, cast, as_dtype(sources.upstream, other))
        except TorchError:  # torch refuses the other dtype: nothing measured
            ran = None
        if ran is not None and other == "float64":
            high = {"value": ran.values, "grad": ran.grads}
        elif ran is not None:
            low = {"value": ran.values, "grad": ran.grads}
    # A float64 case that no user rule changed: the manual side is the catalogue in float64.
    same = case.model.dtype == "float64" and not sources.rule_sets
    catalogue64 = {"value": sources.values[MANUAL], "grad": sources.grads[MANUAL]} if same else None
    return tensor_floors(
        case.model.dtype,
        case.graph,
        sources.inputs,
        sources.upstream,
        references,
        high,
        catalogue64,
        low,
        capped,
    )


def tolerances(case: CompiledCase, right: Source) -> Tolerance:
    """The tolerance of a comparison against ``right``: the defaults for an oracle at the case's
    dtype or for golden values (scale-aware, `runner.compare`), with the case's rtol and atol
    where it sets them (its atol is absolute, as in torch.testing). The round-off floor of the
    tensor is added by the caller."""
    tol = case.model.tolerance
    own = oracle_named(right).tolerance if right in ORACLE_NAMES else None
    base = EXPECTED_TOLERANCE if right == EXPECTED else (own or DEFAULT_TOLERANCE)[case.model.dtype]
    return Tolerance(
        rtol=tol.rtol if tol.rtol is not None else base.rtol,
        atol=tol.atol if tol.atol is not None else base.atol,
        floor=base.floor,
        absolute=tol.atol is not None,
        cap=base.cap,
    )


def execute(
    case: CompiledCase, rules: Sequence[RuleSet] = (), oracles: Sequence[Oracle] = (TORCH,)
) -> CaseResult:
    """Run ``case`` with ``rules`` (the user's rule sets, after the case's own) against each of
    ``oracles``; never raises for anything a case or a rule does."""
    return run_case(case, rules, oracles)[0]


def run_case(
    case: CompiledCase,
    rules: Sequence[RuleSet] = (),
    oracles: Sequence[Oracle] = (TORCH,),
    *,
    timeout: float | None = None,
    max_memory: int | None = None,
) -> tuple[CaseResult, Sources | None]:
    """`execute`, also returning the arrays of every source (None when the case could not
    compute them) for the side-by-side view. The user's rules of the case share one time budget
    (`runner.rules.budget`). ``oracles`` apply to a case that does not name its own.

    ``timeout``: seconds the whole case may run (`runner.rules.budget.case_timeout`), else an
    error result naming the time. ``max_memory``: bytes; a case whose estimated peak
    (`runner.memory.estimate`) is over it is an error result naming the estimate, not run.
    None: no limit."""
    start = time.perf_counter()
    try:
        with case_timeout(timeout), case_budget():
            refusal = memory_refusal(case, max_memory)
            if refusal is not None:
                return _refused(case, refusal, start), None
            return _run_case(case, rules, case_oracles(case, oracles))
    except CaseTimeout as exc:
        return _refused(case, str(exc), start), None


def _refused(case: CompiledCase, message: str, start: float) -> CaseResult:
    """An error result for a case stopped or refused as a whole (time, memory)."""
    return CaseResult(
        name=case.name,
        file=case.file,
        line=case.line,
        status="error",
        duration=time.perf_counter() - start,
        tags=list(case.model.tags),
        messages=[message],
        xfail=case.model.xfail,
    )


def case_oracles(case: CompiledCase, default: Sequence[Oracle]) -> list[Oracle]:
    """The case's ``oracles`` by name (an oracle of ``default`` by that name is used as given,
    e.g. torch on another device), else ``default``."""
    names = case.model.oracles
    if names is None:
        return list(default)
    given = {o.name: o for o in default}
    return [given.get(name) or oracle_named(name) for name in names]


def _run_case(
    case: CompiledCase, rules: Sequence[RuleSet], oracles: Sequence[Oracle]
) -> tuple[CaseResult, Sources | None]:
    """One case run, compared, and on a failure its wrong rule named: its result, and the
    sources' values (None when they could not be computed)."""
    start = time.perf_counter()
    sources: Sources | None = None
    result = CaseResult(
        name=case.name,
        file=case.file,
        line=case.line,
        status="passed",
        duration=0.0,
        tags=list(case.model.tags),
        dtype=case.model.dtype,
    )
    # An oracle without a reference for an op of the case (torch for a RULES module's op)
    # stands aside; the case needs another reference then: an oracle or golden values.
    oracles, refused = usable(case.graph, oracles)
    goldens = bool(case.model.expect.value or case.model.expect.grad)
    try:
        if refused and not oracles and not goldens:
            raise _NoReference("; ".join(refused))
        sources = run_sources(case, rules, oracles)
    except (KeyboardInterrupt, CaseTimeout):
        raise
    except BaseException as exc:  # rules and torch may raise anything; one case must not stop a run
        _broken(case, result, exc)
    else:
        failed = _compare_verdict(case, result, sources, oracles, refused)
        sources = _find_fault(case, rules, oracles, result, sources, failed)
        result.messages = ([fault_message(result.fault)] if result.fault else []) + (
            result.messages or failure_messages(result)
        )
    _apply_xfail(case, result)
    result.duration = time.perf_counter() - start
    return result, sources


def _compare_verdict(
    case: CompiledCase,
    result: CaseResult,
    sources: Sources,
    oracles: Sequence[Oracle],
    refused: Sequence[str],
) -> bool:
    """Compares the sources into ``result`` (its tensors, notes and status: failed, passed,
    or error when no reference checked a gradient); True when a comparison failed."""
    result.tensors = compare_sources(case, sources, oracles)
    result.notes = list(
        dict.fromkeys(sources.manual.notes + _skip_notes(result) + _unchecked_notes(result))
    )
    result.notes += [f"{reason}; compared with the other references only" for reason in refused]
    failed = not all(t.ok for t in result.tensors)
    result.status = "failed" if failed else "passed"
    blind = _unverified(result)
    if blind and not failed:
        # Nothing checked these gradients: neither a pass nor a failure.
        result.status, result.messages = "error", blind
    result.notes += blind if failed else []
    return failed


def _find_fault(
    case: CompiledCase,
    rules: Sequence[RuleSet],
    oracles: Sequence[Oracle],
    result: CaseResult,
    sources: Sources,
    failed: bool,
) -> Sources:
    """Names the wrong rule in ``result.fault``: by localising a failed case, or, for a passed
    case with ``probe``, by probing the user's rules off the case's own data and upstream (a
    fault found fails the case). Returns the sources the verdict stands on (the probed ones
    when the graph was probed). A search that raises leaves the verdict and adds a note."""
    try:
        if result.status == "error":
            pass
        elif failed:
            result.fault = localise(case, sources, oracles, tolerances)
        elif case.model.probe:
            # A constant upstream hides a rule that ignores or transposes it; then the
            # user's rules must also hold off the case's own data and upstream.
            probed = _graph_probe(case, rules, oracles, result)
            if probed is not None:
                sources = probed
            if result.fault is None and result.status == "passed":
                result.fault = probe(
                    case, sources, oracles, tolerances, sources.probe, result.notes
                )
                result.status = "failed" if result.fault else "passed"
    except (KeyboardInterrupt, CaseTimeout):
        raise
    except BaseException as exc:  # telling which rule is wrong must never lose the verdict
        said = f"{type(exc).__name__}: {exc}"
        if result.status == "passed" and (case.rules or rules):
            # The probe is what catches a user's rule that holds only on the case's own data
            # and upstream: a pass it could not check is not a pass.
            result.status = "error"
            result.messages.append(
                f"the probe of the user's rules could not run ({said}); the case's own "
                "comparisons agree, but a rule right only on this data would go unseen: this is "
                "gradcase's fault, please report it (probe: false skips the probe)"
            )
        else:
            result.notes.append(f"the probes or the fault search stopped: {said}")
    return sources


class InvalidInput(Exception):
    """The case's data cannot be made or is refused by a catalogue forward (an index or a class
    target out of range): the case file is wrong, not a rule."""


# What a catalogue forward raises for data out of its domain of indices and sizes.
_DATA_ERRORS = (IndexError, ShapeError, OverflowError)


def _invalid_input(exc: BaseException) -> bool:
    if isinstance(exc, InvalidInput):
        return True
    return (
        isinstance(exc, RuleError)
        and not exc.user
        and isinstance(exc.__cause__, _DATA_ERRORS)
        and str(exc).startswith(f"node '{exc.node}': forward of ")
    )


class _NoReference(Exception):
    """No source in the run can check the case: its oracles refuse it and it has no goldens."""


def _unchecked_notes(result: CaseResult) -> list[str]:
    """One note per gradient with unchecked elements: how many, and why."""
    notes = []
    for t in result.tensors:
        count = tensor_unchecked(t)
        if count and t.unchecked:
            notes.append(
                f"{count} element(s) of the gradient of '{t.tensor}' unchecked: {t.unchecked}"
            )
    return notes


GRAPH_PROBE = f"a random upstream gradient for the whole graph (seed {PROBE_SEED})"


def _graph_probe(
    case: CompiledCase, rules: Sequence[RuleSet], oracles: Sequence[Oracle], result: CaseResult
) -> Sources | None:
    """When the case's upstream gradient is constant and a user's rule is in force, run it once
    more under a seeded random one. A disagreement fails the case as the probe's: ``result``
    then carries the probe's comparisons and fault, and the probe's sources are returned (for
    the side-by-side view)."""
    if not _constant(case.model.upstream) or not (case.rules or rules):
        # Only a user's rule can ignore or transpose the upstream: the catalogue's rules are
        # swept under random upstreams (tests/test_sweep.py), so a case of catalogue rules
        # alone is not run twice.
        return None
    try:
        sources = run_sources(case, rules, oracles, random_upstream=PROBE_SEED)
    except RuleError as exc:
        if not exc.user:
            raise
        _broken(case, result, exc)
        if result.fault is not None:
            result.fault = result.fault.model_copy(update={"under": GRAPH_PROBE})
        return None
    checks = compare_sources(case, sources, oracles)
    if all(t.ok for t in checks):
        return None
    result.status = "failed"
    result.tensors = checks
    result.notes.append(
        "the case passes under its own constant upstream gradient; the comparisons shown are "
        f"under {GRAPH_PROBE}"
    )
    result.messages = [f"under {GRAPH_PROBE}: {m}" for m in failure_messages(result)]
    fault = localise(case, sources, oracles, tolerances)
    result.fault = fault.model_copy(update={"under": GRAPH_PROBE}) if fault else None
    return sources


def _unverified(result: CaseResult) -> list[str]:
    """One message per gradient that no reference checked at any element, where an oracle
    that declined it was its only reference (no other oracle, no golden value): the case
    cannot pass on it."""
    found = []
    for t in result.tensors:
        refs = [c for c in t.comparisons if c.left == MANUAL and t.kind == "grad"]
        declined = [c for c in refs if c.skipped or (c.total and (c.unchecked or 0) >= c.total)]
        if not refs or len(declined) < len(refs) or not any(c.right != TORCH.name for c in refs):
            continue
        why = "; ".join(
            f"the {c.right} oracle skipped it: {c.skipped}"
            if c.skipped
            else f"the {c.right} oracle declined all {c.total} element(s): {t.unchecked}"
            for c in declined
        )
        found.append(f"no reference checked the gradient of '{t.tensor}': {why}")
    return found


def _skip_notes(result: CaseResult) -> list[str]:
    """One note per checked gradient an oracle declined, with the reason."""
    return [
        f"{c.right} oracle skipped {t.kind} of '{t.tensor}': {c.skipped}"
        for t in result.tensors
        for c in t.comparisons
        if c.skipped and c.left == MANUAL
    ]


def _constant(upstream: Any) -> bool:
    """A number, or a literal whose elements are all equal (a random spec is not constant)."""
    if isinstance(upstream, RandomUpstream):
        return False
    flat = np.asarray(upstream, dtype=np.float64).reshape(-1)
    return flat.size <= 1 or bool(np.all(flat == flat[0]))


def _broken(case: CompiledCase, result: CaseResult, exc: BaseException) -> None:
    located = isinstance(exc, RuleError | TorchError | _NoReference)
    text = str(exc) if located else f"{type(exc).__name__}: {exc}"
    node = getattr(exc, "node", None)
    if isinstance(exc, RuleError) and exc.user:
        # The rule under test is wrong (it raised, or returned no gradient of the right shape
        # or dtype): the case fails, at the rule's own location.
        result.status = "failed"
        where = exc.where or case.locations.get(node or "", "")
        result.messages = [f"{where}: {text}" if where else text]
        result.fault = rule_fault(case, exc)
        return
    result.status = "error"
    if _invalid_input(exc):
        result.invalid_input = True
        text += " (invalid input: the case's data, not a rule)"
    if node in case.locations:
        text = f"{case.locations[node]}: {text}"
    elif result.invalid_input:
        text = f"{case.file}:{case.line}:1: {text}"
    result.messages = [text]


def _apply_xfail(case: CompiledCase, result: CaseResult) -> None:
    reason = case.model.xfail
    if reason is None:
        return
    result.xfail = reason
    if result.status == "failed" and not _rule_is_wrong(result):
        result.messages.append(
            f"xfail ({reason}) does not cover this failure: no rule is wrong (the manual "
            "gradients agree with torch; a forward value or a golden value differs)"
        )
    elif result.status == "failed":
        result.status = "xfailed"
        result.messages.append(f"expected to fail (xfail): {reason}")
    elif result.status == "passed":
        result.status = "xpassed"
        result.messages.append(
            f"XPASS (strict): the case passed, but it is marked xfail: {reason}; the rule may "
            "have been fixed: remove xfail"
        )


def _rule_is_wrong(result: CaseResult) -> bool:
    """The failure is a rule's: a fault was found, or a manual gradient disagrees with an
    oracle (forward values come from the catalogue, never from the rules under test)."""
    return result.fault is not None or any(
        not c.ok and c.left == MANUAL and c.right != EXPECTED
        for t in result.tensors
        if t.kind == "grad"
        for c in t.comparisons
    )


def compare_sources(
    case: CompiledCase, sources: Sources, oracles: Sequence[Oracle]
) -> list[TensorCheck]:
    """Every checked tensor, compared pairwise across the sources that have it."""
    expect = case.model.expect

    def check(tensor: str, kind: str) -> TensorCheck:
        table = sources.values if kind == "value" else sources.grads
        names = [o.name for o in oracles if kind == "grad" or o.values]
        pairs = [(MANUAL, name) for name in names]
        pairs += [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        if tensor in table[EXPECTED]:
            pairs += [(MANUAL, EXPECTED)] + [(name, EXPECTED) for name in names]
        torch_skip = sources.unchecked.get(tensor) if kind == "grad" else None
        comparisons = [
            _pair(sources, table, tensor, kind, (left, right), case, skip)
            for left, right in pairs
            for skip in [_declined(sources, tensor, (left, right), torch_skip, kind)]
        ]
        reasons = [
            u.reason
            for u in [torch_skip, *(d.get(tensor) for d in sources.declined.values())]
            if u is not None and kind == "grad"
        ]
        return TensorCheck(
            tensor=tensor,
            kind=kind,  # type: ignore[arg-type]
            ok=all(c.ok for c in comparisons),
            comparisons=comparisons,
            rules=rule_uses(case.graph, sources.manual, tensor) if kind == "grad" else [],
            unchecked="; ".join(reasons) or None,
            expect_where=case.expect_locations.get((kind, tensor)),
        )

    tensors = [check(name, "value") for name in case.values]
    tensors += [check(name, "value") for name in expect.value if name not in case.values]
    tensors += [check(name, "grad") for name in case.checks]
    tensors += [check(name, "grad") for name in expect.grad if name not in case.checks]
    # Values need an oracle that computes its own (numeric alone has none to compare).
    return [t for t in tensors if t.comparisons]


def _declined(
    sources: Sources,
    tensor: str,
    names: tuple[Source, Source],
    torch_skip: Unchecked | None,
    kind: str,
) -> Unchecked | None:
    """The elements of ``tensor``'s gradient one pair leaves unchecked: torch's inconsistent
    ones, and those either side's oracle declined."""
    if kind != "grad":
        return None
    found = [torch_skip] + [sources.declined.get(n, {}).get(tensor) for n in names]
    masks = [u for u in found if u is not None]
    if not masks:
        return None
    mask = masks[0].mask
    for u in masks[1:]:
        mask = mask | u.mask
    return Unchecked(mask, "; ".join(u.reason for u in masks))


def rule_uses(graph: Graph, manual: Backward, tensor: str) -> list[RuleUse]:
    """Every rule that gave part of ``tensor``'s gradient, in graph order."""
    uses = []
    for node in graph.nodes:
        given = manual.given.get(node.name, {})
        for pname, grad in given.items():
            arg = node.args[pname]
            items = arg if isinstance(arg, list) else [arg]
            grads = grad if isinstance(grad, list) else [grad] * len(items)
            for i, (ref, g) in enumerate(zip(items, grads, strict=True)):
                if isinstance(ref, Ref) and ref.name == tensor and g is not None:
                    uses.append(
                        RuleUse(
                            node=node.name,
                            op=node.op.name,
                            argument=f"{pname}[{i}]" if isinstance(arg, list) else pname,
                            source=manual.sources[node.name][pname],
                            expression="" if node.named else node.text,
                        )
                    )
    return uses


def _pair(
    sources: Sources,
    table: dict[Source, dict[str, Any]],
    tensor: str,
    kind: str,
    names: tuple[Source, Source],
    case: CompiledCase,
    skip: Unchecked | None,
) -> Comparison:
    """One pair on one tensor: declined by an oracle (skipped, with its reason), along one
    direction where an oracle gave a projection, else elementwise. The tensor's round-off floor
    (`Sources.floors`) is measured only for a pair that does not agree without it: a floor only
    widens the tolerance, so the verdict is the same, and the report gives ``floor`` only where
    one was applied."""
    left, right = names
    tol = tolerances(case, right)
    if kind == "grad":
        for name in names:
            reason = sources.skipped.get(name, {}).get(tensor)
            if reason is not None:
                return Comparison(
                    left=left, right=right, ok=True, rtol=tol.rtol, atol=tol.atol, skipped=reason
                )
    first = _judge_pair(sources, table, tensor, kind, names, case, skip, tol)
    if first.ok or tol.absolute:
        return first
    floor = sources.floors.get((kind, tensor), 0.0)  # a number, or one per element (half)
    if np.all(np.asarray(floor) <= tol.floor):
        return first
    found = _judge_pair(sources, table, tensor, kind, names, case, skip, tol.with_floor(floor))
    measured = sources.floors.capped((kind, tensor))
    if found.ok or measured is None:
        return found
    dtype = case.model.dtype
    how = (
        f"torch's own {dtype} result against float64"
        if is_half(dtype)
        else "the computation with its inputs moved by one unit of round-off"
    )
    return found.model_copy(
        update={
            "conditioning": f"round-off alone moves this tensor by up to {measured:.2g} here "
            f"({how}), more than any floor allows: it is ill-conditioned on this data (a tie, "
            "kink or cancellation that round-off decides), so this difference may be "
            "round-off's, not the rule's; check the rule on other data"
            + (" or in float32" if is_half(dtype) else "")
        }
    )


def _judge_pair(
    sources: Sources,
    table: dict[Source, dict[str, Any]],
    tensor: str,
    kind: str,
    names: tuple[Source, Source],
    case: CompiledCase,
    skip: Unchecked | None,
    tol: Tolerance,
) -> Comparison:
    """`_pair`'s comparison at tolerance ``tol``: along an oracle's projection, else
    elementwise."""
    left, right = names
    if kind == "grad":
        for name, other in ((left, right), (right, left)):
            projection = sources.projections.get(name, {}).get(tensor)
            if projection is not None:
                grad = table[other].get(tensor)
                return projection.compare(grad, names, tol, name == left)  # type: ignore[no-any-return]
    return _compare(
        table[left].get(tensor),
        table[right].get(tensor),
        names,
        case,
        tol,
        None if skip is None else skip.mask,
    )


def _compare(
    left: Any,
    right: Any,
    names: tuple[Source, Source],
    case: CompiledCase,
    tol: Tolerance,
    unchecked: Any,
) -> Comparison:
    rname = names[1]
    equal_nan = case.model.equal_nan
    result = compare(left, right, sources=names, tol=tol, equal_nan=equal_nan, unchecked=unchecked)
    # A rule that computes in the wrong precision is a bug even when the numbers agree; golden
    # values are typed in no particular precision.
    if (
        result.ok
        and rname != EXPECTED
        and isinstance(left, np.ndarray)
        and isinstance(right, np.ndarray)
        and left.dtype != right.dtype
    ):
        result.ok = False
        result.problem = f"dtype {left.dtype} vs {right.dtype}"
    return result
