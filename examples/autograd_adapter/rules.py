"""gradcase RULES for HIPS autograd (`pip install autograd`), a numpy autodiff library.

Each op is written once with `autograd.numpy`, in torch's terms (torch's parameter names, `dim`
for numpy's `axis`); the rule differentiates it with autograd's `make_vjp` over every array
argument and returns the VJPs at gradcase's `grad`. The gradients are autograd's own: this file
holds the translation from torch to numpy and nothing else. A Python number operand (the 2 in
`x * 2`) stays a constant. An op missing from RULES keeps gradcase's catalogue rule.

    gradcase run cases ../tinyengine/cases --rules rules.py   # or [tool.gradcase] rules
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp

Rule = Callable[..., dict[str, Any]]


def _rule(forward: Callable[..., Any]) -> Rule:
    """The rule of one op written as `forward(**arguments)` with autograd.numpy; every array
    argument of the ops below is differentiable."""

    # wraps: gradcase's messages then point at the op's row below, not at this function.
    @functools.wraps(forward)
    def rule(
        grad: np.ndarray, out: np.ndarray, grads: Any = None, outs: Any = None, **arguments: Any
    ) -> dict[str, Any]:
        # grads/outs come with one output of several (max(x, dim)'s values): `grad` is its.
        names = [k for k, v in arguments.items() if isinstance(v, np.ndarray)]

        def f(*xs: Any) -> Any:
            return forward(**(arguments | dict(zip(names, xs, strict=True))))

        vjp, _ = make_vjp(f, tuple(range(len(names))))(*(arguments[k] for k in names))
        return dict(zip(names, vjp(grad), strict=True))

    return rule


def _axis(dim: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    return dim if dim is None or isinstance(dim, int) else tuple(dim)


def _softmax(input: Any, dim: int) -> Any:
    e = anp.exp(input - anp.max(input, axis=dim, keepdims=True))  # the shift has no gradient
    return e / anp.sum(e, axis=dim, keepdims=True)


def _log_softmax(input: Any, dim: int) -> Any:
    shifted = input - anp.max(input, axis=dim, keepdims=True)
    return shifted - anp.log(anp.sum(anp.exp(shifted), axis=dim, keepdims=True))


RULES: dict[str, Rule] = {
    # --- elementwise; `input` or `other` may be a Python number ---
    "add": _rule(lambda input, other: anp.add(input, other)),
    "sub": _rule(lambda input, other: anp.subtract(input, other)),
    "mul": _rule(lambda input, other: anp.multiply(input, other)),
    "div": _rule(lambda input, other: anp.divide(input, other)),
    "pow": _rule(lambda input, exponent: anp.power(input, exponent)),
    "neg": _rule(lambda input: anp.negative(input)),
    "exp": _rule(lambda input: anp.exp(input)),
    "log": _rule(lambda input: anp.log(input)),
    "sqrt": _rule(lambda input: anp.sqrt(input)),
    "tanh": _rule(lambda input: anp.tanh(input)),
    "sigmoid": _rule(lambda input: 0.5 * (anp.tanh(input / 2) + 1)),
    # Not anp.maximum(input, 0): autograd splits the gradient of maximum at a tie, so relu'(0)
    # would be 1/2; torch's relu'(0) is 0, as this mask gives.
    "relu": _rule(lambda input: input * (input > 0)),
    # --- linear algebra ---
    "matmul": _rule(lambda input, other: anp.matmul(input, other)),
    # --- reductions ---
    "sum": _rule(lambda input, dim, keepdim: anp.sum(input, axis=_axis(dim), keepdims=keepdim)),
    "mean": _rule(lambda input, dim, keepdim: anp.mean(input, axis=_axis(dim), keepdims=keepdim)),
    "max": _rule(lambda input, dim, keepdim: anp.max(input, axis=_axis(dim), keepdims=keepdim)),
    "softmax": _rule(_softmax),
    "log_softmax": _rule(_log_softmax),
    # --- shape ---
    "reshape": _rule(lambda input, shape: anp.reshape(input, shape)),
    "transpose": _rule(lambda input, dim0, dim1: anp.swapaxes(input, dim0, dim1)),
}
