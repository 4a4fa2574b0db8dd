"""Reductions and scans with several outputs, one row per op: max/min with a dim, sort, var_mean,
std_mean, aminmax, cummax, cummin. Each forward returns a tuple when `Op.several` says so, each
VJP takes one gradient per output (``None`` for an output nothing used), as derivatives.yaml's
``grads[i]`` (see `runner.ops.spec`). Part of the reductions family (`reductions.OPS`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from runner.ops.dtypes import operand
from runner.ops.reductions_rules import (
    ONE_D,
    count,
    no_empty_dims,
    no_empty_extremum,
    no_keepdim_without_dim,
    reduction,
    scan,
    select_vjp,
    spread_vjp,
    std_vjp,
    var_vjp,
    variance,
)
from runner.ops.reductions_samples import (
    INT_CASES,
    NAN,
    PEAKS,
    SCAN_CASES,
    STAT_CASES,
    both,
    fixed,
    scan_sweep,
    sweep,
    ties,
    uniform,
)
from runner.ops.sorting_select import sort_order
from runner.ops.spec import Array, Op, Param, Sample, Shape, norm_dim, norm_dims, reduced_shape

Grads = tuple[Array | None, ...]


def scatter_add(g: Array, index: Array, shape: Shape, d: int) -> Array:
    """torch's ``zeros(shape).scatter_add_(d, index, g)``: the gradient of a value-selecting op
    (max with a dim, sort, cummax) sent back to the indices it returned; a 0-d input gets ``g``."""
    if not shape:
        return np.asarray(g).reshape(())
    grad = np.zeros(shape, dtype=g.dtype)
    where: list[Any] = list(np.indices(index.shape, sparse=True))
    where[d] = index
    np.add.at(grad, tuple(where), g)
    return grad


def several_reduction(
    base: Op,
    outputs: tuple[str, ...],
    f: Callable[..., tuple[Array, ...]],
    df: Callable[..., Array],
    tf: Callable[..., Any],
    **flags: Any,
) -> Op:
    """``base`` (a `reduction`) given several outputs: ``f(x, dims, **attrs)`` gives them at the
    kept shape, ``df(grads, outs, x, dims, **attrs)`` the input's gradient from one gradient per
    output (None where unused) at the kept shape. A call without `Op.several` is ``base``'s."""

    def split(args: dict[str, Any]) -> tuple[Array, tuple[int, ...], bool, dict[str, Any]]:
        x = operand(args.pop("input"))
        dim = args.pop("dim")
        args["full"] = dim is None or x.ndim == 0
        return x, norm_dims(dim, x.ndim), args.pop("keepdim"), args

    def forward(**args: Any) -> Any:
        if not op.several(args):
            return base.forward(**args)
        x, dims, keepdim, attrs = split(dict(args))
        with np.errstate(all="ignore"):
            outs = f(x, dims, **attrs)
        return tuple(np.asarray(o).reshape(reduced_shape(x.shape, dims, keepdim)) for o in outs)

    def vjp(g: Any, out: Any, **args: Any) -> tuple[Array]:
        if not op.several(args):
            return (base.vjp(g, out, **args)[0],)
        x, dims, _, attrs = split(dict(args))
        kept = reduced_shape(x.shape, dims, True)
        grads = tuple(None if gi is None else gi.reshape(kept) for gi in g)
        with np.errstate(all="ignore"):
            return (df(grads, tuple(o.reshape(kept) for o in out), x, dims, **attrs),)

    def shape(**args: Any) -> Any:
        one = base.shape(**args)
        return tuple(one for _ in outputs) if op.several(args) else one

    op = replace(base, forward=forward, vjp=vjp, torch=tf, shape=shape, outputs=outputs, **flags)
    return op


