"""Resampling (the resampling family): interpolate, here, and grid_sample
(`runner.ops.resampling_grid`).

interpolate is separable: each spatial dim is read through a few taps per output position
(1 for nearest, 2 for linear, 4 for bicubic), an index and a weight per tap (`Taps`), and the
gradient is the same taps transposed, scattered back with accumulation. Torch computes the
source index of every tap in the input's own precision (float32 arithmetic for a float32 input,
its ``opmath_t``; nearest always in float32, as `nearest_idx` does), from a scale that is the
user's ``1 / scale_factor`` when one was given and ``recompute_scale_factor`` is not True, else
``in / out`` (UpSample.h's ``compute_scales_value`` and ``area_pixel_compute_source_index``);
so does this module, because a nearest index that differs by one ulp is a different pixel.

Where torch's backward is not the transpose of its forward, the VJP follows the backward: when
an output dim keeps its input's size (``scale_factor=1.1`` on 5 pixels gives 5), torch's
``upsample_*_backward`` kernels pass the gradient straight through for nearest and bicubic,
whereas their forward still resamples with the user's scale. Linear, bilinear and trilinear copy
in both directions there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from runner.limits import MAX_ELEMENTS
from runner.ops.resampling_grid import CUBIC_A, FAMILY, GRID_SAMPLE, grid_sample_kinks
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError

MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear")
# The spatial dims a mode interpolates (nearest modes: whatever the input has, 1 to 3).
SPATIAL = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


class Taps(NamedTuple):
    """One spatial dim's resampling: ``pixel[o, t]`` the input position tap ``t`` of output
    position ``o`` reads, ``weight[o, t]`` its weight (both ``(out, taps)``)."""

    pixel: Array
    weight: Array


class Plan(NamedTuple):
    """Per spatial dim: the output size and the scale factor torch's kernel gets (None: the
    kernel uses ``in / out``)."""

    out: tuple[int, ...]
    scales: tuple[float | None, ...]


def _as_list(value: Any, nd: int) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value] * nd


def plan(
    x: Shape,
    size: Any,
    scale_factor: Any,
    mode: str,
    align_corners: bool | None,
    recompute_scale_factor: bool | None,
    antialias: bool,
) -> Plan:
    """Torch's F.interpolate argument checks and output size: ``floor(in * scale_factor)`` in
    double precision, and the scale factors handed to the kernel (dropped when
    ``recompute_scale_factor`` is True). Raises `ShapeError` with torch's reason."""
    op = "interpolate"
    if len(x) not in (3, 4, 5):
        raise ShapeError(f"{op}: expected a 3-d, 4-d or 5-d input (N, C, ...), got {tuple(x)}")
    nd = len(x) - 2
    if mode in SPATIAL and SPATIAL[mode] != nd:
        raise ShapeError(
            f"{op}: mode {mode!r} needs a {SPATIAL[mode] + 2}-d input, got {len(x)}-d {tuple(x)}"
        )
    if align_corners is not None and mode.startswith("nearest"):
        raise ShapeError(
            f"{op}: align_corners can only be set with the interpolating modes (linear, "
            f"bilinear, bicubic, trilinear), not {mode!r}"
        )
    if antialias:
        raise ShapeError(
            f"{op}: antialias=True is not in the catalogue (torch's anti-aliased kernels "
            "resample with a widened filter); use antialias=False"
        )
    if (size is None) == (scale_factor is None):
        raise ShapeError(f"{op}: give exactly one of size and scale_factor")
    if size is not None and recompute_scale_factor:
        raise ShapeError(f"{op}: recompute_scale_factor is not meaningful with an explicit size")
    given = _as_list(size if size is not None else scale_factor, nd)
    if len(given) != nd:
        what = "size" if size is not None else "scale_factor"
        raise ShapeError(
            f"{op}: {what} {given} must have one entry per spatial dim of input {tuple(x)} ({nd})"
        )
    spatial = x[2:]
    if size is not None:
        out = tuple(int(s) for s in given)
        scales: tuple[float | None, ...] = (None,) * nd
    else:
        out = tuple(math.floor(float(n) * float(s)) for n, s in zip(spatial, given, strict=True))
        scales = (None,) * nd if recompute_scale_factor else tuple(float(s) for s in given)
    if min(spatial, default=1) <= 0 or min(out, default=1) <= 0:
        raise ShapeError(
            f"{op}: input spatial size {tuple(spatial)} and output size {out} must be positive"
        )
    if math.prod((*x[:2], *out)) > MAX_ELEMENTS:
        raise ShapeError(f"{op}: output size {out} has over {MAX_ELEMENTS} elements")
    return Plan(out, scales)


