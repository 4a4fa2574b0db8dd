"""Subscripts with integer tensors (torch's advanced indexing): ``x[idx]``, ``x[idx, :]``,
``x[:, idx]``, ``x[i, 1:, j]``, the op `index_tensor` (aten's ``index.Tensor``) that such a
subscript lowers to (part of the indexing family; a subscript of ints, slices, None and ...
alone stays a getitem).

torch applies a subscript in two steps (``applySlicing`` then ``index``, TensorIndexing.h): the
ints, slices, None and ... first, as views (an int selects, so its dim is gone before any tensor
is applied; so does a 0-d integer tensor, which torch reads as an int), then the index tensors
at the dims they stand at, broadcast together; the result's indexed dims take the broadcast
shape, in place when the tensors stand next to each other, else first (numpy's rule, which torch
follows). numpy would treat an int next to a tensor as one more
advanced index and so move the dims elsewhere (``x[0, :, idx]``), so both steps are done here as
torch does them. Negative indices wrap; an index out of range is refused. The VJP is index_put
with accumulate=True: a repeated index adds its gradients.

A bool mask (``x[mask]``) is torch's ``x[mask.nonzero(as_tuple=True)]`` (torch's docs): its k dims
are replaced, in place, by k integer index tensors, the positions of its true elements. Its
result's shape depends on the mask's values, so only a mask whose values are known when the case
is compiled (a literal bool input) is taken: lowering rewrites it with `expand_masks` into k
constant int64 inputs; a mask computed in the graph (``x[x > 0]``) is refused with what to write
instead (where / masked_fill)."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.shape_rearrange import randn, view_of
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError

# Stands in a subscript's template for the next index tensor (`index_tensor`'s ``indices``).
TENSOR_SLOT = "tensor"
MASK_REFUSED = (
    "a bool mask subscript (x[mask]) has a shape that depends on the mask's values, which a "
    "graph's static shapes cannot know unless the mask is a literal bool input "
    "(m: {values: [true, false], dtype: bool}, then x[m]); for a mask computed in the graph write "
    "where(mask, x, 0.0) or masked_fill(x, ~mask, 0.0) (then sum) to keep the shape"
)

FLOAT_REFUSED = "a subscript's index tensor must be an integer tensor"


def _steps(
    template: tuple[Any, ...], indices: list[Any], shape: Shape
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(the basic subscript torch applies first, the advanced one it applies to that result):
    each tensor's place keeps its dim (``slice(None)``) in the first and holds the tensor at
    the dim it stands at in the second. A 0-d integer tensor is torch's plain int (applySlicing
    selects with ``tensor.item()``): it selects in the first step and is no advanced index, so
    ``x[i, :, j]`` with a 0-d ``i`` is ``x[1][:, j]``, not numpy's broadcast of ``i`` with ``j``.

    Raises:
        ShapeError: a 0-d index outside [-n, n) of its dim (numpy would raise IndexError).
    """
    consumed = sum(item is not None and item is not Ellipsis for item in template)
    basic: list[Any] = []
    at: list[tuple[int, Any]] = []
    tensors = iter(indices)
    dim = 0  # of the first step's result
    source = 0  # of the input
    for item in template:
        if isinstance(item, str):  # TENSOR_SLOT
            tensor = next(tensors)
            if np.ndim(tensor) == 0:
                basic.append(_selected(int(tensor), source, shape))
            else:
                basic.append(slice(None))
                at.append((dim, tensor))
                dim += 1
            source += 1
        elif item is Ellipsis:
            basic.append(item)
            dim += max(len(shape) - consumed, 0)
            source += max(len(shape) - consumed, 0)
        elif isinstance(item, int) and not isinstance(item, bool):
            basic.append(item)
            source += 1
        else:  # a slice or None: one dim of the result
            basic.append(item)
            dim += 1
            source += item is not None
    advanced: list[Any] = [slice(None)] * (max(d for d, _ in at) + 1 if at else 0)
    for d, tensor in at:
        advanced[d] = tensor
    return tuple(basic), tuple(advanced)


def _selected(i: int, dim: int, shape: Shape) -> int:
    """A 0-d index's select into ``dim`` of ``shape``, as torch's applySelect checks it."""
    if dim >= len(shape):
        return i  # too many indices: the subscript itself says so
    n = shape[dim]
    if n == 0:
        raise ShapeError(f"subscript: a 0-d index into dim {dim} of size 0")
    if not -n <= i < n:
        raise ShapeError(
            f"subscript: index {i} is out of range for dim {dim} of size {n} "
            f"(expected {-n} to {n - 1})"
        )
    return i


