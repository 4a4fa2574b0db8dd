"""Neural-network ops: softmax over a dim, linear, embedding. layer_norm lives in nn_norm.py, the
losses in nn_loss.py and nn_loss_pointwise.py, convolution and pooling in nn_conv.py,
nn_conv_transpose.py, nn_pool.py and nn_adaptive.py, pixel_shuffle and unfold/fold in
nn_fold.py; `OPS` gathers them all."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.nn_adaptive import OPS as ADAPTIVE_OPS
from runner.ops.nn_conv import OPS as CONV_OPS
from runner.ops.nn_conv_transpose import OPS as CONV_TRANSPOSE_OPS
from runner.ops.nn_fold import OPS as FOLD_OPS
from runner.ops.nn_loss import OPS as LOSS_OPS
from runner.ops.nn_loss import log_softmax, softmax
from runner.ops.nn_loss_pointwise import OPS as POINTWISE_LOSS_OPS
from runner.ops.nn_norm import OPS as NORM_OPS
from runner.ops.nn_pool import OPS as POOL_OPS
from runner.ops.spec import (
    Array,
    Op,
    Param,
    Sample,
    Shape,
    ShapeError,
    broadcast_shapes,
    norm_dim,
    sum_to,
)

FAMILY = "nn"


def _along(dim: int, x: Array) -> tuple[Array, int]:
    """``x`` with torch's one addressable dim for a 0-d tensor, and ``dim`` as an axis of it."""
    x = np.asarray(x)
    return np.atleast_1d(x), norm_dim(dim, x.ndim)


def _dim_shape(input: Shape, dim: int) -> Shape:
    norm_dim(dim, len(input))
    return input


def _softmax_vjp(g: Array, out: Array, input: Array, dim: int) -> tuple[Array]:
    (o, ax), g1 = _along(dim, out), np.atleast_1d(g)
    return ((o * (g1 - np.sum(g1 * o, axis=ax, keepdims=True))).reshape(np.shape(out)),)


def _log_softmax_vjp(g: Array, out: Array, input: Array, dim: int) -> tuple[Array]:
    (o, ax), g1 = _along(dim, out), np.atleast_1d(g)
    return ((g1 - np.exp(o) * np.sum(g1, axis=ax, keepdims=True)).reshape(np.shape(out)),)


def _softmax_samples(rng: np.random.Generator) -> list[Sample]:
    ties = np.array([[0.5, 0.5, 0.5], [1.0, -2.0, 1.0]])
    masked = np.array([[0.3, -np.inf, 1.2, 0.0], [-np.inf, 2.0, -1.0, -np.inf]])
    return [
        Sample({"input": np.asarray(rng.normal()), "dim": 0}, "0-d, dim 0 (out = 1)"),
        Sample({"input": np.asarray(rng.normal()), "dim": -1}, "0-d, dim -1"),
        Sample({"input": rng.normal(size=5), "dim": 0}, "vector"),
        Sample({"input": rng.normal(size=(2, 3)), "dim": 1}, "rows"),
        Sample({"input": rng.normal(size=(2, 3)), "dim": 0}, "columns"),
        Sample({"input": rng.normal(size=(2, 3, 4)), "dim": -2}, "3-d, negative dim"),
        Sample({"input": ties, "dim": -1}, "tied entries"),
        Sample({"input": rng.normal(size=(2, 3)) * 30 + 500, "dim": 1}, "large logits"),
        Sample({"input": masked, "dim": 1}, "-inf entries (masked)"),
    ]


# --- linear ---


def _linear_shape(input: Shape, weight: Shape, bias: Shape | None) -> Shape:
    if not input or not weight:
        raise ShapeError(
            f"linear: input and weight need at least 1 dim, got {len(input)}-d {input} and "
            f"{len(weight)}-d {weight}"
        )
    if len(weight) > 2:
        raise ShapeError(f"linear: weight must be (out, in) or (in,), got {len(weight)}-d {weight}")
    if input[-1] != weight[-1]:
        raise ShapeError(
            f"linear: input {input} has {input[-1]} features in its last dim, weight {weight} "
            f"takes {weight[-1]}"
        )
    out = (*input[:-1], *weight[:-1])
    if bias is None:
        return out
    # torch adds a bias on one of two paths: addmm on the input flattened to (rows, in) when the
    # input is 2-d or the bias squeezes to 1-d (a contiguous input), else matmul then an in-place
    # add. Each accepts different bias shapes; the values agree wherever both accept.
    rows = int(np.prod(input[:-1], dtype=np.int64))
    if len(input) == 2 or len(bias) == 1 or sum(n != 1 for n in bias) == 1:
        if len(weight) == 1:
            raise ShapeError(f"linear: a bias {bias} on this input {input} needs a 2-d weight")
        target: Shape = (rows, weight[0])
        if len(bias) > 2 or broadcast_shapes(target, bias) != target:
            raise ShapeError(f"linear: bias {bias} does not expand to (rows, out) = {target}")
    elif broadcast_shapes(out, bias) != out:
        raise ShapeError(f"linear: bias {bias} does not broadcast to the output shape {out}")
    return out