def _scale(n_in: int, n_out: int, scale: float | None, align_corners: bool, dt: Any) -> Any:
    """UpSample.h's ``area_pixel_compute_scale`` in the kernel's precision ``dt``."""
    if align_corners:
        return dt(n_in - 1) / dt(n_out - 1) if n_out > 1 else dt(0)
    return dt(1.0 / scale) if scale is not None and scale > 0 else dt(n_in) / dt(n_out)


def _source(n_in: int, n_out: int, scale: Any, align_corners: bool, cubic: bool, dt: Any) -> Any:
    """``area_pixel_compute_source_index`` for every output position, in precision ``dt``;
    below 0 is clamped to 0 except for cubic."""
    i = np.arange(n_out).astype(dt)
    if align_corners:
        return scale * i
    src = scale * (i + dt(0.5)) - dt(0.5)
    return src if cubic else np.maximum(src, dt(0))


def _guard(src: Array, n_in: int, dt: Any) -> tuple[Array, Array]:
    """``guard_index_and_lambda``: the tap below ``src`` (at most the last pixel) and the
    fraction past it, clamped to [0, 1]."""
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(dt), dt(0), dt(1)).astype(dt)
    return i0, lam


def _cubic(t: Array, dt: Any) -> Array:
    """``get_cubic_upsample_coefficients`` (A = -0.75): the weights of taps -1, 0, 1, 2."""
    a = dt(CUBIC_A)

    def near(x: Array) -> Array:  # |x| <= 1
        out: Array = ((a + 2) * x - (a + 3)) * x * x + 1
        return out

    def far(x: Array) -> Array:  # 1 < |x| < 2
        out: Array = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return out

    one, two = dt(1), dt(2)
    return np.stack([far(t + one), near(t), near(one - t), far(two - t)], axis=-1).astype(dt)


