"""Products and diagonal builders (the linalg_products family): kron, linalg.cross, tensordot,
diag and diag_embed. All are multilinear or linear, so smooth: each VJP is the adjoint
contraction (torch's kron and tensordot are composites of reshape, permute and mm; cross's
backward is derivatives.yaml's ``linalg_cross(other, grad)`` / ``linalg_cross(grad, self)``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.dtypes import result_type
from runner.ops.spec import (
    Array,
    Op,
    Param,
    Sample,
    Shape,
    ShapeError,
    broadcast_shapes,
    norm_dim,
)

FAMILY = "linalg_products"


# --- kron: torch pads the operand of fewer dims with leading 1s ---


def _kron_pair(input: Array, other: Array) -> tuple[Array, Array]:
    n = max(input.ndim, other.ndim)
    return input.reshape((1,) * (n - input.ndim) + input.shape), other.reshape(
        (1,) * (n - other.ndim) + other.shape
    )


def _kron(input: Array, other: Array) -> Array:
    a, b = _kron_pair(np.asarray(input), np.asarray(other))
    n = a.ndim
    # out[i0*b0 + j0, ...] = a[i0, ...] * b[j0, ...]: interleave a's and b's dims.
    prod = a.reshape(sum(((s, 1) for s in a.shape), ())) * b.reshape(
        sum(((1, s) for s in b.shape), ())
    )
    shape = tuple(x * y for x, y in zip(a.shape, b.shape, strict=True))
    return np.asarray(prod.reshape(shape) if n else prod.reshape(()), dtype=result_type(a, b))


def _kron_vjp(g: Array, out: Array, input: Array, other: Array) -> tuple[Array, Array]:
    a, b = _kron_pair(np.asarray(input), np.asarray(other))
    n = a.ndim
    gi = g.reshape(sum(((x, y) for x, y in zip(a.shape, b.shape, strict=True)), ()))
    even, odd = tuple(range(0, 2 * n, 2)), tuple(range(1, 2 * n, 2))
    bb = b.reshape(sum(((1, s) for s in b.shape), ()))
    aa = a.reshape(sum(((s, 1) for s in a.shape), ()))
    ga = np.sum(gi * bb, axis=odd).reshape(np.shape(input))
    gb = np.sum(gi * aa, axis=even).reshape(np.shape(other))
    return ga, gb


def _kron_shape(input: Shape, other: Shape) -> Shape:
    n = max(len(input), len(other))
    a = (1,) * (n - len(input)) + tuple(input)
    b = (1,) * (n - len(other)) + tuple(other)
    return tuple(x * y for x, y in zip(a, b, strict=True))


# --- linalg.cross: size 3 along dim, the other dims broadcast ---


def _cross_shape(input: Shape, other: Shape, dim: int = -1) -> Shape:
    if len(input) != len(other):
        raise ShapeError(
            f"linalg.cross: input {tuple(input)} and other {tuple(other)} must have the same "
            "number of dims"
        )
    shape = broadcast_shapes(input, other)
    d = norm_dim(dim, len(shape))
    if input[d] != 3 or other[d] != 3:
        raise ShapeError(
            f"linalg.cross: dim {dim} must have size 3 in both operands, got {input[d]} and "
            f"{other[d]}"
        )
    return shape


def _cross(a: Any, b: Any, dim: int) -> Array:
    return np.asarray(np.cross(a, b, axisa=dim, axisb=dim, axisc=dim))


# --- tensordot: dims an int (the last n of a with the first n of b) or two lists ---


def _tensordot_axes(a: Shape, b: Shape, dims: Any) -> tuple[list[int], list[int]]:
    if isinstance(dims, int) and not isinstance(dims, bool):
        if dims < 0:
            raise ShapeError(f"tensordot expects dims >= 0, got {dims}")
        if dims > min(len(a), len(b)):
            raise ShapeError(f"tensordot: dims {dims} exceeds the dims of {tuple(a)} or {tuple(b)}")
        pa, pb = list(range(len(a) - dims, len(a))), list(range(dims))
    elif isinstance(dims, list) and len(dims) == 2:
        pa, pb = ([d] if isinstance(d, int) else list(d) for d in dims)
        if len(pa) != len(pb):
            raise ShapeError(f"tensordot: both dim lists need the same length, got {dims}")
        pa = [norm_dim(d, len(a)) for d in pa]
        pb = [norm_dim(d, len(b)) for d in pb]
        if len(set(pa)) != len(pa) or len(set(pb)) != len(pb):
            raise ShapeError(f"tensordot: a dim appears twice in {dims}")
    else:
        raise ShapeError(f"tensordot: dims must be an int or two lists of ints, got {dims!r}")
    for i, j in zip(pa, pb, strict=True):
        if a[i] != b[j]:
            raise ShapeError(
                f"tensordot: contracted dims differ: {a[i]} (dim {i} of {tuple(a)}) and "
                f"{b[j]} (dim {j} of {tuple(b)})"
            )
    return pa, pb


def _tensordot_subscripts(a: Shape, b: Shape, dims: Any) -> tuple[str, str, str]:
    """einsum subscripts of a, b and the result: shared letters on the contracted dims."""
    pa, pb = _tensordot_axes(a, b, dims)
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    sa = [next(letters) for _ in a]
    sb = [next(letters) for _ in b]
    for i, j in zip(pa, pb, strict=True):
        sb[j] = sa[i]
    out = [s for i, s in enumerate(sa) if i not in pa] + [
        s for j, s in enumerate(sb) if j not in pb
    ]
    return "".join(sa), "".join(sb), "".join(out)


def _tensordot(a: Array, b: Array, dims: Any) -> Array:
    sa, sb, so = _tensordot_subscripts(np.shape(a), np.shape(b), dims)
    return np.asarray(np.einsum(f"{sa},{sb}->{so}", a, b), dtype=result_type(a, b))


def _tensordot_vjp(g: Array, out: Array, a: Array, b: Array, dims: Any) -> tuple[Array, Array]:
    sa, sb, so = _tensordot_subscripts(np.shape(a), np.shape(b), dims)
    return np.einsum(f"{so},{sb}->{sa}", g, b), np.einsum(f"{so},{sa}->{sb}", g, a)


def _tensordot_shape(a: Shape, b: Shape, dims: Any) -> Shape:
    pa, pb = _tensordot_axes(a, b, dims)
    return tuple(n for i, n in enumerate(a) if i not in pa) + tuple(
        n for j, n in enumerate(b) if j not in pb
    )


# --- diag and diag_embed ---


def _embed(x: Array, offset: int, dim1: int, dim2: int) -> Array:
    """torch.diag_embed: the last dim of ``x`` on diagonal ``offset`` of dims (dim1, dim2) of
    a result with one dim more; every other element 0."""
    x = np.asarray(x)
    nd = x.ndim + 1
    d1, d2 = norm_dim(dim1, nd), norm_dim(dim2, nd)
    k = x.shape[-1] if x.ndim else 1
    size = k + abs(offset)
    out = np.zeros((*x.shape[:-1], size, size), dtype=x.dtype)
    i = np.arange(k)
    rows, cols = (i, i + offset) if offset >= 0 else (i - offset, i)
    out[..., rows, cols] = x
    return np.moveaxis(out, (-2, -1), (d1, d2))


def _diag_embed_shape(input: Shape, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Shape:
    if not input:
        raise ShapeError("diag_embed needs at least a 1-d input, got a 0-d tensor")
    nd = len(input) + 1
    d1, d2 = norm_dim(dim1, nd), norm_dim(dim2, nd)
    if d1 == d2:
        raise ShapeError(f"diag_embed: dim1 {dim1} and dim2 {dim2} are the same dim")
    size = (input[-1] if input else 1) + abs(offset)
    rest = iter(input[:-1])
    return tuple(size if i in (d1, d2) else next(rest) for i in range(nd))


def _diag(input: Array, diagonal: int) -> Array:
    x = np.asarray(input)
    if x.ndim == 1:
        return _embed(x, diagonal, 0, 1)
    return np.asarray(np.diagonal(x, diagonal)).copy()


def _diag_vjp(g: Array, out: Array, input: Array, diagonal: int) -> tuple[Array]:
    if np.ndim(input) == 1:
        return (np.asarray(np.diagonal(g, diagonal)).copy(),)
    grad = np.zeros(np.shape(input), g.dtype)
    i = np.arange(g.shape[0])
    rows, cols = (i, i + diagonal) if diagonal >= 0 else (i - diagonal, i)
    grad[rows, cols] = g
    return (grad,)


def _diag_shape(input: Shape, diagonal: int = 0) -> Shape:
    if len(input) == 1:
        n = input[0] + abs(diagonal)
        return (n, n)
    if len(input) != 2:
        raise ShapeError(f"diag: expected a 1-d or 2-d tensor, got {len(input)}-d {tuple(input)}")
    m, n = input
    return (max(0, min(m + min(diagonal, 0), n - max(diagonal, 0))),)


# --- samples ---


def _n(rng: np.random.Generator, *shape: int) -> Array:
    return np.asarray(rng.normal(size=shape))


def _kron_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": _n(rng, 2, 3), "other": _n(rng, 3, 2)}, "(2, 3) x (3, 2)"),
        Sample({"input": _n(rng, 3), "other": _n(rng, 2, 2)}, "1-d with 2-d: padded"),
        Sample({"input": _n(rng, 2, 1, 2), "other": _n(rng, 2, 3)}, "3-d with 2-d"),
        Sample({"input": _n(rng), "other": _n(rng, 3)}, "0-d with 1-d"),
        Sample({"input": _n(rng, 2, 0), "other": _n(rng, 2, 2)}, "empty"),
        Sample({"input": rng.integers(-3, 4, (2, 2)), "other": rng.integers(-3, 4, (2,))}, "int64"),
    ]


def _cross_samples(rng: np.random.Generator) -> list[Sample]:
    # A constant first: the infinite-upstream test draws its upstream from the same seed.
    return [
        Sample(
            {"input": np.array([1.0, 2.0, 3.0]), "other": np.array([2.0, 4.0, 6.0])},
            "parallel: zero product",
        ),  # fmt: skip
        Sample({"input": _n(rng, 4, 3), "other": _n(rng, 4, 3)}, "rows"),
        Sample({"input": _n(rng, 3, 2), "other": _n(rng, 3, 2), "dim": 0}, "dim 0"),
        Sample({"input": _n(rng, 1, 3), "other": _n(rng, 5, 3)}, "broadcast"),
        Sample({"input": _n(rng, 2, 3, 4), "other": _n(rng, 2, 3, 4), "dim": -2}, "dim -2"),
        Sample({"input": _n(rng, 3), "other": _n(rng, 3)}, "1-d"),
        Sample(
            {"input": rng.integers(-3, 4, (2, 3)), "other": rng.integers(-3, 4, (2, 3))}, "int64"
        ),
    ]


def _tensordot_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"a": _n(rng, 2, 3, 4), "b": _n(rng, 3, 4, 5)}, "dims 2"),
        Sample({"a": _n(rng, 2, 3), "b": _n(rng, 3, 4), "dims": 1}, "dims 1: matmul"),
        Sample({"a": _n(rng, 2, 3), "b": _n(rng, 4, 5), "dims": 0}, "dims 0: outer"),
        Sample(
            {"a": _n(rng, 3, 4, 2), "b": _n(rng, 4, 5, 3), "dims": [[1, 0], [0, 2]]},
            "dim lists, crossed",
        ),
        Sample({"a": _n(rng, 3, 4), "b": _n(rng, 4, 3), "dims": [[-1], [0]]}, "negative dims"),
        Sample({"a": _n(rng, 2, 3), "b": _n(rng, 2, 3), "dims": 2}, "full contraction: 0-d"),
        Sample(
            {"a": rng.integers(-3, 4, (2, 3)), "b": rng.integers(-3, 4, (3, 2)), "dims": 1},
            "int64",
        ),
    ]


def _diag_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": _n(rng, 3)}, "vector -> matrix"),
        Sample({"input": _n(rng, 3), "diagonal": 2}, "vector, diagonal 2"),
        Sample({"input": _n(rng, 2), "diagonal": -1}, "vector, diagonal -1"),
        Sample({"input": _n(rng, 3, 4)}, "matrix -> vector"),
        Sample({"input": _n(rng, 3, 4), "diagonal": 1}, "wide, diagonal 1"),
        Sample({"input": _n(rng, 4, 3), "diagonal": -2}, "tall, diagonal -2"),
        Sample({"input": _n(rng, 2, 3), "diagonal": 5}, "past the corner: empty"),
        Sample({"input": _n(rng, 1)}, "1-element vector"),
        Sample({"input": rng.integers(-3, 4, (3, 3))}, "int64"),
    ]


def _diag_embed_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": _n(rng, 2, 3)}, "batch of vectors"),
        Sample({"input": _n(rng, 2, 3), "offset": 1}, "offset 1"),
        Sample({"input": _n(rng, 2, 3), "offset": -2, "dim1": 0, "dim2": 2}, "offset -2, dims 0 2"),
        Sample({"input": _n(rng, 2, 3), "dim1": -1, "dim2": 0}, "dim1 after dim2"),
        Sample({"input": _n(rng, 4)}, "one vector"),
        Sample({"input": _n(rng, 2, 2, 3), "offset": 1, "dim1": 1, "dim2": -1}, "3-d"),
        Sample({"input": rng.integers(-3, 4, (2, 2))}, "int64"),
    ]


OPS: list[Op] = [
    Op(
        name="kron",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("other", "tensor")),
        forward=_kron,
        vjp=_kron_vjp,
        torch=lambda t, input, other: t.kron(input, other),
        shape=_kron_shape,
        samples=_kron_samples,
        note="the operand of fewer dims gets leading 1s; each gradient sums the upstream "
        "times the other operand over the other's blocks",
    ),
    Op(
        name="cross",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("other", "tensor"), Param("dim", "int", -1)),
        forward=lambda input, other, dim: np.asarray(
            _cross(input, other, dim), dtype=result_type(input, other)
        ),
        vjp=lambda g, out, input, other, dim: (_cross(other, g, dim), _cross(g, input, dim)),
        torch=lambda t, input, other, dim: t.linalg.cross(input, other, dim=dim),
        shape=_cross_shape,
        samples=_cross_samples,
        note="torch.linalg.cross (dim=-1; torch.cross's default dim=None is the first dim of "
        "size 3, so it is not this op's spelling): gradients other x g and g x input, the "
        "other dims broadcast",
    ),
    Op(
        name="tensordot",
        family=FAMILY,
        params=(Param("a", "tensor"), Param("b", "tensor"), Param("dims", "axes", 2)),
        forward=_tensordot,
        vjp=_tensordot_vjp,
        torch=lambda t, a, b, dims: t.tensordot(a, b, dims=dims),
        shape=_tensordot_shape,
        samples=_tensordot_samples,
        note="dims n contracts the last n dims of a with the first n of b; dims [da, db] "
        "contracts da[i] of a with db[i] of b (negative dims allowed); each gradient is the "
        "upstream contracted with the other operand",
    ),
    Op(
        name="diag",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("diagonal", "int", 0)),
        forward=_diag,
        vjp=_diag_vjp,
        torch=lambda t, input, diagonal: t.diag(input, diagonal),
        shape=_diag_shape,
        samples=_diag_samples,
        note="a vector becomes a square matrix with it on diagonal k (gradient: that diagonal "
        "of the upstream); a matrix gives its diagonal k (gradient: the upstream on that "
        "diagonal, 0 elsewhere)",
    ),
    Op(
        name="diag_embed",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("offset", "int", 0),
            Param("dim1", "int", -2),
            Param("dim2", "int", -1),
        ),
        forward=lambda input, offset, dim1, dim2: _embed(input, offset, dim1, dim2),
        vjp=lambda g, out, input, offset, dim1, dim2: (
            np.asarray(
                np.diagonal(g, offset, norm_dim(dim1, g.ndim), norm_dim(dim2, g.ndim))
            ).copy(),
        ),  # fmt: skip
        torch=lambda t, input, offset, dim1, dim2: t.diag_embed(input, offset, dim1, dim2),
        shape=_diag_embed_shape,
        samples=_diag_embed_samples,
        note="the last dim on diagonal offset of dims (dim1, dim2) of the result (counted in "
        "the result's dims); the gradient is that diagonal of the upstream",
    ),
]
