"""Shape ops that copy elements to new places: flip, roll, cat, stack, tril/triu and pad; also
the helpers every shape module shares. The rows are part of the shape family (`runner.ops.shape`
collects them). Each VJP moves the upstream back the way the forward moved the values."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner.ops.dtypes import result_type
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, as_ints, norm_dim

FAMILY = "shape"
Dims = int | Sequence[int]


# --- shared by the shape modules ---


def view_of(shape: Shape) -> Array:
    """A stride-0 array of ``shape``: shape rules can run numpy's own shape arithmetic on it
    (moveaxis, squeeze, subscripts) without allocating any data."""
    return np.broadcast_to(np.empty(()), shape)


def new_dim(dim: int, ndim: int) -> int:
    """A dim of the output of an op that inserts one (unsqueeze, stack): range ndim + 1."""
    if not -ndim - 1 <= dim <= ndim:
        raise ShapeError(
            f"dim {dim} is out of range for inserting a dim into a {ndim}-d tensor "
            f"(expected {-ndim - 1} to {ndim})"
        )
    return dim % (ndim + 1)


def distinct(dims: Sequence[int], ndim: int, what: str) -> tuple[int, ...]:
    out = tuple(norm_dim(d, ndim) for d in dims)
    if len(set(out)) != len(out):
        raise ShapeError(f"{what} {list(dims)} names the same dim twice")
    return out


def randn(rng: np.random.Generator, *shape: int) -> Array:
    return np.asarray(rng.normal(size=shape))


def samples_of(*rows: tuple[Shape, dict[str, Any]]) -> Callable[..., list[Sample]]:
    """One sample per (input shape, attributes), the input drawn from a normal."""

    def make(rng: np.random.Generator) -> list[Sample]:
        return [Sample({"input": randn(rng, *s), **kw}, f"{s} {kw}") for s, kw in rows]

    return make


# --- flip and roll ---


def _flip_axes(ndim: int, dims: Dims) -> tuple[int, ...]:
    axes = distinct(as_ints(dims), ndim, "flip dims")
    return axes if ndim else ()  # torch lets a 0-d tensor flip its one addressable dim


def _flip_shape(input: Shape, dims: Dims) -> Shape:
    _flip_axes(len(input), dims)
    return tuple(input)


RollArgs = tuple[tuple[int, ...], tuple[int, ...] | None]


def _roll_args(input: Shape, shifts: Dims, dims: Dims | None) -> RollArgs:
    """(shifts, dims), dims None meaning the flattened tensor."""
    sh, ds = as_ints(shifts), as_ints(dims) if dims is not None else ()
    if not sh:
        raise ShapeError("roll: shifts is empty")
    if not ds and len(sh) == 1:
        return sh, None
    if len(sh) != len(ds):
        raise ShapeError(f"roll: {len(sh)} shifts {list(sh)} for {len(ds)} dims {list(ds)}")
    if not input:
        raise ShapeError(f"roll: dims {list(ds)} given for a 0-d tensor")
    if math.prod(input) == 0:  # torch returns an empty input before it looks at dims
        return sh[:1], None
    return sh, tuple(norm_dim(d, len(input)) for d in ds)


def _roll_shape(input: Shape, shifts: Dims, dims: Dims | None) -> Shape:
    _roll_args(input, shifts, dims)
    return tuple(input)


def _roll(x: Array, shifts: Sequence[int], dims: tuple[int, ...] | None, sign: int = 1) -> Array:
    shifts = [sign * s for s in shifts]
    return np.roll(x, shifts[0]) if dims is None else np.roll(x, shifts, axis=dims)


# --- joins ---


def _legacy_empty(s: Shape) -> bool:
    """torch.cat skips 1-d empty tensors whatever the others' rank (a legacy rule)."""
    return tuple(s) == (0,)


def _cat_shape(tensors: Sequence[Shape], dim: int) -> Shape:
    if not tensors:
        raise ShapeError("cat: an empty list of tensors")
    for i, s in enumerate(tensors):
        if not s:
            raise ShapeError(f"cat: the tensor at position {i} is 0-d and cannot be concatenated")
    kept = [(i, tuple(s)) for i, s in enumerate(tensors) if not _legacy_empty(s)]
    if not kept:  # torch then ignores dim
        return (0,)
    first = kept[0][1]
    d = norm_dim(dim, len(first))
    for i, s in kept:
        if len(s) != len(first):
            raise ShapeError(
                f"cat: tensor {i} of shape {s} is {len(s)}-d, tensor {kept[0][0]} "
                f"of shape {first} is {len(first)}-d"
            )
        if any(a != b for k, (a, b) in enumerate(zip(s, first, strict=True)) if k != d):
            raise ShapeError(f"cat: shapes {first} and {s} (tensor {i}) differ outside dim {d}")
    return (*first[:d], sum(s[d] for _, s in kept), *first[d + 1 :])


