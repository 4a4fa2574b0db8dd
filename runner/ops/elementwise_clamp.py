"""``clamp`` with tensor bounds: torch's ``clamp.Tensor`` overload, which ``clamp(x, lo, hi)``
(and ``clip``) means when a bound is a tensor. The bounds broadcast with the input and get
gradients of their own, by torch's ``clamp_backward`` and ``clamp_backward_min_max``
(FunctionsManual.cpp):

- input: ``g`` where ``min <= x <= max`` (inclusive, as the scalar clamp), else 0;
- min: ``g`` where ``x < min`` and ``min < max`` (a min above max has no gradient: max wins);
- max: ``g`` where ``x > max``, or everywhere ``max < min``;
- with one bound only: min ``g`` where ``x < min``; max ``g`` where ``x > max``.

The forward is ``minimum(maximum(x, min), max)``: a NaN in the input or in a bound propagates,
and every comparison with NaN is false, so NaN positions get gradient 0 everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.dtypes import float_dtype, operand, result_type
from runner.ops.elementwise_unary import FAMILY
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, broadcast_shapes

NAME = "clamp.Tensor"


def _cast(input: Any, min: Any, max: Any) -> tuple[Array, Any, Any]:
    bounds = [b for b in (min, max) if b is not None]
    dtype = result_type(input, *bounds)
    if not np.issubdtype(dtype, np.floating) and any(
        np.issubdtype(np.asarray(b).dtype, np.floating) for b in bounds
    ):
        dtype = float_dtype(dtype)
    x = operand(input, dtype)
    return (
        x,
        None if min is None else operand(min, dtype),
        None if max is None else operand(max, dtype),
    )


def _forward(input: Any, min: Any, max: Any) -> Array:
    x, lo, hi = _cast(input, min, max)
    with np.errstate(invalid="ignore"):
        x = x if lo is None else np.maximum(x, lo)
        return np.asarray(x if hi is None else np.minimum(x, hi))


def _vjp(g: Array, out: Array, input: Any, min: Any, max: Any) -> tuple[Any, Any, Any]:
    x, lo, hi = _cast(input, min, max)
    zero = np.zeros((), g.dtype)
    with np.errstate(invalid="ignore"):
        inside = np.ones(np.shape(x), bool)
        if lo is not None:
            inside = inside & (x >= lo)
        if hi is not None:
            inside = inside & (x <= hi)
        dmin: Array | None = None
        dmax: Array | None = None
        if lo is not None and hi is not None:
            dmin = np.where((x < lo) & (lo < hi), g, zero)
            dmax = np.where((x > hi) | (hi < lo), g, zero)
        elif lo is not None:
            dmin = np.where(x < lo, g, zero)
        elif hi is not None:
            dmax = np.where(x > hi, g, zero)
    return np.where(inside, g, zero), dmin, dmax


def _shape(input: Shape, min: Shape | None, max: Shape | None) -> Shape:
    if min is None and max is None:
        raise ShapeError("needs at least one of min and max (both are None)")
    return broadcast_shapes(input, *(b for b in (min, max) if b is not None))


def _samples(rng: np.random.Generator) -> list[Sample]:
    def n(*shape: int) -> Array:
        return np.asarray(rng.integers(-3, 4, size=shape).astype(np.float64) / 2)

    lo, hi = n(3, 4) - 1, n(3, 4) + 1
    crossed = n(3, 4)
    return [
        Sample({"input": n(3, 4), "min": lo, "max": hi}, "both bounds, ties on the grid"),
        Sample({"input": n(3, 4), "min": crossed, "max": crossed - 1}, "min > max: max wins"),
        Sample({"input": n(3, 4), "min": n(4)}, "min only, broadcast (4,)"),
        Sample({"input": n(4), "max": n(3, 1)}, "max only, broadcasting the input up"),
        Sample({"input": n(3, 4), "min": np.asarray(n(1)[0]), "max": 1.0}, "0-d min, number max"),
        Sample(
            {
                "input": np.array([np.nan, 1.0, 2.0]),
                "min": np.array([0.0, np.nan, 0.0]),
                "max": np.array([1.0, 1.0, np.nan]),
            },
            "NaN in the input and in each bound",
        ),
        Sample({"input": rng.integers(-3, 4, size=(2, 3)), "min": n(2, 3)}, "int64 input"),
    ]


CLAMP_TENSOR = Op(
    name=NAME,
    family=FAMILY,
    literal_operands=True,
    by_name=False,
    params=(Param("input", "tensor"), Param("min", "tensor?", None), Param("max", "tensor?", None)),
    forward=_forward,
    vjp=_vjp,
    torch=lambda t, input, min, max: t.clamp(input, min, max),
    shape=_shape,
    samples=_samples,
    note="clamp(x, min, max) with a tensor bound (torch's clamp.Tensor): x gets g where min <= "
    "x <= max; min gets g where x < min < max; max gets g where x > max or max < min; NaN "
    "anywhere gives 0",
)
