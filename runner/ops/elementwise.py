"""Elementwise ops: the binary ones (broadcasting, with torch's type promotion), pow, where and
the hidden clone here; the unary rows live in `runner.ops.elementwise_unary` and are part of `OPS`.
A unary op needs only its derivative; a binary op one rule per operand at the broadcast shape (the
engine sums it back to each operand's shape)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from runner.ops.dtypes import float_dtype, operand, result_type
from runner.ops.elementwise_clamp import CLAMP_TENSOR
from runner.ops.elementwise_compare import COMPARE_OPS
from runner.ops.elementwise_unary import FAMILY, UNARY_OPS, unary
from runner.ops.spec import Array, Op, Param, Sample, Shape, broadcast_shapes

BINARY_SHAPES: tuple[tuple[Shape, Shape], ...] = (
    ((2, 3), (2, 3)),
    ((2, 3), (3,)),
    ((3, 1), (1, 4)),
    ((1, 4), (3, 1)),
    ((), (2, 2)),
    ((2, 2), ()),
    ((2, 1, 3), (4, 1)),
)
NAN = float("nan")


def _binary_samples(positive_a: bool = False, tie: bool = False) -> Callable[..., list[Sample]]:
    """Every broadcasting pair, Python numbers on either side, an int64 operand (float result) and
    two int64 operands (forward only). ``tie`` plants an equal pair at the first position of
    every sample and NaNs in the first."""

    def make(rng: np.random.Generator) -> list[Sample]:
        def a_of(shape: Shape) -> Array:
            lo = 0.5 if positive_a else -2.0
            return np.asarray(rng.uniform(lo, 2.0, size=shape))

        def b_of(shape: Shape) -> Array:
            sign = rng.choice([-1.0, 1.0], size=shape)
            return np.asarray(rng.uniform(0.5, 2.0, size=shape) * sign)

        pairs: list[tuple[Any, Any, str]] = [
            (a_of(sa), b_of(sb), f"{sa} with {sb}") for sa, sb in BINARY_SHAPES
        ]
        pairs += [
            (a_of((2, 3)), 2.0, "a Python float on the right"),
            (3, b_of((2, 3)), "a Python int on the left"),
            (a_of((2, 3)), rng.integers(1, 4, size=(3,)), "an int64 operand"),
            (rng.integers(1, 4, size=(2, 3)), rng.integers(1, 4, size=(3,)), "int64 with int64"),
        ]
        out = []
        for i, (a, b, note) in enumerate(pairs):
            if tie and isinstance(a, np.ndarray) and a.dtype.kind == "f":
                a.reshape(-1)[0] = np.reshape(b, -1)[0]
                if i == 0:
                    a[0, 1], b[1, 0] = NAN, NAN
                note += ", with a tie" + (" and NaNs" if i == 0 else "")
            out.append(Sample({"input": a, "other": b}, note=note))
        return out

    return make


def binary(
    name: str,
    f: Callable[[Any, Any], Any],
    da: Callable[[Array, Array, Any, Any], Any],
    db: Callable[[Array, Array, Any, Any], Any],
    tf: Callable[..., Any],
    *,
    note: str = "",
    positive_a: bool = False,
    tie: bool = False,
    floating: bool = False,
    names: tuple[str, str] = ("input", "other"),
    samples: Callable[[np.random.Generator], list[Sample]] | None = None,
) -> Op:
    """``da``/``db`` take ``(g, out, a, b)`` and return the gradient at the broadcast shape. Both
    operands arrive as arrays of torch's result dtype (float32 for integers when ``floating``)."""
    pa, pb = names

    def cast(kw: dict[str, Any]) -> tuple[Array, Array]:
        dtype = result_type(kw[pa], kw[pb])
        dtype = float_dtype(dtype) if floating else dtype
        return operand(kw[pa], dtype), operand(kw[pb], dtype)

    def forward(**kw: Any) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 ** -1 = inf, as torch
            return np.asarray(f(*cast(kw)))

    def vjp(g: Array, out: Array, **kw: Any) -> tuple[Any, Any]:
        a, b = cast(kw)
        with np.errstate(divide="ignore", invalid="ignore"):
            return da(g, out, a, b), db(g, out, a, b)

    return Op(
        name=name,
        family=FAMILY,
        literal_operands=True,
        params=(Param(pa, "tensor"), Param(pb, "tensor")),
        forward=forward,
        vjp=vjp,
        torch=lambda t, **kw: tf(t, kw[pa], kw[pb]),
        shape=lambda **kw: broadcast_shapes(kw[pa], kw[pb]),
        samples=samples or _binary_samples(positive_a, tie),
        note=note,
    )


