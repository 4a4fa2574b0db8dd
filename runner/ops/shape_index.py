"""Shape ops that pick elements: subscripts (getitem), select, narrow, diagonal, gather and
index_select. Each VJP writes the upstream into zeros of the input's shape at the places the
forward read, adding where an index repeats. The rows are part of the shape family
(`runner.ops.shape` collects them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.shape_rearrange import FAMILY, randn, samples_of, view_of
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, norm_dim

Index = tuple[Any, ...]


def _scatter(input: Any, g: Array, where: Index) -> Array:
    """Zeros of the input's shape with ``g`` written at a basic index (no element twice)."""
    z = np.zeros(np.shape(input), g.dtype)
    z[where] = g
    return z


def _at_least_1d(x: Any) -> Array:
    """gather and index_select treat a 0-d operand as 1-d of size 1."""
    return np.reshape(x, np.shape(x) or (1,))


def _in_range(index: Any, n: int, what: str) -> Array:
    """torch refuses negative indices here, where numpy would wrap them."""
    idx: Array = np.asarray(index)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ShapeError(f"{what}: index must be an integer tensor, got {idx.dtype}")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise ShapeError(f"{what}: index {bad.flat[0]} is out of range for a dim of size {n}")
    return idx


# --- subscripts ---


def _index(index: Any) -> Index:
    """A subscript checked for what torch refuses and numpy would take (negative steps)."""
    items: Index = index if isinstance(index, tuple) else (index,)
    for item in items:
        if isinstance(item, bool) or not (
            item is None or item is Ellipsis or isinstance(item, (int, slice))
        ):
            raise ShapeError(
                f"subscript item {item!r}: only ints, slices, None and ... are "
                f"supported (basic indexing)"
            )
        if isinstance(item, slice) and item.step is not None and item.step <= 0:
            raise ShapeError(f"subscript {_show(item)}: step must be greater than zero")
    # torch takes several (each skips the dims left unnamed), numpy refuses: keep one
    if sum(item is Ellipsis for item in items) > 1:
        raise ShapeError("a subscript can hold only one ellipsis (...)")
    return items


def _show(item: slice) -> str:
    parts = ["" if v is None else str(v) for v in (item.start, item.stop, item.step)]
    return ":".join(parts if item.step is not None else parts[:2])


def _getitem_shape(input: Shape, index: Any) -> Shape:
    try:
        return tuple(view_of(input)[_index(index)].shape)
    except IndexError as exc:
        raise ShapeError(f"subscript of a tensor of shape {tuple(input)}: {exc}") from None


# --- select, narrow, diagonal ---


def _select_at(input: Shape, dim: int, index: int) -> Index:
    if not input:
        raise ShapeError("select cannot be applied to a 0-d tensor")
    d = norm_dim(dim, len(input))
    if not -input[d] <= index < input[d]:
        raise ShapeError(
            f"select: index {index} is out of range for dim {dim} of size "
            f"{input[d]} (expected {-input[d]} to {input[d] - 1})"
        )
    return (slice(None),) * d + (index,)


def _narrow_at(input: Shape, dim: int, start: int, length: int) -> Index:
    if not input:
        raise ShapeError("narrow cannot be applied to a 0-d tensor")
    d = norm_dim(dim, len(input))
    n = input[d]
    if not -n <= start <= n:
        raise ShapeError(
            f"narrow: start {start} is out of range for dim {dim} of size {n} "
            f"(expected {-n} to {n})"
        )
    start = start + n if start < 0 else start
    if length < 0 or start + length > n:
        raise ShapeError(f"narrow: start {start} + length {length} exceeds dim {dim} of size {n}")
    return (slice(None),) * d + (slice(start, start + length),)


def _picked(at: Callable[..., Index]) -> Callable[..., Shape]:
    """The shape rule of an op that reads ``input[at(input, ...)]``."""
    return lambda input, **kw: _getitem_shape(input, at(input, **kw))


def _diagonal(input: Shape, offset: int, dim1: int, dim2: int) -> tuple[int, int, int]:
    """(dim1, dim2, length of the diagonal)."""
    if len(input) < 2:
        raise ShapeError(f"diagonal needs at least 2 dims, got a {len(input)}-d tensor")
    a, b = norm_dim(dim1, len(input)), norm_dim(dim2, len(input))
    if a == b:
        raise ShapeError(f"diagonal: dim1 {dim1} and dim2 {dim2} are the same dim")
    n = min(input[a], input[b] - offset) if offset >= 0 else min(input[a] + offset, input[b])
    return a, b, max(n, 0)


def _diagonal_shape(input: Shape, offset: int, dim1: int, dim2: int) -> Shape:
    a, b, n = _diagonal(input, offset, dim1, dim2)
    return (*(s for k, s in enumerate(input) if k not in (a, b)), n)


