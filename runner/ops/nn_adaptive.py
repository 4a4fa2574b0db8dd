"""Adaptive pooling (part of the nn family): adaptive_avg_pool1d/2d and adaptive_max_pool1d/2d.
Output position ``i`` of a spatial dim of size ``L`` pooled to ``out`` reads torch's window
``[floor(i * L / out), ceil((i + 1) * L / out))``; windows differ in length and may overlap
(``out`` not dividing ``L``, or ``out > L``), and overlapping windows accumulate gradient.

Windows are gathered to ``(N, C, *out, *kmax)`` (kmax the longest window per dim) with a mask of
the taps inside each window, so a gradient is only ever scattered (`np.add.at`) to the taps of a
window: an infinite upstream never meets a zero outside one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.nn_pool import max_pool_argmax
from runner.ops.nn_windows import FAMILY, Ints, batched, check_input, sample_rows
from runner.ops.spec import Array, Op, Param, SampleFn, Shape, ShapeError


def _output_size(op: str, nd: int, x: Shape, output_size: Any) -> Ints:
    """An int, or a list of ``nd`` ints (torch refuses a list of one for 2-d), each positive:
    torch's forward takes 0, but its backward refuses the empty gradient. A None entry (2-d
    only, as torch) keeps that dim of the input."""
    check_input(op, x, nd)
    if any(n == 0 for n in x[-nd - 1 :]):
        raise ShapeError(f"{op}: only the batch dim may be empty, got input {tuple(x)}")
    out = (output_size,) * nd if isinstance(output_size, int) else tuple(output_size)
    if len(out) != nd or any(o is not None and o < 1 for o in out):
        raise ShapeError(
            f"{op}: output_size must be one int or a list of {nd} positive ints"
            f"{' or None (None keeps that dim)' if nd > 1 else ''}, got {output_size!r}"
        )
    return tuple(n if o is None else o for n, o in zip(x[-nd:], out, strict=True))


def _bounds(size: int, out: int) -> tuple[Array, Array]:
    """torch's ``start_index`` and ``end_index`` per output position."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _index(x: Shape, out: Ints) -> tuple[tuple[Array, ...], Array, Array]:
    """Per dim an index array laid out as ``(*out, *kmax)`` (out at its axis, kmax at ``nd`` +
    its axis), the taps inside their window (same layout, broadcast), and every window's
    length (``*out``)."""
    nd = len(out)
    index, real, count = [], np.ones((1,) * 2 * nd, dtype=bool), np.ones((1,) * nd)
    for d, (n, o) in enumerate(zip(x[-nd:], out, strict=True)):
        start, end = _bounds(n, o)
        kmax = int((end - start).max())
        taps = start[:, None] + np.arange(kmax)
        layout = [1] * 2 * nd
        layout[d], layout[nd + d] = o, kmax
        index.append(np.minimum(taps, n - 1).reshape(layout))
        real = real & (taps < end[:, None]).reshape(layout)
        count = count * (end - start).reshape(layout[:nd])
    return tuple(index), real, count


def _at(index: tuple[Array, ...]) -> tuple[Any, ...]:
    """Every batch and channel, the spatial dims at ``index``."""
    return (slice(None), slice(None), *index)


def adaptive_taps(x: Array, output_size: Any, nd: int) -> tuple[Array, Array]:
    """The windows of a batched input flattened to ``(N, C, *out, K)`` and which taps are
    inside their window (``(1, 1, *out, K)``)."""
    out = _output_size(f"adaptive_max_pool{nd}d", nd, x.shape, output_size)
    index, real, _ = _index(x.shape, out)
    k = math.prod(real.shape[nd:])
    gathered = x[_at(index)]
    return gathered.reshape(*x.shape[:2], *out, k), real.reshape(1, 1, *out, k)


def _scatter(x: Array, index: tuple[Array, ...], taps: Array) -> Array:
    """The transpose of the gather: ``taps`` ``(N, C, *out, *kmax)`` added into x's shape."""
    gx = np.zeros(x.shape, dtype=taps.dtype)
    np.add.at(gx, _at(index), taps)
    return gx


def _avg(nd: int) -> tuple[Callable[..., Array], Callable[..., tuple[Array]]]:
    op = f"adaptive_avg_pool{nd}d"

    def forward(input: Array, output_size: Any) -> Array:
        x = batched(input, nd)
        out = _output_size(op, nd, x.shape, output_size)
        index, real, count = _index(x.shape, out)
        taps = np.where(real, x[_at(index)], 0)
        axes = tuple(range(2 + nd, 2 + 2 * nd))
        y: Array = taps.sum(axis=axes) / count.astype(x.dtype)
        return y.reshape(input.shape[:-nd] + out)

    def vjp(g: Array, out: Array, input: Array, output_size: Any) -> tuple[Array]:
        x = batched(input, nd)
        size = _output_size(op, nd, x.shape, output_size)
        index, real, count = _index(x.shape, size)
        share = (g.reshape(x.shape[:2] + size) / count.astype(g.dtype))[(..., *(None,) * nd)]
        taps = np.where(real, share, np.zeros((), dtype=g.dtype))
        return (_scatter(x, index, taps).reshape(input.shape),)

    return forward, vjp


