"""scatter_reduce (part of the sorting family): src reduced into input at the index's places
along dim with sum, prod, mean, amax or amin, input's own element included or not. The VJP is
torch's ``scatter_reduce_backward`` (FunctionsManual.cpp) formula for formula, conventions
included: prod's gradient divides the result by the element (with its zeros handled apart),
amax/amin split the gradient evenly among the elements equal to the result, and input's element
counts among them even with ``include_self=False`` (when it gets no gradient itself)."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.indexing import _1d, _scatter_at, _scatter_shape, _source
from runner.ops.shape_rearrange import randn
from runner.ops.spec import Array, Op, Param, Sample, Shape

REDUCES = ("sum", "prod", "mean", "amax", "amin")
_AT = {"sum": np.add, "mean": np.add, "prod": np.multiply, "amax": np.maximum, "amin": np.minimum}
_IDENTITY = {"sum": 0.0, "mean": 0.0, "prod": 1.0, "amax": -np.inf, "amin": np.inf}


def _reduce_into(x: Array, at: tuple[Any, ...], s: Array, reduce: str, include_self: bool) -> Array:
    """torch's forward on the (at least 1-d) input ``x``: a copy with ``s`` (at the index's
    shape) reduced in at ``at``; mean divides by the count (input's element counted with
    include_self; a place nothing reaches keeps its value)."""
    out = np.array(x, dtype=x.dtype)
    if not include_self:
        out[at] = _IDENTITY[reduce]
    with np.errstate(invalid="ignore", over="ignore"):
        _AT[reduce].at(out, at, s)
    if reduce == "mean":
        out = out / _counts(x, at, include_self)
    return out


def _counts(x: Array, at: tuple[Any, ...], include_self: bool) -> Array:
    """mean's N: how many elements each place averages, 1 where none (torch's masked_fill)."""
    n = np.full(x.shape, 1.0 if include_self else 0.0, x.dtype)
    np.add.at(n, at, 1.0)
    return np.where(n == 0, 1.0, n).astype(x.dtype)


def _scatter_reduce(input: Any, dim: int, index: Any, src: Any, reduce: str,
                    include_self: bool = True) -> Array:  # fmt: skip
    x = _1d(np.asarray(input))
    if not np.size(index):
        return np.array(input)
    at, _ = _scatter_at(input, dim, index, "scatter_reduce")
    out = _reduce_into(x, at, _source(src, index).astype(x.dtype), reduce, include_self)
    return out.reshape(np.shape(input))


def _scatter_reduce_vjp(g: Array, out: Array, input: Any, dim: int, index: Any, src: Any,
                        reduce: str, include_self: bool = True) -> tuple[Any, ...]:  # fmt: skip
    g1, x, result = _1d(g), _1d(np.asarray(input)), _1d(out)
    gs_full = np.zeros(np.shape(src) or (1,), g.dtype)
    if not np.size(index):
        return g, None, gs_full.reshape(np.shape(src))
    at, read = _scatter_at(input, dim, index, "scatter_reduce")
    s = _source(src, index).astype(x.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        if reduce == "sum":
            gx, gs = g1, g1[at]
        elif reduce == "mean":
            n = _counts(x, at, include_self)
            gx, gs = g1 / n, g1[at] / n[at]
        elif reduce == "prod":
            # input: grad * (the result with input's zeros read as 1) / input (zeros as 1)
            masked = np.where(x == 0, 1, x).astype(x.dtype)
            gx = g1 * _reduce_into(masked, at, s, "prod", include_self) / masked
            # src: a lone zero among its place's src gets the product of the others;
            # every other element the result divided by it (zeros as 1)
            zero = s == 0
            zeros = np.zeros(x.shape)
            np.add.at(zeros, at, zero.astype(np.float64))
            lone = zero & (zeros[at] == 1)
            others = _reduce_into(x, at, np.where(lone, 1, s).astype(x.dtype), "prod", include_self)
            gs = np.where(lone, (g1 * others)[at], (g1 * result)[at] / np.where(zero, 1, s))
        else:
            # amax, amin: the gradient split among input's element and the src elements equal
            # to the result (input's counts even when not included)
            value = result[at]
            self_is = (x == result).astype(x.dtype)
            src_is = (s == value).astype(x.dtype)
            n = self_is.copy()
            np.add.at(n, at, src_is)
            share = g1 / n
            gx, gs = self_is * share, src_is * share[at]
    gx = np.array(gx, dtype=g.dtype)
    if not include_self:
        gx[at] = 0
    gs_full[read] = gs
    return gx.reshape(np.shape(input)), None, gs_full.reshape(np.shape(src))


def _scatter_reduce_shape(input: Shape, dim: int, index: Shape, src: Shape, reduce: str,
                          include_self: bool = True) -> Shape:  # fmt: skip
    return _scatter_shape(input, dim, index, src, op="scatter_reduce")


def _i(values: Any) -> Array:
    return np.asarray(values, dtype=np.int64)


def _samples(rng: np.random.Generator) -> list[Sample]:
    out = []
    idx2 = _i([[0, 2, 0], [2, 2, 1]])
    for reduce in REDUCES:
        for include_self in (True, False):
            out.append(
                Sample(
                    {
                        "input": randn(rng, 5),
                        "dim": 0,
                        "index": _i([1, 1, 1, 3, 3, 0]),
                        "src": randn(rng, 6),
                        "reduce": reduce,
                        "include_self": include_self,
                    },
                    f"{reduce}, include_self={include_self}, duplicated indices",
                )  # fmt: skip
            )
        out.append(
            Sample(
                {
                    "input": randn(rng, 3, 4),
                    "dim": 0,
                    "index": idx2,
                    "src": randn(rng, 2, 3),
                    "reduce": reduce,
                    "include_self": True,
                },
                f"{reduce}, dim 0, index narrower than input",
            )  # fmt: skip
        )
    ties_in = np.asarray([2.0, 0.0, 3.0, 1.0])
    ties_src = np.asarray([2.0, 2.0, 0.0, 3.0, 3.0])
    tie_idx = _i([0, 0, 1, 2, 2])
    for reduce in ("amax", "amin", "prod"):
        for include_self in (True, False):
            out.append(
                Sample(
                    {
                        "input": ties_in,
                        "dim": -1,
                        "index": tie_idx,
                        "src": ties_src,
                        "reduce": reduce,
                        "include_self": include_self,
                    },
                    f"{reduce}, include_self={include_self}: ties with input and among src, zeros",
                )  # fmt: skip
            )
    out.append(
        Sample(
            {
                "input": np.asarray([0.0, 2.0, 0.0]),
                "dim": 0,
                "index": _i([0, 1, 1, 2, 2]),
                "src": np.asarray([3.0, 0.0, 4.0, 0.0, 0.0]),
                "reduce": "prod",
                "include_self": True,
            },
            "prod: a lone zero in input, a lone zero in src, two zeros",
        )  # fmt: skip
    )
    out.append(
        Sample(
            {
                "input": randn(rng, 2, 3),
                "dim": 1,
                "index": _i(np.zeros((2, 0))),
                "src": randn(rng, 2, 0),
                "reduce": "amax",
                "include_self": False,
            },
            "empty index",
        )  # fmt: skip
    )
    return out


SCATTER_REDUCE = Op(
    name="scatter_reduce",
    family="sorting",
    params=(
        Param("input", "tensor"),
        Param("dim", "int"),
        Param("index", "tensor", grad=False, integer=True),
        Param("src", "tensor"),
        Param("reduce", "str", choices=REDUCES),
        Param("include_self", "bool", True, kw_only=True),
    ),
    forward=_scatter_reduce,
    vjp=_scatter_reduce_vjp,
    torch=lambda t, input, dim, index, src, reduce, include_self: t.scatter_reduce(
        input, dim, index, src, reduce, include_self=include_self
    ),
    shape=_scatter_reduce_shape,
    samples=_samples,
    note="src[i][j] reduced into input[index[i][j]][j] (dim 0) with sum, prod, mean, amax or "
    "amin; include_self=False leaves input's element out at the places written (it then gets "
    "no gradient there). mean divides by the count (input's element counted with include_self). "
    "prod: input's gradient is grad * result / input with input's zeros read as 1 (so a zero "
    "gets the product of the rest), src's is grad * result / src except that a lone zero among "
    "its place's src gets the product of the others (input's zeros do not count there). "
    "amax/amin: the gradient is split evenly among input's element and the src elements equal "
    "to the result; input's element counts in that split even with include_self=False, where "
    "its share is then lost (torch's formula); a NaN result gives NaN gradients to its place. "
    "torch refuses the backward when src is larger than index",
)
