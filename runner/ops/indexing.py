"""Ops that write into a tensor at given places, or read from it at integer indices (the indexing
family): masked_fill, the scatters, the index_* ops, take and take_along_dim. Each forward copies
the input and writes (or adds) the source at the places; each VJP reads the upstream back at those
places, as torch's derivatives.yaml does, so a source element that torch overwrites (a duplicated
index of scatter or index_copy) still gets the gradient of the place it was written to.

Index operands are integer tensors (`Param(..., grad=False, integer=True)`); torch refuses an index
out of range, and a negative one except where it wraps (index_fill, take, take_along_dim)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.indexing_subscript import INDEX
from runner.ops.shape_rearrange import randn
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

FAMILY = "indexing"
Index = tuple[Any, ...]


def _i(values: Any) -> Array:
    return np.asarray(values, dtype=np.int64)


def _dtype(input: Any) -> Any:
    return np.result_type(input)


def _1d(x: Any) -> Array:
    """A 0-d operand acts as 1-d of size 1 (torch's scatter, gather and index_* ops)."""
    return np.reshape(np.asarray(x), np.shape(x) or (1,))


def _checked(index: Any, n: int, what: str, *, wraps: bool = False) -> Array:
    """``index`` as int64 in [0, n): torch refuses an index outside [0, n) (outside [-n, n) and
    wraps a negative one where ``wraps``), where numpy would wrap or raise IndexError."""
    idx: Array = np.asarray(index)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ShapeError(f"{what}: index must be an integer tensor, got {idx.dtype}")
    low = -n if wraps else 0
    bad = idx[(idx < low) | (idx >= n)]
    if bad.size:
        raise ShapeError(
            f"{what}: index {bad.flat[0]} is out of range for a dim of size {n} "
            f"(expected {low} to {n - 1})"
        )
    return np.where(idx < 0, idx + n, idx).astype(np.int64)


def _value(value: Any, what: str) -> None:
    if np.ndim(value) != 0:
        raise ShapeError(
            f"{what}: value must be a number or a 0-d tensor, got shape {np.shape(value)}"
        )


# --- masked_fill ---


def _masked_fill(input: Any, mask: Any, value: Any) -> Array:
    shape = broadcast_shapes(np.shape(input), np.shape(mask))
    _value(value, "masked_fill")
    return np.where(np.broadcast_to(mask, shape), np.asarray(value), input).astype(_dtype(input))


def _masked_fill_vjp(g: Array, out: Array, input: Any, mask: Any, value: Any) -> tuple[Any, ...]:
    m = np.broadcast_to(np.asarray(mask, bool), g.shape)
    return np.where(m, 0, g), None, np.sum(np.where(m, g, 0))


def _masked_fill_shape(input: Shape, mask: Shape, value: Shape) -> Shape:
    _value(np.empty(value), "masked_fill")
    return broadcast_shapes(input, mask)


# --- scatter, scatter_add: elementwise along dim, as gather ---


def _scatter_shape(input: Shape, dim: int, index: Shape, src: Shape, *, op: str) -> Shape:
    """torch's scatter_gather_dtype_check and shape check: one rank for all three (0-d as 1-d),
    index no larger than src anywhere, nor than input apart from ``dim``."""
    norm_dim(dim, len(input))
    if math.prod(index) == 0:
        return tuple(input)
    inp, idx = tuple(input) or (1,), tuple(index) or (1,)
    if len(idx) != len(inp):
        raise ShapeError(
            f"{op}: index of shape {tuple(index)} and input of shape {tuple(input)} differ in rank"
        )
    d = norm_dim(dim, len(inp))
    source = (tuple(src) or (1,)) if src else None
    if source is not None and len(source) != len(idx):
        raise ShapeError(
            f"{op}: index of shape {tuple(index)} and src of shape {tuple(src)} differ in rank"
        )
    for k, i in enumerate(idx):
        if k != d and i > inp[k]:
            raise ShapeError(
                f"{op}: index size {i} exceeds the input's size {inp[k]} at dim {k} "
                f"(index {tuple(index)}, input {tuple(input)})"
            )
        if source is not None and i > source[k]:
            raise ShapeError(
                f"{op}: index size {i} exceeds src's size {source[k]} at dim {k} "
                f"(index {tuple(index)}, src {tuple(src)})"
            )
    return tuple(input)


def _scatter_at(input: Any, dim: int, index: Any, op: str) -> tuple[Index, Index]:
    """(places in the 1-d-at-least input, places in src): index[i][j] names input[index[i][j]][j]
    for dim 0, read from src[i][j]."""
    idx = _1d(index)
    d = norm_dim(dim, np.ndim(input))
    grid = list(np.ix_(*(np.arange(n) for n in idx.shape)))
    read = tuple(grid)
    grid[d] = _checked(idx, _1d(input).shape[d], op)
    return tuple(grid), read


def _source(src: Any, index: Any) -> Array:
    """The src elements read, at the index's shape (a number broadcast)."""
    if np.ndim(src) == 0 and not isinstance(src, np.ndarray):
        return np.full(_1d(index).shape, src)
    return _1d(src)[tuple(slice(0, n) for n in _1d(index).shape)]


def _scatter_forward(add: bool) -> Callable[..., Array]:
    op = "scatter_add" if add else "scatter"

    def forward(input: Any, dim: int, index: Any, src: Any) -> Array:
        out = _1d(np.array(input, dtype=_dtype(input)))
        if np.size(index):
            at, _ = _scatter_at(input, dim, index, op)
            if add:
                np.add.at(out, at, _source(src, index))
            else:
                # numpy assigns in order, so a duplicated index keeps the last element written,
                # as torch's CPU kernel does
                out[at] = _source(src, index)
        return out.reshape(np.shape(input))

    return forward


def _scatter_vjp(add: bool) -> Callable[..., tuple[Any, ...]]:
    op = "scatter_add" if add else "scatter"

    def vjp(g: Array, out: Array, input: Any, dim: int, index: Any, src: Any) -> tuple[Any, ...]:
        gi = _1d(np.array(g))
        gs = np.zeros(np.shape(src) or (1,), g.dtype)
        if np.size(index):
            at, read = _scatter_at(input, dim, index, op)
            if np.ndim(src) == 0 and np.ndim(index) > 0:
                gs[0] = np.sum(gi[at])  # a number broadcast (torch: no gradient, the value)
            else:
                gs[read] = gi[at]  # src: grad.gather(dim, index), every duplicate included
            if not add:
                gi[at] = 0  # self: grad.scatter(dim, index, 0)
        return gi.reshape(np.shape(input)), None, gs.reshape(np.shape(src))

    return vjp


def _scatter_torch(t: Any, input: Any, dim: int, index: Any, src: Any) -> Any:
    """A 0-d src beside an index that is not 0-d is a number (the torch side makes literal
    numbers 0-d tensors): torch's value overload."""
    if src.ndim == 0 and index.ndim > 0 and not src.requires_grad:
        return t.scatter(input, dim, index, src.item())
    return t.scatter(input, dim, index, src)


# --- index_add, index_copy, index_fill: whole slices along dim ---


def _index_shape(input: Shape, dim: int, index: Shape, source: Shape | None, op: str) -> Shape:
    d = norm_dim(dim, len(input))
    if len(index) > 1:
        raise ShapeError(f"{op}: index of shape {tuple(index)} is not 0-d or 1-d")
    if source is None:
        return tuple(input)
    inp, src = tuple(input) or (1,), tuple(source) or (1,)
    if len(src) != len(inp):
        raise ShapeError(
            f"{op}: source of shape {tuple(source)} and input of shape {tuple(input)} differ "
            f"in rank"
        )
    want = (*inp[:d], math.prod(index), *inp[d + 1 :])
    if src != want:
        raise ShapeError(
            f"{op}: source of shape {tuple(source)} should be {want}: the input's shape "
            f"{tuple(input)} with dim {dim} the index's length {math.prod(index)}"
        )
    return tuple(input)


def _slices(input: Any, dim: int, index: Any, op: str, *, wraps: bool = False) -> Index:
    d = norm_dim(dim, np.ndim(input))
    n = _1d(input).shape[d]
    return (slice(None),) * d + (_checked(np.reshape(index, -1), n, op, wraps=wraps),)


def _index_add(input: Any, dim: int, index: Any, source: Any, alpha: float) -> Array:
    out = _1d(np.array(input, dtype=_dtype(input)))
    np.add.at(out, _slices(input, dim, index, "index_add"), alpha * _1d(source))
    return out.reshape(np.shape(input))


def _index_add_vjp(
    g: Array, out: Array, input: Any, dim: int, index: Any, source: Any, alpha: float
) -> tuple[Any, ...]:
    picked = _1d(g)[_slices(input, dim, index, "index_add")]
    return g, None, (alpha * picked).reshape(np.shape(source))


def _index_copy(input: Any, dim: int, index: Any, source: Any) -> Array:
    out = _1d(np.array(input, dtype=_dtype(input)))
    out[_slices(input, dim, index, "index_copy")] = _1d(source)  # the last duplicate wins
    return out.reshape(np.shape(input))


def _index_copy_vjp(
    g: Array, out: Array, input: Any, dim: int, index: Any, source: Any
) -> tuple[Any, ...]:
    at = _slices(input, dim, index, "index_copy")
    gi = _1d(np.array(g))
    picked = gi[at].reshape(np.shape(source))  # source: grad.index_select(dim, index)
    gi[at] = 0  # self: grad.index_fill(dim, index, 0)
    return gi.reshape(np.shape(input)), None, picked


def _index_fill(input: Any, dim: int, index: Any, value: Any) -> Array:
    _value(value, "index_fill")
    out = _1d(np.array(input, dtype=_dtype(input)))
    out[_slices(input, dim, index, "index_fill", wraps=True)] = value
    return out.reshape(np.shape(input))


def _index_fill_shape(input: Shape, dim: int, index: Shape, value: Shape) -> Shape:
    _value(np.empty(value), "index_fill")
    return _index_shape(input, dim, index, None, "index_fill")


def _index_fill_vjp(
    g: Array, out: Array, input: Any, dim: int, index: Any, value: Any
) -> tuple[Any, ...]:
    at = _slices(input, dim, index, "index_fill", wraps=True)
    gi = _1d(np.array(g))
    gv = np.sum(gi[(*at[:-1], np.unique(at[-1]))])  # grad.index_select(dim, unique(index)).sum()
    gi[at] = 0
    return gi.reshape(np.shape(input)), None, gv


# --- take, take_along_dim: read at integer indices, accumulate in the VJP ---


def _take_at(input: Any, index: Any) -> Array:
    return _checked(index, int(np.size(input)), "take", wraps=True)


def _take_vjp(g: Array, out: Array, input: Any, index: Any) -> tuple[Any, ...]:
    z = np.zeros(np.size(input), g.dtype)
    np.add.at(z, _take_at(input, index), g)
    return z.reshape(np.shape(input)), None


def _along_shapes(input: Shape, indices: Shape, dim: int | None) -> tuple[Shape, Shape]:
    """(the input's broadcast shape, the output's shape); dim None reads the flattened input."""
    if dim is None:
        return (math.prod(input),), (math.prod(indices),)
    if len(input) != len(indices):
        raise ShapeError(
            f"take_along_dim: input of shape {tuple(input)} and indices of shape "
            f"{tuple(indices)} differ in rank"
        )
    if not input:
        raise ShapeError("take_along_dim: dim must be None for 0-d input")
    d = norm_dim(dim, len(input))
    out = broadcast_shapes(
        tuple(indices), tuple(n if k != d else indices[d] for k, n in enumerate(input))
    )
    return tuple(n if k != d else input[d] for k, n in enumerate(out)), out


def _along_at(input: Any, indices: Any, dim: int | None) -> tuple[Shape, Index]:
    """The input's broadcast shape and the fancy index into it."""
    wide, out = _along_shapes(np.shape(input), np.shape(indices), dim)
    d = 0 if dim is None else norm_dim(dim, len(wide))
    idx = np.broadcast_to(np.reshape(indices, -1) if dim is None else indices, out)
    grid = list(np.ix_(*(np.arange(n) for n in out)))
    # torch wraps a negative index along a dim, but refuses one in the flattened input
    grid[d] = _checked(idx, wide[d], "take_along_dim", wraps=dim is not None)
    return wide, tuple(grid)


def _take_along_dim(input: Any, indices: Any, dim: int | None) -> Array:
    wide, at = _along_at(input, indices, dim)
    x = np.broadcast_to(np.reshape(input, -1) if dim is None else input, wide)
    return np.array(x[at], dtype=_dtype(input))


def _take_along_dim_vjp(
    g: Array, out: Array, input: Any, indices: Any, dim: int | None
) -> tuple[Any, ...]:
    wide, at = _along_at(input, indices, dim)
    z = np.zeros(wide, g.dtype)
    np.add.at(z, at, g)
    # the engine sums the broadcast dims back; the flattened case is reshaped here
    return (z.reshape(np.shape(input)) if dim is None else z), None


def written(input: Any, dim: int, index: Any, **_: Any) -> Array | None:
    """The flat places of the input that scatter or index_copy write, one per source element
    or slice (None when the index is out of range); read by runner/ops/kinks.py."""
    try:
        if "source" in _:
            picked: Array = _slices(input, dim, index, "index_copy")[-1]
            return picked
        at, _read = _scatter_at(input, dim, index, "scatter")
    except ShapeError:
        return None
    flat: Array = np.ravel_multi_index(np.broadcast_arrays(*at), _1d(input).shape).reshape(-1)
    return flat


# --- samples ---

DUP = _i([1, 1, 1, 3, 3, 0])


def _masked_fill_samples(rng: np.random.Generator) -> list[Sample]:
    m = np.array([[True, False, True], [False, False, True]])
    return [
        Sample({"input": randn(rng, 2, 3), "mask": m, "value": np.asarray(0.5)}, "tensor value"),
        Sample({"input": randn(rng, 3), "mask": m, "value": -2.0}, "mask broadcasts input"),
        Sample({"input": randn(rng, 2, 3), "mask": m[0], "value": randn(rng)}, "row mask"),
        Sample({"input": randn(rng), "mask": np.asarray(True), "value": randn(rng)}, "0-d"),
        Sample({"input": randn(rng, 2, 3), "mask": ~m | m, "value": randn(rng)}, "all filled"),
    ]


def _scatter_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(
            {"input": randn(rng, 5), "dim": 0, "index": DUP, "src": randn(rng, 6)},
            "duplicated indices: every src element gets its place's gradient",
        ),
        Sample(
            {
                "input": randn(rng, 3, 4),
                "dim": 0,
                "index": _i([[0, 2, 1], [2, 2, 0]]),
                "src": randn(rng, 2, 3),
            },
            "dim 0, index narrower than input",
        ),  # fmt: skip
        Sample(
            {
                "input": randn(rng, 2, 4),
                "dim": -1,
                "index": _i([[3, 0], [1, 1]]),
                "src": randn(rng, 2, 2),
            },
            "dim -1",
        ),  # fmt: skip
        Sample({"input": randn(rng), "dim": 0, "index": _i(0), "src": randn(rng)}, "0-d"),
        Sample({"input": randn(rng, 3), "dim": 0, "index": _i(2), "src": randn(rng)}, "0-d src"),
        Sample(
            {
                "input": randn(rng, 2, 3),
                "dim": 1,
                "index": _i(np.zeros((2, 0))),
                "src": randn(rng, 2, 0),
            },
            "empty index",
        ),  # fmt: skip
    ]