def _max(nd: int) -> tuple[Callable[..., Array], Callable[..., tuple[Array]]]:
    def forward(input: Array, output_size: Any) -> Array:
        flat, real = adaptive_taps(batched(input, nd), output_size, nd)
        idx = max_pool_argmax(flat, real)
        return np.take_along_axis(flat, idx, axis=-1).reshape(input.shape[:-nd] + flat.shape[2:-1])

    def vjp(g: Array, out: Array, input: Array, output_size: Any) -> tuple[Array]:
        x = batched(input, nd)
        flat, real = adaptive_taps(x, output_size, nd)
        idx = max_pool_argmax(flat, real)
        taps = np.zeros(flat.shape, dtype=g.dtype)
        np.put_along_axis(taps, idx, g.reshape(idx.shape), axis=-1)
        index, real, _ = _index(x.shape, flat.shape[2:-1])
        gx = _scatter(x, index, taps.reshape(*x.shape[:2], *real.shape))
        return (gx.reshape(input.shape),)

    return forward, vjp


def _shape(nd: int, kind: str) -> Callable[..., Shape]:
    def shape(input: Shape, output_size: Any) -> Shape:
        out = _output_size(f"adaptive_{kind}_pool{nd}d", nd, input, output_size)
        return (*input[:-nd], *out)

    return shape


# --- samples ---

TIES = (np.arange(2 * 5 * 7) % 3).reshape(1, 2, 5, 7).astype(np.float64)  # many tied maxima

ADAPTIVE_AVG_POOL1D_SAMPLES = sample_rows(
    ({"input": (2, 3, 8)}, {"output_size": 4}),  # divisible: plain average pooling
    ({"input": (2, 3, 7)}, {"output_size": 3}),  # windows of 3 overlapping by 1
    ({"input": (1, 2, 5)}, {"output_size": [4]}),
    ({"input": (3, 4)}, {"output_size": 6}),  # unbatched; more outputs than inputs
    ({"input": (2, 3, 5)}, {"output_size": 1}),
    ({"input": (0, 3, 5)}, {"output_size": 2}),  # an empty batch
)
ADAPTIVE_AVG_POOL2D_SAMPLES = sample_rows(
    ({"input": (2, 3, 6, 4)}, {"output_size": 2}),
    ({"input": (1, 2, 7, 5)}, {"output_size": [3, 2]}),
    ({"input": (2, 5, 3)}, {"output_size": [4, 5]}),  # unbatched; more outputs than inputs
    ({"input": (1, 2, 5, 6)}, {"output_size": [1, 4]}),
    ({"input": (2, 3, 7, 5)}, {"output_size": [None, 3]}),  # None keeps that dim
)
ADAPTIVE_MAX_POOL1D_SAMPLES = sample_rows(
    ({"input": (2, 3, 8)}, {"output_size": 4}),
    ({"input": (2, 3, 7)}, {"output_size": 3}),
    ({"input": TIES[0, :, 0]}, {"output_size": 4}),  # unbatched, ties
    ({"input": TIES[:, :, 1]}, {"output_size": 9}),  # more outputs than inputs
)
ADAPTIVE_MAX_POOL2D_SAMPLES = sample_rows(
    ({"input": (2, 3, 6, 4)}, {"output_size": 2}),
    ({"input": TIES}, {"output_size": [3, 4]}),
    ({"input": (1, 2, 7, 5)}, {"output_size": [3, 2]}),
    ({"input": -TIES[0]}, {"output_size": [6, 3]}),
    ({"input": np.ones((1, 1, 3, 3))}, {"output_size": 2}),
    ({"input": TIES}, {"output_size": [4, None]}),  # None keeps that dim
)

# --- ops ---


def _op(kind: str, nd: int, samples: SampleFn) -> Op:
    name = f"adaptive_{kind}_pool{nd}d"
    forward, vjp = (_avg if kind == "avg" else _max)(nd)
    return Op(
        name=name,
        family=FAMILY,
        params=(Param("input", "tensor"), Param("output_size", "sizes" if nd == 2 else "ints")),
        forward=forward,
        vjp=vjp,
        torch=lambda t, **kw: getattr(t.nn.functional, name)(**kw),
        shape=_shape(nd, kind),
        samples=samples,
        note=(
            "output i reads input [floor(i * L / out), ceil((i + 1) * L / out)) per dim, so "
            "windows may overlap and differ in length; each tap gets g / (window's element "
            "count), overlapping windows accumulate"
            if kind == "avg"
            else "output i reads input [floor(i * L / out), ceil((i + 1) * L / out)) per dim; "
            "the gradient goes to one tap per window, as torch's CPU loop picks it: the first "
            "maximum in row-major order (ties: the top-left one), or the last NaN; overlapping "
            "windows accumulate; return_indices is not supported (no indices output)"
        )
        + ("; a None in output_size keeps that dim's size, as torch" if nd == 2 else ""),
    )


OPS: list[Op] = [
    _op("avg", 1, ADAPTIVE_AVG_POOL1D_SAMPLES),
    _op("avg", 2, ADAPTIVE_AVG_POOL2D_SAMPLES),
    _op("max", 1, ADAPTIVE_MAX_POOL1D_SAMPLES),
    _op("max", 2, ADAPTIVE_MAX_POOL2D_SAMPLES),
]