# --- pow ---------------------------------------------------------------------------------


def _dpow_input(g: Array, out: Array, a: Array, b: Array) -> Array:
    # torch's pow_backward_self masks exponent 0, where the formula is 0 * a**-1 = NaN at a = 0.
    return np.where(b == 0, 0, g * b * a ** (b - 1))


def _dpow_exponent(g: Array, out: Array, a: Array, b: Array) -> Array:
    # pow_backward_exponent: 0 ** b has derivative 0 for b >= 0 (log 0 = -inf otherwise leaks);
    # a negative base gives NaN (log of a negative number), as torch.
    return g * np.where((b >= 0) & (a == 0), 0, out * np.log(a))


def _pow_samples(rng: np.random.Generator) -> list[Sample]:
    def u(low: float, high: float, size: Shape = ()) -> Array:
        return np.asarray(rng.uniform(low, high, size=size))

    zeros = np.zeros((2, 3))
    exps = np.array([[0.0, 0.5, 1.0], [2.0, -1.0, 3.0]])
    neg = -u(0.5, 2, (2, 3))
    x = u(-2, 2, (2, 3))
    x[0, :2] = 0.0
    pos = u(0.5, 2, (2, 3))
    pos[0, 0] = 0.0
    e = u(-2, 2, (2, 3))
    e[0, :2] = 0.0, -1.0
    samples = [
        Sample({"input": u(0.5, 2, (2, 3)), "exponent": u(-2, 2, (2, 3))}, "x ** y"),
        Sample({"input": u(0.5, 2, (3, 1)), "exponent": u(-2, 2, (1, 4))}, "(3,1) ** (1,4)"),
        Sample({"input": u(0.5, 2), "exponent": u(-2, 2, (2, 2))}, "0-d ** (2,2)"),
        Sample({"input": u(0.5, 2, (2, 2)), "exponent": u(-2, 2)}, "(2,2) ** 0-d"),
        Sample({"input": zeros, "exponent": exps}, "0 ** y for y in 0, 0.5, 1, 2, -1, 3"),
        Sample(
            {"input": neg, "exponent": np.array([[1.0, 2.0, 3.0], [0.0, -1.0, -2.0]])},
            "negative base, integer tensor exponent",
        ),
        Sample({"input": 2.0, "exponent": e}, "2.0 ** y"),
        Sample({"input": 0.0, "exponent": e}, "0.0 ** y"),
        Sample({"input": 3, "exponent": u(-1, 1)}, "3 ** 0-d"),
        Sample({"input": rng.integers(-3, 4, size=(2, 3)), "exponent": 2}, "int64 ** 2"),
        Sample({"input": rng.integers(0, 4, size=(2, 3)), "exponent": 0.5}, "int64 ** 0.5"),
    ]
    for p in (2, 3, 0, 1, -1, 0.5, -0.5, 2.5):
        base = x if isinstance(p, int) and p >= 0 else pos if p > 0 else u(0.5, 2, (2, 3))
        samples.append(Sample({"input": base, "exponent": p}, f"x ** {p}"))
    samples.append(Sample({"input": np.asarray(0.0), "exponent": 0}, "0-d 0 ** 0"))
    return samples


# --- where -------------------------------------------------------------------------------


def _where_forward(condition: Any, input: Any, other: Any) -> Array:
    if np.asarray(condition).dtype != bool:
        raise TypeError(f"where expects a bool condition, got {np.asarray(condition).dtype}")
    dtype = result_type(input, other)
    return np.where(condition, operand(input, dtype), operand(other, dtype))


