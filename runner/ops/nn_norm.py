"""Normalization ops (part of the nn family): layer_norm, the one hard rule here."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, as_ints

FAMILY = "nn"


def _layer_norm_shape(
    input: Shape,
    normalized_shape: int | list[int],
    weight: Shape | None,
    bias: Shape | None,
    eps: float,
) -> Shape:
    ns = as_ints(normalized_shape)
    if not ns:
        raise ShapeError("layer_norm: normalized_shape must name at least one dim, got []")
    if len(ns) > len(input) or tuple(input[len(input) - len(ns) :]) != ns:
        raise ShapeError(
            f"layer_norm: normalized_shape {list(ns)} must equal the trailing dims of the input "
            f"{tuple(input)}"
        )
    for name, s in (("weight", weight), ("bias", bias)):
        if s is not None and tuple(s) != ns:
            raise ShapeError(f"layer_norm: {name} {tuple(s)} must have the shape {ns}")
    return input


def _normalize(x: Array, k: int, eps: float) -> tuple[Array, Array, tuple[int, ...]]:
    """(x - mean) * rstd over the last ``k`` dims in float64, rstd = 1/sqrt(biased var + eps)."""
    axes = tuple(range(x.ndim - k, x.ndim))
    x64 = np.asarray(x, dtype=np.float64)
    centered = x64 - x64.mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + eps)
    return centered * rstd, rstd, axes


def layer_norm(
    input: Array,
    normalized_shape: int | list[int],
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-5,
) -> Array:
    xhat, _, _ = _normalize(input, len(as_ints(normalized_shape)), eps)
    y = xhat * (1.0 if weight is None else weight) + (0.0 if bias is None else bias)
    return np.asarray(y.astype(input.dtype))


def layer_norm_vjp(
    g: Array,
    out: Array,
    input: Array,
    normalized_shape: int | list[int],
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-5,
) -> tuple[Array, Array | None, Array | None]:
    """The weight and bias gradients come back at the input's shape: the engine sums the leading
    dims away."""
    xhat, rstd, axes = _normalize(input, len(as_ints(normalized_shape)), eps)
    dxhat = g * (1.0 if weight is None else weight)
    mean_d = dxhat.mean(axis=axes, keepdims=True)
    mean_dx = (dxhat * xhat).mean(axis=axes, keepdims=True)
    gx = rstd * (dxhat - mean_d - xhat * mean_dx)
    return gx, (g * xhat if weight is not None else None), (g if bias is not None else None)


def _layer_norm_samples(rng: np.random.Generator) -> list[Sample]:
    def s(x: Shape, ns: Any, affine: str = "wb", note: str = "", **kw: Any) -> Sample:
        shape = as_ints(ns)
        args: dict[str, Any] = {"input": rng.normal(size=x), "normalized_shape": ns, **kw}
        if "w" in affine:
            args["weight"] = rng.normal(size=shape)
        if "b" in affine:
            args["bias"] = rng.normal(size=shape)
        return Sample(args, note or f"{x} over {ns} ({affine or 'no affine'})")

    const = {"input": np.array([[0.7, 0.7, 0.7], [1.0, -1.0, 2.0]]), "normalized_shape": [3]}
    return [
        s((2, 3), [3]),
        s((2, 3), [3], ""),
        s((2, 3), [3], "w"),
        s((2, 3), [3], "b"),
        s((2, 3, 4), [3, 4]),
        s((2, 3), [2, 3], note="whole tensor"),
        s((4,), 4, note="1-d input, int normalized_shape"),
        # rstd = 1/sqrt(eps) scales float32 rounding: a larger eps keeps it within tolerance
        s((3, 1), [1], eps=0.1, note="one element: xhat = 0"),
        s((2, 5), [5], eps=0.5, note="eps 0.5"),
        Sample({**const, "eps": 0.1}, "a constant row: var 0, rstd = 1/sqrt(eps)"),
    ]


OPS: list[Op] = [
    Op(
        name="layer_norm",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("normalized_shape", "ints"),
            Param("weight", "tensor?", None),
            Param("bias", "tensor?", None),
            Param("eps", "float", 1e-5),
        ),
        forward=layer_norm,
        vjp=layer_norm_vjp,
        torch=lambda t, input, normalized_shape, **kw: t.nn.functional.layer_norm(
            input, list(as_ints(normalized_shape)), **kw
        ),
        shape=_layer_norm_shape,
        samples=_layer_norm_samples,
        note="biased variance, rstd = 1/sqrt(var + eps); a constant row normalizes to 0 and its "
        "gradient is rstd * (dxhat - mean(dxhat)); an int normalized_shape means [n] "
        "(torch.nn.LayerNorm's convention; F.layer_norm itself wants a list)",
    ),
]
