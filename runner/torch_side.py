"""The reference side: the same graph built from torch ops and differentiated by autograd.

torch is imported here and only here, inside the functions, so commands that do not run cases
(`validate`, `ops`, `--help`) never pay for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from runner.engine import Result
from runner.graph import Graph, Ref
from runner.ops.spec import Array


def to_torch(t: Any, value: Any, device: str) -> Any:
    """A Python number operand becomes a 0-d tensor (torch's promotion then treats it like a
    scalar, as numpy does a Python number)."""
    if isinstance(value, np.ndarray):
        return t.from_numpy(value.copy()).to(device)  # copy(): C order, and 0-d stays 0-d
    if isinstance(value, (bool, int, float)):
        return t.tensor(value, device=device)
    return value


def run_torch(
    graph: Graph, inputs: Mapping[str, Array], upstream: Array | None, device: str = "cpu"
) -> Result:
    import torch

    with warnings.catch_warnings():
        # torch's advice (broadcast targets, degrees of freedom <= 0) is about cases that test
        # exactly those points on purpose; the comparison reports what matters.
        warnings.simplefilter("ignore", UserWarning)
        return _run(torch, graph, inputs, upstream, device)


def _run(
    torch: Any, graph: Graph, inputs: Mapping[str, Array], upstream: Array | None, device: str
) -> Result:
    env: dict[str, Any] = {}
    for name, arr in inputs.items():
        tensor = to_torch(torch, arr, device)
        if graph.requires_grad.get(name, False):
            tensor.requires_grad_(True)
        env[name] = tensor

    def resolve(arg: Any) -> Any:
        if isinstance(arg, Ref):
            return env[arg.name]
        if isinstance(arg, list):
            return [resolve(a) for a in arg]
        return arg

    for node in graph.nodes:
        args = {}
        for p in node.op.params:
            value = resolve(node.args[p.name])
            if p.is_tensor and isinstance(value, list):
                value = [to_torch(torch, v, device) for v in value]
            elif p.is_tensor:
                value = to_torch(torch, value, device)
            args[p.name] = value
        out = node.op.torch(torch, **args)
        if out.requires_grad and not out.is_leaf:
            out.retain_grad()
        env[node.name] = out

    out = env[graph.output]
    if upstream is not None and out.requires_grad:
        out.backward(torch.from_numpy(np.array(upstream)).to(out.device, out.dtype))

    values = {k: v.detach().cpu().numpy() for k, v in env.items()}
    grads = {
        k: v.grad.detach().cpu().numpy()
        for k, v in env.items()
        if getattr(v, "grad", None) is not None
    }
    return Result(values=values, grads=grads)
