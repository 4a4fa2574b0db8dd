"""Which rule is wrong: a failed case's gradient traced back to one node and one argument.

Walking back from the output, the first node whose output gradient agrees with the oracle but
whose gradient for one of its arguments does not is the node whose rule is wrong. Each node is
judged alone: its rule's result (as the engine recorded it) against the oracle's gradient of that
node alone, given the same upstream gradient, so gradients that several nodes accumulate into one
tensor do not blur the verdict. `runner.diagnose` then says what the wrong gradient looks like.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner.compare import compare
from runner.compile import CompiledCase
from runner.diagnose import diagnose
from runner.graph import Node, Ref
from runner.ops.spec import Array
from runner.oracles import Oracle, Sources
from schemas.report import Comparison, Fault

Tolerances = Callable[[CompiledCase, str], tuple[float, float]]


def localise(
    case: CompiledCase, sources: Sources, oracles: Sequence[Oracle], tolerances: Tolerances
) -> Fault | None:
    """The fault of ``case`` (see the module's docstring), or None when every node's rule agrees
    with the first oracle that can differentiate one node (the failure is then elsewhere: a
    golden value, a forward value, a dtype).

    ``tolerances(case, oracle name)`` gives the (rtol, atol) each node is judged with.
    """
    oracle = next((o for o in oracles if o.node_vjp is not None), None)
    if oracle is None or oracle.node_vjp is None:
        return None
    graph, manual = case.graph, sources.manual
    values = sources.values["manual"]
    rtol, atol = tolerances(case, oracle.name)
    for node in reversed(graph.nodes[: graph.index(graph.output) + 1]):
        given = manual.given.get(node.name)
        g = manual.grads.get(node.name)
        if given is None or g is None:
            continue
        if not compare(
            g,
            sources.grads[oracle.name].get(node.name),
            sources=("manual", oracle.name),
            rtol=rtol,
            atol=atol,
        ).ok:
            continue
        args = node.bind(values)
        try:
            reference = oracle.node_vjp(node, args, g)
        except Exception:  # the oracle cannot differentiate this node alone: judge no further
            return None
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
                found = compare(mine, theirs, sources=("manual", oracle.name), rtol=rtol, atol=atol)
                if found.ok:
                    continue
                argument = f"{pname}[{i}]" if isinstance(arg, list) else pname
                return _fault(
                    case, sources, node.name, pname, argument, found, oracle, args, mine, theirs
                )
    return None


def _fault(
    case: CompiledCase,
    sources: Sources,
    node_name: str,
    pname: str,
    argument: str,
    found: Comparison,
    oracle: Oracle,
    args: dict[str, Any],
    mine: Array,
    theirs: Array | None,
) -> Fault:
    node = case.graph.node(node_name)
    source = sources.manual.sources[node_name].get(pname, "")
    rule = ""
    for rule_set in sources.rule_sets:
        if rule_set.source == source:
            text = rule_set.text(node.op.name, pname)
            at = rule_set.locate(node.op.name, pname)
            rule = " ".join(x for x in (f"`{text}`" if text else "", f"at {at}" if at else "") if x)
    diagnosis = None
    if theirs is not None:
        upstream = sources.manual.grads[node_name]
        diagnosis = diagnose(
            mine,
            theirs,
            upstream=upstream,
            ones_reference=_under_ones(oracle, node, args, upstream, pname, argument),
        )
    return Fault(
        node=node_name,
        op=node.op.name,
        argument=argument,
        source=source,
        where=case.locations.get(node_name, ""),
        expression=node.text,
        rule=rule,
        oracle=oracle.name,
        comparison=found,
        diagnosis=diagnosis,
    )


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
