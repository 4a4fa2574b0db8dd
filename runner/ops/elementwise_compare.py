"""Comparisons and logical ops: bool results with no gradient, as torch's ``a > b``, ``a & b``.

They are how masks are written in a graph (``where(x > 0, x, 0.0)``, ``(a == b) * c``). torch
takes operands that require grad here and gives them no gradient (the result is a bool tensor
that does not require grad), so the parameters are ``grad=False`` with ``accepts_grad=True``:
an input used both here and as data keeps requiring grad. Operands broadcast; a Python number is
an operand as in every elementwise op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.dtypes import operand, result_type
from runner.ops.elementwise_unary import FAMILY
from runner.ops.spec import Array, Op, Param, Sample, Shape, broadcast_shapes

# torch's name, the Python operator, numpy's function.
COMPARISONS: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("eq", "==", np.equal),
    ("ne", "!=", np.not_equal),
    ("lt", "<", np.less),
    ("le", "<=", np.less_equal),
    ("gt", ">", np.greater),
    ("ge", ">=", np.greater_equal),
)
# torch's name, the Python operator (None: a function only), numpy's function.
LOGICAL: tuple[tuple[str, str | None, Callable[..., Any]], ...] = (
    ("bitwise_and", "&", np.bitwise_and),
    ("bitwise_or", "|", np.bitwise_or),
    ("bitwise_xor", "^", np.bitwise_xor),
    ("logical_and", None, np.logical_and),
    ("logical_or", None, np.logical_or),
    ("logical_xor", None, np.logical_xor),
)


def _no_grad(g: Array, out: Array, **_: Any) -> tuple[None, ...]:
    return (None, None)


def _compare_samples(rng: np.random.Generator) -> list[Sample]:
    def x(shape: Shape) -> Array:
        return np.asarray(rng.integers(-2, 3, size=shape).astype(np.float64))

    return [
        Sample({"input": x((2, 3)), "other": x((2, 3))}, "same shapes, with ties"),
        Sample({"input": x((3, 1)), "other": x((1, 4))}, "(3, 1) with (1, 4)"),
        Sample({"input": x((2, 3)), "other": 0.0}, "a Python float"),
        Sample({"input": x(()), "other": x((2,))}, "0-d with (2,)"),
        Sample({"input": rng.integers(-2, 3, size=(2, 3)), "other": x((3,))}, "int64 with float"),
        Sample(
            {"input": np.array([np.nan, 1.0, np.inf]), "other": np.array([np.nan, 1.0, 2.0])},
            "NaN and inf",
        ),
    ]


def _logical_samples(rng: np.random.Generator) -> list[Sample]:
    def b(shape: Shape) -> Array:
        return np.asarray(rng.uniform(size=shape) < 0.5)

    return [
        Sample({"input": b((2, 3)), "other": b((2, 3))}, "bool, same shapes"),
        Sample({"input": b((3, 1)), "other": b((1, 4))}, "bool, (3, 1) with (1, 4)"),
        Sample(
            {"input": rng.integers(0, 4, size=(2, 3)), "other": rng.integers(0, 4, size=(3,))},
            "int64",
        ),
    ]


def _no_grad_binary(name: str, forward: Callable[..., Any], samples: Any, note: str) -> Op:
    """A binary op with a bool (or integer) result and no gradient, as torch's ``torch.<name>``;
    its operands broadcast and may require grad (torch gives them none here)."""
    return Op(
        name=name,
        family=FAMILY,
        literal_operands=True,
        params=(
            Param("input", "tensor", grad=False, accepts_grad=True),
            Param("other", "tensor", grad=False, accepts_grad=True),
        ),
        forward=forward,
        vjp=_no_grad,
        torch=lambda t, input, other: getattr(t, name)(input, other),
        shape=lambda input, other: broadcast_shapes(input, other),
        samples=samples,
        note=note,
    )


def _comparison(name: str, symbol: str, f: Callable[..., Any]) -> Op:
    def forward(input: Any, other: Any) -> Array:
        dtype = result_type(input, other)
        return np.asarray(f(operand(input, dtype), operand(other, dtype)))

    note = f"`a {symbol} b`: a bool tensor with no gradient; NaN compares unequal to all"
    return _no_grad_binary(name, forward, _compare_samples, note)


def _logical(name: str, symbol: str | None, f: Callable[..., Any]) -> Op:
    def forward(input: Any, other: Any) -> Array:
        a, b = np.asarray(input), np.asarray(other)
        for x in (a, b):
            if x.dtype.kind not in "biu" and name.startswith("bitwise"):
                raise TypeError(f"{name} takes bool or integer tensors, got {x.dtype}")
        return np.asarray(f(a, b))

    spelled = f"`a {symbol} b`" if symbol else f"`{name}(a, b)`"
    bitwise = "; bool or integer operands only (as torch)" if name.startswith("bitwise") else ""
    return _no_grad_binary(name, forward, _logical_samples, f"{spelled}: no gradient{bitwise}")


def _not_forward(input: Any) -> Array:
    x = np.asarray(input)
    if x.dtype.kind not in "biu":
        raise TypeError(f"bitwise_not takes a bool or integer tensor, got {x.dtype}")
    return np.asarray(np.invert(x))


def _unary_logical_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": np.asarray(rng.uniform(size=(2, 3)) < 0.5)}, "bool"),
        Sample({"input": rng.integers(-3, 4, size=(4,))}, "int64"),
    ]


def _not_ops() -> list[Op]:
    def op(name: str, forward: Callable[..., Any], note: str) -> Op:
        return Op(
            name=name,
            family=FAMILY,
            literal_operands=True,
            params=(Param("input", "tensor", grad=False, accepts_grad=True),),
            forward=forward,
            vjp=lambda g, out, input: (None,),
            torch=lambda t, input: getattr(t, name)(input),
            shape=lambda input: input,
            samples=_unary_logical_samples,
            note=note,
        )

    return [
        op("bitwise_not", _not_forward, "`~a`: no gradient; bool or integer operands only"),
        op(
            "logical_not",
            lambda input: np.logical_not(np.asarray(input)),
            "`logical_not(a)`: no gradient",
        ),
    ]


COMPARE_OPS: list[Op] = [
    *(_comparison(*row) for row in COMPARISONS),
    *(_logical(*row) for row in LOGICAL),
    *_not_ops(),
]
# The Python operator of each, for expressions (runner/expr.py).
OPERATORS: dict[str, str] = {
    **{symbol: name for name, symbol, _ in COMPARISONS},
    **{symbol: name for name, symbol, _ in LOGICAL if symbol},
}
