"""Convolution (part of the nn family): conv1d and conv2d, a grouped einsum over the input's
windows (`runner.ops.nn_windows`); the input's gradient is the transposed contraction scattered
back through the windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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

# --- convolution ---


def _conv_window(
    nd: int, x: Shape, w: Shape, stride: Any, padding: Any, dilation: Any, groups: int
) -> Window:
    op = f"conv{nd}d"
    check_input(op, x, nd)
    if len(w) != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-d, got shape {tuple(w)}")
    s = per_dim(op, "stride", stride, nd)
    p = per_dim(op, "padding", padding, nd)
    d = per_dim(op, "dilation", dilation, nd)
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
    gradient is the same contraction transposed, scattered back by `unwindow`."""

    def taps(
        input: Array, weight: Array, groups: int, **kw: Any
    ) -> tuple[Array, Array, Window, Shape]:
        x = batched(input, nd)
        w = _conv_window(nd, x.shape, weight.shape, groups=groups, **kw)
        xp = np.pad(x, [(0, 0), (0, 0), *((p, p) for p in w.padding)])
        cols = windows(xp, w.kernel, w.stride, w.dilation, w.out)
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
        gx = crop(unwindow(gcols, padded, w.stride, w.dilation), input.shape[-nd:], w.padding)
        spatial = tuple(range(g.ndim - nd - 1)) + tuple(range(g.ndim - nd, g.ndim))
        return gx.reshape(input.shape), gw, None if bias is None else g.sum(axis=spatial)

    return forward, vjp


# --- samples ---


def _conv_rows(rows: list[tuple[Shape, Shape, bool, dict[str, Any]]]) -> SampleFn:
    """``(input shape, weight shape, with bias, attributes)`` per sample."""
    tensors: list[dict[str, Shape | Array | None]] = [
        {"input": x, "weight": w, "bias": (w[0],) if b else None} for x, w, b, _ in rows
    ]
    return sample_rows(*zip(tensors, (kw for *_, kw in rows), strict=True))


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


OPS: list[Op] = [
    _conv_op(1, CONV1D_SAMPLES),
    _conv_op(2, CONV2D_SAMPLES),
]
