"""What convolution and pooling share, for 1 and 2 spatial dims alike.

Every such op reads its input through `windows`, a strided view of shape ``(N, C, *out,
*kernel)`` over the padded input; each backward is the transpose of that view, `unwindow`, which
scatter-adds window gradients back (overlapping windows accumulate) before the padding is
cropped. An unbatched input gets a batch dim of 1 on the way in and loses it on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from runner.ops.spec import Array, Sample, SampleFn, Shape, ShapeError

FAMILY = "nn"
Ints = tuple[int, ...]


class Window(NamedTuple):
    """Normalized per-dim geometry of a sliding window and its output size. ``padding`` is the
    padding before the input, which `crop` removes; an op that pads more after it (pooling's
    ceil_mode, conv's padding='same') pads and sizes that part itself."""

    kernel: Ints
    stride: Ints
    padding: Ints
    dilation: Ints
    out: Ints


def per_dim(op: str, what: str, value: int | Sequence[int] | None, nd: int) -> Ints:
    """An int or a list of 1 or ``nd`` ints, as ``nd`` ints (torch expands a single value)."""
    vals = (value,) if isinstance(value, int) else tuple(value or ())
    if len(vals) == 1:
        vals = vals * nd
    if len(vals) != nd:
        raise ShapeError(f"{op}: {what} must be one int or a list of {nd} ints, got {value!r}")
    return vals


def batched(x: Array, nd: int) -> Array:
    return x if x.ndim == nd + 2 else x[None]


def check_input(op: str, shape: Shape, nd: int) -> None:
    if len(shape) not in (nd + 1, nd + 2):
        raise ShapeError(
            f"{op}: expected a {nd + 1}-d (unbatched) or {nd + 2}-d (batched) input, "
            f"got shape {tuple(shape)}"
        )


def windows(xp: Array, kernel: Ints, stride: Ints, dilation: Ints, out: Ints) -> Array:
    """Read-only view ``(N, C, *out, *kernel)`` of the padded input ``xp``."""
    s = xp.strides
    st = tuple(s[2 + i] * stride[i] for i in range(len(out)))
    dl = tuple(s[2 + i] * dilation[i] for i in range(len(out)))
    return as_strided(xp, xp.shape[:2] + out + kernel, s[:2] + st + dl, writeable=False)


def unwindow(cols: Array, padded: Shape, stride: Ints, dilation: Ints) -> Array:
    """The transpose of `windows`: scatter-add ``(N, C, *out, *kernel)`` into ``padded``."""
    nd = len(stride)
    out, kernel = cols.shape[2 : 2 + nd], cols.shape[2 + nd :]
    gx = np.zeros(padded, dtype=cols.dtype)
    for k in np.ndindex(*kernel):
        at = tuple(
            slice(k[i] * dilation[i], k[i] * dilation[i] + stride[i] * (out[i] - 1) + 1, stride[i])
            for i in range(nd)
        )
        gx[(slice(None), slice(None), *at)] += cols[(..., *k)]
    return gx


def crop(gx: Array, shape: Shape, padding: Ints) -> Array:
    """The input's part of a gradient over the padded input; ``padding`` is the padding before
    the input, so whatever lies after it (any right padding) is dropped too."""
    inner = (slice(p, p + n) for p, n in zip(padding, shape, strict=True))
    return gx[(slice(None), slice(None), *inner)]


def sample_rows(*rows: tuple[dict[str, Shape | Array | None], dict[str, Any]]) -> SampleFn:
    """One sample per row: a shape draws standard-normal values, an array is used as is."""

    def make(rng: np.random.Generator) -> list[Sample]:
        out = []
        for tensors, attrs in rows:
            args = {
                k: v if v is None or isinstance(v, np.ndarray) else rng.normal(size=v)
                for k, v in tensors.items()
            }
            shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in args.items() if v is not None)
            out.append(Sample({**args, **attrs}, note=f"{shapes} {attrs or ''}".strip()))
        return out

    return make
