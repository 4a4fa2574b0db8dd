"""Elements no verdict can be given on, because torch itself is inconsistent there.

Some torch kernels give a NaN input a gradient that depends on which loop handles the element
(hardtanh: 0 on the vectorised path, 1 on the scalar remainder; elu: NaN or 1), so it changes
with the tensor's length and the CPU. An op says so with `Op.unchecked_at_nan`. At such a node
the elements of ``input``'s gradient where ``input`` is NaN are unchecked, and so is every element
of an earlier gradient computed from them: the taint is carried back through the graph with the
catalogue's VJPs, from a random cotangent on the unchecked elements and zero elsewhere (an
element it reaches is nonzero, or NaN, with probability one). Unchecked elements neither pass nor
fail a comparison; the report counts them, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from runner.engine import node_vjp
from runner.graph import Graph, Ref
from runner.ops.spec import Array

SEED = 0


@dataclass(frozen=True)
class Unchecked:
    """The unchecked elements of one tensor's gradient (a bool mask at its shape) and why."""

    mask: Array
    reason: str


def unchecked_grads(graph: Graph, values: Mapping[str, Array]) -> dict[str, Unchecked]:
    """Per tensor name, the elements of its gradient that torch gives inconsistently (see the
    module's docstring), for the forward ``values`` of ``graph``; tensors with none are left
    out. Never raises for a graph the engine ran: a VJP that fails here taints nothing more."""
    rng: np.random.Generator | None = None  # made only where there is a NaN: 20 us each
    taint: dict[str, Array] = {}
    reasons: dict[str, str] = {}
    last = graph.index(graph.output)
    for node in graph.nodes[: last + 1]:
        reason = node.op.unchecked_at_nan
        operand = node.args.get("input")
        if not reason or not isinstance(operand, Ref):
            continue
        x = np.asarray(values[operand.name])
        if not graph.requires_grad.get(operand.name, False) or x.dtype.kind != "f":
            continue
        nan = np.isnan(x)
        if nan.any():
            rng = rng or np.random.default_rng(SEED)
            seed = np.where(nan, np.abs(rng.standard_normal(x.shape)) + 1, 0).astype(x.dtype)
            taint[operand.name] = taint.get(operand.name, 0) + seed
            reasons.setdefault(operand.name, f"{reason}; node '{node.name}' ({node.op.name})")
    if not taint:
        return {}
    with np.errstate(all="ignore"):
        for node in reversed(graph.nodes[: last + 1]):
            g = taint.get(node.name)
            if g is None or not graph.requires_grad.get(node.name, False):
                continue
            try:
                given, _ = node_vjp(node, g, values[node.name], node.bind(values), ())
            except Exception:
                continue
            for pname, grad in given.items():
                arg = node.args[pname]
                refs = arg if isinstance(arg, list) else [arg]
                grads = grad if isinstance(grad, list) else [grad]
                for ref, gi in zip(refs, grads, strict=False):
                    if not isinstance(ref, Ref) or gi is None:
                        continue
                    if not graph.requires_grad.get(ref.name, False):
                        continue
                    # |.| so that two paths never cancel; NaN stays NaN (tainted).
                    taint[ref.name] = taint.get(ref.name, 0) + np.abs(gi)
                    reasons.setdefault(ref.name, reasons[node.name])
    out = {}
    for name, t in taint.items():
        mask = np.asarray((t != 0) | np.isnan(t))
        if mask.any():
            out[name] = Unchecked(mask, reasons[name])
    return out