def expand_masks(
    template: tuple[Any, ...], masks: dict[int, Array], input: Shape
) -> tuple[tuple[Any, ...], dict[int, list[Array]]]:
    """``x[..., mask, ...]`` as torch computes it, ``mask.nonzero(as_tuple=True)`` in the mask's
    place (torch's docs for ``torch.nonzero``; TensorIndexing's ``expandTensors``): ``masks``
    maps a `TENSOR_SLOT` (numbered among the template's slots) to its bool mask; the result is
    the template with k slots in place of each k-d mask's one, and for each mask its k int64
    position vectors (``np.nonzero``, row-major as torch's), which fill those slots in order.

    Raises:
        ShapeError: a 0-d mask (torch would add a dim), or a mask whose shape is not the shape
            of the dims of ``input`` it stands at (torch: IndexError "The shape of the mask ...
            does not match the shape of the indexed tensor").
    """
    expanded: list[Any] = []
    positions: dict[int, list[Array]] = {}
    covers: list[tuple[int, int]] = []  # (first slot of the expanded template, mask slot)
    slot = 0
    for item in template:
        if not isinstance(item, str):
            expanded.append(item)
            continue
        mask = masks.get(slot)
        if mask is None:
            expanded.append(item)
        elif mask.ndim == 0:
            raise ShapeError(
                "subscript: a 0-d bool mask is not supported (torch's x[True] is x[None])"
            )
        else:
            covers.append((sum(isinstance(i, str) for i in expanded), slot))
            positions[slot] = [p.astype(np.int64) for p in np.nonzero(mask)]
            expanded += [TENSOR_SLOT] * mask.ndim
        slot += 1
    dims = _slot_dims(tuple(expanded), len(input))
    for first, slot in covers:
        mask = masks[slot]
        start = dims[first]
        if tuple(input[start : start + mask.ndim]) != mask.shape:
            raise ShapeError(
                f"subscript: the shape of the mask {list(mask.shape)} does not match the shape "
                f"of the indexed tensor {list(input)} at dim {start}"
            )
    return tuple(expanded), positions


def _slot_dims(template: tuple[Any, ...], ndim: int) -> list[int]:
    """The dim of the input each `TENSOR_SLOT` of ``template`` stands at (as `_steps` counts)."""
    consumed = sum(item is not None and item is not Ellipsis for item in template)
    dims = []
    source = 0
    for item in template:
        if isinstance(item, str):
            dims.append(source)
        if item is Ellipsis:
            source += max(ndim - consumed, 0)
        elif item is not None:
            source += 1
    return dims


def _checked(indices: list[Any]) -> list[Array]:
    out = []
    for idx in indices:
        a = np.asarray(idx)
        if a.dtype == np.bool_:
            raise ShapeError(MASK_REFUSED)
        if not np.issubdtype(a.dtype, np.integer):
            raise ShapeError(f"{FLOAT_REFUSED}, got {a.dtype}")
        out.append(a.astype(np.int64))
    return out


def _bounds(view: Array, advanced: tuple[Any, ...]) -> None:
    """torch refuses an index outside [-n, n) (numpy would raise IndexError)."""
    for d, idx in enumerate(advanced):
        if isinstance(idx, np.ndarray) and idx.size:
            n = view.shape[d]
            bad = idx[(idx < -n) | (idx >= n)]
            if bad.size:
                raise ShapeError(
                    f"subscript: index {bad.flat[0]} is out of range for dim {d} of size {n} "
                    f"(expected {-n} to {n - 1})"
                )


def _index(input: Any, indices: list[Any], index: tuple[Any, ...]) -> Array:
    x = np.asarray(input)
    basic, advanced = _steps(index, _checked(indices), x.shape)
    view = x[basic]
    _bounds(view, advanced)
    return np.array(view[advanced])


def _index_vjp(
    g: Array, out: Array, input: Any, indices: list[Any], index: tuple[Any, ...]
) -> tuple[Any, ...]:
    x = np.asarray(input)
    basic, advanced = _steps(index, _checked(indices), x.shape)
    grad = np.zeros(x.shape, g.dtype)
    if not any(item is Ellipsis for item in basic):
        basic += (Ellipsis,)  # so that selecting every dim still gives a (0-d) view
    view = grad[basic]  # a view: writing into it writes into grad
    np.add.at(view, advanced, g)  # index_put(accumulate=True)
    return grad, [None] * len(indices)