def _linear(input: Array, weight: Array, bias: Array | None = None) -> Array:
    out = np.matmul(input, np.asarray(weight).T)
    if bias is None:
        return np.asarray(out)
    # On torch's addmm path the bias expands to (rows, out) before the result takes its shape,
    # so a (1, out) bias on a 1-d input still gives (out,).
    shape = _linear_shape(input.shape, weight.shape, bias.shape)
    return np.asarray(_add_bias(out, bias)).reshape(shape)


def _add_bias(out: Array, bias: Array) -> Array:
    try:
        np.broadcast_shapes(out.shape, bias.shape)
    except ValueError:
        return out.reshape(-1, out.shape[-1] if out.ndim else 1) + bias
    return out + bias


def _linear_vjp(
    g: Array, out: Array, input: Array, weight: Array, bias: Array | None
) -> tuple[Array, Array, Array | None]:
    w2 = weight if weight.ndim == 2 else weight[None]
    g2 = g if weight.ndim == 2 else np.asarray(g)[..., None]
    lead = list(range(g2.ndim - 1))
    gw = np.tensordot(g2, input, axes=(lead, lead))
    gb = None
    if bias is not None:
        try:
            gb = sum_to(g, bias.shape)
        except ValueError:  # the addmm path: the bias was added at (rows, out)
            gb = sum_to(np.asarray(g).reshape(-1, g.shape[-1] if g.ndim else 1), bias.shape)
    return g2 @ w2, gw.reshape(weight.shape), gb


def _linear_samples(rng: np.random.Generator) -> list[Sample]:
    def s(x: Shape, w: Shape, b: Shape | None, note: str) -> Sample:
        args = {"input": rng.normal(size=x), "weight": rng.normal(size=w)}
        return Sample(args if b is None else {**args, "bias": rng.normal(size=b)}, note)

    return [
        s((2, 3), (4, 3), (4,), "2-d input, bias"),
        s((2, 3), (4, 3), None, "no bias"),
        s((5, 2, 3), (4, 3), (4,), "3-d input"),
        s((2, 1, 2, 3), (4, 3), (4,), "4-d input"),
        s((3,), (4, 3), (4,), "1-d input"),
        s((2, 3), (4, 3), (2, 4), "bias per row (2, 4)"),
        s((2, 3), (4, 3), (1,), "bias (1,) broadcast"),
        s((5, 2, 3), (4, 3), (2, 4), "bias (2, 4) on a 3-d input"),
        s((2, 3), (3,), None, "1-d weight"),
        s((5, 2, 3), (3,), (), "1-d weight, 0-d bias"),
        s((2, 1), (4, 1), (4,), "one input feature"),
        s((3,), (2, 3), (1, 2), "1-d input, (1, out) bias: the result is still (out,)"),
    ]


# --- embedding ---


def _embedding_shape(input: Shape, weight: Shape, padding_idx: int | None, **_: Any) -> Shape:
    if len(weight) != 2:
        raise ShapeError(f"embedding: weight must be 2-d (num, dim), got {len(weight)}-d {weight}")
    n = weight[0]
    if padding_idx is not None and not -n <= padding_idx < n:
        raise ShapeError(
            f"embedding: padding_idx {padding_idx} is out of range for {n} embeddings "
            f"(expected {-n} to {n - 1})"
        )
    return (*input, weight[1])


def _rows(input: Array, weight: Array) -> Array:
    idx = np.asarray(input)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"embedding: indices must be integers, got {idx.dtype}")
    bad = (idx < 0) | (idx >= weight.shape[0])
    if bad.any():
        raise IndexError(
            f"embedding: index {int(idx[bad][0])} is out of range for {weight.shape[0]} embeddings"
        )
    return idx


def embedding(
    input: Array,
    weight: Array,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
) -> Array:
    idx = _rows(input, weight)
    if max_norm is not None:
        weight = weight.copy()
        for r in np.unique(idx):
            norm = np.linalg.norm(weight[r].astype(np.float64), ord=norm_type)
            if norm > max_norm:  # torch's embedding_renorm_, epsilon included
                weight[r] *= max_norm / (norm + 1e-7)
    return np.asarray(weight[idx])


