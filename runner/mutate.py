"""``gradcase mutate``: would the cases catch a wrong rule? Each op the cases use gets the mutants
of `runner.mutants` (its rule scaled, negated, zeroed, with the upstream dropped, transposed, ties
made one-hot, reduced over the wrong axis); a mutant is *killed* when a case that runs it fails.

Speed: every case is compiled once and its sources (the manual side under the base rules, torch,
the expected values) computed once; per mutant only the manual backward walk runs again, and its
gradients are compared with the cached torch and expected ones by `runner.execute.compare_sources`
with `gradcase run`'s tolerances. A mutant already killed is not run on later cases.

What counts: a case marked ``xfail`` is skipped (its rule is known wrong), and so is a case that
fails without any mutant (fix it first). A case's own ``rules:`` stay in force before the mutant,
so an argument they answer is not mutated in that case; the mutant wraps the rule that would
otherwise give the gradient: the user's RULES module's (``--rules``), else the catalogue's. The
probes of `gradcase run` (random upstream, random operands) are not part of the verdict: the
score measures the suite's own data.

A surviving mutant is *equivalent* (excluded from the score) when, at every node that ran it, on
seeded random operands of the same shapes (standard normal; integers in [-2, 2]; for the tie ops,
normal data made to tie at the result, `runner.mutants.with_ties`, so the verdict never rests on
integers tying by chance; |normal| + 1.1; uniform in [0.05, 0.95]; and the case's own) under a
standard normal upstream, its gradients equal the base rule's at the base gradient's own scale
(the dtype's default tolerance, relative to its largest element, and the round-off of that
element; not the case's tolerance nor the upstream's scale: a gradient of 1e-16 changed by 0.1%
is not equivalent) wherever the base gradient is finite. Otherwise it *survived*, and each case
that ran it says why from its data; a change the case's checked gradients show but its tolerance
allows (at that scale the round-off floor dominates) is said so, with that tolerance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from runner.compare import DEFAULT_TOLERANCE, compare
from runner.compile import CompiledCase
from runner.engine import Backward, RuleError, backward, floating_array
from runner.graph import Node, Ref
from runner.mutants import (
    TIE_OPS,
    TIE_PAIRS,
    TIE_REDUCTIONS,
    Mutant,
    base_grads,
    mutant_rule,
    mutant_set,
    mutants_of,
    pair_ties,
    tie_groups,
    with_ties,
    wrong_axis,
)
from runner.ops import REGISTRY
from runner.ops.spec import Array
from runner.oracles import MANUAL, TORCH, Oracle, Sources
from runner.report import plural
from runner.roundoff import node_floor
from runner.rules import RuleSet
from runner.rules.budget import case_budget
from schemas.report import TensorCheck

EQUIVALENCE_SEED = 0


@dataclass
class Outcome:
    """One mutant over the cases: ``status`` is ``killed``, ``survived`` or ``equivalent``."""

    mutant: Mutant
    base: str  # the source of the rule it wraps: "catalogue", "module rules.py"
    status: str = "survived"
    killed_by: str = ""  # the case, and how
    cases: list[str] = field(default_factory=list)  # the cases that ran it
    reasons: list[str] = field(default_factory=list)  # why it survived, per case and node
    runs: list[tuple[CompiledCase, Sources, list[str]]] = field(default_factory=list, repr=False)


@dataclass
class MutationReport:
    outcomes: list[Outcome]
    cases: list[str]  # the cases used
    skipped: list[tuple[str, str]]  # (case, why)
    seconds: float = 0.0

    def counted(self, op: str | None = None) -> list[Outcome]:
        """The non-equivalent mutants (of ``op``)."""
        return [
            o
            for o in self.outcomes
            if o.status != "equivalent" and (op is None or o.mutant.op == op)
        ]

    @property
    def survivors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "survived"]


def mutate(
    cases: Sequence[CompiledCase],
    rule_sets: Sequence[RuleSet] = (),
    oracles: Sequence[Oracle] = (TORCH,),
) -> MutationReport:
    """Run every mutant of every op ``cases`` use (see the module's docstring) with the user's
    ``rule_sets`` as the base rules; never raises for anything a case or a rule does."""
    from runner.execute import compare_sources, run_sources

    start = time.perf_counter()
    outcomes: dict[Mutant, Outcome] = {}
    used: list[str] = []
    skipped: list[tuple[str, str]] = []
    for case in cases:
        if case.model.xfail is not None:
            skipped.append((case.name, f"xfail: {case.model.xfail}"))
            continue
        try:
            with case_budget():
                sources = run_sources(case, rule_sets, oracles)
        except Exception as exc:  # rules and torch may raise anything
            skipped.append((case.name, f"does not run without mutants: {exc}"))
            continue
        if not all(t.ok for t in compare_sources(case, sources, oracles)):
            skipped.append((case.name, "fails without mutants (gradcase run says why)"))
            continue
        used.append(case.name)
        for (op, argument), base in _targets(case, sources).items():
            for mutant in mutants_of(REGISTRY[op]):
                if mutant.argument != argument:
                    continue
                outcome = outcomes.setdefault(mutant, Outcome(mutant, base))
                if outcome.status == "killed":
                    continue
                _run_mutant(case, sources, outcome, rule_sets, oracles, compare_sources)
    for outcome in outcomes.values():
        if outcome.status == "survived" and outcome.cases:
            if _equivalent(outcome, rule_sets):
                outcome.status = "equivalent"
    ran = [o for o in outcomes.values() if o.cases]
    for o in ran:
        o.runs = []
    ran.sort(key=lambda o: (o.mutant.op, o.mutant.argument, o.mutant.kind))
    return MutationReport(ran, used, skipped, time.perf_counter() - start)


def _targets(case: CompiledCase, sources: Sources) -> dict[tuple[str, str], str]:
    """(op, argument) of every node whose gradient for that argument a mutant may replace (not
    the case's own rule), and the source of the rule it would wrap. Ops of the catalogue only:
    an op the case composes or a module defines (`runner.composed`) is not mutated; nor is the
    gradient of an operand that does not require grad (a constant such as a target), which
    nothing reads."""
    found: dict[tuple[str, str], str] = {}
    for node in case.graph.nodes:
        # An output of a catalogue op with several (`Op.output`) is the catalogue's too.
        # (A case's composed op without a rule has no `whole`: None must not match it.)
        catalogue = REGISTRY.get(node.op.name)
        if catalogue is None or catalogue not in (node.op, node.op.whole):
            continue
        for argument, source in sources.manual.sources.get(node.name, {}).items():
            arg = node.args[argument]
            refs = [r for r in (arg if isinstance(arg, list) else [arg]) if isinstance(r, Ref)]
            if not any(case.graph.requires_grad.get(r.name, False) for r in refs):
                continue
            if case.rules is None or source != case.rules.source:
                found.setdefault((node.op.name, argument), source)
    return found


def _run_mutant(
    case: CompiledCase,
    sources: Sources,
    outcome: Outcome,
    rule_sets: Sequence[RuleSet],
    oracles: Sequence[Oracle],
    compare_sources: Any,
) -> None:
    mutant = outcome.mutant
    in_force = [*([case.rules] if case.rules else []), mutant_set(mutant, rule_sets), *rule_sets]
    try:
        with case_budget():
            manual = backward(case.graph, sources.values[MANUAL], sources.upstream, in_force)
    except RuleError as exc:
        outcome.cases.append(case.name)
        outcome.status, outcome.killed_by = "killed", f"{case.name}: the mutant raised: {exc}"
        return
    nodes = [
        name for name, used in manual.sources.items() if used.get(mutant.argument) == mutant.source
    ]
    if not nodes:
        return
    outcome.cases.append(case.name)
    mutated = replace(sources, manual=manual, grads={**sources.grads, MANUAL: manual.grads})
    checks = compare_sources(case, mutated, oracles)
    failed = [t for t in checks if not t.ok]
    if failed:
        outcome.status = "killed"
        outcome.killed_by = f"{case.name}: grad of '{failed[0].tensor}' differs"
        return
    outcome.runs.append((case, sources, nodes))
    outcome.reasons += [_why(case, sources, manual, mutant, name, checks) for name in nodes]


# --- why a mutant survived, from the case's data --------------------------------------------


def _why(
    case: CompiledCase,
    sources: Sources,
    manual: Backward,
    mutant: Mutant,
    name: str,
    checks: Sequence[TensorCheck],
) -> str:
    node = case.graph.node(name)
    arg = mutant.argument
    values = sources.values[MANUAL]
    base = sources.manual.given[name][arg]
    upstream = sources.manual.grads[name]
    where = f"{case.name}, node '{name}'" + (
        f" ({case.locations[name]})" if name in case.locations else ""
    )
    dtype = case.model.dtype
    if _same(manual.given[name][arg], base, dtype):
        return f"{where}: {_no_op(mutant, node, values, base, upstream)}"
    # The node's gradient changed: either some checked gradient changed too, by less than the
    # tolerance it is compared under, or none did.
    for check in checks:
        before = sources.grads[MANUAL].get(check.tensor)
        after = manual.grads.get(check.tensor)
        if check.kind != "grad" or _same(after, before, dtype):
            continue
        within = next(c for c in check.comparisons if c.left == MANUAL)
        with np.errstate(invalid="ignore"):
            diff = np.abs(np.asarray(after, float) - np.asarray(before, float))
        change = float(np.max(diff[np.isfinite(diff)], initial=0.0))
        return (
            f"{where}: the change is within the tolerance (atol {within.atol:.3g} incl. "
            f"round-off {within.floor or 0.0:.3g}) at this scale: the grad of '{check.tensor}' "
            f"changes by up to {change:.3g}, against {within.right} (rtol {within.rtol:g})"
        )
    return (
        f"{where}: the mutant changes the gradient for '{arg}' there, but no checked gradient "
        "changes: it is multiplied by zeros downstream, or the tensors it reaches are not in "
        "`check`"
    )


def _no_op(mutant: Mutant, node: Node, values: dict[str, Array], base: Any, g: Array) -> str:
    """Why the mutant gives the base rule's gradient on this node's data."""
    arg, kind = mutant.argument, mutant.kind
    grads = [np.asarray(b) for b in (base if isinstance(base, list) else [base])]
    if kind in ("scaled", "negated", "zeroed") and all(not np.any(b) for b in grads):
        return f"reference gradient all zeros: the rule's gradient for '{arg}' is 0 everywhere"
    if kind == "upstream-dropped" and np.all(g == 1):
        return f"constant upstream: the upstream gradient of the node is all 1.0 ({_shape(g)})"
    if kind == "upstream-dropped":
        return "the rule's gradient on these data does not depend on the upstream gradient"
    args = node.bind(values)
    if kind == "transposed":
        sym = [k for k, v in args.items() if _symmetric(v)] + (
            ["upstream"] if _symmetric(g) else []
        )
        data = f"symmetric inputs/upstream: {', '.join(sym)}" if sym else "no symmetric operand"
        return f"symmetric gradient: the gradient for '{arg}' equals its transpose ({data})"
    if kind == "ties-one-hot":
        count = _tie_count(node, args, values[node.name])
        if count == 0:
            return "no ties in the data: no two operands tie at the node's result"
        return f"{count} tied element(s), but their gradient is already one-hot (or zero)"
    if kind == "wrong-axis":
        operand = args[arg]
        first = operand[0] if isinstance(operand, list) else operand
        axis = wrong_axis(node.op, np.shape(first), np.shape(values[node.name]), args, arg)
        flat = np.asarray(g).reshape(-1)
        upstream = " (constant upstream)" if flat.size and np.all(flat == flat[0]) else ""
        return (
            "all-equal data along the wrong axis: the gradient is constant along axis "
            f"{axis}{upstream}"
        )
    return f"the mutant's change is within the tolerance on these data ({kind})"


def _tie_count(node: Node, args: dict[str, Any], out: Array) -> int:
    name = node.op.name
    if name in TIE_PAIRS:
        return int(np.count_nonzero(pair_ties(args)))
    if name in TIE_REDUCTIONS:
        x = np.asarray(args["input"])
        if x.ndim == 0:
            return 0
        tied, dims = tie_groups(x, out, args.get("dim"), args.get("keepdim"))
        counts = tied.sum(axis=dims, keepdims=True)
        return int(np.count_nonzero(tied & (counts > 1)))
    return 0


def _symmetric(v: Any) -> bool:
    return (
        isinstance(v, np.ndarray)
        and v.ndim >= 2
        and v.shape[-1] == v.shape[-2]
        and v.shape[-1] > 1
        and bool(np.array_equal(v, np.swapaxes(v, -1, -2)))
    )


def _shape(a: Array) -> str:
    return f"shape {tuple(a.shape)}"


# --- equivalent mutants ------------------------------------------------------------------------


def _equivalent(outcome: Outcome, rule_sets: Sequence[RuleSet]) -> bool:
    """True when no seeded random data tell the mutant from the base rule at the nodes that ran
    it (see the module's docstring); False when some do, or when no draw was usable."""
    mutant = outcome.mutant
    op = REGISTRY[mutant.op]
    rule = mutant_rule(mutant, rule_sets)
    rng = np.random.default_rng(EQUIVALENCE_SEED)
    usable = False
    for case, sources, names in outcome.runs:
        values = sources.values[MANUAL]
        for name in names:
            node = case.graph.node(name)
            for draw in DRAWS:
                if draw == "tied" and op.name not in TIE_OPS:
                    continue
                args = _drawn(case, node, node.bind(values), draw, rng)
                try:
                    with np.errstate(all="ignore"), case_budget():
                        out = np.asarray(node.op.forward(**args))
                        g = np.asarray(rng.standard_normal(out.shape), dtype=out.dtype)
                        base = base_grads(node.op, rule_sets, g, out, args).get(mutant.argument)
                        extra = node.op.gradients_per_output(g, out, args)
                        mine = (rule(g, out, args | extra) or {}).get(mutant.argument, base)
                except Exception:
                    continue
                if base is None or not _finite(base):
                    continue
                usable = True
                if not _same(mine, base, case.model.dtype):
                    return False
    return usable


# "tied": normal data made to tie at the op's result (`runner.mutants.with_ties`), for the tie
# ops only: whether ``ties-one-hot`` is equivalent must not depend on integers tying by chance.
DRAWS = ("normal", "ties", "tied", "positive", "unit", "case")


def _drawn(
    case: CompiledCase, node: Node, args: dict[str, Any], draw: str, rng: np.random.Generator
) -> dict[str, Any]:
    """``args`` with every floating operand that requires grad drawn as ``draw`` says (same
    shape and dtype); constants keep the case's values."""
    if draw == "case":
        return args

    def new(v: Array) -> Array:
        shape = v.shape
        if draw in ("normal", "tied"):
            data = rng.standard_normal(shape)
        elif draw == "ties":
            data = rng.integers(-2, 3, size=shape).astype(np.float64)
        elif draw == "positive":
            data = np.abs(rng.standard_normal(shape)) + 1.1
        else:
            data = rng.uniform(0.05, 0.95, size=shape)
        return np.asarray(data, dtype=v.dtype)

    fresh = dict(args)
    free = []
    for p in node.op.tensor_params:
        refs, value = node.args[p.name], args[p.name]
        items = value if isinstance(value, list) else [value]
        names = refs if isinstance(refs, list) else [refs]
        redraw = [
            floating_array(v) and isinstance(r, Ref) and case.graph.requires_grad.get(r.name, False)
            for v, r in zip(items, names, strict=True)
        ]
        drawn = [new(v) if r else v for v, r in zip(items, redraw, strict=True)]
        fresh[p.name] = drawn if isinstance(value, list) else drawn[0]
        if all(redraw):
            free.append(p.name)
    return with_ties(node.op.name, fresh, free) if draw == "tied" else fresh


def _finite(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(v is None or bool(np.all(np.isfinite(np.asarray(v)))) for v in items)


def _same(a: Any, b: Any, dtype: str) -> bool:
    """``a`` agrees with ``b`` (arrays, or lists of them) at ``b``'s own scale: under the default
    tolerance of ``dtype`` (scale-aware, `runner.compare`) and the round-off floor of ``b``'s own
    largest element (`runner.roundoff.node_floor` with no upstream), never the case's tolerance
    or its upstream's scale. A gradient of 1e-16 changed by 0.1% has changed: whether the case's
    tolerance sees it is another question (`_why` answers it)."""
    tol = DEFAULT_TOLERANCE.get(dtype, DEFAULT_TOLERANCE["float32"])
    left = a if isinstance(a, list) else [a]
    right = b if isinstance(b, list) else [b]
    if len(left) != len(right):
        return False
    return all(
        (x is None and y is None)
        or (
            x is not None
            and y is not None
            and compare(
                x,
                y,
                sources=("manual", "manual"),
                tol=tol.with_floor(node_floor(dtype, None, y)),
            ).ok
        )
        for x, y in zip(left, right, strict=True)
    )


# --- the report ----------------------------------------------------------------------------------


def score_lines(report: MutationReport, *, verbose: bool = False) -> list[str]:
    """Per op: killed/total of its non-equivalent mutants and the score; then each survivor with
    the cases that ran it and why it survived; the total line last."""
    lines: list[str] = []
    ops = sorted({o.mutant.op for o in report.outcomes})
    for op in ops:
        counted = report.counted(op)
        killed = sum(o.status == "killed" for o in counted)
        equivalent = sum(o.mutant.op == op and o.status == "equivalent" for o in report.outcomes)
        score = f"{100 * killed / len(counted):5.1f}%" if counted else "    -"
        extra = f"  ({equivalent} equivalent)" if equivalent else ""
        lines.append(f"{op:<32} {killed:>3}/{len(counted):<3} killed {score}{extra}")
    for o in report.survivors:
        cases = ", ".join(o.cases)
        lines.append(f"--- SURVIVED {o.mutant} (wraps the {o.base} rule; ran in: {cases})")
        lines += [f"  {reason}" for reason in dict.fromkeys(o.reasons)]
    nothing = nothing_mutated(report)
    if verbose:
        for o in report.outcomes:
            if o.status == "equivalent":
                lines.append(f"equivalent {o.mutant}: no random data tell it from the base rule")
            elif o.status == "killed":
                lines.append(f"killed {o.mutant} by {o.killed_by.splitlines()[0]}")
    if verbose or nothing:
        lines += [f"skipped {name}: {why}" for name, why in report.skipped]
    if nothing:
        lines.append(nothing)
    lines.append(total_line(report))
    return lines


def nothing_mutated(report: MutationReport) -> str:
    """Why no mutant was judged (every case skipped, or none ran any mutant), or "" when some
    was: a score of nothing is not a pass."""
    if not report.cases:
        return "nothing was mutated: every case was skipped (see why above)"
    if not report.outcomes:
        return (
            "nothing was mutated: the cases used run no catalogue op rule a mutant can replace "
            "(only the case's own rules, composed ops, or no gradient that requires grad)"
        )
    return ""


def total_line(report: MutationReport) -> str:
    counted = report.counted()
    killed = sum(o.status == "killed" for o in counted)
    equivalent = len(report.outcomes) - len(counted)
    score = f"{100 * killed / len(counted):.1f}%" if counted else "no mutants"
    return (
        f"mutation score: {killed}/{len(counted)} non-equivalent mutants killed ({score}), "
        f"{len(counted) - killed} survived, {equivalent} equivalent; "
        f"{plural(len(report.cases), 'case')} used, {len(report.skipped)} skipped; "
        f"{report.seconds:.1f} s"
    )


def as_json(report: MutationReport) -> dict[str, Any]:
    return {
        "cases": report.cases,
        "skipped": [{"case": c, "why": w} for c, w in report.skipped],
        "seconds": report.seconds,
        "mutants": [
            {
                "op": o.mutant.op,
                "kind": o.mutant.kind,
                "argument": o.mutant.argument,
                "base": o.base,
                "status": o.status,
                "killed_by": o.killed_by,
                "cases": o.cases,
                "reasons": list(dict.fromkeys(o.reasons)),
            }
            for o in report.outcomes
        ],
    }


def write_json(report: MutationReport, path: Path) -> None:
    """Atomic, as run's reports (`runner.formats.write_text`: missing folders are made)."""
    from runner.formats import write_text

    write_text(path, json.dumps(as_json(report), indent=2) + "\n")
