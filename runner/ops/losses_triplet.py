"""triplet_margin_loss (a row of the losses family): torch's composite over pairwise_distance,
``clamp_min(margin + d(a, p) - d(a, n), 0)`` with ``d(a, n)`` replaced by ``minimum(d(a, n),
d(p, n))`` under swap, then the reduction. Each distance's gradient is pairwise_distance's
(norms_vector.py); clamp_min passes the gradient at 0, minimum splits it in half at a tie."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.nn_loss import _ftype, _reduce, _reduced, _reduction, _spread
from runner.ops.norms_vector import _pairwise_distance, _pairwise_shape, _pairwise_vjp
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, broadcast_shapes, sum_to

FAMILY = "losses"


def distances(anchor: Array, positive: Array, negative: Array, p: float, eps: float
              ) -> tuple[Array, Array, Array]:  # fmt: skip
    """d(anchor, positive), d(anchor, negative), d(positive, negative): pairwise_distance over
    the last dim, eps added to each difference."""

    def d(x1: Array, x2: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _pairwise_distance(x1, x2, p, eps, False)

    return d(anchor, positive), d(anchor, negative), d(positive, negative)


def _parts(anchor: Any, positive: Any, negative: Any, p: float, eps: float
           ) -> tuple[tuple[Array, Array, Array], tuple[Array, Array, Array]]:  # fmt: skip
    xs = tuple(np.asarray(v, np.float64) for v in (anchor, positive, negative))
    a, pos, neg = xs
    return (a, pos, neg), distances(a, pos, neg, float(p), eps)


def _triplet(anchor: Any, positive: Any, negative: Any, margin: float = 1.0, p: float = 2.0,
             eps: float = 1e-6, swap: bool = False, reduction: str = "mean") -> Array:  # fmt: skip
    _, (dp, dn, ds) = _parts(anchor, positive, negative, p, eps)
    loss = np.maximum(margin + dp - (np.minimum(dn, ds) if swap else dn), 0)
    return np.asarray(_reduce(loss, reduction)).astype(_ftype(anchor, positive, negative))


def _triplet_vjp(g: Array, out: Array, anchor: Any, positive: Any, negative: Any,
                 margin: float = 1.0, p: float = 2.0, eps: float = 1e-6, swap: bool = False,
                 reduction: str = "mean") -> tuple[Any, Any, Any]:  # fmt: skip
    (a, pos, neg), (dp, dn, ds) = _parts(anchor, positive, negative, p, eps)
    dneg = np.minimum(dn, ds) if swap else dn
    z = margin + dp - dneg
    ge = np.where(z >= 0, _spread(g, z.shape, reduction), 0)  # clamp_min passes at 0
    gneg = -ge
    if swap:  # minimum's backward: half each at a tie
        half = np.where(dn == ds, gneg / 2, gneg)
        g_dn, g_ds = np.where(dn > ds, 0, half), np.where(dn < ds, 0, half)
    else:
        g_dn, g_ds = gneg, None

    def through(gd: Array, d: Array, x1: Array, x2: Array) -> tuple[Any, Any]:
        return _pairwise_vjp(sum_to(gd, d.shape), d, x1, x2, float(p), eps, False)

    ga, gp = through(ge, dp, a, pos)
    ga2, gn = through(g_dn, dn, a, neg)
    if ga is None or ga2 is None:  # p = 0: no gradient
        return None, None, None
    ga = ga + ga2
    if g_ds is not None:
        gp2, gn2 = through(g_ds, ds, pos, neg)
        gp, gn = gp + gp2, gn + gn2
    return ga, gp, gn


def _triplet_shape(anchor: Shape, positive: Shape, negative: Shape, margin: float, p: float,
                   eps: float, swap: bool, reduction: str) -> Shape:  # fmt: skip
    if not len(anchor) == len(positive) == len(negative):
        raise ShapeError(
            f"triplet_margin_loss: anchor {tuple(anchor)}, positive {tuple(positive)} and "
            f"negative {tuple(negative)} must have the same number of dims"
        )
    if margin <= 0:
        raise ShapeError(f"triplet_margin_loss: margin must be > 0, got {margin}")
    pairs = ((anchor, positive), (anchor, negative), (positive, negative))
    shapes = [_pairwise_shape(x1, x2, p, eps, False) for x1, x2 in pairs]
    return _reduced(broadcast_shapes(*shapes), reduction)


def _triplet_samples(rng: np.random.Generator) -> list[Sample]:
    def s(shape: Shape, note: str, **kw: Any) -> Sample:
        xs = {k: rng.normal(size=shape) for k in ("anchor", "positive", "negative")}
        return Sample({**xs, **kw}, note)

    a = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    hinge = {"anchor": a, "positive": a + [[3.0, 4.0], [0.0, 1.0], [0.0, 1.0]],
             "negative": a + [[6.0, 8.0], [0.0, 2.0], [0.0, 0.5]], "eps": 0.0}  # fmt: skip
    tie = {"anchor": a, "positive": np.array([[2.0, 0.0], [1.0, 3.0], [0.0, 2.0]]),
           "negative": np.array([[1.0, 5.0], [1.0, 2.0], [0.0, 3.0]]), "eps": 0.0}  # fmt: skip
    return [
        s((4, 3), "(N, D)"),
        s((4, 3), "swap, sum", swap=True, reduction="sum", margin=2.0),
        s((3, 2), "p=1, none", p=1.0, reduction="none", margin=3.0),
        s((3, 4), "p=inf, swap", p=float("inf"), swap=True, margin=1.5),
        s((2, 3, 2), "3-d, p=3", p=3.0, reduction="none"),
        s((3,), "1-d: one triplet", margin=4.0),
        Sample(
            {**hinge, "margin": 5.0, "reduction": "none"}, "row 0 at the hinge: 5 + 5 - 10 = 0"
        ),  # fmt: skip
        Sample(
            {**tie, "swap": True, "margin": 4.0, "reduction": "none"},
            "swap: d(a, n) = d(p, n) in rows 0 and 1",
        ),  # fmt: skip
    ]


OPS: list[Op] = [
    Op(
        name="triplet_margin_loss",
        family=FAMILY,
        params=(
            Param("anchor", "tensor"),
            Param("positive", "tensor"),
            Param("negative", "tensor"),
            Param("margin", "float", 1.0),
            Param("p", "float", 2.0),
            Param("eps", "float", 1e-6),
            Param("swap", "bool", False),
            _reduction(),
        ),
        forward=_triplet,
        vjp=_triplet_vjp,
        torch=lambda t, **kw: t.nn.functional.triplet_margin_loss(**kw),
        shape=_triplet_shape,
        samples=_triplet_samples,
        note="max(margin + d(a, p) - d(a, n), 0), d = pairwise_distance(x1, x2, p, eps) over "
        "the last dim (eps added to the difference, not clamped; its conventions at a zero "
        "difference); at the hinge (= 0) the gradient passes (clamp_min's >=); swap uses "
        "min(d(a, n), d(p, n)), half the gradient to each at a tie; then the reduction",
    ),
]