def _index_shape(input: Shape, indices: list[Shape], index: tuple[Any, ...]) -> Shape:
    slots = sum(isinstance(item, str) for item in index)
    if slots != len(indices):
        raise ShapeError(f"subscript: {slots} tensor place(s) for {len(indices)} index tensor(s)")
    try:
        zeros = [np.zeros(s, np.int64) for s in indices]
        basic, advanced = _steps(index, zeros, tuple(input))
        view = view_of(tuple(input))[basic]
        for d, idx in enumerate(advanced):
            if isinstance(idx, np.ndarray) and idx.size and view.shape[d] == 0:
                raise ShapeError(f"subscript: an index into dim {d} of size 0")
        return tuple(view[advanced].shape)
    except IndexError as exc:
        raise ShapeError(f"subscript of a tensor of shape {tuple(input)}: {exc}") from None
    except ValueError as exc:  # index tensors that do not broadcast
        raise ShapeError(f"subscript: the index tensors do not broadcast: {exc}") from None


def _torch(t: Any, input: Any, indices: list[Any], index: tuple[Any, ...]) -> Any:
    tensors = iter(indices)
    return input[tuple(next(tensors) if isinstance(i, str) else i for i in index)]


def _i(values: Any) -> Array:
    return np.asarray(values, dtype=np.int64)


S, E, T = slice, Ellipsis, TENSOR_SLOT


def _samples(rng: np.random.Generator) -> list[Sample]:
    rows = [
        ((4, 3), [_i([2, 0, 2, -1])], (T,), "x[idx]: repeated and negative rows"),
        ((4, 3), [_i([[1, 1], [3, 0]])], (T, S(None)), "x[idx, :], a 2-d index"),
        ((2, 5), [_i([4, 4, -5])], (S(None), T), "x[:, idx]"),
        ((3, 4), [_i([2, 2, 0]), _i([1, 1, 3])], (T, T), "x[i, j]: repeated pairs"),
        ((3, 4), [_i([[0], [2]]), _i([1, 3, 3])], (T, T), "x[i, j] broadcast"),
        ((2, 3, 4), [_i([1, 0, 1]), _i([3, 3, 0])], (T, S(None), T), "separated: dims first"),
        ((2, 3, 4), [_i([2, 2])], (0, S(None), T), "an int then a tensor: the int selects"),
        ((2, 3, 4), [_i([1, 1, 0])], (E, T), "x[..., idx]"),
        ((2, 3, 4), [_i([0, 2])], (S(1, None), T, None), "slice, tensor, None"),
        ((3,), [_i(1)], (T,), "a 0-d index"),
        ((3, 4, 2), [_i(1), _i([0, 1, 1])], (T, S(None), T), "x[i, :, j], i 0-d: a select"),
        ((2, 3, 4, 2), [_i(-2), _i([[0], [1]])], (S(None), T, S(None), T), "x[:, i, :, j]"),
        ((2, 3, 4), [_i([2, 0]), _i(1)], (E, T, T), "x[..., j, i], i 0-d"),
        ((2, 3), [_i(1), _i(0)], (T, T), "two 0-d indices: two selects"),
        ((3, 2), [_i([])], (T,), "an empty index"),
    ]
    return [
        Sample({"input": randn(rng, *shape), "indices": idx, "index": template}, note)
        for shape, idx, template, note in rows
    ]


INDEX = Op(
    name="index_tensor",
    family="indexing",
    hidden=True,
    by_name=False,
    params=(
        Param("input", "tensor"),
        Param(
            "indices",
            "tensors",
            grad=False,
            integer=True,
            mask_refused=MASK_REFUSED,
            float_refused=FLOAT_REFUSED,
        ),
        Param("index", "index"),
    ),
    forward=_index,
    vjp=_index_vjp,
    torch=_torch,
    shape=_index_shape,
    samples=_samples,
    note="a subscript with integer tensors (torch's advanced indexing): ints, slices, None and "
    "... apply first (an int or a 0-d integer tensor selects), then the tensors, broadcast "
    "together, at the dims they stand at (their dims in place when the tensors are adjacent, else "
    "first); negative indices wrap; repeated indices accumulate their gradients (index_put with "
    "accumulate=True). A bool mask is taken when it is a literal bool input (rewritten to its "
    "nonzero positions, as torch's x[mask] is x[mask.nonzero(as_tuple=True)]); one computed in "
    "the graph is refused: its result's shape depends on its values",
)
