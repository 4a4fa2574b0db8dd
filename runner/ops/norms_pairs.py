"""Distances between every pair of rows (rows of the norms family): cdist and pdist, as torch's
CPU kernels compute them (aten/src/ATen/native/cpu/DistanceOpsKernel.cpp). Their backward is not
linalg.vector_norm's: each pair's gradient is a function of its difference ``d``, its distance
and the upstream ``g`` alone (``backward`` below), so ord inf gives every tied coordinate the
whole ``g * sign(d)`` (vector_norm splits it), and p = 0 gives zeros. cdist with p = 2 and more
than 25 rows in x1 or x2 (by default) takes torch's matrix-product path instead
(``_euclidean_dist``), whose forward and backward are other formulas (`_mm_dist`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, broadcast_shapes

FAMILY = "norms"
MODES = (
    "use_mm_for_euclid_dist_if_necessary",
    "use_mm_for_euclid_dist",
    "donot_use_mm_for_euclid_dist",
)
MM_ROWS = 25  # torch's threshold: the default mode uses the product path beyond 25 rows
INF = float("inf")


def _sign(d: Array) -> Array:
    return np.asarray((d > 0).astype(d.dtype) - (d < 0))


def distance(d: Array, p: float) -> Array:
    """The p-distance over the last axis of differences ``d`` (float64), as torch's kernels: p 0
    counts nonzero coordinates, inf is the largest |d|."""
    a = np.abs(d)
    if p == 0:
        return np.asarray(np.sum(np.minimum(np.ceil(a), 1), axis=-1))
    if p == 1:
        return np.asarray(np.sum(a, axis=-1))
    if p == 2:
        return np.asarray(np.sqrt(np.sum(a * a, axis=-1)))
    if np.isinf(p):
        return np.asarray(np.max(a, axis=-1, initial=0.0))
    return np.asarray(np.sum(a**p, axis=-1) ** (1 / p))


def backward(d: Array, g: Array, dist: Array, p: float) -> Array:
    """One pair's gradient for its first point (the second gets its negation): torch's
    odist/lttdist/tdist/pdist/idist ``backward``, same order of operations (an infinite ``g``
    meets the same zeros). ``g`` and ``dist`` carry a trailing axis of 1."""
    if p == 0:
        return np.zeros_like(d)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if p == 1:
            return g * _sign(d)
        if p < 2:
            r = _sign(d) * np.abs(d) ** (p - 1) * g / dist ** (p - 1)
            r = np.where(dist == 0, 0.0, r)
            return np.asarray(np.where((d == 0) & (p < 1), 0.0, r))
        if p == 2:
            return np.asarray(np.where(dist == 0, 0.0, g * d / dist))
        if np.isinf(p):
            return np.asarray(g * _sign(d) * (np.abs(d) == dist))
        return np.asarray(np.where(dist == 0, 0.0, d * np.abs(d) ** (p - 2) * g / dist ** (p - 1)))


# --- cdist ------------------------------------------------------------------------------------


def _uses_mm(x1: Shape, x2: Shape, p: float, compute_mode: str) -> bool:
    """torch.cdist's dispatch: the product path for p = 2 when asked, or by default beyond 25
    rows (never for an empty operand)."""
    if p != 2 or 0 in x1 or 0 in x2:
        return False
    if compute_mode == "use_mm_for_euclid_dist":
        return True
    return compute_mode == MODES[0] and (x1[-2] > MM_ROWS or x2[-2] > MM_ROWS)


def _cdist_shape(x1: Shape, x2: Shape, p: float, compute_mode: str) -> Shape:
    if len(x1) < 2 or len(x2) < 2:
        raise ShapeError(f"cdist: x1 {tuple(x1)} and x2 {tuple(x2)} need at least 2 dims (rows, "
                         "coordinates)")  # fmt: skip
    if x1[-1] != x2[-1]:
        raise ShapeError(f"cdist: x1 {tuple(x1)} and x2 {tuple(x2)} must have the same number of "
                         "coordinates (last dim)")  # fmt: skip
    if not p >= 0:
        raise ShapeError(f"cdist: p must be >= 0, got {p}")
    if compute_mode not in MODES:
        raise ShapeError(f"cdist: compute_mode must be one of {', '.join(MODES)}")
    return (*broadcast_shapes(tuple(x1[:-2]), tuple(x2[:-2])), x1[-2], x2[-2])


def _pair_up(x1: Any, x2: Any) -> tuple[Array, Array]:
    """x1 and x2 in float64 with their batch dims broadcast."""
    a, b = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return np.broadcast_to(a, batch + a.shape[-2:]), np.broadcast_to(b, batch + b.shape[-2:])


def _mm_dist(a: Array, b: Array) -> Array:
    """torch's _euclidean_dist: sqrt(clamp_min(|a|^2 - 2 a.b + |b|^2, 0)) by one product, so
    coincident points may come out a little above 0 where the sum does not cancel exactly."""
    na = np.sum(a * a, axis=-1, keepdims=True)
    nb = np.sum(b * b, axis=-1, keepdims=True)
    left = np.concatenate([-2 * a, na, np.ones_like(na)], axis=-1)
    right = np.concatenate([b, np.ones_like(nb), nb], axis=-1)
    return np.asarray(np.sqrt(np.maximum(left @ np.swapaxes(right, -1, -2), 0)))


def _cdist(x1: Array, x2: Array, p: float = 2.0, compute_mode: str = MODES[0]) -> Array:
    a, b = _pair_up(x1, x2)
    if _uses_mm(np.shape(x1), np.shape(x2), p, compute_mode):
        out = _mm_dist(a, b)
    else:
        out = distance(a[..., :, None, :] - b[..., None, :, :], float(p))
    return np.asarray(out.astype(np.result_type(x1, x2)))


def _cdist_vjp(g: Array, out: Array, x1: Array, x2: Array, p: float = 2.0,
               compute_mode: str = MODES[0]) -> tuple[Array, Array]:  # fmt: skip
    """Gradients at the broadcast batch shape (the engine sums them down)."""
    a, b = _pair_up(x1, x2)
    g = np.asarray(g, np.float64)
    if _uses_mm(np.shape(x1), np.shape(x2), p, compute_mode):
        res = _mm_dist(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(res == 0, 0.0, g / res)  # _euclidean_dist_backward
        return (
            a * ratio.sum(-1, keepdims=True) - ratio @ b,
            b * ratio.sum(-2)[..., None] - np.swapaxes(ratio, -1, -2) @ a,
        )
    d = a[..., :, None, :] - b[..., None, :, :]
    each = backward(d, g[..., None], distance(d, float(p))[..., None], float(p))
    return each.sum(axis=-2), -each.sum(axis=-3)


def _cdist_samples(rng: np.random.Generator) -> list[Sample]:
    def s(shape1: Shape, shape2: Shape, p: float, note: str, **kw: Any) -> Sample:
        args = {"x1": rng.normal(size=shape1), "x2": rng.normal(size=shape2), "p": p, **kw}
        return Sample(args, note)

    pts = np.array([[0.0, 1.0, -2.0], [1.0, 1.0, 0.5], [2.0, -1.0, 0.0]])
    other = np.array([[0.0, 1.0, -2.0], [1.0, 3.0, 0.5], [0.0, 0.0, 1.0], [3.0, 1.0, 1.5]])
    grid = rng.integers(-3, 4, size=(30, 3)).astype(np.float64)  # squares and sums exact
    return [
        *(s((3, 4), (5, 4), p, f"p={p}") for p in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, INF)),
        s((2, 1, 3, 2), (3, 4, 2), 2.0, "batched, broadcast batch dims"),
        s((2, 3, 2), (2, 4, 2), INF, "batched, p=inf"),
        *(
            Sample({"x1": pts, "x2": other, "p": p}, f"coincident points and ties, p={p}")
            for p in (0.0, 0.5, 1.0, 2.0, 3.0, INF)
        ),  # fmt: skip
        s((30, 3), (4, 3), 2.0, "30 rows: the product path"),
        s((3, 3), (4, 3), 2.0, "the product path asked for", compute_mode=MODES[1]),
        s((30, 3), (4, 3), 2.0, "30 rows, product path refused", compute_mode=MODES[2]),
        Sample({"x1": grid, "x2": grid[:5]}, "product path, coincident points (exact: 0)"),
    ]


# --- pdist ------------------------------------------------------------------------------------


def _pdist_shape(input: Shape, p: float) -> Shape:
    if len(input) != 2:
        raise ShapeError(f"pdist: input {tuple(input)} must be 2-d (rows, coordinates)")
    if not p >= 0:
        raise ShapeError(f"pdist: p must be >= 0, got {p}")
    n = input[0]
    return (n * (n - 1) // 2,)


def _pairs(input: Any) -> tuple[Array, Array, Array, Array]:
    """(x in float64, i, j, x[i] - x[j]) for the pairs i < j in row-major order."""
    x = np.asarray(input, np.float64)
    i, j = np.triu_indices(x.shape[0], 1)
    return x, i, j, x[i] - x[j]


def _pdist(input: Array, p: float = 2.0) -> Array:
    _, _, _, d = _pairs(input)
    return np.asarray(distance(d, float(p)).astype(np.asarray(input).dtype))


def _pdist_vjp(g: Array, out: Array, input: Array, p: float = 2.0) -> tuple[Array]:
    x, i, j, d = _pairs(input)
    each = backward(d, np.asarray(g, np.float64)[:, None], distance(d, float(p))[:, None], p)
    gx = np.zeros_like(x)
    np.add.at(gx, i, each)
    np.add.at(gx, j, -each)
    return (gx,)


def _pdist_samples(rng: np.random.Generator) -> list[Sample]:
    rows = np.array([[0.0, 1.0, -2.0], [1.0, 1.0, 0.5], [0.0, 1.0, -2.0], [2.0, -1.0, 0.0]])
    return [
        *(
            Sample({"input": rng.normal(size=(4, 3)), "p": p}, f"p={p}")
            for p in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, INF)
        ),  # fmt: skip
        *(
            Sample({"input": rows, "p": p}, f"coincident rows and ties, p={p}")
            for p in (0.5, 1.0, 2.0, 3.0, INF)
        ),  # fmt: skip
        Sample({"input": rng.normal(size=(1, 3))}, "one row: no pairs"),
        Sample({"input": rng.normal(size=(5, 1)), "p": 1.0}, "one coordinate"),
    ]


_PAIR_NOTE = (
    "torch's kernel gradient per pair, a function of the difference d and the distance: p=0 "
    "gives zeros; p=1 g * sign(d) (0 where d = 0); 0 < p < 2 and p > 2 give 0 at a zero "
    "distance, and p < 1 gives 0 at a zero coordinate; p=2 gives 0 at a zero distance "
    "(coincident points); p=inf gives every coordinate where |d| equals the distance the "
    "whole g * sign(d) (ties are NOT split, unlike vector_norm)"
)

OPS: list[Op] = [
    Op(
        name="cdist",
        family=FAMILY,
        params=(
            Param("x1", "tensor"),
            Param("x2", "tensor"),
            Param("p", "float", 2.0),
            Param("compute_mode", "str", MODES[0], choices=MODES),
        ),
        forward=_cdist,
        vjp=_cdist_vjp,
        torch=lambda t, **kw: t.cdist(**kw),
        shape=_cdist_shape,
        samples=_cdist_samples,
        note="x1 (*, P, M), x2 (*, R, M) -> (*, P, R), batch dims broadcast; "
        + _PAIR_NOTE
        + ". p=2 with compute_mode 'use_mm_for_euclid_dist', or by default when P or R > 25, is "
        "torch's product path: sqrt(clamp_min(|a|^2 - 2 a.b + |b|^2, 0)), so coincident points "
        "may get a small positive distance from round-off and then a large gradient; 0 "
        "gradient only where that sum is exactly 0",
    ),
    Op(
        name="pdist",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("p", "float", 2.0)),
        forward=_pdist,
        vjp=_pdist_vjp,
        torch=lambda t, **kw: t.nn.functional.pdist(**kw),
        shape=_pdist_shape,
        samples=_pdist_samples,
        note="input (N, M) -> the N (N - 1) / 2 distances of rows i < j in row-major order "
        "(the upper triangle of cdist(input, input) without the mm path); " + _PAIR_NOTE,
    ),
]
