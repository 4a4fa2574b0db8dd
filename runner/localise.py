"""Which rule is wrong: a failed case's gradient traced back to one node and one argument.

Walking back from the output, the first node whose output gradient agrees with the oracle but
whose gradient for one of its arguments does not is the node whose rule is wrong. Each node is
judged alone: its rule's result (as the engine recorded it) against the oracle's gradient of that
node alone, given the same upstream gradient, so gradients that several nodes accumulate into one
tensor do not blur the verdict. `runner.diagnose` then says what the wrong gradient looks like.

`probe` asks the same question of every node whose gradient came from a user's rule, under a
random upstream gradient: a rule that ignores its upstream gradient, or is wrong only off the
case's data, must not pass because the case's upstream is constant (``1.0`` by default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from runner.compare import Tolerance, compare, scale_of
from runner.compile import CompiledCase
from runner.diagnose import diagnose, named
from runner.dtypes import is_floating
from runner.engine import RuleError, floating_array, node_vjp
from runner.graph import Graph, Node, Ref
from runner.ops.spec import Array
from runner.oracles import Oracle, Sources
from runner.roundoff import node_floor
from runner.rules import CATALOGUE
from schemas.report import Fault

Tolerances = Callable[[CompiledCase, str], Tolerance]


def localise(
    case: CompiledCase, sources: Sources, oracles: Sequence[Oracle], tolerances: Tolerances
) -> Fault | None:
    """The fault of ``case`` (see the module's docstring), or None when every node's rule agrees
    with the first oracle that can differentiate one node (the failure is then elsewhere: a
    golden value, a forward value, a dtype).

    ``tolerances(case, oracle name)`` gives the tolerance each node is judged with; the
    round-off floor of a node's gradients is `node_floor` of its upstream gradient.
    """
    oracle = _node_oracle(oracles)
    if oracle is None:
        return None
    graph, manual = case.graph, sources.manual
    tol = tolerances(case, oracle.name)
    for node in reversed(graph.nodes[: graph.index(graph.output) + 1]):
        given = manual.given.get(node.name)
        g = manual.grads.get(node.name)
        if given is None or g is None:
            continue
        if not _output_agrees(sources, node.name, g, oracle, tol):
            continue
        try:
            fault = _judge(case, sources, node, g, given, oracle, tol)
        except _OracleRefused:
            return None
        if fault is not None:
            return fault
    return None


def _output_agrees(sources: Sources, name: str, g: Array, oracle: Oracle, tol: Tolerance) -> bool:
    """Whether node ``name``'s output gradient ``g`` agrees with ``oracle``'s: its whole
    gradient, else its projection (the numeric oracle's nodes far from the output). With
    neither (declined, or not computed), the walk back vouches for it: every node after it
    agreed with the oracle, judged alone."""
    theirs = sources.grads[oracle.name].get(name)
    projection = sources.projections.get(oracle.name, {}).get(name)
    if theirs is None and projection is None:
        return True

    def agrees(tol: Tolerance) -> bool:
        if projection is not None and theirs is None:
            return bool(projection.compare(g, ("manual", oracle.name), tol, False).ok)
        return compare(g, theirs, sources=("manual", oracle.name), tol=tol).ok

    # The floor only widens the tolerance: measured (`Sources.floors`) only when needed.
    return agrees(tol) or agrees(tol.with_floor(sources.floors.get(("grad", name), 0.0)))


PROBE_SEED = 0
UNDER_UPSTREAM = f"a random upstream gradient (seed {PROBE_SEED})"
UNDER_INPUTS = f"random inputs and upstream gradient (seed {PROBE_SEED})"
UNDER_NEGATED = f"the same random inputs negated (seed {PROBE_SEED})"
UNDER_POSITIVE = f"random positive inputs and upstream gradient (seed {PROBE_SEED})"
UNDER_UNIT = f"random inputs in (0, 1) and upstream gradient (seed {PROBE_SEED})"
UNDER_SPD = f"random symmetric positive definite matrices and upstream gradient (seed {PROBE_SEED})"
# The probe's draws of a node's operands, in order: the domain of most ops, then of ops defined
# for positive numbers only (log, sqrt), for probabilities (binary_cross_entropy) and for
# symmetric positive definite matrices (cholesky, logdet).
DRAWS = (
    ("normal", UNDER_INPUTS),
    ("positive", UNDER_POSITIVE),
    ("unit", UNDER_UNIT),
    ("spd", UNDER_SPD),
)


def _draw(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> Array:
    if kind == "positive":
        return np.abs(rng.standard_normal(shape)) + 0.1
    if kind == "unit":
        return rng.uniform(0.05, 0.95, size=shape)
    if kind == "spd" and len(shape) >= 2 and shape[-1] == shape[-2]:
        # B B^T / n + I: symmetric, eigenvalues at least 1 (well conditioned).
        b = rng.standard_normal(shape)
        n = shape[-1]
        return np.asarray(b @ np.swapaxes(b, -1, -2) / n + np.eye(n))
    return rng.standard_normal(shape)


def _finite(value: Any) -> bool:
    a = np.asarray(value)
    return not is_floating(a.dtype) or bool(np.all(np.isfinite(a)))


def probe(
    case: CompiledCase,
    sources: Sources,
    oracles: Sequence[Oracle],
    tolerances: Tolerances,
    record: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> Fault | None:
    """The first node, walking back, whose user rule disagrees with the oracle, judged alone as
    in `localise`: under a random upstream gradient (standard normal, seed `PROBE_SEED`), then
    also with the operands that require grad drawn anew: standard normal, then those negated (so
    every element is tried at both signs and symmetric or special data cannot hide a wrong
    rule), then positive (|normal| + 0.1: log, sqrt), then in (0, 1) (probabilities: bce). A
    draw outside the op's domain (a forward that is not finite everywhere, or the oracle
    refusing it) is not used; when no random draw could be used for a node, ``notes`` gets a
    line saying so. Constants (targets, masks, ``requires_grad: false``) keep the case's values.
    None when every user rule agrees (or there is none). ``record`` receives the arrays of the
    failing probe (the upstream, the operands, both gradients) for the side-by-side view.
    """
    oracle = _node_oracle(oracles)
    if oracle is None:
        return None
    graph, manual = case.graph, sources.manual
    tol = tolerances(case, oracle.name)
    rng = np.random.default_rng(PROBE_SEED)
    values = sources.values["manual"]
    for node in reversed(graph.nodes[: graph.index(graph.output) + 1]):
        used = manual.sources.get(node.name, {})
        g = manual.grads.get(node.name)
        if g is None or all(source == CATALOGUE for source in used.values()):
            continue
        attempts = _attempts(graph, node, values, rng)
        decided, fault = _probe_node(case, sources, node, attempts, rng, oracle, tol, record, notes)
        if decided:
            return fault
    return None


def _attempts(
    graph: Graph, node: Node, values: dict[str, Any], rng: np.random.Generator
) -> list[Attempt]:
    """The probes of ``node``, in order: (what the probe is ``under``, the operands drawn for
    it or None for the case's own, whether they are negated). Draws from ``rng`` once per kind
    of `DRAWS`."""
    attempts: list[Attempt] = [(UNDER_UPSTREAM, None, False)]
    for kind, under in DRAWS:
        drawn = _random_operands(graph, node, node.bind(values), rng, kind)
        attempts.append((under, drawn, False))
        if kind == "normal":
            attempts.append((UNDER_NEGATED, drawn, True))
    return attempts


def _probe_node(
    case: CompiledCase,
    sources: Sources,
    node: Node,
    attempts: list[Attempt],
    rng: np.random.Generator,
    oracle: Oracle,
    tol: Tolerance,
    record: dict[str, Any] | None,
    notes: list[str] | None,
) -> tuple[bool, Fault | None]:
    """Judges the user's rule of ``node`` under each of ``attempts`` (as `probe` says), each
    under a fresh random upstream: (True, the fault) when a probe decides (a wrong gradient, or
    a rule that failed outright on the case's own operands), else (False, None), with a line in
    ``notes`` when no random draw could be used."""
    manual, values = sources.manual, sources.values["manual"]
    used = manual.sources.get(node.name, {})
    g = manual.grads[node.name]
    judged_random = False
    for under, drawn, negate in attempts:
        upstream = np.asarray(rng.standard_normal(g.shape), dtype=g.dtype)
        args, out = node.bind(values), values[node.name]
        if under != UNDER_UPSTREAM:
            # Random data outside the op's domain (a NaN or an infinite forward) says
            # nothing about a rule meant for the domain: such a draw is not used.
            found = _forward(node, drawn, negate=negate)
            if found is None or not _finite(found[1]):
                continue
            args, out = found
        try:
            given, _ = node_vjp(node, upstream, out, args, sources.rule_sets)
        except RuleError as exc:
            if under != UNDER_UPSTREAM:
                continue  # a rule may assume the op's domain; random data need not keep it
            return True, rule_fault(case, exc, under)
        mine = {k: v for k, v in given.items() if used.get(k, CATALOGUE) != CATALOGUE}
        try:
            fault = _judge(case, sources, node, upstream, mine, oracle, tol, args, record)
        except _OracleRefused:
            continue
        judged_random |= under != UNDER_UPSTREAM
        if fault is not None:
            if record is not None:
                record.update(upstream=upstream, under=under)
            return True, fault.model_copy(update={"under": under})
    if not judged_random and any(d is not None for _, d, _ in attempts) and notes is not None:
        notes.append(
            f"the probe could not judge the rule of node '{node.name}' ({node.op.name}) on "
            "random operands: the forward or the oracle refused every draw (standard normal, "
            "positive, in (0, 1), symmetric positive definite); it was judged on the case's own "
            "operands only"
        )
    return False, None


Drawn = tuple[dict[str, Any], set[tuple[str, int]]]
# A probe: what it is under, the operands drawn for it (None: the case's own), negated or not.
Attempt = tuple[str, Drawn | None, bool]


def _random_operands(
    graph: Graph, node: Node, args: dict[str, Any], rng: np.random.Generator, kind: str
) -> Drawn | None:
    """``args`` with every floating operand that requires grad drawn anew (``kind``: "normal",
    "positive" |normal| + 0.1, "unit" uniform in (0.05, 0.95), or "spd" B B^T / n + I for a
    square matrix (normal otherwise); same shape and dtype), and which (parameter, position)
    were drawn; None when none was."""
    fresh = dict(args)
    drawn: set[tuple[str, int]] = set()
    for p in node.op.tensor_params:
        value, refs = args[p.name], node.args[p.name]
        items = list(value) if isinstance(value, list) else [value]
        names = refs if isinstance(refs, list) else [refs]
        for i, (v, ref) in enumerate(zip(items, names, strict=True)):
            if (
                floating_array(v)
                and isinstance(ref, Ref)
                and graph.requires_grad.get(ref.name, False)
            ):
                items[i] = np.asarray(_draw(rng, kind, v.shape), dtype=v.dtype)
                drawn.add((p.name, i))
        fresh[p.name] = items if isinstance(value, list) else items[0]
    return (fresh, drawn) if drawn else None


def _forward(
    node: Node, drawn: Drawn | None, *, negate: bool
) -> tuple[dict[str, Any], Array] | None:
    """The drawn operands (negated: the same magnitudes at the other sign) and the node's
    forward value on them; None when there are none or the forward refuses them."""
    if drawn is None:
        return None
    args, keys = dict(drawn[0]), drawn[1]
    if negate:
        for name, i in keys:
            if isinstance(args[name], list):
                args[name] = [-v if j == i else v for j, v in enumerate(args[name])]
            else:
                args[name] = -args[name]
    try:
        with np.errstate(all="ignore"):
            return args, np.asarray(node.op.forward(**args))
    except Exception:
        return None


def rule_fault(case: CompiledCase, exc: RuleError, under: str = "the case") -> Fault | None:
    """The fault of a user's rule that failed outright (it raised, or returned no usable
    gradient): its node, argument, rule and problem, with the hint its message carries. None
    when the error names no node."""
    if exc.node is None:
        return None
    node = case.graph.node(exc.node)
    text = str(exc)
    return Fault(
        node=exc.node,
        op=node.op.name,
        argument=exc.argument or "",
        source=exc.source,
        where=case.locations.get(exc.node, ""),
        expression=node.text,
        rule=" at ".join(x for x in (f"`{exc.text}`" if exc.text else "", exc.where) if x),
        under=under,
        problem=text,
        diagnosis=text.split("looks like: ", 1)[1] if "looks like: " in text else None,
    )


class _OracleRefused(Exception):
    pass


def _node_oracle(oracles: Sequence[Oracle]) -> Oracle | None:
    return next((o for o in oracles if o.node_vjp is not None), None)


def _judge(
    case: CompiledCase,
    sources: Sources,
    node: Node,
    g: Array,
    given: dict[str, Any],
    oracle: Oracle,
    tol: Tolerance,
    args: dict[str, Any] | None = None,
    record: dict[str, Any] | None = None,
) -> Fault | None:
    """The first argument of ``node`` whose gradient in ``given`` (the rule's, under upstream
    ``g``, on ``args``: by default the node's operands in the case) differs from the oracle's
    gradient of the node alone; raises `_OracleRefused` when the oracle cannot differentiate the
    node by itself."""
    assert oracle.node_vjp is not None
    graph = case.graph
    if args is None:
        args = node.bind(sources.values["manual"])
    try:
        reference = oracle.node_vjp(node, args, g)
    except Exception:
        raise _OracleRefused from None
    for pname, argument, mine, theirs in _gradient_pairs(graph, node, given, reference):
        floor = node_floor(case.model.dtype, g, theirs)
        found = compare(mine, theirs, sources=("manual", oracle.name), tol=tol.with_floor(floor))
        if found.ok:
            continue
        source = sources.manual.sources[node.name].get(pname, "")
        diagnosis = None
        if theirs is not None:
            diagnosis = _diagnosis(oracle, node, args, g, pname, argument, mine, theirs)
        if record is not None:
            record.update(node=node.name, argument=argument, manual=mine, oracle=theirs)
            record.update({f"operand {k}": v for k, v in args.items() if _is_array(v)})
        return Fault(
            node=node.name,
            op=node.op.name,
            argument=argument,
            source=source,
            where=case.locations.get(node.name, ""),
            expression=node.text,
            rule=_rule_text(sources, source, node.op.name, pname),
            oracle=oracle.name,
            comparison=found,
            diagnosis=diagnosis,
        )
    return None


def _gradient_pairs(
    graph: Graph, node: Node, given: dict[str, Any], reference: dict[str, Any]
) -> Iterator[tuple[str, str, Any, Any]]:
    """(parameter, argument, the rule's gradient, the oracle's) for each operand of ``node``
    that requires grad and has a gradient in ``given``, in order; the argument of a list
    parameter is named ``param[i]``."""
    for pname, grad in given.items():
        arg = node.args[pname]
        items = arg if isinstance(arg, list) else [arg]
        grads = grad if isinstance(grad, list) else [grad]
        refs = reference.get(pname)
        refs = refs if isinstance(refs, list) else [refs]
        for i, (operand, mine, theirs) in enumerate(zip(items, grads, refs, strict=False)):
            if mine is None or not isinstance(operand, Ref):
                continue
            if not graph.requires_grad.get(operand.name, False):
                continue
            yield pname, (f"{pname}[{i}]" if isinstance(arg, list) else pname), mine, theirs


def _diagnosis(
    oracle: Oracle,
    node: Node,
    args: dict[str, Any],
    g: Array,
    pname: str,
    argument: str,
    mine: Any,
    theirs: Any,
) -> str | None:
    """What a wrong gradient ``mine`` looks like next to the oracle's ``theirs`` (see
    `runner.diagnose`): tried first against the upstream and the gradient under ones, then as
    a transpose."""
    try:
        ones = _under_ones(oracle, node, args, g, pname, argument)
        diagnosis = diagnose(mine, theirs, upstream=g, ones_reference=ones, oracle=oracle.name)
        return (
            diagnosis
            or named(_transposed(oracle, node, args, g, mine, theirs, pname, argument), oracle.name)
            or _at_convention(node, args)
        )
    except Exception:  # a hint is a bonus: failing to find one must not lose the fault itself
        return None


def _at_convention(node: Node, args: dict[str, Any]) -> str | None:
    """The node's data sit exactly at a tie or kink of its op (`Op.kinks` at distance 0): a
    rule that makes another valid choice there (another tied index) differs from torch's
    convention, which `gradcase ops` states."""
    if node.op.kinks is None:
        return None
    reason = node.op.kinks(0.0, **args)
    if reason is None:
        return None
    return (
        f"the data are at a tie or kink of {node.op.name} ({reason}): torch's convention "
        f"decides the gradient there (`gradcase ops {node.op.name}` states it), and a rule "
        "that chooses otherwise differs"
    )


def _is_array(v: Any) -> bool:
    return isinstance(v, np.ndarray)


def _transposed(
    oracle: Oracle,
    node: Node,
    args: dict[str, Any],
    g: Array,
    mine: Array,
    theirs: Array,
    pname: str,
    argument: str,
) -> str | None:
    """Matrix rules go wrong by a transpose on the wrong side: does ``mine`` equal the oracle's
    gradient with one square operand (or the upstream gradient, or both) transposed, or that
    transposed? Op-agnostic: it only transposes the last two dims of square arrays. A
    transposition that gives back the oracle's own gradient (``theirs``: elementwise ops,
    symmetric data) says nothing and is not offered."""
    if oracle.node_vjp is None:
        return None
    square = [
        k for k, v in args.items() if _is_array(v) and v.ndim >= 2 and v.shape[-1] == v.shape[-2]
    ]
    names = [*square, "grad"] if g.ndim >= 2 and g.shape[-1] == g.shape[-2] else square
    tries = [(n,) for n in names] + [("grad", n) for n in square if "grad" in names]
    scale = scale_of(mine)  # finite: a NaN in mine must not make allclose's atol NaN
    for flipped in tries:
        moved = {k: np.swapaxes(v, -1, -2) if k in flipped else v for k, v in args.items()}
        upstream = np.swapaxes(g, -1, -2) if "grad" in flipped else g
        try:
            found = _pick(oracle.node_vjp(node, moved, upstream), pname, argument)
        except Exception:
            continue
        if found is None or found.shape != np.shape(mine):
            continue
        what = " and ".join(f"'{n}'" if n != "grad" else "grad" for n in flipped)

        def close(x: Any, y: Any) -> bool:
            return bool(np.allclose(x, y, rtol=1e-6, atol=1e-9 * max(scale, 1e-300)))

        if close(mine, found) and not close(found, theirs):
            return f"torch's gradient with {what} transposed (a transpose on the wrong side)"
        # Only a square gradient can equal its own transpose's shape (mine is found's shape).
        square_found = found.ndim >= 2 and found.shape[-1] == found.shape[-2]
        swapped = np.swapaxes(found, -1, -2) if square_found else None
        if swapped is not None and close(mine, swapped) and not close(swapped, theirs):
            return (
                f"the transpose of torch's gradient with {what} transposed (the factors of a "
                "product in the wrong order)"
            )
    return None


def _pick(found: dict[str, Any], pname: str, argument: str) -> Array | None:
    """One argument's gradient from a per-parameter result (``tensors[1]`` picks from a list)."""
    value = found.get(pname)
    if isinstance(value, list):
        value = value[int(argument.rsplit("[", 1)[1].rstrip("]"))]
    return None if value is None else np.asarray(value)


def _rule_text(sources: Sources, source: str, op: str, pname: str) -> str:
    """```grad @ other.T` at cases/x.yaml:7:12`` for the rule set that gave the gradient."""
    for rule_set in sources.rule_sets:
        if rule_set.source == source:
            text, at = rule_set.text(op, pname), rule_set.locate(op, pname)
            return " ".join(x for x in (f"`{text}`" if text else "", f"at {at}" if at else "") if x)
    return ""


def _under_ones(
    oracle: Oracle, node: Node, args: dict[str, Any], upstream: Array, pname: str, argument: str
) -> Array | None:
    """The oracle's gradient for ``argument`` under an all-ones upstream gradient: what a rule
    that ignores its upstream gradient computes."""
    if oracle.node_vjp is None or np.all(np.asarray(upstream) == 1):
        return None
    try:
        found = oracle.node_vjp(node, args, np.ones_like(upstream))
    except Exception:
        return None
    return _pick(found, pname, argument)
