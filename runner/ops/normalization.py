"""Normalisation layers beyond layer_norm (the normalization family): rms_norm and
local_response_norm here, batch_norm, group_norm and instance_norm in normalization_stats.py.
Computed in float64 and cast to the input's dtype, as nn_norm.py does for layer_norm."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.normalization_stats import OPS as STATS_OPS
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


# --- local_response_norm: torch's composite over an avg_pool of x^2 across channels ---


def _window_sum(v: Array, before: int, after: int) -> Array:
    """Sums along dim 1 over the channels [c - before, c + after], zero beyond the ends."""
    pad = [(0, 0)] * v.ndim
    pad[1] = (before, after)
    padded = np.pad(v, pad)
    c = v.shape[1]
    # shifted slices, not a difference of cumulative sums: an infinite term stays in its windows
    return np.asarray(sum(padded[:, i : i + c] for i in range(before + after + 1)))


def _lrn_base(x: Array, size: int, alpha: float, k: float) -> Array:
    """k + alpha * avg over the channel window of x^2 (divided by size, padding included)."""
    return k + alpha * _window_sum(x * x, size // 2, (size - 1) // 2) / size


def _lrn(input: Array, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
         ) -> Array:  # fmt: skip
    x = np.asarray(input, dtype=np.float64)
    return np.asarray((x / _lrn_base(x, size, alpha, k) ** beta).astype(input.dtype))


def _lrn_vjp(g: Array, out: Array, input: Array, size: int, alpha: float = 1e-4,
             beta: float = 0.75, k: float = 1.0) -> tuple[Array]:  # fmt: skip
    """x / b^beta: g / b^beta, and through b each channel window's sum of
    -g x beta b^(-beta-1) alpha / size, times 2x (the window read backwards)."""
    x = np.asarray(input, dtype=np.float64)
    b = _lrn_base(x, size, alpha, k)
    div = b**beta
    through = (-np.asarray(g, np.float64) * x / (div * div)) * (beta * b ** (beta - 1)) * alpha
    return (g / div + 2 * x * _window_sum(through / size, (size - 1) // 2, size // 2),)


def _lrn_shape(input: Shape, size: int, alpha: float, beta: float, k: float) -> Shape:
    if len(input) < 3:
        raise ShapeError(f"local_response_norm: input {tuple(input)} needs at least 3 dims "
                         "(N, C, *)")  # fmt: skip
    if size <= 0:
        raise ShapeError(f"local_response_norm: size must be positive, got {size}")
    return tuple(input)


def _lrn_samples(rng: np.random.Generator) -> list[Sample]:
    def s(shape: Shape, size: int, note: str, **kw: Any) -> Sample:
        return Sample({"input": rng.normal(size=shape), "size": size, **kw}, note)

    zeros = rng.normal(size=(1, 4, 3))
    zeros[:, 1] = 0.0
    return [
        s((2, 5, 3), 3, "3-d, size 3"),
        s((2, 4, 3), 2, "even size: window [c - 1, c]", alpha=0.5, beta=0.6, k=2.0),
        s((1, 5, 2, 3), 4, "4-d, size 4", alpha=1.0, k=0.5),
        s((1, 3, 2, 2, 2), 7, "5-d, window wider than the channels", alpha=0.3),
        s((2, 3, 2), 1, "size 1: elementwise", alpha=2.0, beta=1.5),
        Sample({"input": zeros, "size": 3, "alpha": 1.0}, "a zero channel"),
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
    Op(
        name="local_response_norm",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("size", "int"),
            Param("alpha", "float", 1e-4),
            Param("beta", "float", 0.75),
            Param("k", "float", 1.0),
        ),
        forward=_lrn,
        vjp=_lrn_vjp,
        torch=lambda t, **kw: t.nn.functional.local_response_norm(**kw),
        shape=_lrn_shape,
        samples=_lrn_samples,
        note="input (N, C, *) / (k + alpha * a)^beta, a the mean of x^2 over the channels "
        "[c - size // 2, c + (size - 1) // 2] with zeros beyond the ends counted (torch's "
        "avg_pool over zero padding divides by size); the gradient is the composite's, through "
        "both x and a",
    ),
]
OPS += STATS_OPS
