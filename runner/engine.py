"""The manual side: numpy forward values and hand-written VJPs, run in reverse over the graph.

Broadcasting is undone here, once (`sum_to`), after every rule, as torch's engine does with
`sum_to` and autograd with `unbroadcast`: a rule returns the gradient at the broadcast shape.
Gradients are also cast to their operand's dtype here, as torch's engine casts a rule's output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.graph import Graph, Ref
from runner.ops.spec import Array, Op, Shape
from runner.ops.spec import sum_to as reduce_to

VJP = Callable[..., Sequence[Any]]


class RuleError(Exception):
    """A manual rule returned something the engine cannot use (wrong shape, not an array, or it
    raised). The message names the op, the operand and the shapes; ``node`` is the graph node
    whose rule it was, for the report to locate."""

    node: str | None = None


def sum_to(grad: Array, shape: Shape, *, what: str) -> Array:
    """`spec.sum_to`, with a failure blamed on the rule that returned ``grad``."""
    try:
        return reduce_to(grad, shape)
    except ValueError:
        raise RuleError(
            f"{what}: the rule returned a gradient of shape {np.shape(grad)}, which does not "
            f"reduce to the operand's shape {tuple(shape)}"
        ) from None


def apply_vjp(
    op: Op, vjp: VJP, g: Array, out: Array, args: Mapping[str, Any], *, where: str
) -> dict[str, Any]:
    """Run one rule and return, per tensor parameter, its gradient summed to the operand's shape
    and cast to its dtype (a list for list parameters, None where the rule gives none)."""
    try:
        raw = tuple(vjp(g, out, **args))
    except Exception as exc:  # a rule is user code: report it, don't crash the run
        raise RuleError(
            f"{where}: the rule for {op.name} raised {type(exc).__name__}: {exc}"
        ) from exc
    params = op.tensor_params
    if len(raw) != len(params):
        raise RuleError(
            f"{where}: the rule for {op.name} returned {len(raw)} gradients, expected "
            f"{len(params)} (one per operand: {', '.join(p.name for p in params)})"
        )
    result: dict[str, Any] = {}
    for p, grad in zip(params, raw, strict=True):
        value = args[p.name]
        if p.kind in ("tensors", "tensors*"):
            grads = list(grad) if grad is not None else [None] * len(value)
            result[p.name] = [
                None
                if not p.grad
                else _fit(gi, vi, what=f"{where}: gradient of {op.name} for {p.name}[{i}]")
                for i, (gi, vi) in enumerate(zip(grads, value, strict=True))
            ]
        else:
            result[p.name] = (
                _fit(grad, value, what=f"{where}: gradient of {op.name} for {p.name}")
                if p.grad
                else None
            )
    return result


def _fit(grad: Any, operand: Any, *, what: str) -> Array | None:
    if grad is None or not isinstance(operand, np.ndarray):
        return None
    if not np.issubdtype(operand.dtype, np.floating):
        return None
    return sum_to(np.asarray(grad), operand.shape, what=what).astype(operand.dtype, copy=False)


@dataclass(frozen=True)
class Result:
    """Values of every node and input, and gradients of those that got one."""

    values: dict[str, Array]
    grads: dict[str, Array]


def forward(graph: Graph, inputs: Mapping[str, Array]) -> dict[str, Array]:
    """Every node's value, in graph order, computed with the ops' numpy forwards."""
    env: dict[str, Array] = dict(inputs)
    for node in graph.nodes:
        args = node.bind(env)
        try:
            # inf and NaN are legitimate values here (torch computes them too); the comparison
            # judges them, numpy's warnings would only be noise.
            with np.errstate(all="ignore"):
                env[node.name] = value = np.asarray(node.op.forward(**args))
            if value.shape != node.shape:
                raise ValueError(
                    f"it returned shape {value.shape}, the op's shape rule says {node.shape}"
                )
        except Exception as exc:
            error = RuleError(
                f"node '{node.name}': forward of {node.op.name} raised {type(exc).__name__}: {exc}"
            )
            error.node = node.name
            raise error from exc
    return env


def backward(
    graph: Graph,
    values: Mapping[str, Array],
    upstream: Array,
    rules: Mapping[str, VJP] | None = None,
) -> dict[str, Array]:
    """Gradients from ``graph.output`` back to every node and input that requires grad.

    ``rules`` replaces the registry's VJP per node name, so a case can put its own rule under
    test without touching the catalogue.
    """
    rules = rules or {}
    grads: dict[str, Array] = {graph.output: np.asarray(upstream)}
    # As in forward: inf and NaN are legitimate (torch makes them too), numpy's warnings noise.
    with np.errstate(all="ignore"):
        for node in reversed(graph.nodes[: graph.index(graph.output) + 1]):
            g = grads.get(node.name)
            if g is None or not graph.requires_grad[node.name]:
                continue
            vjp = rules.get(node.name, node.op.vjp)
            args = node.bind(values)
            try:
                per_param = apply_vjp(
                    node.op, vjp, g, values[node.name], args, where=f"node '{node.name}'"
                )
            except RuleError as error:
                error.node = node.name
                raise
            for pname, grad in per_param.items():
                arg = node.args[pname]
                pairs = zip(arg, grad, strict=True) if isinstance(arg, list) else [(arg, grad)]
                for ref, gi in pairs:
                    if isinstance(ref, Ref) and gi is not None and graph.requires_grad[ref.name]:
                        prev = grads.get(ref.name)
                        grads[ref.name] = gi if prev is None else prev + gi
    return grads


def run_manual(
    graph: Graph,
    inputs: Mapping[str, Array],
    upstream: Array,
    rules: Mapping[str, VJP] | None = None,
) -> Result:
    values = forward(graph, inputs)
    return Result(values=values, grads=backward(graph, values, upstream, rules))
