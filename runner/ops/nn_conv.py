"""Convolution (part of the nn family): conv1d, conv2d and conv3d, a grouped einsum over the input's
windows (`runner.ops.nn_windows`); the input's gradient is the transposed contraction scattered
back through the windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.intermediates import window_intermediates
from runner.ops.nn_windows import (
    FAMILY,
    Ints,
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
) -> tuple[Window, Ints]:
    """The window and the padding after the input, which differs from the padding before it
    (``Window.padding``) only for padding='same' with an even effective kernel."""
    op = f"conv{nd}d"
    check_input(op, x, nd)
    if len(w) != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-d, got shape {tuple(w)}")
    s = per_dim(op, "stride", stride, nd)
    d = per_dim(op, "dilation", dilation, nd)
    k = tuple(w[2:])
    p, right = _conv_padding(op, padding, k, s, d)
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
    span = tuple(di * (ki - 1) + 1 for di, ki in zip(d, k, strict=True))
    padded = tuple(a + n + b for n, a, b in zip(x[-nd:], p, right, strict=True))
    if any(a > b for a, b in zip(span, padded, strict=True)):
        raise ShapeError(f"{op}: padded input size {padded} is smaller than the kernel {span}")
    out = tuple((a - b) // si + 1 for a, b, si in zip(padded, span, s, strict=True))
    return Window(k, s, p, d, out), right


def _conv_padding(
    op: str, padding: Any, kernel: Ints, stride: Ints, dilation: Ints
) -> tuple[Ints, Ints]:
    """Padding before and after the input per dim. 'same' pads ``dilation * (kernel - 1)`` in
    all, the odd one out after the input, as torch does: an even effective kernel is the one
    place where conv padding is asymmetric."""
    nd = len(kernel)
    if padding == "valid":
        return (0,) * nd, (0,) * nd
    if padding != "same":
        p = per_dim(op, "padding", padding, nd)
        return p, p
    if any(si != 1 for si in stride):
        raise ShapeError(
            f"{op}: padding='same' needs stride 1 in every dim, got stride {stride} (torch "
            "does not support 'same' for strided convolutions; give the padding as ints)"
        )
    total = tuple(di * (ki - 1) for di, ki in zip(dilation, kernel, strict=True))
    left = tuple(t // 2 for t in total)
    return left, tuple(t - a for t, a in zip(total, left, strict=True))


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
        w, _ = _conv_window(nd, input, weight, stride, padding, dilation, groups)
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
        w, right = _conv_window(nd, x.shape, weight.shape, groups=groups, **kw)
        xp = np.pad(x, [(0, 0), (0, 0), *zip(w.padding, right, strict=True)])
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
        # 'same': an even kernel, or an even span (kernel 2, dilation 3), pads 1 more after.
        ((2, 3, 7), (4, 3, 4), True, {"padding": "same"}),
        ((1, 2, 6), (2, 2, 3), True, {"padding": "same", "dilation": 2}),
        ((2, 4, 7), (4, 2, 2), False, {"padding": "same", "dilation": 3, "groups": 2}),
        ((1, 2, 3), (2, 2, 6), True, {"padding": "same"}),  # longer than the input
        ((3, 5), (2, 3, 4), True, {"padding": "valid"}),
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
        ((2, 3, 5, 6), (4, 3, 2, 3), True, {"padding": "same"}),
        ((1, 4, 6, 5), (4, 2, 4, 2), True, {"padding": "same", "dilation": [1, 3], "groups": 2}),
        ((2, 5, 5), (3, 2, 3, 3), False, {"padding": "same", "dilation": 2, "stride": 1}),
        ((2, 3, 6, 5), (2, 3, 3, 2), True, {"padding": "valid", "stride": 2}),
    ]
)

CONV3D_SAMPLES = _conv_rows(
    [
        ((2, 2, 4, 3, 4), (3, 2, 2, 2, 3), True, {}),
        ((1, 2, 5, 4, 4), (2, 2, 3, 2, 2), False, {"stride": [2, 1, 3], "padding": [1, 0, 1]}),
        ((1, 4, 4, 5, 3), (4, 2, 2, 2, 2), True, {"groups": 2, "dilation": [2, 1, 1]}),
        ((2, 3, 4, 4), (2, 2, 3, 2, 2), True, {"padding": "same", "dilation": [1, 2, 1]}),
        ((1, 2, 3, 4, 3), (2, 2, 2, 3, 1), False, {"padding": "valid", "stride": 2}),
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
            Param("padding", "ints", 0, choices=("same", "valid")),
            Param("dilation", "ints", 1),
            Param("groups", "int", 1),
        ),
        forward=forward,
        vjp=vjp,
        torch=lambda t, **kw: getattr(t.nn.functional, f"conv{nd}d")(**kw),
        shape=_conv_shape(nd),
        intermediates=window_intermediates(nd, _conv_shape(nd)),
        samples=samples,
        note="linear in input and in weight, so no kinks; padding is zeros and gets no gradient; "
        "padding='same' (stride 1 only) pads dilation * (kernel - 1) per dim, the odd one "
        "after the input, and 'valid' none",
    )


OPS: list[Op] = [
    _conv_op(1, CONV1D_SAMPLES),
    _conv_op(2, CONV2D_SAMPLES),
    _conv_op(3, CONV3D_SAMPLES),
]