def _diagonal_vjp(g: Array, input: Any, offset: int, dim1: int, dim2: int) -> Array:
    a, b, n = _diagonal(np.shape(input), offset, dim1, dim2)
    z = np.zeros(np.shape(input), g.dtype)
    k = np.arange(n)
    np.moveaxis(z, (a, b), (-2, -1))[..., k + max(-offset, 0), k + max(offset, 0)] = g
    return z


# --- gathers ---


def _gather_shape(input: Shape, dim: int, index: Shape) -> Shape:
    d = norm_dim(dim, len(input))
    if math.prod(index) == 0:  # torch checks nothing more for an empty index
        return tuple(index)
    inp: Shape = tuple(input) or (1,)
    idx: Shape = tuple(index) or (1,)
    if len(inp) != len(idx):
        raise ShapeError(
            f"gather: index of shape {tuple(index)} and input of shape "
            f"{tuple(input)} differ in rank"
        )
    if inp[d] == 0:
        raise ShapeError(f"gather: no index is in range for dim {dim} of size 0")
    for k, (i, n) in enumerate(zip(idx, inp, strict=True)):
        if k != d and i > n:
            raise ShapeError(
                f"gather: index size {i} exceeds the input's size {n} at dim {k} "
                f"(index {tuple(index)}, input {tuple(input)})"
            )
    return tuple(index)


def _gather_at(input: Any, dim: int, index: Any) -> Index:
    """The fancy index into the (at least 1-d) input that gather reads."""
    idx = _at_least_1d(index)
    d = norm_dim(dim, np.ndim(input))
    grid = list(np.ix_(*(np.arange(n) for n in idx.shape)))
    grid[d] = _in_range(idx, _at_least_1d(input).shape[d], "gather")
    return tuple(grid)


def _index_select_shape(input: Shape, dim: int, index: Shape) -> Shape:
    d = norm_dim(dim, len(input))
    count = math.prod(index)
    if len(index) > 1:
        raise ShapeError(f"index_select: index of shape {tuple(index)} is not 0-d or 1-d")
    if not input:
        if count != 1:
            raise ShapeError(f"index_select of a 0-d tensor takes 1 index, got {count}")
        return ()
    if input[d] == 0 and count:
        raise ShapeError(f"index_select: no index is in range for dim {dim} of size 0")
    return (*input[:d], count, *input[d + 1 :])


def _index_select_at(input: Any, dim: int, index: Any) -> Index:
    d = norm_dim(dim, np.ndim(input))
    n = _at_least_1d(input).shape[d]
    return (slice(None),) * d + (_in_range(np.reshape(index, -1), n, "index_select"),)


def _take(at: Callable[..., Index], out: Callable[..., Shape]) -> Callable[..., Array]:
    """The forward of gather and index_select: read ``input[at(...)]``, shaped ``out(...)``."""

    def forward(input: Any, dim: int, index: Any) -> Array:
        shape = out(np.shape(input), dim, np.shape(index))
        if not np.size(index):
            return np.zeros(shape, np.result_type(input))
        return np.reshape(_at_least_1d(input)[at(input, dim, index)], shape)

    return forward


def _put(at: Callable[..., Index]) -> Callable[..., tuple[Array, None]]:
    """Their VJP: add the upstream into zeros at the places read; repeats accumulate."""

    def vjp(g: Array, out: Array, input: Any, dim: int, index: Any) -> tuple[Array, None]:
        z = _at_least_1d(np.zeros(np.shape(input), g.dtype))
        if np.size(index):
            where = at(input, dim, index)
            np.add.at(z, where, g.reshape(z[where].shape))
        return z.reshape(np.shape(input)), None

    return vjp


# --- samples ---


def _i(values: Any) -> Array:
    return np.asarray(values, dtype=np.int64)


E, S = Ellipsis, slice
ROWS = _i([[0, 0, 2], [1, 1, 1]])


def _gather_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": randn(rng, 2, 3), "dim": 1, "index": ROWS}, "repeated indices add up"),
        Sample({"input": randn(rng, 3, 4), "dim": 0, "index": ROWS}, "index smaller than input"),
        Sample(
            {"input": randn(rng, 2, 3), "dim": -1, "index": _i([[1, 1, 1, 1]])},
            "dim -1, index wider on the gathered dim",
        ),
        Sample({"input": randn(rng), "dim": 0, "index": _i([0, 0])}, "0-d input"),
        Sample({"input": randn(rng, 3), "dim": 0, "index": _i(2)}, "0-d index"),
    ]


