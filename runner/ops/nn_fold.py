"""Rearranging ops (part of the nn family): pixel_shuffle and pixel_unshuffle (each the other's
VJP), and unfold (im2col) and fold (col2im), each the other's transpose: unfold reads the padded
input through the windows of `runner.ops.nn_windows`, fold scatter-adds blocks back through them
(overlapping blocks accumulate) and crops the padding."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.intermediates import ITEMSIZE
from runner.ops.nn_windows import FAMILY, Ints, crop, per_dim, sample_rows, unwindow, windows
from runner.ops.spec import Array, Op, Param, Shape, ShapeError

# --- pixel_shuffle, pixel_unshuffle ---


def _check_factor(op: str, what: str, shape: Shape, factor: int) -> None:
    if len(shape) < 3:
        raise ShapeError(f"{op}: input must have at least 3 dims, got shape {tuple(shape)}")
    if factor <= 0:
        raise ShapeError(f"{op}: {what} must be positive, got {factor}")


def _shuffle_shape(input: Shape, upscale_factor: int) -> Shape:
    r = upscale_factor
    _check_factor("pixel_shuffle", "upscale_factor", input, r)
    *batch, c, h, w = input
    if c % (r * r):
        raise ShapeError(
            f"pixel_shuffle: the channel dim ({c}, of input {tuple(input)}) must be divisible by "
            f"upscale_factor ** 2 = {r * r}"
        )
    return (*batch, c // (r * r), h * r, w * r)


def _unshuffle_shape(input: Shape, downscale_factor: int) -> Shape:
    r = downscale_factor
    _check_factor("pixel_unshuffle", "downscale_factor", input, r)
    *batch, c, h, w = input
    if h % r or w % r:
        raise ShapeError(
            f"pixel_unshuffle: height {h} and width {w} (input {tuple(input)}) must be divisible "
            f"by downscale_factor {r}"
        )
    return (*batch, c * r * r, h // r, w // r)


def pixel_shuffle(x: Array, r: int) -> Array:
    """``(*, C * r * r, H, W) -> (*, C, H * r, W * r)``: channel ``c * r * r + i * r + j`` goes
    to row ``h * r + i``, column ``w * r + j`` (torch's order)."""
    *batch, c, h, w = x.shape
    y = x.reshape(*batch, c // (r * r), r, r, h, w)
    n = len(batch)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return y.reshape(*batch, c // (r * r), h * r, w * r)


def pixel_unshuffle(x: Array, r: int) -> Array:
    """The inverse of `pixel_shuffle`: ``(*, C, H * r, W * r) -> (*, C * r * r, H, W)``."""
    *batch, c, h, w = x.shape
    y = x.reshape(*batch, c, h // r, r, w // r, r)
    n = len(batch)
    y = y.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return y.reshape(*batch, c * r * r, h // r, w // r)


# --- unfold, fold ---


def _blocks(
    op: str, size: Shape, kernel_size: Any, dilation: Any, padding: Any, stride: Any
) -> tuple[Ints, ...]:
    """kernel, dilation, padding, stride (2 ints each) and the blocks per dim, as torch's
    ``(size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1``."""
    k, d, p, s = (
        per_dim(op, what, v, 2)
        for what, v in (
            ("kernel_size", kernel_size),
            ("dilation", dilation),
            ("padding", padding),
            ("stride", stride),
        )
    )
    if min(k) <= 0 or min(d) <= 0 or min(s) <= 0 or min(p) < 0:
        raise ShapeError(
            f"{op}: kernel_size {k}, dilation {d} and stride {s} must be positive, padding {p} "
            "non-negative"
        )
    blocks = tuple(
        (n + 2 * pi - di * (ki - 1) - 1) // si + 1
        for n, ki, di, pi, si in zip(size, k, d, p, s, strict=True)
    )
    if min(blocks) < 1:
        raise ShapeError(
            f"{op}: spatial size {tuple(size)} with kernel_size {k}, dilation {d}, padding {p} "
            f"gives {blocks} sliding blocks: too small"
        )
    return k, d, p, s, blocks


def _unfold_shape(input: Shape, **kw: Any) -> Shape:
    if len(input) not in (3, 4) or 0 in input[-3:]:
        raise ShapeError(
            f"unfold: expected a 3-d (unbatched) or 4-d input with only the batch dim possibly "
            f"empty, got shape {tuple(input)}"
        )
    k, _, _, _, blocks = _blocks("unfold", input[-2:], **kw)
    return (*input[:-3], input[-3] * math.prod(k), math.prod(blocks))


def _fold_shape(input: Shape, output_size: Any, **kw: Any) -> Shape:
    if len(input) not in (2, 3) or 0 in input[-2:]:
        raise ShapeError(
            f"fold: expected a 2-d (unbatched) or 3-d input with only the batch dim possibly "
            f"empty, got shape {tuple(input)}"
        )
    size = per_dim("fold", "output_size", output_size, 2)
    k, _, _, _, blocks = _blocks("fold", size, **kw)
    if input[-2] % math.prod(k):
        raise ShapeError(
            f"fold: input dim {len(input) - 2} ({input[-2]}) must be divisible by the kernel's "
            f"{math.prod(k)} taps (kernel_size {k})"
        )
    if input[-1] != math.prod(blocks):
        raise ShapeError(
            f"fold: output_size {size} with kernel_size {k} gives {blocks} = {math.prod(blocks)} "
            f"blocks, but the input's last dim is {input[-1]} (input {tuple(input)})"
        )
    return (*input[:-2], input[-2] // math.prod(k), *size)


def _unfold_cols(x: Array, k: Ints, d: Ints, p: Ints, s: Ints, blocks: Ints) -> Array:
    """``(N, C, H, W) -> (N, C * kh * kw, L)``: row ``c * kh * kw + i * kw + j`` is tap (i, j)
    of channel c, column ``bh * bw_count + bw`` the block."""
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    cols = windows(xp, k, s, d, blocks).transpose(0, 1, 4, 5, 2, 3)
    return cols.reshape(x.shape[0], x.shape[1] * math.prod(k), math.prod(blocks))


def _fold_image(cols: Array, size: Ints, k: Ints, d: Ints, p: Ints, s: Ints, blocks: Ints) -> Array:
    """``(N, C * kh * kw, L) -> (N, C, *size)``: every block added back where unfold read it."""
    n, c = cols.shape[0], cols.shape[1] // math.prod(k)
    taps = cols.reshape(n, c, *k, *blocks).transpose(0, 1, 4, 5, 2, 3)
    padded = (n, c, size[0] + 2 * p[0], size[1] + 2 * p[1])
    return crop(unwindow(taps, padded, s, d), size, p)


def _unfold(input: Array, kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> Array:
    x = input if input.ndim == 4 else input[None]
    geom = _blocks("unfold", x.shape[-2:], kernel_size, dilation, padding, stride)
    out: Array = _unfold_cols(x, *geom)
    return out.reshape(
        _unfold_shape(
            input.shape, kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride
        )
    )


def _fold(input: Array, output_size: Any, **kw: Any) -> Array:
    cols = input if input.ndim == 3 else input[None]
    size = per_dim("fold", "output_size", output_size, 2)
    out: Array = _fold_image(cols, size, *_blocks("fold", size, **kw))
    return out.reshape(_fold_shape(input.shape, output_size, **kw))


def _unfold_vjp(g: Array, out: Array, input: Array, **kw: Any) -> tuple[Array]:
    size = input.shape[-2:]
    return (_fold(g, size, **kw).reshape(input.shape),)


def _fold_vjp(g: Array, out: Array, input: Array, output_size: Any, **kw: Any) -> tuple[Array]:
    return (_unfold(g, **kw).reshape(input.shape),)


def _window_bytes(shape_rule: Callable[..., Shape], blocks_of: str) -> Callable[..., int]:
    """The columns (unfold's result or fold's input, copied once transposed) and the padded
    image."""

    def size(input: Shape, **kw: Any) -> int:
        out = shape_rule(input=input, **kw)
        cols, image = (out, input) if blocks_of == "output" else (input, out)
        p = per_dim("fold", "padding", kw.get("padding", 0), 2)
        batch_c = math.prod(image[:-2])
        padded = batch_c * (image[-2] + 2 * p[0]) * (image[-1] + 2 * p[1])
        return int((2 * math.prod(cols) + padded) * ITEMSIZE)

    return size


# --- samples ---

PIXEL_SHUFFLE_SAMPLES = sample_rows(
    ({"input": (2, 8, 3, 2)}, {"upscale_factor": 2}),
    ({"input": (9, 2, 3)}, {"upscale_factor": 3}),  # unbatched
    ({"input": (2, 1, 4, 2, 3)}, {"upscale_factor": 2}),  # two batch dims
    ({"input": (1, 3, 2, 2)}, {"upscale_factor": 1}),
)
PIXEL_UNSHUFFLE_SAMPLES = sample_rows(
    ({"input": (2, 2, 4, 6)}, {"downscale_factor": 2}),
    ({"input": (1, 6, 3)}, {"downscale_factor": 3}),
    ({"input": (2, 1, 2, 4, 2)}, {"downscale_factor": 2}),
)
UNFOLD_SAMPLES = sample_rows(
    ({"input": (2, 3, 4, 5)}, {"kernel_size": 2}),
    ({"input": (1, 2, 5, 6)}, {"kernel_size": [2, 3], "stride": [1, 2], "padding": 1}),
    ({"input": (1, 2, 6, 7)}, {"kernel_size": 2, "dilation": [2, 3], "stride": 3}),  # gaps
    ({"input": (3, 4, 4)}, {"kernel_size": 3, "padding": [1, 0]}),  # unbatched
    ({"input": (0, 2, 4, 4)}, {"kernel_size": 2}),
)
FOLD_SAMPLES = sample_rows(
    ({"input": (2, 12, 12)}, {"output_size": [4, 5], "kernel_size": 2}),  # overlapping blocks
    (
        {"input": (1, 12, 18)},
        {"output_size": [5, 6], "kernel_size": [2, 3], "stride": [1, 2], "padding": 1},
    ),
    ({"input": (8, 4)}, {"output_size": [6, 7], "kernel_size": 2, "dilation": [2, 3], "stride": 3}),
    ({"input": (1, 18, 8)}, {"output_size": 4, "kernel_size": 3, "padding": [1, 0]}),
)

# --- ops ---

OPS: list[Op] = [
    Op(
        name="pixel_shuffle",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("upscale_factor", "int")),
        forward=lambda input, upscale_factor: pixel_shuffle(input, upscale_factor),
        vjp=lambda g, out, input, upscale_factor: (pixel_unshuffle(g, upscale_factor),),
        torch=lambda t, **kw: t.nn.functional.pixel_shuffle(**kw),
        shape=_shuffle_shape,
        samples=PIXEL_SHUFFLE_SAMPLES,
        note="a permutation of elements, so no kinks; the VJP is pixel_unshuffle",
    ),
    Op(
        name="pixel_unshuffle",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("downscale_factor", "int")),
        forward=lambda input, downscale_factor: pixel_unshuffle(input, downscale_factor),
        vjp=lambda g, out, input, downscale_factor: (pixel_shuffle(g, downscale_factor),),
        torch=lambda t, **kw: t.nn.functional.pixel_unshuffle(**kw),
        shape=_unshuffle_shape,
        samples=PIXEL_UNSHUFFLE_SAMPLES,
        note="a permutation of elements, so no kinks; the VJP is pixel_shuffle",
    ),
    Op(
        name="unfold",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("kernel_size", "ints"),
            Param("dilation", "ints", 1),
            Param("padding", "ints", 0),
            Param("stride", "ints", 1),
        ),
        forward=_unfold,
        vjp=_unfold_vjp,
        torch=lambda t, **kw: t.nn.functional.unfold(**kw),
        shape=_unfold_shape,
        intermediates=_window_bytes(_unfold_shape, "output"),
        samples=UNFOLD_SAMPLES,
        note="im2col, torch.nn.functional.unfold (not Tensor.unfold, another op): linear; an "
        "element read by several blocks gets their gradients summed (the VJP is fold); padding "
        "is zeros",
    ),
    Op(
        name="fold",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("output_size", "ints"),
            Param("kernel_size", "ints"),
            Param("dilation", "ints", 1),
            Param("padding", "ints", 0),
            Param("stride", "ints", 1),
        ),
        forward=_fold,
        vjp=_fold_vjp,
        torch=lambda t, **kw: t.nn.functional.fold(**kw),
        shape=_fold_shape,
        intermediates=_window_bytes(_fold_shape, "input"),
        samples=FOLD_SAMPLES,
        note="col2im: overlapping blocks add up in the output, so each block's gradient is the "
        "upstream read at its taps (the VJP is unfold); taps in the padding are dropped",
    ),
]