def embedding_vjp(
    g: Array,
    out: Array,
    input: Array,
    weight: Array,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
) -> tuple[None, Array]:
    idx = _rows(input, weight).reshape(-1)
    rows = np.asarray(g).reshape(idx.size, weight.shape[1])
    if scale_grad_by_freq:
        rows = rows / np.bincount(idx, minlength=weight.shape[0])[idx][:, None]
    gw = np.zeros(weight.shape, dtype=rows.dtype)
    np.add.at(gw, idx, rows)
    if padding_idx is not None:
        gw[padding_idx % weight.shape[0]] = 0
    return None, gw


def _embedding_samples(rng: np.random.Generator) -> list[Sample]:
    w = rng.normal(size=(5, 3))
    dup = np.array([[1, 1, 2], [4, 1, 0]])

    def s(idx: Any, note: str, **kw: Any) -> Sample:
        return Sample({"input": np.asarray(idx, dtype=np.int64), "weight": w, **kw}, note)

    return [
        s([0, 3, 4], "distinct rows"),
        s(dup, "duplicates accumulate"),
        s(2, "0-d index"),
        s(dup, "padding_idx 1: its row gets no gradient", padding_idx=1),
        s(dup, "padding_idx -1 (row 4)", padding_idx=-1),
        s(dup, "scale_grad_by_freq", scale_grad_by_freq=True),
        s(dup, "max_norm 1.0", max_norm=1.0),
        s(dup, "max_norm 0.5, norm_type 1", max_norm=0.5, norm_type=1.0),
    ]


def _embedding_torch(t: Any, input: Any, weight: Any, max_norm: float | None, **kw: Any) -> Any:
    # max_norm rescales rows of weight in place: a clone keeps the caller's tensor intact, and
    # the gradient (a plain scatter, the rescale runs under no_grad) is the same.
    w = weight.clone() if max_norm is not None else weight
    return t.nn.functional.embedding(input, w, max_norm=max_norm, **kw)


OPS: list[Op] = [
    *CONV_OPS,
    *CONV_TRANSPOSE_OPS,
    *ADAPTIVE_OPS,
    *FOLD_OPS,
    *POOL_OPS,
    # --- softmax over a dim ---
    Op(
        name="softmax",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim", "int")),
        forward=softmax,
        vjp=_softmax_vjp,
        torch=lambda t, input, dim: t.softmax(input, dim),
        shape=_dim_shape,
        samples=_softmax_samples,
        note="grad = out * (g - sum(g * out)): each row's gradient sums to zero; a 0-d input is "
        "one 1-element row (out = 1, grad = 0); -inf entries get out = 0 and grad 0",
    ),
    Op(
        name="log_softmax",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim", "int")),
        forward=log_softmax,
        vjp=_log_softmax_vjp,
        torch=lambda t, input, dim: t.log_softmax(input, dim),
        shape=_dim_shape,
        samples=_softmax_samples,
        note="grad = g - exp(out) * sum(g); -inf entries stay -inf with grad g",
    ),
    # --- linear ---
    Op(
        name="linear",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("weight", "tensor"),
            Param("bias", "tensor?", None),
        ),
        forward=_linear,
        vjp=_linear_vjp,
        torch=lambda t, input, weight, bias: t.nn.functional.linear(input, weight, bias),
        shape=_linear_shape,
        samples=_linear_samples,
        note="input @ weight.T + bias; a 1-d weight (in,) drops the out dim",
    ),
    # --- embedding ---
    Op(
        name="embedding",
        family=FAMILY,
        params=(
            Param("input", "tensor", grad=False, integer=True),
            Param("weight", "tensor"),
            Param("padding_idx", "int?", None),
            Param("max_norm", "float?", None),
            Param("norm_type", "float", 2.0),
            Param("scale_grad_by_freq", "bool", False),
        ),
        forward=embedding,
        vjp=embedding_vjp,
        torch=_embedding_torch,
        shape=_embedding_shape,
        samples=_embedding_samples,
        note="duplicate indices accumulate; the padding_idx row gets a zero gradient (its value "
        "is still looked up); scale_grad_by_freq divides by the index's count; max_norm rescales "
        "rows by max_norm / (norm + 1e-7) in the forward only (the gradient is the plain scatter)",
    ),
    *NORM_OPS,
    *LOSS_OPS,
    *POINTWISE_LOSS_OPS,
]