def _index_select_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": randn(rng, 2, 3), "dim": 1, "index": _i([2, 0, 2, 2])}, "repeats"),
        Sample({"input": randn(rng, 3, 2), "dim": -2, "index": _i([1])}, "dim -2"),
        Sample({"input": randn(rng, 2, 3), "dim": 1, "index": _i(1)}, "0-d index keeps the dim"),
        Sample({"input": randn(rng), "dim": 0, "index": _i([0])}, "0-d input"),
        Sample({"input": randn(rng, 2, 3), "dim": 0, "index": _i([])}, "empty index"),
    ]


OPS: list[Op] = [
    # --- subscripts ---
    Op(
        name="getitem",
        family=FAMILY,
        hidden=True,
        by_name=False,
        params=(Param("input", "tensor"), Param("index", "index")),
        forward=lambda input, index: np.array(np.asarray(input)[_index(index)]),
        vjp=lambda g, out, input, index: (_scatter(input, g, _index(index)),),
        torch=lambda t, input, index: input[index],
        shape=_getitem_shape,
        samples=samples_of(
            ((4, 5), {"index": (S(1, None), S(None, None, 2))}),
            ((4, 5), {"index": (0,)}),
            ((2, 3, 4), {"index": (E, 1)}),
            ((2, 3), {"index": (None,)}),
            ((4, 5), {"index": (-1,)}),
            ((2, 3, 4), {"index": (1, None, S(-2, None), E, None)}),
            ((), {"index": (None, E)}),
            ((3, 4), {"index": (S(-10, 10, 3), 2)}),
            ((3, 4), {"index": (S(2, 1),)}),
            ((), {"index": ()}),
        ),
        note="basic indexing only: ints, slices with positive steps, None and one ellipsis",
    ),
    Op(
        name="select",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim", "int"), Param("index", "int")),
        forward=lambda input, dim, index: np.array(
            np.asarray(input)[_select_at(np.shape(input), dim, index)]
        ),
        vjp=lambda g, out, input, dim, index: (
            _scatter(input, g, _select_at(np.shape(input), dim, index)),
        ),
        torch=lambda t, input, dim, index: t.select(input, dim, index),
        shape=_picked(_select_at),
        samples=samples_of(
            ((2, 3), {"dim": 1, "index": -1}),
            ((2, 3, 4), {"dim": -3, "index": 1}),
            ((5,), {"dim": 0, "index": 0}),
        ),
    ),
    Op(
        name="narrow",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("dim", "int"),
            Param("start", "int"),
            Param("length", "int"),
        ),
        forward=lambda input, dim, start, length: np.array(
            np.asarray(input)[_narrow_at(np.shape(input), dim, start, length)]
        ),
        vjp=lambda g, out, input, dim, start, length: (
            _scatter(input, g, _narrow_at(np.shape(input), dim, start, length)),
        ),
        torch=lambda t, input, dim, start, length: t.narrow(input, dim, start, length),
        shape=_picked(_narrow_at),
        samples=samples_of(
            ((2, 5), {"dim": 1, "start": 1, "length": 3}),
            ((4, 3), {"dim": -2, "start": -3, "length": 2}),
            ((2, 3), {"dim": 1, "start": 3, "length": 0}),
        ),
        note="a negative start counts from the end",
    ),
    Op(
        name="diagonal",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("offset", "int", 0),
            Param("dim1", "int", 0),
            Param("dim2", "int", 1),
        ),
        forward=lambda input, offset, dim1, dim2: np.diagonal(
            input, offset, *_diagonal(np.shape(input), offset, dim1, dim2)[:2]
        ).copy(),
        vjp=lambda g, out, input, **kw: (_diagonal_vjp(g, input, **kw),),
        torch=lambda t, input, offset, dim1, dim2: t.diagonal(input, offset, dim1, dim2),
        shape=_diagonal_shape,
        samples=samples_of(
            ((3, 4), {}),
            ((3, 4), {"offset": 2}),
            ((3, 4), {"offset": -5}),
            ((2, 3, 4), {"offset": -1, "dim1": -1, "dim2": 0}),
        ),
        note="the diagonal becomes the last dim",
    ),
    # --- gathers ---
    Op(
        name="gather",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("dim", "int"),
            Param("index", "tensor", grad=False, integer=True),
        ),
        forward=_take(_gather_at, _gather_shape),
        vjp=_put(_gather_at),
        torch=lambda t, input, dim, index: t.gather(input, dim, index),
        shape=_gather_shape,
        samples=_gather_samples,
        note="repeated indices accumulate their gradients (scatter_add); a 0-d operand acts as "
        "1-d of size 1",
    ),
    Op(
        name="index_select",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("dim", "int"),
            Param("index", "tensor", grad=False, integer=True),
        ),
        forward=_take(_index_select_at, _index_select_shape),
        vjp=_put(_index_select_at),
        torch=lambda t, input, dim, index: t.index_select(input, dim, index),
        shape=_index_select_shape,
        samples=_index_select_samples,
        note="repeated indices accumulate their gradients (index_add); a 0-d index keeps the dim",
    ),
]