def _scatter_value_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        *_scatter_samples(rng),
        Sample(
            {"input": randn(rng, 2, 3), "dim": 1, "index": _i([[2], [0]]), "src": 1.5}, "a number"
        ),  # fmt: skip
    ]


def _index_samples(source: bool) -> Callable[[np.random.Generator], list[Sample]]:
    def samples(rng: np.random.Generator) -> list[Sample]:
        def extra(*shape: int) -> dict[str, Any]:
            return {"source": randn(rng, *shape)} if source else {"value": randn(rng)}

        return [
            Sample(
                {"input": randn(rng, 3, 4), "dim": 0, "index": _i([2, 0]), **extra(2, 4)}, "rows"
            ),  # fmt: skip
            Sample(
                {"input": randn(rng, 3, 4), "dim": -1, "index": _i([1, 1, 3]), **extra(3, 3)},
                "a duplicated column",
            ),  # fmt: skip
            Sample(
                {"input": randn(rng, 2, 3), "dim": 1, "index": _i(2), **extra(2, 1)}, "0-d index"
            ),  # fmt: skip
            Sample({"input": randn(rng), "dim": 0, "index": _i([0]), **extra()}, "0-d input"),
            Sample(
                {"input": randn(rng, 2, 3), "dim": 0, "index": _i([]), **extra(0, 3)}, "empty index"
            ),  # fmt: skip
        ]

    return samples


