"""gradcase RULES for tinyengine: the adapter between gradcase's protocol and the engine.

For each op gradcase calls `rule(grad, out, **arguments)` once per graph node, with the op's
arguments by torch's parameter names (`gradcase ops`). The rule wraps each array argument in a
fresh leaf `Tensor`, runs the op forward in the engine, calls `backward(grad)` and returns the
leaves' `.grad`: the gradients are the engine's own, and nothing here repeats its math. A Python
number operand (the 2 in `x * 2`) is passed as it is and gets no gradient. An op missing from
RULES keeps gradcase's catalogue rule.

    gradcase run cases --rules rules.py      # or [tool.gradcase] rules in pyproject.toml
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

# gradcase puts the folder of a rules file it loads by path on sys.path, so the engine beside it
# imports as it would in the engine's own code.
from engine import Tensor

Rule = Callable[..., dict[str, Any]]


def _rule(forward: Callable[..., Tensor]) -> Rule:
    """The rule of one op whose engine forward is `forward(**arguments)`; every array argument
    of the ops below is differentiable."""

    # wraps: gradcase's messages then point at the op's row below, not at this function.
    @functools.wraps(forward)
    def rule(
        grad: np.ndarray, out: np.ndarray, grads: Any = None, outs: Any = None, **arguments: Any
    ) -> dict[str, Any]:
        # grads/outs come with one output of several (max(x, dim)'s values): `grad` is its.
        leaves = {k: Tensor(v) for k, v in arguments.items() if isinstance(v, np.ndarray)}
        forward(**(arguments | leaves)).backward(grad)
        return {name: leaf.grad for name, leaf in leaves.items()}

    return rule


def _max(input: Tensor, dim: int | None, keepdim: bool) -> Tensor:
    if dim is not None:
        raise NotImplementedError("tinyengine's max is a full reduction: max(x, dim) is missing")
    return input.max()


RULES: dict[str, Rule] = {
    # --- elementwise and matmul; `input` or `other` may be a Python number ---
    "add": _rule(lambda input, other: input + other),
    "sub": _rule(lambda input, other: input - other),
    "mul": _rule(lambda input, other: input * other),
    "div": _rule(lambda input, other: input / other),
    "matmul": _rule(lambda input, other: input @ other),
    "neg": _rule(lambda input: -input),
    "exp": _rule(lambda input: input.exp()),
    "log": _rule(lambda input: input.log()),
    "tanh": _rule(lambda input: input.tanh()),
    "relu": _rule(lambda input: input.relu()),
    # --- reductions ---
    "sum": _rule(lambda input, dim, keepdim: input.sum(dim, keepdim)),
    "mean": _rule(lambda input, dim, keepdim: input.mean(dim, keepdim)),
    "max": _rule(_max),
    "softmax": _rule(lambda input, dim: input.softmax(dim)),
    # --- shape ---
    "reshape": _rule(lambda input, shape: input.reshape(shape)),
    "transpose": _rule(lambda input, dim0, dim1: input.transpose(dim0, dim1)),
}
