"""Transposed convolution (part of the nn family): conv_transpose1d and conv_transpose2d, the
adjoint of conv's input contraction. Each input position scatters ``x * weight`` over its
kernel's taps into the output (`unwindow`, overlapping taps accumulate), and the padding is then
cropped from both ends; ``output_padding`` extends the output on the right (those positions get
the bias alone, or zeros). The backward reads the upstream gradient through the same windows
(`windows`), which is a plain convolution of it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from runner.ops.intermediates import ITEMSIZE
from runner.ops.nn_windows import (
    FAMILY,
    Ints,
    batched,
    check_input,
    per_dim,
    sample_rows,
    unwindow,
    windows,
)
from runner.ops.spec import Array, Op, Param, SampleFn, Shape, ShapeError


class Geometry(NamedTuple):
    """Per spatial dim: kernel, stride, padding, dilation, the input's size, the output's size,
    and the scratch size the taps scatter into before the padding is cropped (at least the full
    span, and the padding plus the output so that output_padding fits)."""

    kernel: Ints
    stride: Ints
    padding: Ints
    dilation: Ints
    size: Ints
    out: Ints
    scratch: Ints


def _geometry(
    nd: int,
    x: Shape,
    w: Shape,
    stride: Any,
    padding: Any,
    output_padding: Any,
    groups: int,
    dilation: Any,
) -> Geometry:
    """torch's output size ``(L - 1) * stride - 2 * padding + dilation * (k - 1) +
    output_padding + 1`` and its checks (output_padding below stride or dilation, weight
    ``(C_in, C_out / groups, *kernel)``); `ShapeError` naming the numbers otherwise."""
    op = f"conv_transpose{nd}d"
    check_input(op, x, nd)
    if len(w) != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-d, got shape {tuple(w)}")
    s = per_dim(op, "stride", stride, nd)
    p = per_dim(op, "padding", padding, nd)
    op_ = per_dim(op, "output_padding", output_padding, nd)
    d = per_dim(op, "dilation", dilation, nd)
    if min(s) <= 0 or min(d) <= 0 or groups <= 0 or min(p) < 0 or min(op_) < 0:
        raise ShapeError(
            f"{op}: stride {s}, dilation {d} and groups {groups} must be positive, padding {p} "
            f"and output_padding {op_} non-negative"
        )
    if any(o >= max(si, di) for o, si, di in zip(op_, s, d, strict=True)):
        raise ShapeError(
            f"{op}: output_padding {op_} must be smaller than either stride {s} or dilation {d}"
        )
    if 0 in w or 0 in x[-nd - 1 :]:
        raise ShapeError(
            f"{op}: only the batch dim may be empty, got input {tuple(x)} and weight {tuple(w)}"
        )
    if w[0] != x[-nd - 1] or w[0] % groups:
        raise ShapeError(
            f"{op}: weight {tuple(w)} needs its first dim equal to the input's {x[-nd - 1]} "
            f"channels (input {tuple(x)}) and divisible by groups={groups}"
        )
    k = tuple(w[2:])
    size = tuple(x[-nd:])
    full = tuple(
        (n - 1) * si + di * (ki - 1) + 1 for n, si, di, ki in zip(size, s, d, k, strict=True)
    )
    out = tuple(f - 2 * pi + o for f, pi, o in zip(full, p, op_, strict=True))
    if min(out) < 1:
        # torch 2.13's reference kernels (float64, float16) refuse a size of 0 too; only its
        # oneDNN path (float32, bfloat16, some shapes) returns an empty output there instead.
        raise ShapeError(
            f"{op}: input {tuple(x)} with kernel {k}, stride {s}, padding {p}, dilation {d} and "
            f"output_padding {op_} gives output size {out}: output size is too small (torch "
            f"refuses every size below 1 in float64 and float16; its float32 and bfloat16 "
            f"oneDNN kernel returns an empty output for some shapes, which gradcase does not "
            f"follow: reduce the padding to {_fitting(p, out)} or less)"
        )
    scratch = tuple(max(f, pi + o) for f, pi, o in zip(full, p, out, strict=True))
    return Geometry(k, s, p, d, size, out, scratch)


def _fitting(padding: Ints, out: Ints) -> Ints:
    """The largest padding per dim that gives an output size of at least 1 (padding is taken from
    both ends, so each unit of it removes 2 from the output)."""
    return tuple(pi - max(0, (2 - o) // 2) for pi, o in zip(padding, out, strict=True))


def _shape(nd: int) -> Callable[..., Shape]:
    def shape(input: Shape, weight: Shape, bias: Shape | None, groups: int, **kw: Any) -> Shape:
        g = _geometry(nd, input, weight, groups=groups, **kw)
        channels = weight[1] * groups
        if bias is not None and tuple(bias) != (channels,):
            raise ShapeError(
                f"conv_transpose{nd}d: bias must have shape ({channels},) for weight "
                f"{tuple(weight)} and groups={groups}, got {tuple(bias)}"
            )
        return (*input[: -nd - 1], channels, *g.out)

    return shape


def _conv_transpose(nd: int) -> tuple[Callable[..., Array], Callable[..., tuple[Any, ...]]]:
    """Grouped: input ``(N, groups, C/groups, P)`` (P input positions), weight ``(groups,
    C/groups, O/groups, K)`` (K taps); the taps ``(N, groups, O/groups, P, K)`` scatter into the
    scratch output, and the VJP reads the scratch-padded upstream back through the windows."""

    def parts(
        input: Array, weight: Array, groups: int, **kw: Any
    ) -> tuple[Array, Array, Geometry, int]:
        x = batched(input, nd)
        g = _geometry(nd, x.shape, weight.shape, groups=groups, **kw)
        n, c, o = x.shape[0], x.shape[1] // groups, weight.shape[1]
        p, k = math.prod(g.size), math.prod(g.kernel)
        return x.reshape(n, groups, c, p), weight.reshape(groups, c, o, k), g, n

    def crop(full: Array, g: Geometry) -> Array:
        inner = (slice(pi, pi + o) for pi, o in zip(g.padding, g.out, strict=True))
        return full[(slice(None), slice(None), *inner)]

    def forward(input: Array, weight: Array, bias: Array | None, groups: int, **kw: Any) -> Array:
        xg, wg, g, n = parts(input, weight, groups, **kw)
        taps = np.einsum("ngcp,gcok->ngopk", xg, wg)
        taps = taps.reshape(n, groups * wg.shape[2], *g.size, *g.kernel)
        y = crop(unwindow(taps, (*taps.shape[:2], *g.scratch), g.stride, g.dilation), g)
        y = y.reshape(input.shape[: -nd - 1] + y.shape[1:])
        return y if bias is None else y + bias.reshape((-1,) + (1,) * nd)

    def vjp(
        grad: Array,
        out: Array,
        input: Array,
        weight: Array,
        bias: Array | None,
        groups: int,
        **kw: Any,
    ) -> tuple[Any, ...]:
        xg, wg, g, n = parts(input, weight, groups, **kw)
        gb = batched(grad, nd)
        after = [(pi, sc - pi - o) for pi, sc, o in zip(g.padding, g.scratch, g.out, strict=True)]
        gp = np.pad(gb, [(0, 0), (0, 0), *after])
        cols = windows(gp, g.kernel, g.stride, g.dilation, g.size)
        cols = cols.reshape(n, groups, wg.shape[2], xg.shape[-1], wg.shape[-1])
        gx = np.einsum("ngopk,gcok->ngcp", cols, wg).reshape(input.shape)
        gw = np.einsum("ngopk,ngcp->gcok", cols, xg).reshape(weight.shape)
        spatial = tuple(range(grad.ndim - nd - 1)) + tuple(range(grad.ndim - nd, grad.ndim))
        return gx, gw, None if bias is None else grad.sum(axis=spatial)

    return forward, vjp


def _intermediates(nd: int) -> Callable[..., int]:
    """The taps ``(N, C_out, *input size, *kernel)`` (forward) or the upstream's windows of the
    same size (VJP), and the scratch output."""

    def size(input: Shape, weight: Shape, bias: Shape | None, groups: int, **kw: Any) -> int:
        g = _geometry(nd, input, weight, groups=groups, **kw)
        batch = math.prod(input[: -nd - 1])
        channels = weight[1] * groups
        taps = batch * channels * math.prod(g.size) * math.prod(g.kernel)
        return int((2 * taps + batch * channels * math.prod(g.scratch)) * ITEMSIZE)

    return size


# --- samples ---


def _rows(rows: list[tuple[Shape, Shape, bool, dict[str, Any]]]) -> SampleFn:
    """``(input shape, weight shape, with bias, attributes)`` per sample."""
    tensors: list[dict[str, Shape | Array | None]] = [
        {"input": x, "weight": w, "bias": (w[1] * kw.get("groups", 1),) if b else None}
        for x, w, b, kw in rows
    ]
    return sample_rows(*zip(tensors, (kw for *_, kw in rows), strict=True))


CONV_TRANSPOSE1D_SAMPLES = _rows(
    [
        ((2, 3, 5), (3, 4, 3), True, {}),
        ((2, 2, 4), (2, 3, 3), False, {"stride": 2, "padding": 1, "output_padding": 1}),
        ((1, 2, 4), (2, 2, 2), True, {"stride": 3}),  # stride > kernel: gaps get only the bias
        ((1, 2, 5), (2, 3, 3), True, {"dilation": 2, "padding": 2, "output_padding": 1}),
        ((2, 4, 3), (4, 3, 2), True, {"groups": 2, "stride": 2, "output_padding": [1]}),
        ((3, 5), (3, 2, 4), True, {"stride": [2], "padding": [3]}),  # unbatched
        ((1, 3, 4), (3, 1, 3), False, {"groups": 3, "padding": 1, "dilation": 3}),
        ((0, 2, 4), (2, 3, 3), True, {"stride": 2}),  # an empty batch
    ]
)
CONV_TRANSPOSE2D_SAMPLES = _rows(
    [
        ((2, 3, 4, 3), (3, 2, 3, 3), True, {}),
        (
            (1, 2, 3, 4),
            (2, 3, 3, 2),
            False,
            {"stride": [2, 3], "padding": [1, 0], "output_padding": [1, 2]},
        ),
        ((1, 4, 3, 3), (4, 2, 2, 3), True, {"groups": 2, "stride": 2, "dilation": [1, 2]}),
        ((2, 3, 4), (2, 3, 2, 2), True, {"stride": 3, "padding": 1}),  # unbatched; gaps
        (
            (1, 2, 4, 3),
            (2, 1, 3, 2),
            True,
            {"dilation": 2, "padding": [2, 1], "output_padding": 1, "stride": [1, 2]},
        ),
        ((2, 3, 3, 3), (3, 1, 1, 1), True, {"groups": 3}),
    ]
)

# --- ops ---


def _op(nd: int, samples: SampleFn) -> Op:
    forward, vjp = _conv_transpose(nd)
    name = f"conv_transpose{nd}d"
    return Op(
        name=name,
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("weight", "tensor"),
            Param("bias", "tensor?", None),
            Param("stride", "ints", 1),
            Param("padding", "ints", 0),
            Param("output_padding", "ints", 0),
            Param("groups", "int", 1),
            Param("dilation", "ints", 1),
        ),
        forward=forward,
        vjp=vjp,
        torch=lambda t, **kw: getattr(t.nn.functional, name)(**kw),
        shape=_shape(nd),
        intermediates=_intermediates(nd),
        samples=samples,
        note="linear in input and in weight, so no kinks; weight is (C_in, C_out / groups, "
        "*kernel); overlapping taps accumulate; padding removes that many positions from each "
        "end of the full output (it adds none); output_padding (below stride or "
        "dilation) adds positions on the right that get only the bias; groups comes before "
        "dilation, as in torch",
    )


OPS: list[Op] = [
    _op(1, CONV_TRANSPOSE1D_SAMPLES),
    _op(2, CONV_TRANSPOSE2D_SAMPLES),
]