def _cat(tensors: Sequence[Any], dim: int) -> Array:
    arrays = [np.asarray(t) for t in tensors]
    kept = [a for a in arrays if not _legacy_empty(a.shape)]
    if not kept:
        return np.zeros((0,), result_type(*tensors))
    joined = np.concatenate(kept, axis=norm_dim(dim, kept[0].ndim))
    return joined.astype(result_type(*tensors), copy=False)


def _cat_vjp(g: Array, tensors: Sequence[Any], dim: int) -> list[Array]:
    shapes = [np.shape(t) for t in tensors]
    kept = [s for s in shapes if not _legacy_empty(s)]
    if not kept:
        return [np.zeros(s, g.dtype) for s in shapes]
    axis = norm_dim(dim, len(kept[0]))
    parts = iter(np.split(g, np.cumsum([s[axis] for s in kept])[:-1], axis=axis))
    return [np.zeros(s, g.dtype) if _legacy_empty(s) else next(parts) for s in shapes]


def _stack_shape(tensors: Sequence[Shape], dim: int) -> Shape:
    if not tensors:
        raise ShapeError("stack: an empty list of tensors")
    first = tuple(tensors[0])
    for i, s in enumerate(tensors):
        if tuple(s) != first:
            raise ShapeError(f"stack: tensor {i} has shape {tuple(s)}, tensor 0 has {first}")
    d = new_dim(dim, len(first))
    return (*first[:d], len(tensors), *first[d:])


def _stack(tensors: Sequence[Any], dim: int) -> Array:
    arrays = [np.asarray(t) for t in tensors]
    return np.stack(arrays, axis=new_dim(dim, arrays[0].ndim)).astype(result_type(*tensors))


# --- masks and padding ---


def _tri_shape(input: Shape, name: str) -> Shape:
    if len(input) < 2:
        raise ShapeError(f"{name} needs at least 2 dims, got a {len(input)}-d tensor")
    return tuple(input)


def _pad_pairs(input: Shape, pad: Dims, mode: str) -> list[tuple[int, int]]:
    """(before, after) per dim of the input; ``pad`` lists the last dim first, as torch."""
    pad = as_ints(pad)
    if mode != "constant":
        raise ShapeError(f"pad mode {mode!r} is not supported (only 'constant')")
    if len(pad) % 2 or len(pad) > 2 * len(input):
        raise ShapeError(
            f"pad {list(pad)}: length must be even and at most {2 * len(input)} "
            f"(two per dim of {tuple(input)})"
        )
    pairs = [(pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)][::-1]
    pairs = [(0, 0)] * (len(input) - len(pairs)) + pairs
    for n, (lo, hi) in zip(input, pairs, strict=True):
        # torch crops by the negative pads before it pads: they alone must leave a size >= 0
        if n + min(lo, 0) + min(hi, 0) < 0:
            raise ShapeError(
                f"pad {list(pad)}: cropping ({lo}, {hi}) from a dim of size {n} "
                f"leaves a negative size"
            )
    return pairs


def _pad(x: Any, pairs: Sequence[tuple[int, int]], value: float) -> Array:
    """Constant padding where a negative amount crops."""
    x = np.asarray(x)
    crop = tuple(
        slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(x.shape, pairs, strict=True)
    )
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    return np.pad(x[crop], grow, constant_values=value) if grow else x.copy()


# --- samples ---


def _cat_samples(rng: np.random.Generator) -> list[Sample]:
    a, b = randn(rng, 2, 3), randn(rng, 2, 3)
    return [
        Sample({"tensors": [a, randn(rng, 1, 3)]}, "dim 0"),
        Sample({"tensors": [a, randn(rng, 2, 1), b], "dim": -1}, "three, dim -1"),
        Sample({"tensors": [a, a], "dim": 1}, "one tensor twice"),
        Sample({"tensors": [a, np.zeros((0,)), b], "dim": 1}, "a legacy (0,) tensor is skipped"),
        Sample({"tensors": [randn(rng, 4)]}, "one tensor"),
        Sample({"tensors": [a, rng.integers(-3, 3, size=(2, 3))]}, "int joins float"),
    ]


def _stack_samples(rng: np.random.Generator) -> list[Sample]:
    a = randn(rng, 2, 3)
    return [
        Sample({"tensors": [a, randn(rng, 2, 3)]}, "dim 0"),
        Sample({"tensors": [a, randn(rng, 2, 3), a], "dim": -1}, "dim -1, one tensor twice"),
        Sample({"tensors": [randn(rng), randn(rng)], "dim": -1}, "0-d tensors"),
        Sample({"tensors": [a, randn(rng, 2, 3)], "dim": 1}, "middle dim"),
    ]


