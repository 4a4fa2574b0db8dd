"""Normalisation layers beyond layer_norm (the normalization family): rms_norm. Computed in
float64 and cast to the input's dtype, as nn_norm.py does for layer_norm."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, as_ints

FAMILY = "normalization"


def _rms_shape(
    input: Shape, normalized_shape: int | list[int], weight: Shape | None, eps: float | None
) -> Shape:
    ns = as_ints(normalized_shape)
    if not ns:
        raise ShapeError("rms_norm: normalized_shape must name at least one dim, got []")
    if len(ns) > len(input) or tuple(input[len(input) - len(ns) :]) != ns:
        raise ShapeError(
            f"rms_norm: normalized_shape {list(ns)} must equal the trailing dims of the input "
            f"{tuple(input)}"
        )
    if weight is not None and tuple(weight) != ns:
        raise ShapeError(f"rms_norm: weight {tuple(weight)} must have the shape {ns}")
    return tuple(input)


def _rms(input: Array, normalized_shape: Any, eps: float | None) -> tuple[Array, Array, Any]:
    """(x in float64, 1/sqrt(mean(x^2) + eps) over the normalized dims, those dims); eps None is
    the machine epsilon of the input's dtype, as torch."""
    k = len(as_ints(normalized_shape))
    x = np.asarray(input, dtype=np.float64)
    axes = tuple(range(x.ndim - k, x.ndim))
    e = float(np.finfo(np.asarray(input).dtype).eps) if eps is None else eps
    return x, 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + e), axes


def _rms_norm(
    input: Array, normalized_shape: Any, weight: Array | None = None, eps: float | None = None
) -> Array:
    x, r, _ = _rms(input, normalized_shape, eps)
    return np.asarray((x * r * (1.0 if weight is None else weight)).astype(input.dtype))


def _rms_norm_vjp(
    g: Array,
    out: Array,
    input: Array,
    normalized_shape: Any,
    weight: Array | None = None,
    eps: float | None = None,
) -> tuple[Array, Array | None]:
    """d/dx of x r: r g - x r^3 mean(g x); weight's gradient comes back at the input's shape."""
    x, r, axes = _rms(input, normalized_shape, eps)
    gy = g * (1.0 if weight is None else weight)
    gx = r * gy - x * r**3 * np.mean(gy * x, axis=axes, keepdims=True)
    return gx, (g * x * r if weight is not None else None)


def _rms_samples(rng: np.random.Generator) -> list[Sample]:
    def s(x: Shape, ns: Any, weight: bool = True, note: str = "", **kw: Any) -> Sample:
        args: dict[str, Any] = {"input": rng.normal(size=x), "normalized_shape": ns, **kw}
        if weight:
            args["weight"] = rng.normal(size=as_ints(ns))
        return Sample(args, note or f"{x} over {ns}")

    zero = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
    return [
        s((2, 3), [3]),
        s((2, 3), [3], weight=False, note="no weight"),
        s((2, 3, 4), [3, 4], eps=1e-3),
        s((4,), 4, note="1-d, int normalized_shape"),
        Sample({"input": zero, "normalized_shape": [3], "eps": 0.1}, "a zero row: r = 1/sqrt(eps)"),
    ]


OPS: list[Op] = [
    Op(
        name="rms_norm",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("normalized_shape", "ints"),
            Param("weight", "tensor?", None),
            Param("eps", "float?", None),
        ),
        forward=_rms_norm,
        vjp=_rms_norm_vjp,
        torch=lambda t, input, normalized_shape, **kw: t.nn.functional.rms_norm(
            input, list(as_ints(normalized_shape)), **kw
        ),
        shape=_rms_shape,
        samples=_rms_samples,
        note="x / sqrt(mean(x^2) + eps) * weight over the trailing normalized_shape dims; eps "
        "None is the machine epsilon of the input's dtype (torch.finfo); a zero row normalizes "
        "to 0 with gradient g * weight / sqrt(eps)",
    ),
]