def _index_fill_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        *_index_samples(False)(rng),
        Sample(
            {"input": randn(rng, 2, 3), "dim": 1, "index": _i([-1, 0]), "value": 0.25},
            "negative index wraps (value a number)",
        ),  # fmt: skip
    ]


def _take_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": randn(rng, 2, 3), "index": _i([[5, 0], [5, -1]])}, "repeats, -1"),
        Sample({"input": randn(rng, 4), "index": _i(-4)}, "0-d index"),
        Sample({"input": randn(rng), "index": _i([0, 0, -1])}, "0-d input"),
        Sample({"input": randn(rng, 2, 2), "index": _i([])}, "empty index"),
    ]


def _take_along_dim_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": randn(rng, 2, 3), "indices": _i([[2, 2], [-1, 0]]), "dim": 1}, "rows"),
        Sample({"input": randn(rng, 2, 3), "indices": _i([[0, 2]]), "dim": 1}, "indices broadcast"),
        Sample({"input": randn(rng, 1, 3), "indices": _i([[0], [2]]), "dim": 1}, "input broadcast"),
        Sample({"input": randn(rng, 3, 2), "indices": _i([[2], [0], [-3]]), "dim": -2}, "dim -2"),
        Sample({"input": randn(rng, 2, 3), "indices": _i([5, 0, 5])}, "dim None: flattened"),
        Sample({"input": randn(rng), "indices": _i([0, 0])}, "0-d input, dim None"),
    ]


