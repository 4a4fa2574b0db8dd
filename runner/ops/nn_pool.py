"""Pooling (part of the nn family): max_pool and avg_pool over 1, 2 and 3 spatial dims, read
through the windows of `runner.ops.nn_windows`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.limits import MAX_ELEMENTS
from runner.ops.intermediates import window_intermediates
from runner.ops.nn_windows import (
    FAMILY,
    Window,
    batched,
    check_input,
    crop,
    per_dim,
    sample_rows,
    unwindow,
    windows,
)
from runner.ops.spec import Array, Op, Param, SampleFn, Shape, ShapeError

# --- pooling ---


def _pool_window(
    op: str,
    nd: int,
    x: Shape,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
) -> Window:
    """Torch's ``pooling_output_shape``: with ceil_mode a last partial window is kept only if it
    starts inside the input or the left padding."""
    check_input(op, x, nd)
    if any(n == 0 for n in x[-nd - 1 :]):
        raise ShapeError(f"{op}: only the batch dim may be empty, got input {tuple(x)}")
    k = per_dim(op, "kernel_size", kernel_size, nd)
    s = k if stride is None or stride == [] else per_dim(op, "stride", stride, nd)
    p = per_dim(op, "padding", padding, nd)
    d = per_dim(op, "dilation", dilation, nd)
    if min(k) <= 0 or min(s) <= 0 or min(d) <= 0 or min(p) < 0:
        raise ShapeError(
            f"{op}: kernel_size {k}, stride {s} and dilation {d} must be positive, "
            f"padding {p} non-negative"
        )
    if any(2 * pi > ki for pi, ki in zip(p, k, strict=True)):
        raise ShapeError(f"{op}: padding {p} must be at most half of kernel_size {k}")
    out = []
    for n, ki, si, pi, di in zip(x[-nd:], k, s, p, d, strict=True):
        o = (n + 2 * pi - di * (ki - 1) - 1 + (si - 1 if ceil_mode else 0)) // si + 1
        out.append(o - 1 if ceil_mode and (o - 1) * si >= n + pi else o)
    if min(out) < 1:
        raise ShapeError(
            f"{op}: input {tuple(x)} gives output size {tuple(out)} with kernel_size {k}, "
            f"stride {s}, padding {p}, dilation {d}: output size is too small"
        )
    if math.prod(out) > MAX_ELEMENTS:
        raise ShapeError(f"{op}: output size {tuple(out)} has over {MAX_ELEMENTS} elements")
    for i, (n, ki, si, pi, di, o) in enumerate(zip(x[-nd:], k, s, p, d, out, strict=True)):
        # Only a dilated window can fall between inputs; torch then returns -inf with an index
        # outside the input, and its backward writes out of bounds. Arithmetic, never a loop
        # over taps: kernel_size may be 10^10.
        blind = [j for j in _edge_windows(n, si, pi, o) if _blind(j * si - pi, n, ki, di)]
        if blind:
            raise ShapeError(
                f"{op}: window {blind[0]} of spatial dim {i} (size {n}) reads only padding with "
                f"kernel_size {ki}, stride {si}, padding {pi}, dilation {di}"
            )
    return Window(k, s, p, d, tuple(out))


def _edge_windows(n: int, stride: int, pad: int, count: int) -> list[int]:
    """The windows (of ``count``) that start in the padding, left or right: a window starting
    inside the input reads it at its first tap, so only these can be blind."""
    left = range(min(count, -(-pad // stride)))  # starts j * stride - pad < 0
    right = range(max(len(left), -(-(n + pad) // stride)), count)  # starts >= n
    return [*left, *right]


def _blind(start: int, n: int, kernel: int, dilation: int) -> bool:
    """No tap ``start + t * dilation`` (0 <= t < kernel) of a window lies in [0, n)."""
    first = max(0, -(start // dilation))  # the first tap at or after 0: ceil(-start / d)
    last = min(kernel - 1, (n - 1 - start) // dilation)  # the last tap before n
    return first > last


def _pool_pad(x: Array, w: Window) -> Array:
    """Zero padding, widened on the right for a ceil_mode window that overhangs the padding."""
    right = [
        max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)
        for n, k, s, p, d, o in zip(x.shape[2:], *w, strict=True)
    ]
    return np.pad(x, [(0, 0), (0, 0), *zip(w.padding, right, strict=True)])


def _pool_taps(x: Array, w: Window) -> tuple[Array, Array, Shape]:
    """Windows flattened to ``(N, C, *out, K)``, which taps are real (not padding), and the
    padded shape."""
    xp = _pool_pad(x, w)
    real = _pool_pad(np.ones((1, 1, *x.shape[2:]), dtype=bool), w)
    k = int(np.prod(w.kernel))
    flat = windows(xp, w.kernel, w.stride, w.dilation, w.out).reshape(*x.shape[:2], *w.out, k)
    mask = windows(real, w.kernel, w.stride, w.dilation, w.out).reshape(1, 1, *w.out, k)
    return flat, mask, xp.shape


def max_pool_argmax(flat: Array, real: Array) -> Array:
    """The tap torch's CPU loop picks per window: the first maximum over real taps in row-major
    order, except that every NaN replaces it (the last NaN wins); an all -inf window keeps its
    first real tap."""
    nan = np.isnan(flat) & real
    top = np.where(real & ~nan, flat, -np.inf).max(axis=-1, keepdims=True)
    first = np.argmax(real & (flat == top), axis=-1)
    last_nan = flat.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    idx: Array = np.where(nan.any(axis=-1), last_nan, first)
    return idx[..., None]


def _max_pool(nd: int) -> tuple[Callable[..., Array], Callable[..., tuple[Array]]]:
    op = f"max_pool{nd}d"

    def taps(input: Array, **kw: Any) -> tuple[Array, Array, Window, Shape]:
        w = _pool_window(op, nd, input.shape, **kw)
        flat, real, padded = _pool_taps(batched(input, nd), w)
        return flat, max_pool_argmax(flat, real), w, padded

    def forward(input: Array, **kw: Any) -> Array:
        flat, idx, _, _ = taps(input, **kw)
        return np.take_along_axis(flat, idx, axis=-1).reshape(input.shape[:-nd] + flat.shape[2:-1])

    def vjp(g: Array, out: Array, input: Array, **kw: Any) -> tuple[Array]:
        flat, idx, w, padded = taps(input, **kw)
        gcols = np.zeros(flat.shape, dtype=g.dtype)
        np.put_along_axis(gcols, idx, g.reshape(idx.shape), axis=-1)
        gcols = gcols.reshape(*flat.shape[:-1], *w.kernel)
        gx = crop(unwindow(gcols, padded, w.stride, w.dilation), input.shape[-nd:], w.padding)
        return (gx.reshape(input.shape),)

    return forward, vjp


def avg_pool_divisor(n: Shape, w: Window, count_include_pad: bool, override: int | None) -> Array:
    """Per output position, torch's divisor: the window clipped to the padded input (a ceil_mode
    overhang past the padding never counts), or to the input alone without count_include_pad."""
    if override is not None:
        return np.asarray(override)
    div: Array = np.ones(())
    for size, k, s, p, o in zip(n, w.kernel, w.stride, w.padding, w.out, strict=True):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        count = end - start if count_include_pad else np.minimum(end, size) - np.maximum(start, 0)
        div = np.multiply.outer(div, count)
    return div


def _avg_pool(nd: int) -> tuple[Callable[..., Array], Callable[..., tuple[Array]]]:
    op = f"avg_pool{nd}d"

    def window(
        input: Array,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        ceil_mode: bool,
        count_include_pad: bool,
        divisor_override: int | None = None,
    ) -> tuple[Window, Array]:
        w = _pool_window(op, nd, input.shape, kernel_size, stride, padding, 1, ceil_mode)
        div = avg_pool_divisor(input.shape[-nd:], w, count_include_pad, divisor_override)
        return w, div.astype(input.dtype)

    def forward(input: Array, **kw: Any) -> Array:
        w, div = window(input, **kw)
        flat, _, _ = _pool_taps(batched(input, nd), w)
        y: Array = flat.sum(axis=-1) / div
        return y.reshape(input.shape[:-nd] + w.out)

    def vjp(g: Array, out: Array, input: Array, **kw: Any) -> tuple[Array]:
        w, div = window(input, **kw)
        x = batched(input, nd)
        gcols = (g.reshape(x.shape[:2] + w.out) / div)[(..., *(None,) * nd)]
        gcols = np.broadcast_to(gcols, gcols.shape[: 2 + nd] + w.kernel)
        gx = unwindow(gcols, _pool_pad(x, w).shape, w.stride, w.dilation)
        return (crop(gx, input.shape[-nd:], w.padding).reshape(input.shape),)

    return forward, vjp


# --- samples ---

INF = np.inf
TIES = (np.arange(50) % 3).reshape(1, 2, 5, 5).astype(np.float64)  # many tied maxima
# -inf windows and -inf beside padding: the padding must never be picked.
NEG_INF = np.array([[[[1, 4, 2, 2], [-INF, -INF, 0, 5], [-INF, -INF, 3, 3], [-INF, 1, 3, -1]]]])


MAX_POOL2D_SAMPLES = sample_rows(
    ({"input": (2, 3, 6, 6)}, {"kernel_size": 2}),
    ({"input": TIES}, {"kernel_size": 3, "stride": 1}),
    ({"input": np.ones((1, 1, 4, 4))}, {"kernel_size": 2, "stride": 1}),
    (
        {"input": -np.abs(np.arange(60.0) - 29).reshape(1, 2, 5, 6) - 1},
        {"kernel_size": 3, "stride": 2, "padding": 1},
    ),  # all negative: padding must be -inf
    ({"input": (1, 1, 6, 7)}, {"kernel_size": [2, 3], "stride": [1, 2], "dilation": 2}),
    (
        {"input": TIES[:, :, :, :4]},
        {"kernel_size": 3, "stride": [3, 2], "padding": [1, 0], "ceil_mode": True},
    ),
    ({"input": (2, 5, 5)}, {"kernel_size": [2, 3], "stride": [1, 2]}),
    ({"input": NEG_INF}, {"kernel_size": 2, "stride": 1, "padding": 1}),
)
AVG_POOL2D_SAMPLES = sample_rows(
    ({"input": (2, 3, 6, 6)}, {"kernel_size": 2}),
    ({"input": (1, 2, 5, 6)}, {"kernel_size": 3, "stride": 2, "padding": 1}),
    (
        {"input": (1, 2, 5, 6)},
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    ),
    (
        {"input": (1, 2, 6, 5)},
        {"kernel_size": 3, "stride": [2, 3], "padding": 1, "ceil_mode": True},
    ),
    (
        {"input": (1, 2, 6, 5)},
        {
            "kernel_size": 3,
            "stride": [2, 3],
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),
    ({"input": (1, 2, 4, 5)}, {"kernel_size": 2, "stride": 1, "divisor_override": 3}),
    ({"input": (2, 5, 4)}, {"kernel_size": [3, 1], "stride": 1, "padding": [1, 0]}),
)
MAX_POOL1D_SAMPLES = sample_rows(
    ({"input": (2, 3, 7)}, {"kernel_size": 3, "stride": 2, "padding": 1}),
    ({"input": np.ones((1, 2, 6))}, {"kernel_size": 3, "stride": 1}),
    ({"input": (1, 2, 9)}, {"kernel_size": 2, "stride": 3, "dilation": 2, "ceil_mode": True}),
    ({"input": (3, 8)}, {"kernel_size": [2]}),
    ({"input": NEG_INF[0]}, {"kernel_size": 3, "stride": 1, "padding": 1}),
)
AVG_POOL1D_SAMPLES = sample_rows(
    ({"input": (2, 3, 7)}, {"kernel_size": 3, "stride": 2, "padding": 1}),
    (
        {"input": (2, 3, 7)},
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    ),
    ({"input": (1, 2, 6)}, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ({"input": (3, 8)}, {"kernel_size": 2, "stride": 1}),
)
TIES3D = (np.arange(2 * 4 * 4 * 5) % 3).reshape(1, 2, 4, 4, 5).astype(np.float64)
MAX_POOL3D_SAMPLES = sample_rows(
    ({"input": (2, 2, 4, 4, 4)}, {"kernel_size": 2}),
    ({"input": TIES3D}, {"kernel_size": [2, 3, 2], "stride": 1}),
    ({"input": -TIES3D - 1}, {"kernel_size": 3, "stride": [2, 2, 3], "padding": 1}),
    ({"input": (1, 1, 5, 6, 5)}, {"kernel_size": 2, "stride": [1, 2, 1], "dilation": [2, 1, 2]}),
    (
        {"input": TIES3D[0]},
        {"kernel_size": 3, "stride": 2, "padding": [1, 0, 1], "ceil_mode": True},
    ),
)
AVG_POOL3D_SAMPLES = sample_rows(
    ({"input": (2, 2, 4, 4, 4)}, {"kernel_size": 2}),
    ({"input": (1, 2, 5, 4, 5)}, {"kernel_size": 3, "stride": [2, 1, 2], "padding": 1}),
    (
        {"input": (1, 2, 5, 4, 5)},
        {"kernel_size": [3, 2, 3], "stride": 2, "padding": [1, 1, 0], "count_include_pad": False},
    ),
    ({"input": (2, 5, 4, 5)}, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ({"input": (1, 1, 3, 4, 4)}, {"kernel_size": 2, "stride": 1, "divisor_override": 5}),
)


def _pool_op(kind: str, nd: int, samples: SampleFn) -> Op:
    name = f"{kind}_pool{nd}d"
    forward, vjp = (_max_pool if kind == "max" else _avg_pool)(nd)
    window = (
        Param("kernel_size", "ints"),
        Param("stride", "ints?", None),
        Param("padding", "ints", 0),
    )
    attrs = (
        (Param("dilation", "ints", 1), Param("ceil_mode", "bool", False))
        if kind == "max"
        else (
            Param("ceil_mode", "bool", False),
            Param("count_include_pad", "bool", True),
            *([Param("divisor_override", "int?", None)] if nd >= 2 else []),
        )
    )

    def shape(
        input: Shape,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        ceil_mode: bool,
        dilation: Any = 1,
        **kw: Any,
    ) -> Shape:
        w = _pool_window(name, nd, input, kernel_size, stride, padding, dilation, ceil_mode)
        if kw.get("divisor_override") == 0:
            raise ShapeError(f"{name}: divisor_override must not be 0")
        return (*input[:-nd], *w.out)

    return Op(
        name=name,
        family=FAMILY,
        params=(Param("input", "tensor"), *window, *attrs),
        forward=forward,
        vjp=vjp,
        torch=lambda t, **kw: getattr(t.nn.functional, name)(**kw),
        shape=shape,
        intermediates=window_intermediates(nd, shape),
        samples=samples,
        note=(
            "the gradient goes to one tap per window, as torch's CPU loop picks it: the first "
            "maximum in row-major order (ties: the top-left one), or the last NaN; padding is "
            "-inf and never picked; overlapping windows accumulate; ceil_mode as torch"
            if kind == "max"
            else "each tap gets g / divisor; the divisor counts padding (count_include_pad) but "
            "never a ceil_mode overhang past the padding; ceil_mode as torch"
        ),
    )


OPS: list[Op] = [
    _pool_op("max", 1, MAX_POOL1D_SAMPLES),
    _pool_op("max", 2, MAX_POOL2D_SAMPLES),
    _pool_op("avg", 1, AVG_POOL1D_SAMPLES),
    _pool_op("avg", 2, AVG_POOL2D_SAMPLES),
    _pool_op("max", 3, MAX_POOL3D_SAMPLES),
    _pool_op("avg", 3, AVG_POOL3D_SAMPLES),
]