def taps(
    n_in: int,
    n_out: int,
    scale: float | None,
    mode: str,
    align_corners: bool,
    dt: Any,
    copy: bool = False,
    halve: bool = False,
) -> Taps:
    """The taps torch's kernel reads along one dim: with ``copy`` output position ``o`` reads
    input ``o``, and with ``halve`` (nearest_idx's shortcut for twice the size) ``o // 2``."""
    if halve:
        return Taps(np.arange(n_out)[:, None] // 2, np.ones((n_out, 1), dtype=dt))
    if copy and mode in ("linear", "bilinear", "trilinear"):
        # Both taps at the same pixel, weights 1 and 0: an inf meets 0 there, as in torch.
        i = np.arange(n_out)[:, None]
        return Taps(np.hstack([i, i]), np.tile(np.array([1, 0], dtype=dt), (n_out, 1)))
    if copy:
        return Taps(np.arange(n_out)[:, None], np.ones((n_out, 1), dtype=dt))
    if mode in ("nearest", "nearest-exact"):
        # nearest_idx / nearest_exact_idx: float32 whatever the input's dtype.
        f32 = np.float32
        s = f32(1.0 / scale) if scale is not None and scale > 0 else f32(n_in) / f32(n_out)
        o = np.arange(n_out)
        if mode == "nearest":
            src = np.floor(o.astype(f32) * s)
        else:  # (dst_index + 0.5) is double, the product rounded to float by floorf
            src = np.floor(((o + 0.5) * np.float64(s)).astype(f32))
        i = np.minimum(src.astype(np.int64), n_in - 1)[:, None]
        return Taps(i, np.ones((n_out, 1), dtype=dt))
    ratio = _scale(n_in, n_out, scale, align_corners, dt)
    cubic = mode == "bicubic"
    i0, lam = _guard(_source(n_in, n_out, ratio, align_corners, cubic, dt), n_in, dt)
    if cubic:
        index = np.clip(i0[:, None] + np.arange(-1, 3), 0, n_in - 1)
        return Taps(index, _cubic(lam, dt))
    i1 = i0 + (i0 < n_in - 1)
    return Taps(np.stack([i0, i1], axis=1), np.stack([dt(1) - lam, lam], axis=1).astype(dt))


def _along(x: Array, axis: int, t: Taps) -> Array:
    """Resample ``x`` along ``axis`` by taps ``t``."""
    moved = np.moveaxis(x, axis, -1)
    out = (moved[..., t.pixel] * t.weight).sum(axis=-1)
    return np.moveaxis(out, -1, axis)


def _along_back(g: Array, axis: int, t: Taps, n_in: int) -> Array:
    """The transpose of `_along`: every tap's weighted gradient added to the pixel it read."""
    moved = np.moveaxis(g, axis, -1)
    gx = np.zeros((*moved.shape[:-1], n_in), dtype=g.dtype)
    contrib = moved[..., None] * t.weight
    where: Any = (..., t.pixel)
    np.add.at(gx, where, contrib)
    return np.moveaxis(gx, -1, axis)


def _all_taps(input: Array, backward: bool, **kw: Any) -> list[Taps]:
    """Every spatial dim's taps, in the forward kernel or (``backward``) the backward kernel,
    with each kernel's shortcuts, as torch 2.13's CPU kernels have them:
    - linear modes copy a dim that keeps its size, both ways;
    - nearest goes through ``nearest_idx`` (copy at the same size, ``o // 2`` at twice the
      size) in its backward, and in its forward only for 2 spatial dims: 1-d and 3-d forwards
      use the plain formula;
    - bicubic's backward copies only when every dim keeps its size; its forward never does;
    - nearest-exact has no shortcut."""
    p = plan(input.shape, **kw)
    mode, nd = kw["mode"], input.ndim - 2
    sizes = list(zip(input.shape[2:], p.out, p.scales, strict=True))
    shortcuts = mode == "nearest" and (backward or nd == 2)
    all_same = all(n == o for n, o, _ in sizes)
    out = []
    for n, o, s in sizes:
        if mode in ("linear", "bilinear", "trilinear") or shortcuts:
            copy = n == o
        else:
            copy = mode == "bicubic" and backward and all_same
        halve = shortcuts and o == 2 * n
        out.append(taps(n, o, s, mode, bool(kw["align_corners"]), input.dtype.type, copy, halve))
    return out


def interpolate_forward(input: Array, **kw: Any) -> Array:
    """F.interpolate: each spatial dim resampled in turn."""
    all_taps = _all_taps(input, False, **kw)
    y = input
    for d, t in enumerate(all_taps):
        y = _along(y, 2 + d, t)
    return y.astype(input.dtype)


def interpolate_vjp(g: Array, out: Array, input: Array, **kw: Any) -> tuple[Array]:
    """torch's upsample_*_backward: the backward kernel's taps, transposed."""
    all_taps = _all_taps(input, True, **kw)
    gx = g
    for d in reversed(range(len(all_taps))):
        gx = _along_back(gx, 2 + d, all_taps[d], input.shape[2 + d])
    return (gx.astype(input.dtype),)


def interpolate_shape(input: Shape, **kw: Any) -> Shape:
    return (*input[:2], *plan(input, **kw).out)


def _interp_samples(rng: np.random.Generator) -> list[Sample]:
    rows: list[tuple[Shape, dict[str, Any]]] = [
        ((2, 3, 5), {"scale_factor": 2.0, "mode": "nearest"}),
        ((1, 2, 7), {"size": 4, "mode": "nearest"}),
        ((1, 2, 5), {"scale_factor": 1.7, "mode": "nearest"}),
        ((1, 2, 5), {"scale_factor": 1.1, "mode": "nearest"}),  # 5 -> 5: backward copies
        ((1, 2, 4, 5), {"size": [7, 3], "mode": "nearest"}),
        ((1, 1, 3, 2, 4), {"scale_factor": [1.5, 2.0, 0.75], "mode": "nearest"}),
        ((1, 2, 6), {"size": 9, "mode": "nearest-exact"}),
        ((1, 2, 4, 5), {"scale_factor": 0.6, "mode": "nearest-exact"}),
        ((2, 2, 5), {"scale_factor": 1.5, "mode": "linear"}),
        ((1, 2, 5), {"size": 8, "mode": "linear", "align_corners": True}),
        ((1, 2, 8), {"size": 3, "mode": "linear", "align_corners": False}),
        ((1, 2, 4, 5), {"size": [6, 8], "mode": "bilinear"}),
        ((1, 2, 4, 5), {"scale_factor": 1.3, "mode": "bilinear", "align_corners": True}),
        (
            (1, 2, 4, 5),
            {"scale_factor": [1.3, 0.7], "mode": "bilinear", "recompute_scale_factor": True},
        ),
        ((1, 1, 5, 4), {"scale_factor": 1.1, "mode": "bilinear"}),  # 5 x 4 -> 5 x 4: a copy
        ((1, 2, 4, 5), {"size": [7, 6], "mode": "bicubic"}),
        ((1, 2, 5, 6), {"scale_factor": [0.6, 1.5], "mode": "bicubic", "align_corners": True}),
        ((1, 1, 5, 6), {"scale_factor": [1.1, 1.5], "mode": "bicubic"}),  # rows: copy back
        ((1, 2, 3, 4, 3), {"size": [5, 3, 4], "mode": "trilinear"}),
        ((1, 1, 3, 3, 4), {"scale_factor": 1.5, "mode": "trilinear", "align_corners": True}),
    ]
    out = [Sample({"input": rng.normal(size=s), **kw}, note=f"{s} {kw}") for s, kw in rows]
    # Size 1 in and out (align_corners divides by out - 1 = 0) and constant input.
    out.append(
        Sample(
            {
                "input": np.ones((1, 1, 1, 3)),
                "size": [1, 5],
                "mode": "bilinear",
                "align_corners": True,
            },  # fmt: skip
            note="size 1, constant input",
        )
    )
    return out


INTERPOLATE = Op(
    name="interpolate",
    family=FAMILY,
    params=(
        Param("input", "tensor"),
        Param("size", "ints?", None),
        Param("scale_factor", "floats?", None),
        Param("mode", "str", "nearest", choices=MODES),
        Param("align_corners", "bool?", None),
        Param("recompute_scale_factor", "bool?", None),
        Param("antialias", "bool", False),
    ),
    forward=interpolate_forward,
    vjp=interpolate_vjp,
    torch=lambda t, **kw: t.nn.functional.interpolate(**kw),
    shape=interpolate_shape,
    samples=_interp_samples,
    note=(
        "torch's source index, in the input's precision (nearest's in float32): "
        "floor(o * s) for nearest, floor((o + 0.5) * s) for nearest-exact, s * (o + 0.5) - 0.5 "
        "(clamped at 0 except bicubic) or s * o with align_corners for the others, where s is "
        "1 / scale_factor when a scale_factor is given and recompute_scale_factor is not True, "
        "else in / out ((in - 1) / (out - 1) with align_corners); the output size is "
        "floor(in * scale_factor). Bicubic uses A = -0.75 and clamps taps to the border. The "
        "gradient is torch's backward kernel's, which is not always the transpose of its "
        "forward: where nearest or bicubic keeps a dim's size with a scale_factor other than 1, "
        "the forward resamples but the backward copies the gradient through (torch's "
        "inconsistency, followed here). Nearest's gradient at a pixel boundary goes to the "
        "pixel its floor picks. antialias=True is refused"
    ),
)

OPS: list[Op] = [INTERPOLATE, GRID_SAMPLE]


def interpolate_kinks(h: float, input: Any, moved: Any = None, **kw: Any) -> str | None:
    """interpolate is linear in its input, so it has no kink; but where torch's backward copies
    the gradient through a dim its forward resamples (nearest or bicubic keeping a dim's size
    with a scale_factor other than 1), torch's gradient is not the derivative of its forward."""
    dummy = np.zeros((1, 1, *np.shape(input)[2:]))
    pairs = zip(_all_taps(dummy, False, **kw), _all_taps(dummy, True, **kw), strict=True)
    if all(np.array_equal(f.pixel, b.pixel) for f, b in pairs):
        return None
    return "torch's backward copies the gradient through a dim its forward resamples"


KINKS: dict[str, Callable[..., str | None]] = {
    "interpolate": interpolate_kinks,
    "grid_sample": grid_sample_kinks,
}
