"""Norms and distances between vectors (the norms family). torch clamps a norm at eps in place
under no_grad, so a norm's backward sees the clamped value: the gradient is the formula's at the
clamped norm, even where the clamp acted."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.nn_loss import _ftype
from runner.ops.norms_pairs import OPS as PAIR_OPS
from runner.ops.norms_vector import OPS as VECTOR_OPS
from runner.ops.spec import Array, Op, Param, Sample, Shape, broadcast_shapes, norm_dim

FAMILY = "norms"


def _cos_parts(x1: Any, x2: Any, dim: int) -> tuple[Array, Array, Array, Array, int]:
    """x1 and x2 broadcast (a 0-d pair as one 1-element vector), their unclamped 2-norms along
    dim (kept) and dim as an axis."""
    a, b = np.broadcast_arrays(np.asarray(x1, np.float64), np.asarray(x2, np.float64))
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    ax = norm_dim(dim, max(np.ndim(x1), np.ndim(x2)))
    n1 = np.sqrt(np.sum(a * a, axis=ax, keepdims=True))
    n2 = np.sqrt(np.sum(b * b, axis=ax, keepdims=True))
    return a, b, n1, n2, ax


def _cosine_similarity(x1: Any, x2: Any, dim: int, eps: float) -> Array:
    a, b, n1, n2, ax = _cos_parts(x1, x2, dim)
    out = np.sum((a / np.maximum(n1, eps)) * (b / np.maximum(n2, eps)), axis=ax)
    shape = _cos_shape(np.shape(x1), np.shape(x2), dim, eps)
    return np.asarray(out, dtype=_ftype(x1, x2)).reshape(shape)


def _cos_vjp(g: Array, out: Array, x1: Any, x2: Any, dim: int, eps: float) -> tuple[Array, Array]:
    a, b, n1, n2, ax = _cos_parts(x1, x2, dim)
    c1, c2 = np.maximum(n1, eps), np.maximum(n2, eps)
    kept = tuple(n for i, n in enumerate(a.shape) if i != ax)
    ge = np.expand_dims(np.asarray(g, np.float64).reshape(kept), ax)
    gu, gv = ge * (b / c2), ge * (a / c1)

    def through(x: Array, n: Array, c: Array, gx: Array) -> Array:
        # x / c, c the clamped norm; the norm's own backward divides by the unclamped norm
        gc = -np.sum(gx * ((x / c) / c), axis=ax, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(gx / c + x * np.where(n == 0, 0, gc / n))

    shape = broadcast_shapes(np.shape(x1), np.shape(x2))
    return (through(a, n1, c1, gu).reshape(shape), through(b, n2, c2, gv).reshape(shape))


def _cos_shape(x1: Shape, x2: Shape, dim: int, eps: float) -> Shape:
    shape = broadcast_shapes(x1, x2)
    ax = norm_dim(dim, len(shape))
    return tuple(n for i, n in enumerate(shape) if i != ax)


def _cos_samples(rng: np.random.Generator) -> list[Sample]:
    zero = np.array([[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0], [1.0, 2.0, 3.0]])
    other = np.array([[1.0, 2.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.0, 1.0]])
    return [
        Sample({"x1": rng.normal(size=(3, 4)), "x2": rng.normal(size=(3, 4))}, "rows, dim 1"),
        Sample({"x1": rng.normal(size=(3, 4)), "x2": rng.normal(size=(3, 4)), "dim": 0}, "dim 0"),
        Sample({"x1": rng.normal(size=4), "x2": rng.normal(size=(2, 4)), "dim": -1}, "broadcast"),
        Sample({"x1": zero, "x2": other}, "zero and tiny vectors: norms clamped at eps"),
        Sample({"x1": zero * 1e6, "x2": other, "eps": 0.5}, "eps 0.5"),
        Sample(
            {"x1": rng.normal(size=(2, 3, 2)), "x2": rng.normal(size=(2, 3, 2)), "dim": -2}, "3-d"
        ),  # fmt: skip
        Sample({"x1": np.asarray(0.7), "x2": np.asarray(-0.3), "dim": 0}, "0-d"),
    ]


OPS: list[Op] = [
    Op(
        name="cosine_similarity",
        family=FAMILY,
        params=(
            Param("x1", "tensor"),
            Param("x2", "tensor"),
            Param("dim", "int", 1),
            Param("eps", "float", 1e-8),
        ),
        forward=_cosine_similarity,
        vjp=_cos_vjp,
        torch=lambda t, **kw: t.nn.functional.cosine_similarity(**kw),
        shape=_cos_shape,
        samples=_cos_samples,
        note="sum((x1 / max(|x1|, eps)) * (x2 / max(|x2|, eps))) over dim; the clamp runs in "
        "place under no_grad: the quotient's gradient divides by the clamped norm, the norm's "
        "own backward by the unclamped one (0 for a zero vector), as torch",
    ),
]
OPS += VECTOR_OPS
OPS += PAIR_OPS