def _op(name: str, params: list[Param], forward: Any, vjp: Any, torch: Any, shape: Any,
        samples: Any, note: str) -> Op:  # fmt: skip
    return Op(name=name, family=FAMILY, params=tuple(params), forward=forward, vjp=vjp,
              torch=torch, shape=shape, samples=samples, note=note)  # fmt: skip


def _index(name: str = "index") -> Param:
    return Param(name, "tensor", grad=False, integer=True)


OPS: list[Op] = [
    _op(
        "masked_fill",
        [
            Param("input", "tensor"),
            Param("mask", "tensor", grad=False),
            Param("value", "tensor", number=True),
        ],
        _masked_fill,
        _masked_fill_vjp,
        lambda t, input, mask, value: t.masked_fill(input, mask, value),
        _masked_fill_shape,
        _masked_fill_samples,
        "input where mask is False, value where True (mask bool, broadcast with input; value a "
        "number or 0-d); input's gradient is 0 where filled, value's the sum of the upstream there",
    ),
    _op(
        "scatter",
        [
            Param("input", "tensor"),
            Param("dim", "int"),
            _index(),
            Param("src", "tensor", number=True),
        ],
        _scatter_forward(add=False),
        _scatter_vjp(add=False),
        _scatter_torch,
        lambda input, dim, index, src: _scatter_shape(input, dim, index, src, op="scatter"),
        _scatter_value_samples,
        "input with src[i][j] written at input[index[i][j]][j] (dim 0); a duplicated index keeps "
        "the last element written (torch's CPU kernel), but every src element gets the upstream "
        "of the place it was written to, the overwritten ones included (src: "
        "grad.gather(dim, index)); input's gradient is 0 at the written places. src a number is "
        "the value overload. torch refuses the backward when src is larger than index",
    ),
    _op(
        "scatter_add",
        [Param("input", "tensor"), Param("dim", "int"), _index(), Param("src", "tensor")],
        _scatter_forward(add=True),
        _scatter_vjp(add=True),
        lambda t, input, dim, index, src: t.scatter_add(input, dim, index, src),
        lambda input, dim, index, src: _scatter_shape(input, dim, index, src, op="scatter_add"),
        _scatter_samples,
        "input plus src[i][j] added at input[index[i][j]][j] (dim 0), duplicates accumulating; "
        "src's gradient is grad.gather(dim, index); torch refuses the backward when src is "
        "larger than index",
    ),
    _op(
        "index_add",
        [
            Param("input", "tensor"),
            Param("dim", "int"),
            _index(),
            Param("source", "tensor"),
            Param("alpha", "float", 1, kw_only=True),
        ],
        _index_add,
        _index_add_vjp,
        lambda t, input, dim, index, source, alpha: t.index_add(
            input, dim, index, source, alpha=alpha
        ),
        lambda input, dim, index, source, alpha: _index_shape(
            input, dim, index, source, "index_add"
        ),
        _index_samples(True),
        "alpha * source's slices added at the index's places along dim, duplicates "
        "accumulating; source's gradient is alpha * grad.index_select(dim, index)",
    ),
    _op(
        "index_copy",
        [Param("input", "tensor"), Param("dim", "int"), _index(), Param("source", "tensor")],
        _index_copy,
        _index_copy_vjp,
        lambda t, input, dim, index, source: t.index_copy(input, dim, index, source),
        lambda input, dim, index, source: _index_shape(input, dim, index, source, "index_copy"),
        _index_samples(True),
        "source's slices written at the index's places along dim; a duplicated index keeps the "
        "last slice (torch's CPU kernel), but every slice gets its place's upstream "
        "(grad.index_select); input's gradient is 0 at the written places",
    ),
    _op(
        "index_fill",
        [
            Param("input", "tensor"),
            Param("dim", "int"),
            _index(),
            Param("value", "tensor", number=True),
        ],
        _index_fill,
        _index_fill_vjp,
        lambda t, input, dim, index, value: t.index_fill(input, dim, index, value),
        _index_fill_shape,
        _index_fill_samples,
        "value written at the index's places along dim (a negative index wraps); value's "
        "gradient sums the upstream over the distinct places (a duplicated index counts once); "
        "torch's backward refuses a negative index when value requires grad",
    ),
    _op(
        "take",
        [Param("input", "tensor"), _index()],
        lambda input, index: np.array(np.reshape(input, -1)[_take_at(input, index)]).reshape(
            np.shape(index)
        ),
        _take_vjp,
        lambda t, input, index: t.take(input, index),
        lambda input, index: tuple(index),
        _take_samples,
        "the flattened input read at the index (a negative index wraps); repeated indices "
        "accumulate their gradients (put with accumulate)",
    ),
    _op(
        "take_along_dim",
        [Param("input", "tensor"), _index("indices"), Param("dim", "int?", None)],
        _take_along_dim,
        _take_along_dim_vjp,
        lambda t, input, indices, dim: t.take_along_dim(input, indices, dim),
        lambda input, indices, dim: _along_shapes(input, indices, dim)[1],
        _take_along_dim_samples,
        "gather along dim after broadcasting input and indices in the other dims (dim None: "
        "the flattened input); a negative index wraps along a dim, but torch refuses one with "
        "dim None; repeats accumulate",
    ),
    INDEX,  # a subscript with integer tensors (runner/ops/indexing_subscript.py)
]
