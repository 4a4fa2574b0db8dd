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
from runner.graph import Graph
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

    for node in graph.nodes:
        args = node.bind(env)
        for p in node.op.tensor_params:
            value = args[p.name]
            # Literal operands (Python numbers) become tensors here.
            if isinstance(value, list):
                args[p.name] = [to_torch(torch, v, device) for v in value]
            else:
                args[p.name] = to_torch(torch, value, device)
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