def _select(
    f: Callable[..., Array], pick: Callable[..., Array]
) -> Callable[..., tuple[Array, ...]]:
    def values_indices(x: Array, dims: tuple[int, ...], full: bool) -> tuple[Array, ...]:
        if x.ndim == 0:
            return x, np.zeros((), np.int64)
        d = dims[0]
        return f(x, axis=d, keepdims=True), pick(x, axis=d, keepdims=True).astype(np.int64)

    return values_indices


def _selected_vjp(
    grads: Grads, outs: tuple[Array, ...], x: Array, dims: tuple[int, ...], full: bool
) -> Array:
    """torch's value_selecting_reduction_backward: the values' gradient to the indices."""
    g = grads[0]
    if g is None:
        return np.zeros(x.shape, x.dtype)
    return scatter_add(g, outs[1], x.shape, dims[0] if dims else 0)


def _moments(
    spread: Callable[..., Array], spread_vjp_: Callable[..., Array]
) -> tuple[Callable[..., tuple[Array, ...]], Callable[..., Array]]:
    """var_mean / std_mean: the spread and the mean, and the sum of their rules (torch's
    var_mean backward adds var's and mean's)."""

    def f(x: Array, dims: tuple[int, ...], full: bool, correction: float) -> tuple[Array, ...]:
        s = spread(x, dims, full, correction)
        return s, np.mean(x, axis=dims, keepdims=True)

    def df(
        grads: Grads,
        outs: tuple[Array, ...],
        x: Array,
        dims: tuple[int, ...],
        full: bool,
        correction: float,
    ) -> Array:
        total = np.zeros(x.shape, x.dtype)
        if grads[0] is not None:
            total = total + spread_vjp_(grads[0], outs[0], x, dims, full, correction)
        if grads[1] is not None:
            total = total + np.broadcast_to(grads[1] / count(x, dims), x.shape)
        return np.asarray(total)

    return f, df


def _aminmax_vjp(
    grads: Grads, outs: tuple[Array, ...], x: Array, dims: tuple[int, ...], full: bool
) -> Array:
    total = np.zeros(x.shape, x.dtype)
    for g, out in zip(grads, outs, strict=True):
        if g is not None:
            total = total + spread_vjp(g, out, x, dims, False)
    return np.asarray(total)


def _sort_forward(
    input: Any, dim: int = -1, descending: bool = False, stable: bool = False
) -> tuple[Array, Array]:
    x = operand(input)
    if x.ndim == 0:
        return x, np.zeros((), np.int64)
    d = norm_dim(dim, x.ndim)
    idx = sort_order(x, d, descending, stable)
    return np.take_along_axis(x, idx, axis=d), idx


def _sort_vjp(
    grads: Grads, outs: tuple[Array, ...], input: Array, dim: int = -1, **_: Any
) -> tuple[Array]:
    g = grads[0]
    if g is None:
        return (np.zeros(input.shape, input.dtype),)
    return (scatter_add(g, outs[1], input.shape, norm_dim(dim, input.ndim)),)


def _cumulative(better: Callable[[Array, Array], Array]) -> Callable[..., tuple[Array, Array]]:
    """cummax/cummin: the running extremum and its index; an equal or NaN element takes over the
    index (torch's ``x >= out || isnan(x)``), so ties give the latest index."""

    def forward(input: Any, dim: int) -> tuple[Array, Array]:
        x = operand(input)
        if x.ndim == 0:
            return x, np.zeros((), np.int64)
        d = norm_dim(dim, x.ndim)
        moved = np.moveaxis(x, d, 0)
        values, indices = np.empty_like(moved), np.zeros(moved.shape, np.int64)
        for i, row in enumerate(moved):
            if i == 0:
                best, at = row, np.zeros(row.shape, np.int64)
            else:
                with np.errstate(invalid="ignore"):
                    take = better(row, best) | (row == best) | np.isnan(row)
                take &= ~(np.isnan(best) & ~np.isnan(row))
                best, at = np.where(take, row, best), np.where(take, i, at)
            values[i], indices[i] = best, at
        return np.moveaxis(values, 0, d), np.moveaxis(indices, 0, d)

    return forward


