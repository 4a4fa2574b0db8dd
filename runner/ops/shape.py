"""Shape ops that keep every element once and in order of memory or of dims: reshape, flatten,
squeeze, unsqueeze, expand, repeat, transpose, permute, movedim. The VJP moves the upstream back
(``expand`` just returns it: the engine sums a broadcast gradient to the operand's shape).

`OPS` is the whole shape family: it also holds the rows of `runner.ops.shape_rearrange` (flip,
roll, cat, stack, tril/triu, pad) and `runner.ops.shape_index` (getitem, select, narrow,
diagonal, gather, index_select)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from runner.ops import shape_index, shape_rearrange
from runner.ops.shape_rearrange import FAMILY, Dims, distinct, new_dim, samples_of, view_of
from runner.ops.spec import Array, Op, Param, Shape, ShapeError, as_ints, norm_dim


def _t_shape(input: Shape) -> Shape:
    if len(input) > 2:
        raise ShapeError(
            f"t expects a tensor of at most 2 dims, got {len(input)}: for the last two dims "
            "write x.mT (transpose(x, -2, -1)); to reverse every dim, permute(x, ...)"
        )
    return tuple(reversed(input))


# --- reshape ---


def _reshape_shape(input: Shape, shape: Dims) -> Shape:
    want, n = as_ints(shape), math.prod(input)
    if any(s < -1 for s in want):
        raise ShapeError(f"shape {list(want)} has a negative size other than -1")
    if want.count(-1) > 1:
        raise ShapeError(f"shape {list(want)}: only one size can be inferred (-1)")
    known = math.prod(s for s in want if s != -1)
    if -1 not in want:
        if known != n:
            raise ShapeError(
                f"shape {list(want)} ({known} elements) is invalid for an input of {n} elements"
            )
        return want
    if known == 0:
        raise ShapeError(
            f"shape {list(want)}: the -1 is ambiguous beside a 0 size (input of {n} elements)"
            if n == 0
            else f"shape {list(want)} (0 elements) is invalid for an input of {n} elements"
        )
    if n % known:
        raise ShapeError(
            f"shape {list(want)} is invalid for an input of {n} elements ({known} "
            f"does not divide {n})"
        )
    return tuple(n // known if s == -1 else s for s in want)


def _squeeze_dims(input: Shape, dim: Dims | None) -> tuple[int, ...]:
    """The dims squeeze removes: named ones of size 1 (a named non-1 dim is kept, as torch)."""
    if dim is None:
        return tuple(i for i, n in enumerate(input) if n == 1)
    named = distinct(as_ints(dim), len(input), "squeeze dims")
    return tuple(d for d in named if d < len(input) and input[d] == 1)


def _flatten_shape(input: Shape, start_dim: int, end_dim: int) -> Shape:
    s, e = norm_dim(start_dim, len(input)), norm_dim(end_dim, len(input))
    if s > e:
        raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    if not input:
        return (1,)
    return (*input[:s], math.prod(input[s : e + 1]), *input[e + 1 :])


def _expand_shape(input: Shape, size: Dims) -> Shape:
    size = as_ints(size)
    lead = len(size) - len(input)
    if lead < 0:
        raise ShapeError(f"expand: {len(size)} sizes {list(size)} for a {len(input)}-d tensor")
    out = []
    for i, s in enumerate(size):
        n = input[i - lead] if i >= lead else None
        if s == -1 and n is not None:
            s = n
        elif s < 0:
            raise ShapeError(
                f"expand: size {s} at dim {i} of {list(size)} (-1 only keeps an existing dim)"
            )
        elif n is not None and n not in (1, s):
            raise ShapeError(
                f"expand: size {s} at dim {i} must match the existing size {n} of {input}"
            )
        out.append(s)
    return tuple(out)


def _repeat_shape(input: Shape, repeats: Dims) -> Shape:
    reps = as_ints(repeats)
    if len(reps) < len(input):
        raise ShapeError(f"repeat: {len(reps)} repeats {list(reps)} for a {len(input)}-d tensor")
    padded = (1,) * (len(reps) - len(input)) + tuple(input)
    out = tuple(n * r for n, r in zip(padded, reps, strict=True))
    # torch checks the product, not the repeat: -1 times an empty dim passes
    if any(n < 0 for n in out):
        raise ShapeError(f"repeat: repeats {list(reps)} of {tuple(input)} give a negative size")
    return out


def _repeat(input: Any, repeats: Dims) -> Array:
    out = _repeat_shape(np.shape(input), repeats)
    if not math.prod(out):  # np.tile refuses the negative repeats torch lets through here
        return np.zeros(out, np.result_type(input))
    return np.tile(input, as_ints(repeats))


def _repeat_vjp(g: Array, input: Array, repeats: Dims) -> Array:
    """Each input element appears once per tile: sum the tiles, split out as their own axes."""
    reps = as_ints(repeats)
    if g.size == 0:
        return np.zeros(input.shape, g.dtype)
    padded = (1,) * (len(reps) - input.ndim) + input.shape
    tiles = g.reshape([k for r, n in zip(reps, padded, strict=True) for k in (r, n)])
    summed: Array = tiles.sum(axis=tuple(range(0, 2 * len(reps), 2)))
    return summed.reshape(input.shape)


# --- permutations ---


def _permutation(input: Shape, dims: Sequence[int]) -> tuple[int, ...]:
    if len(dims) != len(input):
        raise ShapeError(
            f"permute: dims {list(dims)} has {len(dims)} entries for a {len(input)}-d tensor"
        )
    return distinct(dims, len(input), "permute dims")


def _movedim(ndim: int, source: Dims, destination: Dims) -> tuple[Shape, Shape]:
    src, dst = as_ints(source), as_ints(destination)
    if isinstance(source, int) != isinstance(destination, int):
        raise ShapeError(
            f"movedim: source {source} and destination {destination} must be both "
            f"ints or both lists"
        )
    if len(src) != len(dst):
        raise ShapeError(
            f"movedim: source {list(src)} and destination {list(dst)} differ in length"
        )
    return distinct(src, ndim, "movedim source"), distinct(dst, ndim, "movedim destination")


def _swap(ndim: int, dim0: int, dim1: int) -> list[int]:
    order = list(range(ndim))
    a, b = norm_dim(dim0, ndim), norm_dim(dim1, ndim)
    if ndim:
        order[a], order[b] = order[b], order[a]
    return order


def _moveaxis(x: Array, src: Sequence[int], dst: Sequence[int]) -> Array:
    return np.moveaxis(x, src, dst) if x.ndim else x  # a 0-d tensor has nothing to move


OPS: list[Op] = [
    # --- reshape ---
    Op(
        name="reshape",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("shape", "ints")),
        forward=lambda input, shape: np.reshape(input, _reshape_shape(np.shape(input), shape)),
        vjp=lambda g, out, input, shape: (g.reshape(np.shape(input)),),
        torch=lambda t, input, shape: t.reshape(input, as_ints(shape)),
        shape=_reshape_shape,
        samples=samples_of(
            ((2, 3), {"shape": [3, -1]}),
            ((), {"shape": [1, -1]}),
            ((4,), {"shape": [2, 1, 2]}),
            ((1,), {"shape": []}),
            ((2, 3, 4), {"shape": -1}),
            ((0, 3), {"shape": [-1, 3]}),
        ),
    ),
    Op(
        name="flatten",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("start_dim", "int", 0),
            Param("end_dim", "int", -1),
        ),
        forward=lambda input, start_dim, end_dim: np.reshape(
            input, _flatten_shape(np.shape(input), start_dim, end_dim)
        ),
        vjp=lambda g, out, input, **_: (g.reshape(np.shape(input)),),
        torch=lambda t, input, start_dim, end_dim: t.flatten(input, start_dim, end_dim),
        shape=_flatten_shape,
        samples=samples_of(
            ((2, 3, 4), {}),
            ((2, 3, 4), {"start_dim": 1}),
            ((2, 3, 4, 5), {"start_dim": -3, "end_dim": -2}),
            ((), {}),
            ((2, 3), {"start_dim": 1, "end_dim": 1}),
        ),
        note="a 0-d input flattens to shape (1,)",
    ),
    Op(
        name="squeeze",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim", "dims", None)),
        forward=lambda input, dim: np.squeeze(input, _squeeze_dims(np.shape(input), dim)),
        vjp=lambda g, out, input, dim: (g.reshape(np.shape(input)),),
        torch=lambda t, input, dim: input.squeeze() if dim is None else t.squeeze(input, dim),
        shape=lambda input, dim: np.squeeze(view_of(input), _squeeze_dims(input, dim)).shape,
        samples=samples_of(
            ((1, 3, 1), {}),
            ((1, 3, 1), {"dim": -1}),
            ((1, 3, 1), {"dim": 1}),
            ((1, 3, 1, 2), {"dim": [0, -2, 1]}),
            ((1, 1), {"dim": []}),
            ((), {}),
            ((), {"dim": 0}),
        ),
        note="squeezing a dim whose size is not 1 is a no-op; dim=[] squeezes nothing",
    ),
    Op(
        name="unsqueeze",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim", "int")),
        forward=lambda input, dim: np.expand_dims(input, new_dim(dim, np.ndim(input))),
        vjp=lambda g, out, input, dim: (g.reshape(np.shape(input)),),
        torch=lambda t, input, dim: t.unsqueeze(input, dim),
        shape=lambda input, dim: np.expand_dims(view_of(input), new_dim(dim, len(input))).shape,
        samples=samples_of(
            ((2, 3), {"dim": 0}),
            ((2, 3), {"dim": -1}),
            ((2, 3), {"dim": 2}),
            ((2, 3), {"dim": -3}),
            ((), {"dim": 0}),
            ((), {"dim": -1}),
        ),
    ),
    Op(
        name="expand",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("size", "ints")),
        forward=lambda input, size: np.broadcast_to(
            input, _expand_shape(np.shape(input), size)
        ).copy(),
        vjp=lambda g, out, input, size: (g,),
        torch=lambda t, input, size: input.expand(as_ints(size)),
        shape=_expand_shape,
        samples=samples_of(
            ((3, 1), {"size": [3, 4]}),
            ((3, 1), {"size": [2, -1, 4]}),
            ((), {"size": [2, 3]}),
            ((1,), {"size": 5}),
            ((2, 3), {"size": [-1, 3]}),
            ((2, 1), {"size": [2, 0]}),
        ),
        note="the gradient sums over every expanded (or new leading) dim",
    ),
    Op(
        name="repeat",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("repeats", "ints")),
        forward=_repeat,
        vjp=lambda g, out, input, repeats: (_repeat_vjp(g, input, repeats),),
        torch=lambda t, input, repeats: input.repeat(as_ints(repeats)),
        shape=_repeat_shape,
        samples=samples_of(
            ((2, 3), {"repeats": [2, 1]}),
            ((2, 3), {"repeats": [2, 1, 3]}),
            ((), {"repeats": [3]}),
            ((3,), {"repeats": [0]}),
            ((), {"repeats": []}),
        ),
        note="the gradient sums over the tiles",
    ),
    # --- permutations ---
    Op(
        name="transpose",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim0", "int"), Param("dim1", "int")),
        forward=lambda input, dim0, dim1: np.transpose(
            input, _swap(np.ndim(input), dim0, dim1)
        ).copy(),
        vjp=lambda g, out, input, dim0, dim1: (g.transpose(_swap(g.ndim, dim0, dim1)),),
        torch=lambda t, input, dim0, dim1: t.transpose(input, dim0, dim1),
        shape=lambda input, dim0, dim1: tuple(input[i] for i in _swap(len(input), dim0, dim1)),
        samples=samples_of(
            ((2, 3), {"dim0": 0, "dim1": 1}),
            ((2, 3, 4), {"dim0": -1, "dim1": 0}),
            ((2, 3), {"dim0": 1, "dim1": 1}),
            ((), {"dim0": 0, "dim1": -1}),
        ),
    ),
    Op(
        name="t",
        family=FAMILY,
        params=(Param("input", "tensor"),),
        forward=lambda input: np.transpose(input).copy(),
        vjp=lambda g, out, input: (np.transpose(g),),
        torch=lambda t, input: t.t(input),
        shape=_t_shape,
        samples=samples_of(((2, 3), {}), ((4,), {}), ((), {}), ((1, 5), {})),
        note="torch.t and x.t(): a 2-D tensor transposed, a 0-D or 1-D one as it is; x.T of "
        "those ranks is the same",
    ),
    Op(
        name="permute",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dims", "ints")),
        forward=lambda input, dims: np.transpose(
            input, _permutation(np.shape(input), as_ints(dims))
        ).copy(),
        vjp=lambda g, out, input, dims: (
            g.transpose(np.argsort(_permutation(np.shape(input), as_ints(dims)))),
        ),
        torch=lambda t, input, dims: t.permute(input, as_ints(dims)),
        shape=lambda input, dims: tuple(input[i] for i in _permutation(input, as_ints(dims))),
        samples=samples_of(
            ((2, 3, 4), {"dims": [2, 0, 1]}),
            ((2, 3, 4), {"dims": [-1, -3, 1]}),
            ((2, 3), {"dims": [0, 1]}),
            ((), {"dims": []}),
        ),
    ),
    Op(
        name="movedim",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("source", "ints"), Param("destination", "ints")),
        forward=lambda input, source, destination: _moveaxis(
            np.asarray(input), *_movedim(np.ndim(input), source, destination)
        ).copy(),
        vjp=lambda g, out, input, source, destination: (
            _moveaxis(g, *reversed(_movedim(g.ndim, source, destination))),
        ),
        torch=lambda t, input, source, destination: t.movedim(input, source, destination),
        shape=lambda input, source, destination: (
            _moveaxis(view_of(input), *_movedim(len(input), source, destination)).shape
        ),
        samples=samples_of(
            ((2, 3, 4), {"source": 0, "destination": -1}),
            ((2, 3, 4, 5), {"source": [0, -1], "destination": [2, 0]}),
            ((), {"source": 0, "destination": -1}),
        ),
    ),
]

OPS += shape_rearrange.OPS + shape_index.OPS
