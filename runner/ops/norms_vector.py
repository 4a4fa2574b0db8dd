"""Vector norms and the distances built on them (rows of the norms family): linalg.vector_norm,
dist, pairwise_distance and normalize. Each is torch's composite over linalg_vector_norm, whose
backward (`norm_vjp`, torch's norm_backward) carries the conventions: no gradient for ord 0,
sign(x) for ord 1, 0 at a zero norm for ord > 1, ties of |x| split for ord +-inf, 0 at zero
entries for ord < 1."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from runner.ops.reductions_rules import norm_vjp, reduction, vector_norm
from runner.ops.reductions_samples import DIMS_CASES, NORM_PS, both, fixed, sweep
from runner.ops.spec import (
    Array,
    Op,
    Param,
    Sample,
    Shape,
    ShapeError,
    broadcast_shapes,
    norm_dims,
    reduced_shape,
)

FAMILY = "norms"
ORDS = (2, *NORM_PS)
INF = float("inf")


def _ord(value: Any, op: str) -> float:
    if isinstance(value, str):
        raise ShapeError(f"{op}: ord must be a number, got {value!r}")
    return float(value)


def _edges(key: str) -> Any:
    return both(
        *(
            fixed(
                (
                    "zero entries",
                    [[0.0, 1.0, -2.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                    {"dim": 1, key: p},
                ),  # fmt: skip
                ("zero vector", [0.0, 0.0, 0.0], {key: p}),
                ("ties in |x|", [[-2.0, 2.0, 1.0]], {"dim": 1, key: p, "keepdim": True}),
                ("0-d", 0.0 if p == 2 else -1.5, {key: p}),
            )
            for p in ORDS
        )
    )


_VECTOR_NORM = reduction(
    "vector_norm",
    lambda x, dims, full, ord: vector_norm(x, dims, full, _ord(ord, "vector_norm")),
    lambda g, out, x, dims, full, ord: norm_vjp(g, out, x, dims, full, float(ord)),
    lambda t, input, ord, dim, keepdim: t.linalg.vector_norm(input, ord, dim, keepdim),
    samples=both(
        sweep(DIMS_CASES, ord=2),
        *(
            sweep([((3, 4), -1, False), ((3, 4), [0, 1], True), ((), 0, False)], ord=p)
            for p in NORM_PS
        ),  # fmt: skip
        _edges("ord"),
    ),
    lead=(Param("ord", "float", 2),),
    note="torch.linalg.vector_norm: (sum |x|^ord)^(1/ord) over dim (every dim for None or []); "
    "ord 0 counts the nonzero entries (no gradient), ord 1 gives sign(x) (0 at 0), ord 2 and "
    "ord > 1 give 0 at a zero norm, ord +-inf splits the gradient over the ties of |x| (0 at "
    "zero entries for -inf), ord < 1 gives 0 at zero entries",
)


# --- dist, pairwise_distance: a norm of a difference ---


def _dist(input: Any, other: Any, p: float) -> Array:
    d = np.asarray(np.subtract(input, other))
    dims = tuple(range(d.ndim))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(vector_norm(d, dims, True, float(p))).reshape(())


def _dist_vjp(g: Array, out: Array, input: Any, other: Any, p: float) -> tuple[Any, Any]:
    d = np.asarray(np.subtract(input, other))
    dims = tuple(range(d.ndim))
    kept = (1,) * d.ndim
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gd = norm_vjp(g.reshape(kept), out.reshape(kept), d, dims, True, float(p))
    if gd is None:
        return None, None
    gd = np.broadcast_to(gd, d.shape)
    return gd, -gd


def _pairwise(x1: Any, x2: Any, eps: float) -> tuple[Array, int]:
    d = np.asarray(np.subtract(x1, x2) + np.asarray(eps, np.result_type(x1, x2)))
    return d, max(d.ndim - 1, 0)


def _pairwise_distance(x1: Any, x2: Any, p: float, eps: float, keepdim: bool) -> Array:
    d, ax = _pairwise(x1, x2, eps)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kept = np.asarray(vector_norm(d, (ax,) if d.ndim else (), d.ndim == 0, float(p)))
    return kept.reshape(_pairwise_shape(np.shape(x1), np.shape(x2), p, eps, keepdim))


def _pairwise_vjp(
    g: Array, out: Array, x1: Any, x2: Any, p: float, eps: float, keepdim: bool
) -> tuple[Any, Any]:
    d, ax = _pairwise(x1, x2, eps)
    dims = (ax,) if d.ndim else ()
    kept = reduced_shape(d.shape, dims, True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gd = norm_vjp(g.reshape(kept), out.reshape(kept), d, dims, d.ndim == 0, float(p))
    if gd is None:
        return None, None
    gd = np.broadcast_to(gd, d.shape)
    return gd, -gd


def _pairwise_shape(x1: Shape, x2: Shape, p: float, eps: float, keepdim: bool) -> Shape:
    shape = broadcast_shapes(x1, x2)
    return reduced_shape(shape, norm_dims(-1, len(shape)) if shape else (), keepdim)


# --- normalize: x / max(norm, eps), the clamp differentiated (clamp_min passes at eps) ---


def _normalize_parts(input: Any, p: float, dim: int) -> tuple[Array, tuple[int, ...], Array]:
    x = np.asarray(input)
    dims = norm_dims(dim, x.ndim)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.asarray(vector_norm(x, dims, x.ndim == 0, float(p)))
    return x, dims, n


def _normalize(input: Any, p: float, dim: int, eps: float) -> Array:
    x, _, n = _normalize_parts(input, p, dim)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(x / np.maximum(n, eps), dtype=x.dtype)


def _normalize_vjp(
    g: Array, out: Array, input: Any, p: float, dim: int, eps: float
) -> tuple[Array]:
    x, dims, n = _normalize_parts(input, p, dim)
    c = np.maximum(n, eps)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gc = -np.sum(g * x / (c * c), axis=dims, keepdims=True)
        gn = np.where(n >= eps, gc, 0)  # clamp_min's backward: grad where n >= eps
        through = norm_vjp(gn.astype(g.dtype), n, x, dims, x.ndim == 0, float(p))
    return (g / c + (0 if through is None else through),)


def _normalize_shape(input: Shape, p: float, dim: int, eps: float) -> Shape:
    norm_dims(dim, len(input))
    return tuple(input)


# --- samples ---


def _dist_samples(rng: np.random.Generator) -> list[Sample]:
    out = [
        Sample({"input": rng.normal(size=(2, 3)), "other": rng.normal(size=3), "p": p}, f"p={p}")
        for p in ORDS
        if p != 0  # torch's backward raises when other requires grad (below)
    ]
    same = np.array([[1.0, -2.0], [0.5, 0.5]])
    return [
        *out,
        Sample({"input": same, "other": same.copy()}, "coincident: zero norm"),
        Sample({"input": same, "other": same * np.array([1.0, 0.0]), "p": 0.5}, "zero entries"),
        Sample({"input": np.asarray(1.5), "other": np.asarray(-0.5), "p": 3}, "0-d"),
    ]


def _pairwise_samples(rng: np.random.Generator) -> list[Sample]:
    out = [
        Sample({"x1": rng.normal(size=(3, 4)), "x2": rng.normal(size=(3, 4)), "p": p}, f"p={p}")
        for p in ORDS
    ]
    a = np.array([[1.0, 2.0], [0.0, 0.0]])
    return [
        *out,
        Sample({"x1": a, "x2": a - 1e-6, "eps": 1e-6}, "x1 - x2 + eps = 0"),
        Sample(
            {"x1": rng.normal(size=4), "x2": rng.normal(size=(2, 4)), "keepdim": True},
            "broadcast, keepdim",
        ),  # fmt: skip
        Sample({"x1": np.asarray(0.3), "x2": np.asarray(-1.0)}, "0-d"),
        Sample({"x1": rng.normal(size=3), "x2": rng.normal(size=3), "p": 1, "eps": 0.0}, "1-d"),
    ]


def _normalize_samples(rng: np.random.Generator) -> list[Sample]:
    out = [Sample({"input": rng.normal(size=(3, 4)), "p": p}, f"p={p}") for p in (2, 1, 3, INF)]
    small = np.array([[0.0, 0.0, 0.0], [1e-13, 0.0, 0.0], [3.0, -4.0, 0.0]])
    return [
        *out,
        Sample({"input": rng.normal(size=(2, 3, 2)), "dim": -1}, "dim -1"),
        Sample({"input": small}, "zero and tiny rows: the clamp at eps"),
        Sample({"input": small, "eps": 5.0}, "eps 5: clamped, and at eps exactly (norm 5)"),
        Sample({"input": np.asarray(-2.0), "dim": 0}, "0-d"),
    ]


OPS: list[Op] = [
    replace(_VECTOR_NORM, family=FAMILY),
    Op(
        name="dist",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("other", "tensor"), Param("p", "float", 2)),
        forward=_dist,
        vjp=_dist_vjp,
        torch=lambda t, input, other, p: t.dist(input, other, p),
        shape=lambda input, other, p: (broadcast_shapes(input, other), ())[1],
        samples=_dist_samples,
        recomputes_out=True,
        note="vector_norm(input - other, p) over every element (broadcast), with its "
        "conventions; other's gradient is the negated input's. p=0 has no gradient, and torch's "
        "backward raises ('Expected a proper Tensor but got None') when other requires grad",
    ),
    Op(
        name="pairwise_distance",
        family=FAMILY,
        params=(
            Param("x1", "tensor"),
            Param("x2", "tensor"),
            Param("p", "float", 2.0),
            Param("eps", "float", 1e-6),
            Param("keepdim", "bool", False),
        ),
        forward=_pairwise_distance,
        vjp=_pairwise_vjp,
        torch=lambda t, **kw: t.nn.functional.pairwise_distance(**kw),
        shape=_pairwise_shape,
        samples=_pairwise_samples,
        recomputes_out=True,
        note="vector_norm(x1 - x2 + eps, p) over the last dim (eps added, not clamped: "
        "x1 - x2 = -eps is a zero norm, 0 gradient for p=2)",
    ),
    Op(
        name="normalize",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("p", "float", 2.0),
            Param("dim", "int", 1),
            Param("eps", "float", 1e-12),
        ),
        forward=_normalize,
        vjp=_normalize_vjp,
        torch=lambda t, **kw: t.nn.functional.normalize(**kw),
        shape=_normalize_shape,
        samples=_normalize_samples,
        note="input / max(vector_norm(input, p, dim), eps), the clamp differentiated: below eps "
        "the gradient is g / eps (the norm gets none), at eps exactly it passes (clamp_min's "
        "backward is grad where norm >= eps)",
    ),
]