def _cumulative_vjp(grads: Grads, outs: tuple[Array, ...], input: Array, dim: int) -> tuple[Array]:
    g = grads[0]
    if g is None:
        return (np.zeros(input.shape, input.dtype),)
    return (scatter_add(g, outs[1], input.shape, norm_dim(dim, input.ndim)),)


def _sort_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": uniform(rng, (3, 4)), "dim": -1}, "shape (3, 4) dim=-1"),
        Sample({"input": uniform(rng, (3, 4)), "dim": 0, "descending": True}, "descending dim=0"),
        Sample({"input": ties(rng, (2, 5)), "dim": 1}, "ties"),
        Sample({"input": ties(rng, (2, 5)), "dim": 1, "descending": True}, "ties, descending"),
        Sample({"input": np.asarray([[3.0, NAN, 1.0, NAN]]), "dim": 1}, "NaNs"),
        Sample(
            {"input": np.asarray([[3.0, NAN, 1.0, NAN]]), "dim": 1, "descending": True},
            "NaNs, descending",
        ),
        Sample({"input": np.asarray(2.0), "dim": 0}, "0-d"),
        # More than 16 elements with ties: std::sort's order, not the input's (stable=False).
        Sample({"input": _tied_long(rng, (2, 40)), "dim": 1}, "ties in 40 elements"),
        Sample(
            {"input": _tied_long(rng, (37, 2)), "dim": 0, "descending": True},
            "ties in 37 elements, descending",
        ),
        Sample({"input": _tied_long(rng, (1, 33)), "dim": -1, "stable": True}, "ties, 33, stable"),
    ]


