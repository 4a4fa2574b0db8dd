"""Sort and selection (the sorting family): topk, kthvalue, median, nanmedian, msort, argsort,
and scatter_reduce (`runner.ops.sorting_scatter`). A selecting op returns (values, indices) and
its VJP sends each value's gradient to the index it returned (derivatives.yaml's
``value_selecting_reduction_backward``), so at ties the gradient lands where torch's CPU kernel
put the index: `runner.ops.sorting_select` runs those kernels' algorithms to know where. The full
median (no dim) is one value whose gradient is split evenly among the elements equal to it
(``evenly_distribute_backward``), the NaNs when it is NaN.

0-d inputs act as 1-d of size 1 along dim 0 or -1, as torch's do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner.ops.dtypes import operand
from runner.ops.outputs import scatter_add
from runner.ops.reductions_samples import NAN, ties, uniform
from runner.ops.sorting_scatter import SCATTER_REDUCE
from runner.ops.sorting_select import (
    kthvalue_position,
    median_position,
    sort_order,
    topk_positions,
)
from runner.ops.spec import (
    Array,
    Op,
    Param,
    Sample,
    Shape,
    ShapeError,
    norm_dim,
    reduced_shape,
)

FAMILY = "sorting"
Grads = tuple[Array | None, ...]


def _per_slice(x: Array, d: int, pick: Callable[[Array], list[int]], width: int) -> Array:
    """``pick`` (one slice's values -> ``width`` positions) over every slice along ``d``: the
    positions as int64, laid out as ``x`` with dim ``d`` of size ``width``."""
    moved = np.moveaxis(x, d, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    picked = np.array([pick(r) for r in rows], dtype=np.int64).reshape(*moved.shape[:-1], width)
    return np.moveaxis(picked, -1, d)


def _values_at(x: Array, idx: Array, d: int) -> Array:
    return np.take_along_axis(x, idx, axis=d)


def _selected(g: Array | None, idx: Array, x: Array, d: int) -> Array:
    """The values' gradient (at ``idx``'s shape, the kept one) sent to the indices."""
    if g is None:
        return np.zeros(x.shape, x.dtype)
    return scatter_add(np.asarray(g).reshape(idx.shape), idx, x.shape, d)


# --- topk ---


def _topk(
    input: Any, k: int, dim: int = -1, largest: bool = True, sorted: bool = True
) -> tuple[Array, Array]:
    x = operand(input)
    if x.ndim == 0:
        return x.copy(), np.zeros((), np.int64)
    d = norm_dim(dim, x.ndim)
    idx = _per_slice(x, d, lambda r: topk_positions(r, k, largest, sorted), k)
    return _values_at(x, idx, d), idx


def _topk_vjp(grads: Grads, outs: tuple[Array, ...], input: Array, k: int, dim: int = -1,
              **_: Any) -> tuple[Array]:  # fmt: skip
    if input.ndim == 0:
        return (np.zeros((), input.dtype) if grads[0] is None else np.asarray(grads[0]),)
    return (_selected(grads[0], outs[1], input, norm_dim(dim, input.ndim)),)


def _topk_shape(input: Shape, k: int, dim: int = -1, largest: bool = True,
                sorted: bool = True) -> tuple[Shape, Shape]:  # fmt: skip
    d = norm_dim(dim, len(input))
    size = input[d] if input else 1
    if not (0 <= k <= size) or (not input and k != 1):
        raise ShapeError(f"topk: k {k} is out of range for a dim of size {size}")
    out = tuple(k if i == d else n for i, n in enumerate(input))
    return out, out


# --- kthvalue, median and nanmedian with a dim: one element per slice ---


def _one_per_slice(
    position: Callable[..., int],
) -> Callable[..., tuple[Array, Array]]:
    """The forward of an op that picks one element per slice along dim: ``position(row,
    **attrs)`` says which; (values, indices) at the reduced shape."""

    def forward(input: Any, dim: int, keepdim: bool = False, **attrs: Any) -> tuple[Array, Array]:
        x = operand(input)
        if x.ndim == 0:
            return x.copy(), np.zeros((), np.int64)
        d = norm_dim(dim, x.ndim)
        idx = _per_slice(x, d, lambda r: [position(r, **attrs)], 1)
        shape = reduced_shape(x.shape, (d,), keepdim)
        return _values_at(x, idx, d).reshape(shape), idx.reshape(shape)

    return forward


def _one_per_slice_vjp(grads: Grads, outs: tuple[Array, ...], input: Array, dim: int,
                       keepdim: bool = False, **_: Any) -> tuple[Array]:  # fmt: skip
    if input.ndim == 0:
        return (np.zeros((), input.dtype) if grads[0] is None else np.asarray(grads[0]),)
    d = norm_dim(dim, input.ndim)
    kept = reduced_shape(input.shape, (d,), True)
    return (_selected(grads[0], np.asarray(outs[1]).reshape(kept), input, d),)


def _reduced(input: Shape, dim: int, keepdim: bool, op: str) -> Shape:
    d = norm_dim(dim, len(input))
    if input and input[d] == 0:
        raise ShapeError(f"{op}: dim {dim} has size 0: there is nothing to select from")
    return reduced_shape(tuple(input), (d,), keepdim) if input else ()


def _kthvalue_shape(input: Shape, k: int, dim: int = -1, keepdim: bool = False) -> Any:
    out = _reduced(input, dim, keepdim, "kthvalue")
    size = input[norm_dim(dim, len(input))] if input else 1
    if not 1 <= k <= size:
        raise ShapeError(f"kthvalue: k {k} is out of range for a dim of size {size} (1 to {size})")
    return out, out


_kthvalue = _one_per_slice(lambda r, k: kthvalue_position(r, k))


def _median_op(name: str, ignore_nan: bool) -> Op:
    by_dim = _one_per_slice(lambda r: median_position(r, ignore_nan))

    def full(x: Array) -> Array:
        """The lower median of every element: rank (m - 1) // 2 of the m non-NaN ones (of all
        of them for median, NaN if any is NaN); NaN for no element."""
        flat = np.sort(x.reshape(-1))  # NaNs sort last
        m = int(np.count_nonzero(~np.isnan(flat))) if ignore_nan else flat.size
        if m == 0 or (not ignore_nan and np.isnan(flat).any()):
            return np.asarray(np.nan, x.dtype)
        return np.asarray(flat[(m - 1) // 2])

    def forward(input: Any, dim: int | None = None, keepdim: bool = False) -> Any:
        if dim is None:
            return full(operand(input))
        return by_dim(input, dim, keepdim)

    def vjp(g: Any, out: Any, input: Array, dim: int | None = None, keepdim: bool = False) -> Any:
        if dim is not None:
            return _one_per_slice_vjp(g, out, input, dim, keepdim)
        # evenly_distribute_backward: the elements equal to the result (NaNs if it is NaN)
        mask = np.isnan(input) if np.isnan(out) else input == out
        share = g / max(int(np.count_nonzero(mask)), 1)
        return (np.where(mask, share, 0).astype(input.dtype),)

    def shape(input: Shape, dim: int | None = None, keepdim: bool = False) -> Any:
        if dim is None:
            if keepdim:
                raise ShapeError(f"{name}: keepdim needs a dim (torch.{name}(input) has none)")
            return ()
        out = _reduced(input, dim, keepdim, name)
        return out, out

    return Op(
        name=name,
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("dim", "int?", None),
            Param("keepdim", "bool", False),
        ),  # fmt: skip
        forward=forward,
        vjp=vjp,
        torch=lambda t, input, dim, keepdim: (
            getattr(t, name)(input) if dim is None else getattr(t, name)(input, dim, keepdim)
        ),
        shape=shape,
        samples=_median_samples,
        outputs=("values", "indices"),
        outputs_with="dim",
        integer_outputs=("indices",),
        note=(
            "dim=None: one value, the lower median (rank (n - 1) // 2"
            + (" of the non-NaN elements; NaN if all are" if ignore_nan else "; NaN if any is")
            + "); its gradient is split evenly among the elements equal to it (1/count each; "
            "the NaNs share it when it is NaN). With dim: (values, indices), the gradient goes "
            "to the one index returned: "
            + (
                "the element of rank (m - 1) // 2 among the m non-NaN ones ordered by (value, "
                "position), so of tied values the one at that rank (torch's nth_element with "
                "that strict order); an all-NaN slice gives NaN at libstdc++'s index"
                if ignore_nan
                else "the first NaN if the slice has one, else the element of rank (n - 1) // 2 "
                "ordered by (value, position), so of tied values the one at that rank (torch's "
                "nth_element with that strict order)"
            )
        ),
    )


# --- msort, argsort: sort's forward ---


def _msort(input: Any) -> Array:
    x = operand(input)
    if x.ndim == 0:
        return x.copy()
    return _values_at(x, sort_order(x, 0, False), 0)


def _msort_vjp(g: Array, out: Array, input: Array) -> tuple[Array]:
    if input.ndim == 0:
        return (g,)
    return (scatter_add(g, sort_order(input, 0, False), input.shape, 0),)


def _argsort(input: Any, dim: int = -1, descending: bool = False, stable: bool = False) -> Array:
    x = operand(input)
    if x.ndim == 0:
        return np.zeros((), np.int64)
    return sort_order(x, norm_dim(dim, x.ndim), descending, stable)


def _dim_shape(input: Shape, dim: int = 0, **_: Any) -> Shape:
    norm_dim(dim, len(input))
    return tuple(input)


# --- samples ---


def _topk_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": uniform(rng, (3, 5)), "k": 2}, "k=2 dim=-1"),
        Sample({"input": uniform(rng, (4, 3)), "k": 3, "dim": 0, "largest": False}, "smallest"),
        Sample({"input": ties(rng, (3, 7)), "k": 4, "dim": 1}, "ties"),
        Sample(
            {"input": ties(rng, (2, 6)), "k": 3, "largest": False, "sorted": False},
            "ties, smallest, unsorted",
        ),  # fmt: skip
        Sample({"input": ties(rng, (2, 70)), "k": 1}, "ties, k * 64 <= n: partial_sort"),
        Sample({"input": np.asarray([[3.0, NAN, 1.0, NAN, 3.0]]), "k": 3}, "NaNs"),
        Sample(
            {"input": np.asarray([[3.0, NAN, 1.0, NAN, 3.0]]), "k": 2, "largest": False},
            "NaNs, smallest",
        ),  # fmt: skip
        Sample({"input": uniform(rng, (2, 3)), "k": 0}, "k=0"),
        Sample({"input": np.asarray(1.5), "k": 1}, "0-d"),
    ]


def _kthvalue_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": uniform(rng, (3, 5)), "k": 2}, "k=2"),
        Sample({"input": uniform(rng, (4, 3)), "k": 4, "dim": 0, "keepdim": True}, "dim 0 keep"),
        Sample({"input": ties(rng, (4, 9)), "k": 5, "dim": -1}, "ties"),
        Sample({"input": ties(rng, (6, 3)), "k": 2, "dim": 0}, "ties, dim 0"),
        Sample({"input": np.asarray([[3.0, NAN, 1.0, NAN, 3.0]]), "k": 4}, "NaNs"),
        Sample({"input": np.asarray(1.5), "k": 1}, "0-d"),
    ]


def _median_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": uniform(rng, (3, 5))}, "full"),
        Sample({"input": np.asarray([[2.0, 1.0, 2.0], [0.0, 2.0, 5.0]])}, "full, tied median"),
        Sample({"input": np.asarray([[2.0, 1.0, 2.0, 3.0]])}, "full, two tied middles"),
        Sample({"input": np.asarray([2.0, NAN, 1.0, NAN])}, "full, NaNs"),
        Sample({"input": uniform(rng, (3, 4)), "dim": 1}, "dim 1"),
        Sample({"input": uniform(rng, (3, 4)), "dim": 0, "keepdim": True}, "dim 0 keepdim"),
        Sample({"input": ties(rng, (5, 6)), "dim": -1}, "ties"),
        Sample({"input": ties(rng, (7, 3)), "dim": 0}, "ties, dim 0"),
        Sample(
            {"input": np.asarray([[3.0, NAN, 1.0, 2.0], [NAN, NAN, NAN, NAN]]), "dim": 1},
            "NaNs, an all-NaN row",
        ),  # fmt: skip
        Sample({"input": np.asarray(1.5)}, "0-d full"),
        Sample({"input": np.asarray(1.5), "dim": 0}, "0-d dim"),
        Sample({"input": np.zeros((0,))}, "empty, full"),
    ]


def _msort_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": uniform(rng, (4, 3))}, "(4, 3)"),
        Sample({"input": ties(rng, (6, 2))}, "ties"),
        Sample({"input": np.asarray([[3.0, NAN], [NAN, 1.0], [1.0, 1.0]])}, "NaNs"),
        Sample({"input": np.asarray(1.5)}, "0-d"),
    ]


def _argsort_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": uniform(rng, (3, 4))}, "dim -1"),
        Sample({"input": ties(rng, (5, 3)), "dim": 0, "descending": True}, "ties, descending"),
        Sample({"input": np.asarray([[3.0, NAN, 1.0, NAN, 3.0]]), "stable": True}, "NaNs"),
        Sample({"input": np.asarray(1.5)}, "0-d"),
    ]


def _op(name: str, params: Sequence[Param], forward: Any, vjp: Any, torch: Any, shape: Any,
        samples: Any, note: str, **flags: Any) -> Op:  # fmt: skip
    return Op(name=name, family=FAMILY, params=tuple(params), forward=forward, vjp=vjp,
              torch=torch, shape=shape, samples=samples, note=note, **flags)  # fmt: skip


_SELECTED = {"outputs": ("values", "indices"), "integer_outputs": ("indices",)}

OPS: list[Op] = [
    _op(
        "topk",
        [
            Param("input", "tensor"),
            Param("k", "int"),
            Param("dim", "int", -1),
            Param("largest", "bool", True),
            Param("sorted", "bool", True),
        ],
        _topk,
        _topk_vjp,
        lambda t, input, k, dim, largest, sorted: t.topk(input, k, dim, largest, sorted),
        _topk_shape,
        _topk_samples,
        "(values, indices); the values' gradient goes to the indices returned. Of tied values, "
        "which ones are returned (and in what order) is where torch's CPU kernel leaves them: "
        "std::partial_sort when k * 64 <= n, else std::nth_element then std::sort of the first "
        "k - 1, comparing values only (NaN the largest): libstdc++'s algorithms are run here to "
        "match, so with ties neither the first nor the last index is the rule",
        **_SELECTED,
    ),
    _op(
        "kthvalue",
        [
            Param("input", "tensor"),
            Param("k", "int"),
            Param("dim", "int", -1),
            Param("keepdim", "bool", False),
        ],
        _kthvalue,
        _one_per_slice_vjp,
        lambda t, input, k, dim, keepdim: t.kthvalue(input, k, dim, keepdim),
        _kthvalue_shape,
        _kthvalue_samples,
        "(values, indices), the k-th smallest (NaN the largest); the gradient goes to the one "
        "index returned, which among tied values is where torch's CPU quickselect (TH's "
        "median-of-three Hoare partition) leaves the k-th: it is run here to match",
        **_SELECTED,
    ),
    _median_op("median", ignore_nan=False),
    _median_op("nanmedian", ignore_nan=True),
    _op(
        "msort",
        [Param("input", "tensor")],
        _msort,
        _msort_vjp,
        lambda t, input: t.msort(input),
        lambda input: tuple(input),
        _msort_samples,
        "sort along dim 0, the values only; the gradient goes back through sort's indices "
        "(torch.sort's default, not stable: ties in slices of more than 16 elements come in "
        "libstdc++ std::sort's order, reproduced; NaN the largest)",
    ),
    _op(
        "argsort",
        [
            Param("input", "tensor", grad=False, accepts_grad=True),
            Param("dim", "int", -1),
            Param("descending", "bool", False),
            Param("stable", "bool", False, kw_only=True),
        ],
        _argsort,
        lambda g, out, input, **_: (None,),
        lambda t, input, dim, descending, stable: t.argsort(
            input, dim=dim, descending=descending, stable=stable
        ),
        lambda input, dim=-1, **_: _dim_shape(input, dim),
        _argsort_samples,
        "sort's indices (int64, no gradient: for use as indices); ties: with "
        "stable=True in their input order; with stable=False (the default) in the order of "
        "the libstdc++ std::sort torch's CPU kernel uses, which keeps input order only in "
        "slices of at most 16 elements (reproduced); NaN the largest",
    ),
    SCATTER_REDUCE,
]
