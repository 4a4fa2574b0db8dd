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

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner.compare import compare
from runner.compile import CompiledCase
from runner.diagnose import diagnose
from runner.engine import RuleError, node_vjp
from runner.graph import Node, Ref
from runner.ops.spec import Array
from runner.oracles import Oracle, Sources
from runner.rules import CATALOGUE
from schemas.report import Fault

Tolerances = Callable[[CompiledCase, str], tuple[float, float]]


def localise(
    case: CompiledCase, sources: Sources, oracles: Sequence[Oracle], tolerances: Tolerances
) -> Fault | None:
    """The fault of ``case`` (see the module's docstring), or None when every node's rule agrees
    with the first oracle that can differentiate one node (the failure is then elsewhere: a
    golden value, a forward value, a dtype).

    ``tolerances(case, oracle name)`` gives the (rtol, atol) each node is judged with.
    """
    oracle = _node_oracle(oracles)
    if oracle is None:
        return None
    graph, manual = case.graph, sources.manual
    rtol, atol = tolerances(case, oracle.name)
    for node in reversed(graph.nodes[: graph.index(graph.output) + 1]):
        given = manual.given.get(node.name)
        g = manual.grads.get(node.name)
        if given is None or g is None:
            continue
        theirs = sources.grads[oracle.name].get(node.name)
        if not compare(g, theirs, sources=("manual", oracle.name), rtol=rtol, atol=atol).ok:
            continue
        try:
            fault = _judge(case, sources, node, g, given, oracle, (rtol, atol))
        except _OracleRefused:
            return None
        if fault is not None:
            return fault
    return None


PROBE_SEED = 0
UNDER_UPSTREAM = f"a random upstream gradient (seed {PROBE_SEED})"
UNDER_INPUTS = f"random inputs and upstream gradient (seed {PROBE_SEED})"


def probe(
    case: CompiledCase, sources: Sources, oracles: Sequence[Oracle], tolerances: Tolerances
) -> Fault | None:
    """The first node, walking back, whose user rule disagrees with the oracle, judged alone as
    in `localise`, under a random upstream gradient (standard normal, seed `PROBE_SEED`), then
    also with its floating operands replaced by random ones (so symmetric or special data cannot
    hide a wrong rule); None when every user rule agrees (or there is none). Where the oracle
    refuses the random operands (an op's domain), that node's second probe is skipped."""
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
        for under in (UNDER_UPSTREAM, UNDER_INPUTS):
            upstream = np.asarray(rng.standard_normal(g.shape), dtype=g.dtype)
            args, out = node.bind(values), values[node.name]
            if under == UNDER_INPUTS:
                found = _random_operands(node, args, rng)
                if found is None:
                    continue
                args, out = found
            try:
                given, _ = node_vjp(node, upstream, out, args, sources.rule_sets)
            except RuleError as exc:
                if under == UNDER_INPUTS:
                    continue  # a rule may assume the op's domain; random data need not keep it
                return _raised(case, node, exc, under)
            mine = {k: v for k, v in given.items() if used.get(k, CATALOGUE) != CATALOGUE}
            try:
                fault = _judge(case, sources, node, upstream, mine, oracle, tol, args)
            except _OracleRefused:
                continue
            if fault is not None:
                return fault.model_copy(update={"under": under})
    return None


def _random_operands(
    node: Node, args: dict[str, Any], rng: np.random.Generator
) -> tuple[dict[str, Any], Array] | None:
    """``args`` with every floating array operand drawn anew (standard normal, same shape and
    dtype), and the node's forward value on them; None when the forward refuses them."""
    fresh = dict(args)
    changed = False
    for p in node.op.tensor_params:
        value = args[p.name]
        items = value if isinstance(value, list) else [value]
        new = [
            np.asarray(rng.standard_normal(v.shape), dtype=v.dtype)
            if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)
            else v
            for v in items
        ]
        changed |= any(a is not b for a, b in zip(new, items, strict=True))
        fresh[p.name] = new if isinstance(value, list) else new[0]
    if not changed:
        return None
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(node.op.forward(**fresh))
    except Exception:
        return None
    return fresh, out


def _raised(case: CompiledCase, node: Node, exc: RuleError, under: str) -> Fault:
    return Fault(
        node=node.name,
        op=node.op.name,
        argument=exc.argument or "",
        source=exc.source,
        where=case.locations.get(node.name, ""),
        expression=node.text,
        rule=exc.where,
        under=under,
        problem=str(exc),
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
    tol: tuple[float, float],
    args: dict[str, Any] | None = None,
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
            found = compare(mine, theirs, sources=("manual", oracle.name), rtol=tol[0], atol=tol[1])
            if found.ok:
                continue
            argument = f"{pname}[{i}]" if isinstance(arg, list) else pname
            source = sources.manual.sources[node.name].get(pname, "")
            diagnosis = None
            if theirs is not None:
                ones = _under_ones(oracle, node, args, g, pname, argument)
                diagnosis = diagnose(mine, theirs, upstream=g, ones_reference=ones)
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
    value = found.get(pname)
    if isinstance(value, list):
        value = value[int(argument.rsplit("[", 1)[1].rstrip("]"))]
    return None if value is None else np.asarray(value)