def _tied_long(rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    """Three distinct values and NaNs, so every long slice has ties."""
    x = rng.integers(0, 3, shape).astype(np.float64)
    x[rng.random(shape) < 0.05] = NAN
    return x


def _scan_samples(rng: np.random.Generator) -> list[Sample]:
    return scan_sweep(SCAN_CASES)(rng) + [
        Sample({"input": ties(rng, (2, 6)), "dim": 1}, "ties"),
        Sample(
            {"input": np.asarray([[NAN, 1.0, NAN, 3.0], [1.0, NAN, 0.0, 5.0]]), "dim": 1}, "NaNs"
        ),
    ]


_STAT_ATTRS = (Param("correction", "float", 1, kw_only=True),)


def _stat(name: str, spread: Callable[..., Array], rule: Callable[..., Array], tname: str) -> Op:
    f, df = _moments(spread, rule)
    base = reduction(
        name,
        lambda x, dims, full, correction: x,  # never called: the op always has both outputs
        lambda g, out, x, dims, full, correction: g,
        lambda t: None,
        samples=both(sweep(STAT_CASES, correction=1), sweep(STAT_CASES[:3], correction=0)),
        attrs=_STAT_ATTRS,
        check=no_empty_dims,
        note=f"{tname}'s rule for the first output plus mean's (g / N, broadcast) for the second",
    )
    return several_reduction(
        base,
        (tname, "mean"),
        f,
        df,
        lambda t, input, dim, correction, keepdim: getattr(t, name)(
            input, dim, correction=correction, keepdim=keepdim
        ),
        output_fields=False,
    )


def _extremum(name: str, f: Callable[..., Array], pick: Callable[..., Array], pair: str) -> Op:
    base = reduction(
        name,
        lambda x, dims, full, f=f: f(x, axis=dims, keepdims=True),
        select_vjp(pick),
        lambda t: None,
        samples=both(
            sweep(INT_CASES, ties),
            fixed(
                ("NaN, full", PEAKS, {}),
                ("NaN by row", PEAKS, {"dim": 1}),
                ("six 2s, full", [[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]], {}),
            ),
        ),
        dim=ONE_D,
        check=no_keepdim_without_dim(name),
        note="dim=None: ties share the gradient equally (1/n each; if the result is NaN, the "
        "NaNs share it); with dim: (values, indices), the values' gradient goes to the index "
        "returned, the first extremal one (first NaN), torch's CPU index",
    )
    return several_reduction(
        base,
        ("values", "indices"),
        _select(f, pick),
        _selected_vjp,
        lambda t, input, dim, keepdim: (
            getattr(t, name)(input) if dim is None else getattr(t, name)(input, dim, keepdim)
        ),
        outputs_with="dim",
        integer_outputs=("indices",),
        # torch.max(input, other) is the elementwise maximum.
        tensor_overload=pair,
    )


def _aminmax() -> Op:
    base = reduction(
        "aminmax",
        lambda x, dims, full: x,  # never called: the op always has both outputs
        lambda g, out, x, dims, full: g,
        lambda t: None,
        samples=both(sweep(INT_CASES, ties), fixed(("NaN by row", PEAKS, {"dim": 1}))),
        dim=Param("dim", "int?", None, kw_only=True),
        check=no_empty_extremum("aminmax"),
        note="amin's and amax's rules: ties split the gradient evenly (1/count); a NaN in a "
        "slice makes its gradient NaN",
    )
    return several_reduction(
        base,
        ("min", "max"),
        lambda x, dims, full: (
            np.amin(x, axis=dims, keepdims=True),
            np.amax(x, axis=dims, keepdims=True),
        ),
        _aminmax_vjp,
        lambda t, input, dim, keepdim: t.aminmax(input, dim=dim, keepdim=keepdim),
    )


def _scan_op(name: str, better: Callable[[Array, Array], Array]) -> Op:
    base = scan(name, lambda x, d: x, lambda g, out, x, d: g, lambda t: None, samples=_scan_samples)
    return replace(
        base,
        forward=_cumulative(better),
        vjp=_cumulative_vjp,
        torch=lambda t, input, dim, name=name: getattr(t, name)(input, dim),
        shape=lambda input, dim: (base.shape(input=input, dim=dim),) * 2,
        outputs=("values", "indices"),
        integer_outputs=("indices",),
        note="(values, indices); the values' gradient is added at the index of each running "
        "extremum, the latest of equal ones (an equal or NaN element takes over)",
    )


def _sort_shape(
    input: Shape, dim: int = -1, descending: bool = False, stable: bool = False
) -> tuple[Shape, Shape]:
    norm_dim(dim, len(input))
    return input, input


OPS: Sequence[Op] = [
    _extremum("max", np.max, np.argmax, "maximum"),
    _extremum("min", np.min, np.argmin, "minimum"),
    _aminmax(),
    _stat("var_mean", variance, var_vjp, "var"),
    _stat(
        "std_mean",
        lambda x, dims, full, correction: np.sqrt(variance(x, dims, full, correction)),
        std_vjp,
        "std",
    ),
    Op(
        name="sort",
        family="reductions",
        params=(
            Param("input", "tensor"),
            Param("dim", "int", -1),
            Param("descending", "bool", False),
            Param("stable", "bool", False, kw_only=True),
        ),
        forward=_sort_forward,
        vjp=_sort_vjp,
        torch=lambda t, input, dim, descending, stable: t.sort(
            input, dim=dim, descending=descending, stable=stable
        ),
        shape=_sort_shape,
        samples=_sort_samples,
        outputs=("values", "indices"),
        integer_outputs=("indices",),
        note="(values, indices); the values' gradient goes back to the indices; ties: with "
        "stable=True in their input order; with stable=False (the default) in the order of "
        "the libstdc++ std::sort torch's CPU kernel uses, which keeps input order only in "
        "slices of at most 16 elements (reproduced); NaN the largest",
    ),
    _scan_op("cummax", np.greater),
    _scan_op("cummin", np.less),
]
