"""Convolution and pooling ops (part of the nn family), for 1 and 2 spatial dims alike.

Every op reads its input through `_windows`, a strided view of shape ``(N, C, *out, *kernel)``
over the padded input; each backward is the transpose of that view, `_unwindow`, which
scatter-adds window gradients back (overlapping windows accumulate) before the padding is
cropped. An unbatched input gets a batch dim of 1 on the way in and loses it on the way out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from runner.ops.spec import Array, Op, Param, Sample, SampleFn, Shape, ShapeError

FAMILY = "nn"
Ints = tuple[int, ...]


class Window(NamedTuple):
    """Normalized per-dim geometry of a sliding window and its output size."""

    kernel: Ints
    stride: Ints
    padding: Ints
    dilation: Ints
    out: Ints


def _per_dim(op: str, what: str, value: int | Sequence[int] | None, nd: int) -> Ints:
    """An int or a list of 1 or ``nd`` ints, as ``nd`` ints (torch expands a single value)."""
    vals = (value,) if isinstance(value, int) else tuple(value or ())
    if len(vals) == 1:
        vals = vals * nd
    if len(vals) != nd:
        raise ShapeError(f"{op}: {what} must be one int or a list of {nd} ints, got {value!r}")
    return vals


def _batched(x: Array, nd: int) -> Array:
    return x if x.ndim == nd + 2 else x[None]


def _check_input(op: str, shape: Shape, nd: int) -> None:
    if len(shape) not in (nd + 1, nd + 2):
        raise ShapeError(
            f"{op}: expected a {nd + 1}-d (unbatched) or {nd + 2}-d (batched) input, "
            f"got shape {tuple(shape)}"
        )


def _windows(xp: Array, kernel: Ints, stride: Ints, dilation: Ints, out: Ints) -> Array:
    """Read-only view ``(N, C, *out, *kernel)`` of the padded input ``xp``."""
    s = xp.strides
    st = tuple(s[2 + i] * stride[i] for i in range(len(out)))
    dl = tuple(s[2 + i] * dilation[i] for i in range(len(out)))
    return as_strided(xp, xp.shape[:2] + out + kernel, s[:2] + st + dl, writeable=False)


def _unwindow(cols: Array, padded: Shape, stride: Ints, dilation: Ints) -> Array:
    """The transpose of `_windows`: scatter-add ``(N, C, *out, *kernel)`` into ``padded``."""
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


def _crop(gx: Array, shape: Shape, padding: Ints) -> Array:
    inner = (slice(p, p + n) for p, n in zip(padding, shape, strict=True))
    return gx[(slice(None), slice(None), *inner)]


# --- convolution ---


def _conv_window(
    nd: int, x: Shape, w: Shape, stride: Any, padding: Any, dilation: Any, groups: int
) -> Window:
    op = f"conv{nd}d"
    _check_input(op, x, nd)
    if len(w) != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-d, got shape {tuple(w)}")
    s = _per_dim(op, "stride", stride, nd)
    p = _per_dim(op, "padding", padding, nd)
    d = _per_dim(op, "dilation", dilation, nd)
    if min(s) <= 0 or min(p) < 0 or min(d) <= 0 or groups <= 0:
        raise ShapeError(
            f"{op}: stride {s}, dilation {d} and groups {groups} must be positive, "
            f"padding {p} non-negative"
        )
    if 0 in w or 0 in x[-nd:]:
        # Torch rejects these too, except zero in-channels, where it returns an output shaped
        # like the input rather than (N, out_channels, *out).
        raise ShapeError(
            f"{op}: only the batch dim may be empty, got input {tuple(x)} and weight {tuple(w)}"
        )
    if w[0] % groups:
        raise ShapeError(f"{op}: groups={groups} must divide the weight's {w[0]} out-channels")
    if w[1] * groups != x[-nd - 1]:
        raise ShapeError(
            f"{op}: weight {tuple(w)} with groups={groups} expects {w[1] * groups} input "
            f"channels, got {x[-nd - 1]} (input {tuple(x)})"
        )
    k = tuple(w[2:])
    span = tuple(di * (ki - 1) + 1 for di, ki in zip(d, k, strict=True))
    padded = tuple(n + 2 * pi for n, pi in zip(x[-nd:], p, strict=True))
    if any(a > b for a, b in zip(span, padded, strict=True)):
        raise ShapeError(f"{op}: padded input size {padded} is smaller than the kernel {span}")
    out = tuple((a - b) // si + 1 for a, b, si in zip(padded, span, s, strict=True))
    return Window(k, s, p, d, out)


def _conv_shape(nd: int) -> Callable[..., Shape]:
    def shape(
        input: Shape,
        weight: Shape,
        bias: Shape | None,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
    ) -> Shape:
        w = _conv_window(nd, input, weight, stride, padding, dilation, groups)
        if bias is not None and tuple(bias) != (weight[0],):
            raise ShapeError(
                f"conv{nd}d: bias must have shape ({weight[0]},) for weight {tuple(weight)}, "
                f"got {tuple(bias)}"
            )
        return (*input[: -nd - 1], weight[0], *w.out)

    return shape


def _conv(nd: int) -> tuple[Callable[..., Array], Callable[..., tuple[Any, ...]]]:
    """Grouped convolution as one contraction over ``(N, groups, C/groups, P, K)`` windows (P
    output positions, K kernel taps) and ``(groups, O/groups, C/groups, K)`` weights; the input's
    gradient is the same contraction transposed, scattered back by `_unwindow`."""

    def taps(
        input: Array, weight: Array, groups: int, **kw: Any
    ) -> tuple[Array, Array, Window, Shape]:
        x = _batched(input, nd)
        w = _conv_window(nd, x.shape, weight.shape, groups=groups, **kw)
        xp = np.pad(x, [(0, 0), (0, 0), *((p, p) for p in w.padding)])
        cols = _windows(xp, w.kernel, w.stride, w.dilation, w.out)
        n, c, o = x.shape[0], x.shape[1] // groups, weight.shape[0] // groups
        p, k = int(np.prod(w.out)), int(np.prod(w.kernel))  # explicit: a size may be 0
        return cols.reshape(n, groups, c, p, k), weight.reshape(groups, o, c, k), w, xp.shape

    def forward(input: Array, weight: Array, bias: Array | None, groups: int, **kw: Any) -> Array:
        cols, wg, w, _ = taps(input, weight, groups, **kw)
        y: Array = np.einsum("ngcpk,gock->ngop", cols, wg)
        y = y.reshape(input.shape[: -nd - 1] + (weight.shape[0], *w.out))
        return y if bias is None else y + bias.reshape((-1,) + (1,) * nd)

    def vjp(
        g: Array,
        out: Array,
        input: Array,
        weight: Array,
        bias: Array | None,
        groups: int,
        **kw: Any,
    ) -> tuple[Any, ...]:
        cols, wg, w, padded = taps(input, weight, groups, **kw)
        gr = g.reshape(cols.shape[:2] + wg.shape[1:2] + cols.shape[3:4])
        gw = np.einsum("ngop,ngcpk->gock", gr, cols).reshape(weight.shape)
        gcols = np.einsum("ngop,gock->ngcpk", gr, wg).reshape(padded[:2] + w.out + w.kernel)
        gx = _crop(_unwindow(gcols, padded, w.stride, w.dilation), input.shape[-nd:], w.padding)
        spatial = tuple(range(g.ndim - nd - 1)) + tuple(range(g.ndim - nd, g.ndim))
        return gx.reshape(input.shape), gw, None if bias is None else g.sum(axis=spatial)

    return forward, vjp


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
    _check_input(op, x, nd)
    if any(n == 0 for n in x[-nd - 1 :]):
        raise ShapeError(f"{op}: only the batch dim may be empty, got input {tuple(x)}")
    k = _per_dim(op, "kernel_size", kernel_size, nd)
    s = k if stride is None or stride == [] else _per_dim(op, "stride", stride, nd)
    p = _per_dim(op, "padding", padding, nd)
    d = _per_dim(op, "dilation", dilation, nd)
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
    for i, (n, ki, si, pi, di, o) in enumerate(zip(x[-nd:], k, s, p, d, out, strict=True)):
        # Only a dilated window can fall between inputs; torch then returns -inf with an index
        # outside the input, and its backward writes out of bounds.
        blind = [j for j in range(o) if not any(0 <= j * si - pi + t * di < n for t in range(ki))]
        if blind:
            raise ShapeError(
                f"{op}: window {blind[0]} of spatial dim {i} (size {n}) reads only padding with "
                f"kernel_size {ki}, stride {si}, padding {pi}, dilation {di}"
            )
    return Window(k, s, p, d, tuple(out))


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
    flat = _windows(xp, w.kernel, w.stride, w.dilation, w.out).reshape(*x.shape[:2], *w.out, k)
    mask = _windows(real, w.kernel, w.stride, w.dilation, w.out).reshape(1, 1, *w.out, k)
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
        flat, real, padded = _pool_taps(_batched(input, nd), w)
        return flat, max_pool_argmax(flat, real), w, padded

    def forward(input: Array, **kw: Any) -> Array:
        flat, idx, _, _ = taps(input, **kw)
        return np.take_along_axis(flat, idx, axis=-1).reshape(input.shape[:-nd] + flat.shape[2:-1])

    def vjp(g: Array, out: Array, input: Array, **kw: Any) -> tuple[Array]:
        flat, idx, w, padded = taps(input, **kw)
        gcols = np.zeros(flat.shape, dtype=g.dtype)
        np.put_along_axis(gcols, idx, g.reshape(idx.shape), axis=-1)
        gcols = gcols.reshape(*flat.shape[:-1], *w.kernel)
        gx = _crop(_unwindow(gcols, padded, w.stride, w.dilation), input.shape[-nd:], w.padding)
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
        flat, _, _ = _pool_taps(_batched(input, nd), w)
        y: Array = flat.sum(axis=-1) / div
        return y.reshape(input.shape[:-nd] + w.out)

    def vjp(g: Array, out: Array, input: Array, **kw: Any) -> tuple[Array]:
        w, div = window(input, **kw)
        x = _batched(input, nd)
        gcols = (g.reshape(x.shape[:2] + w.out) / div)[(..., *(None,) * nd)]
        gcols = np.broadcast_to(gcols, gcols.shape[: 2 + nd] + w.kernel)
        gx = _unwindow(gcols, _pool_pad(x, w).shape, w.stride, w.dilation)
        return (_crop(gx, input.shape[-nd:], w.padding).reshape(input.shape),)

    return forward, vjp


# --- samples ---

INF = np.inf
TIES = (np.arange(50) % 3).reshape(1, 2, 5, 5).astype(np.float64)  # many tied maxima
# -inf windows and -inf beside padding: the padding must never be picked.
NEG_INF = np.array([[[[1, 4, 2, 2], [-INF, -INF, 0, 5], [-INF, -INF, 3, 3], [-INF, 1, 3, -1]]]])


def _rows(*rows: tuple[dict[str, Shape | Array | None], dict[str, Any]]) -> SampleFn:
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


def _conv_rows(rows: list[tuple[Shape, Shape, bool, dict[str, Any]]]) -> SampleFn:
    """``(input shape, weight shape, with bias, attributes)`` per sample."""
    tensors: list[dict[str, Shape | Array | None]] = [
        {"input": x, "weight": w, "bias": (w[0],) if b else None} for x, w, b, _ in rows
    ]
    return _rows(*zip(tensors, (kw for *_, kw in rows), strict=True))


CONV1D_SAMPLES = _conv_rows(
    [
        ((2, 3, 7), (4, 3, 3), True, {}),
        ((2, 2, 8), (3, 2, 3), False, {"stride": 2, "padding": 1}),
        ((1, 2, 7), (2, 2, 3), True, {"dilation": 2, "padding": [2]}),
        ((2, 4, 6), (6, 2, 2), True, {"groups": 2, "stride": 3}),  # the last column is never read
        ((1, 3, 5), (3, 1, 3), False, {"groups": 3, "padding": 1}),
        ((3, 6), (2, 3, 2), True, {"stride": [2]}),
        ((1, 2, 3), (2, 2, 5), True, {"padding": 1}),  # the kernel spans the padded input
    ]
)
CONV2D_SAMPLES = _conv_rows(
    [
        ((2, 3, 5, 5), (4, 3, 3, 3), True, {}),
        ((1, 2, 6, 5), (3, 2, 3, 2), False, {"stride": [2, 1], "padding": [1, 0]}),
        ((1, 2, 6, 6), (2, 2, 3, 3), True, {"dilation": [2, 1], "padding": 2}),
        ((2, 4, 5, 5), (4, 2, 2, 3), True, {"groups": 2, "stride": 2}),
        ((1, 3, 4, 4), (6, 1, 3, 3), False, {"groups": 3, "padding": 1}),
        ((2, 5, 4), (3, 2, 2, 2), True, {"stride": [1, 2], "padding": [0, 1], "dilation": [1, 2]}),
        ((2, 3, 3, 3), (2, 3, 1, 1), True, {}),
    ]
)
MAX_POOL2D_SAMPLES = _rows(
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
AVG_POOL2D_SAMPLES = _rows(
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
MAX_POOL1D_SAMPLES = _rows(
    ({"input": (2, 3, 7)}, {"kernel_size": 3, "stride": 2, "padding": 1}),
    ({"input": np.ones((1, 2, 6))}, {"kernel_size": 3, "stride": 1}),
    ({"input": (1, 2, 9)}, {"kernel_size": 2, "stride": 3, "dilation": 2, "ceil_mode": True}),
    ({"input": (3, 8)}, {"kernel_size": [2]}),
    ({"input": NEG_INF[0]}, {"kernel_size": 3, "stride": 1, "padding": 1}),
)
AVG_POOL1D_SAMPLES = _rows(
    ({"input": (2, 3, 7)}, {"kernel_size": 3, "stride": 2, "padding": 1}),
    (
        {"input": (2, 3, 7)},
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    ),
    ({"input": (1, 2, 6)}, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ({"input": (3, 8)}, {"kernel_size": 2, "stride": 1}),
)


# --- ops ---


def _conv_op(nd: int, samples: SampleFn) -> Op:
    forward, vjp = _conv(nd)
    return Op(
        name=f"conv{nd}d",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("weight", "tensor"),
            Param("bias", "tensor?", None),
            Param("stride", "ints", 1),
            Param("padding", "ints", 0),
            Param("dilation", "ints", 1),
            Param("groups", "int", 1),
        ),
        forward=forward,
        vjp=vjp,
        torch=lambda t, **kw: getattr(t.nn.functional, f"conv{nd}d")(**kw),
        shape=_conv_shape(nd),
        samples=samples,
        note="linear in input and in weight, so no kinks; padding is zeros and gets no gradient",
    )


def _pool_op(kind: str, nd: int, samples: SampleFn) -> Op:
    name = f"{kind}_pool{nd}d"
    forward, vjp = (_max_pool if kind == "max" else _avg_pool)(nd)
    window = (
        Param("kernel_size", "ints"),
        Param("stride", "ints", None),
        Param("padding", "ints", 0),
    )
    attrs = (
        (Param("dilation", "ints", 1), Param("ceil_mode", "bool", False))
        if kind == "max"
        else (
            Param("ceil_mode", "bool", False),
            Param("count_include_pad", "bool", True),
            *([Param("divisor_override", "int?", None)] if nd == 2 else []),
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
    _conv_op(1, CONV1D_SAMPLES),
    _conv_op(2, CONV2D_SAMPLES),
    _pool_op("max", 1, MAX_POOL1D_SAMPLES),
    _pool_op("max", 2, MAX_POOL2D_SAMPLES),
    _pool_op("avg", 1, AVG_POOL1D_SAMPLES),
    _pool_op("avg", 2, AVG_POOL2D_SAMPLES),
]