def _where_samples(rng: np.random.Generator) -> list[Sample]:
    def mask(shape: Shape) -> Array:
        return np.asarray(rng.uniform(size=shape) < 0.5)

    def x(shape: Shape) -> Array:
        return np.asarray(rng.normal(size=shape))

    return [
        Sample({"condition": mask((2, 3)), "input": x((2, 3)), "other": x((2, 3))}, "same shapes"),
        Sample({"condition": mask((3, 1)), "input": x((1, 4)), "other": x(())}, "(3,1), (1,4), ()"),
        Sample({"condition": mask(()), "input": x((2, 2)), "other": x((2, 2))}, "0-d condition"),
        Sample({"condition": mask((2, 1, 3)), "input": x((4, 1)), "other": x((3,))}, "3 ways"),
        Sample({"condition": mask((2, 3)), "input": x((2, 3)), "other": 0.0}, "other a float"),
        Sample({"condition": np.ones((2, 2), bool), "input": x(()), "other": x((2, 1))}, "all on"),
        Sample(
            {"condition": mask((2, 3)), "input": rng.integers(0, 3, size=(2, 3)), "other": x((3,))},
            "int64 input",
        ),
    ]


WHERE = Op(
    name="where",
    family=FAMILY,
    literal_operands=True,
    params=(
        Param("condition", "tensor", grad=False),
        Param("input", "tensor"),
        Param("other", "tensor"),
    ),
    forward=_where_forward,
    vjp=lambda g, out, condition, input, other: (
        None,
        np.where(condition, g, 0),
        np.where(condition, 0, g),
    ),
    torch=lambda t, condition, input, other: t.where(condition, input, other),
    shape=lambda condition, input, other: broadcast_shapes(condition, input, other),
    samples=_where_samples,
    note="the unselected operand gets gradient 0 (not NaN, even where its value is inf or NaN)",
)


OPS: list[Op] = [
    *UNARY_OPS,
    *COMPARE_OPS,
    CLAMP_TENSOR,
    # --- binary ---
    binary("add", np.add, lambda g, o, a, b: g, lambda g, o, a, b: g, lambda t, a, b: a + b),
    binary("sub", np.subtract, lambda g, o, a, b: g, lambda g, o, a, b: -g, lambda t, a, b: a - b),
    binary(
        "mul",
        np.multiply,
        lambda g, o, a, b: g * b,
        lambda g, o, a, b: g * a,
        lambda t, a, b: a * b,
    ),
    binary(
        "div",
        np.divide,
        lambda g, o, a, b: g / b,
        lambda g, o, a, b: -g * ((a / b) / b),  # torch's div_tensor_other_backward, same rounding
        lambda t, a, b: a / b,
        floating=True,
        note="true division: integer operands give float32, as torch",
    ),
    binary(
        "maximum",
        np.maximum,
        lambda g, o, a, b: np.where(a < b, 0, np.where(a == b, g / 2, g)),
        lambda g, o, a, b: np.where(a > b, 0, np.where(a == b, g / 2, g)),
        lambda t, a, b: t.maximum(a, b),
        tie=True,
        note="ties split the gradient 1/2 to each side; a NaN on either side gives both the full "
        "gradient",
    ),
    binary(
        "minimum",
        np.minimum,
        lambda g, o, a, b: np.where(a > b, 0, np.where(a == b, g / 2, g)),
        lambda g, o, a, b: np.where(a < b, 0, np.where(a == b, g / 2, g)),
        lambda t, a, b: t.minimum(a, b),
        tie=True,
        note="ties split the gradient 1/2 to each side; a NaN on either side gives both the full "
        "gradient",
    ),
    binary(
        "atan2",
        np.arctan2,
        # torch's atan2_backward: 0 at (0, 0), where the formula is 0/0.
        lambda g, o, a, b: np.where(a * a + b * b == 0, 0, g * b / (a * a + b * b)),
        lambda g, o, a, b: np.where(a * a + b * b == 0, 0, g * -a / (a * a + b * b)),
        lambda t, a, b: t.atan2(a, b),
        floating=True,
        note="gradient 0 at (0, 0)",
    ),
    binary(
        "pow",
        np.power,
        _dpow_input,
        _dpow_exponent,
        lambda t, a, b: t.pow(a, b),
        names=("input", "exponent"),
        samples=_pow_samples,
        note="d/dx is 0 where the exponent is 0 (even at x = 0); d/dy is 0 where x = 0 and y >= 0; "
        "a Python-number operand gets no gradient",
    ),
    # --- selection ---
    WHERE,
    # --- internal: a graph node that only renames another ---
    replace(
        unary(
            "clone",
            np.copy,
            lambda x, out: np.ones(x.shape, out.dtype),
            lambda t, input: input.clone(),
            floating=False,
        ),
        hidden=True,
    ),
]