OPS: list[Op] = [
    # --- flip and roll ---
    Op(
        name="flip",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dims", "ints")),
        forward=lambda input, dims: np.flip(input, _flip_axes(np.ndim(input), dims)).copy(),
        vjp=lambda g, out, input, dims: (np.flip(g, _flip_axes(g.ndim, dims)),),
        torch=lambda t, input, dims: t.flip(input, as_ints(dims)),
        shape=_flip_shape,
        samples=samples_of(
            ((2, 3), {"dims": [0]}),
            ((2, 3, 4), {"dims": [-1, 0]}),
            ((2, 3), {"dims": []}),
            ((), {"dims": [0]}),
            ((4,), {"dims": -1}),
        ),
    ),
    Op(
        name="roll",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("shifts", "ints"), Param("dims", "dims", None)),
        forward=lambda input, shifts, dims: _roll(
            np.asarray(input), *_roll_args(np.shape(input), shifts, dims)
        ),
        vjp=lambda g, out, input, shifts, dims: (
            _roll(g, *_roll_args(g.shape, shifts, dims), sign=-1),
        ),
        torch=lambda t, input, shifts, dims: t.roll(
            input, as_ints(shifts), () if dims is None else as_ints(dims)
        ),
        shape=_roll_shape,
        samples=samples_of(
            ((2, 3), {"shifts": 1}),
            ((2, 3), {"shifts": [-4]}),
            ((2, 3, 4), {"shifts": [1, -2], "dims": [-1, 0]}),
            ((3, 4), {"shifts": [1, 2], "dims": [1, 1]}),
            ((5,), {"shifts": 7, "dims": 0}),
            ((), {"shifts": 3}),
        ),
        note="dims=None rolls the flattened tensor; a dim named twice rolls by the sum",
    ),
    # --- joins ---
    Op(
        name="cat",
        family=FAMILY,
        params=(Param("tensors", "tensors"), Param("dim", "int", 0)),
        forward=_cat,
        vjp=lambda g, out, tensors, dim: (_cat_vjp(g, tensors, dim),),
        torch=lambda t, tensors, dim: t.cat(tensors, dim),
        shape=_cat_shape,
        samples=_cat_samples,
        note="a tensor listed twice gets both slices' gradients added; 1-d empty tensors are "
        "skipped whatever the others' rank (torch's legacy rule)",
    ),
    Op(
        name="stack",
        family=FAMILY,
        params=(Param("tensors", "tensors"), Param("dim", "int", 0)),
        forward=_stack,
        vjp=lambda g, out, tensors, dim: (list(np.moveaxis(g, new_dim(dim, g.ndim - 1), 0)),),
        torch=lambda t, tensors, dim: t.stack(tensors, dim),
        shape=_stack_shape,
        samples=_stack_samples,
    ),
    # --- masks and padding ---
    Op(
        name="tril",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("diagonal", "int", 0)),
        forward=lambda input, diagonal: np.tril(input, diagonal),
        vjp=lambda g, out, input, diagonal: (np.tril(g, diagonal),),
        torch=lambda t, input, diagonal: t.tril(input, diagonal),
        shape=lambda input, diagonal: _tri_shape(input, "tril"),
        samples=samples_of(
            ((3, 4), {}),
            ((4, 3), {"diagonal": -1}),
            ((2, 3, 4), {"diagonal": 2}),
            ((3, 3), {"diagonal": -5}),
        ),
    ),
    Op(
        name="triu",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("diagonal", "int", 0)),
        forward=lambda input, diagonal: np.triu(input, diagonal),
        vjp=lambda g, out, input, diagonal: (np.triu(g, diagonal),),
        torch=lambda t, input, diagonal: t.triu(input, diagonal),
        shape=lambda input, diagonal: _tri_shape(input, "triu"),
        samples=samples_of(
            ((3, 4), {}),
            ((4, 3), {"diagonal": 1}),
            ((2, 3, 4), {"diagonal": -2}),
            ((3, 3), {"diagonal": 5}),
        ),
    ),
    Op(
        name="pad",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("pad", "ints"),
            Param(
                "mode", "str", "constant", choices=("constant", "reflect", "replicate", "circular")
            ),
            Param("value", "float?", None),
        ),
        forward=lambda input, pad, mode, value: _pad(
            input, _pad_pairs(np.shape(input), pad, mode), value or 0.0
        ),
        vjp=lambda g, out, input, pad, mode, value: (
            _pad(g, [(-lo, -hi) for lo, hi in _pad_pairs(np.shape(input), pad, mode)], 0.0),
        ),
        torch=lambda t, input, pad, mode, value: t.nn.functional.pad(
            input, as_ints(pad), mode, value
        ),
        shape=lambda input, pad, mode, value: tuple(
            n + lo + hi for n, (lo, hi) in zip(input, _pad_pairs(input, pad, mode), strict=True)
        ),
        samples=samples_of(
            ((2, 3), {"pad": [1, 2]}),
            ((2, 3), {"pad": [1, 0, 0, 2], "value": 1.5}),
            ((2, 3, 4), {"pad": [-1, 2, 1, -2]}),
            ((2, 3), {"pad": [-3, 0]}),
            ((), {"pad": []}),
            ((3,), {"pad": [-1, -1]}),
        ),
        note="constant mode only; negative pads crop, and the gradient of a padded (cropped) "
        "element is dropped (zero)",
    ),
]
