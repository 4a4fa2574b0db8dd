"""Per-element losses (part of the nn family): the loss of each element, then a reduction (see
nn_loss.py). Losses of the difference ``input - target`` share one builder; input and target
broadcast (torch warns), and 'mean' divides by the broadcast count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.elementwise_unary import sign
from runner.ops.nn_loss import REDUCTIONS, _ftype, _reduce, _reduced, _reduction, _spread
from runner.ops.spec import (
    Array,
    Op,
    Param,
    Sample,
    Shape,
    ShapeError,
    broadcast_shapes,
    sum_to,
)

FAMILY = "nn"
Attr = tuple[str, float, Callable[[float], bool], str]  # name, default, valid, what it must be


def diff_loss(
    name: str,
    f: Callable[[Array, Any], Array],
    df: Callable[[Array, Any], Array],
    *,
    attr: Attr | None = None,
    weight_mean: str = "",
    note: str = "",
) -> Op:
    """``f(d, a)`` / ``df(d, a)``: the loss of ``d = input - target`` and its derivative, ``a``
    the attribute (beta, delta). ``weight_mean`` names what a weighted 'mean' divides by: "sum"
    (the summed weights) or "count"; "" means the op takes no weight."""

    def parts(kw: dict[str, Any]) -> tuple[Array, Any, Array | None]:
        d = np.asarray(kw["input"], dtype=np.float64) - np.asarray(kw["target"], dtype=np.float64)
        return d, kw.get(attr[0]) if attr else None, kw.get("weight")

    def forward(**kw: Any) -> Array:
        d, a, w = parts(kw)
        e = f(d, a) * (1.0 if w is None else w)
        if w is not None and weight_mean == "sum" and kw["reduction"] == "mean":
            loss = np.sum(e) / np.sum(w)
        else:
            loss = _reduce(e, kw["reduction"])
        return np.asarray(loss).astype(_ftype(kw["input"], kw["target"]))

    def vjp(g: Array, out: Array, **kw: Any) -> tuple[Any, ...]:
        d, a, w = parts(kw)
        if w is not None and weight_mean == "sum" and kw["reduction"] == "mean":
            total = np.sum(w, dtype=np.float64)
            g_total = np.asarray(g, dtype=np.float64) / total
            gi = np.broadcast_to(g_total, d.shape)
            # the summed weights divide: each weight also moves the denominator
            loss = np.sum(f(d, a) * w) / total
            gw = sum_to(f(d, a) * gi, np.shape(w)) - loss * g_total
        else:
            gi = _spread(g, d.shape, kw["reduction"])
            gw = f(d, a) * gi
        gx = df(d, a) * (1.0 if w is None else w) * gi
        return (gx, -gx, gw)[: 3 if weight_mean else 2]

    def shape(**kw: Any) -> Shape:
        if attr and not attr[2](kw[attr[0]]):
            raise ShapeError(f"{name}: {attr[0]} must be {attr[3]}, got {kw[attr[0]]}")
        w = kw.get("weight")
        if w is not None and tuple(w) != tuple(kw["input"]):
            raise ShapeError(f"{name}: weight {tuple(w)} must have the input's shape {kw['input']}")
        return _reduced(broadcast_shapes(kw["input"], kw["target"]), kw["reduction"])

    params = [Param("input", "tensor"), Param("target", "tensor"), _reduction()]
    if attr:
        params.append(Param(attr[0], "float", attr[1]))
    if weight_mean:
        params.append(Param("weight", "tensor?", None))
    return Op(
        name=name,
        family=FAMILY,
        params=tuple(params),
        forward=forward,
        vjp=vjp,
        torch=lambda t, **kw: getattr(t.nn.functional, name)(**kw),
        shape=shape,
        samples=_diff_samples(attr, bool(weight_mean)),
        note=note,
    )


def _diff_samples(attr: Attr | None, weighted: bool) -> Callable[..., list[Sample]]:
    def make(rng: np.random.Generator) -> list[Sample]:
        def s(a: Shape, b: Shape, note: str, **kw: Any) -> Sample:
            return Sample({"input": rng.normal(size=a), "target": rng.normal(size=b), **kw}, note)

        # differences planted at the kinks: 0, +-1 (beta and delta 1), +-0.5
        x = np.array([[0.0, 1.0, -1.0], [0.5, -0.5, 2.0]])
        out = [
            s((2, 3), (2, 3), "mean"),
            s((2, 3), (2, 3), "sum", reduction="sum"),
            s((), (), "0-d"),
            s((2, 3), (3,), "target broadcasts", reduction="none"),
            s((3,), (2, 3), "input broadcasts"),
            Sample({"input": x + 0.25, "target": np.full((2, 3), 0.25)}, "kinks"),
            Sample({"input": x, "target": np.zeros(3), "reduction": "none"}, "kinks, none"),
        ]
        if attr:
            out += [
                Sample({"input": x * 0.4, "target": np.zeros(3), attr[0]: 0.4}, f"{attr[0]} 0.4")
            ]
        if attr and attr[0] == "beta":
            out += [Sample({"input": x, "target": np.zeros(3), "beta": 0.0}, "beta 0: l1")]
        if weighted:
            w = rng.uniform(0.2, 2.0, size=(2, 3))
            out += [
                s((2, 3), (2, 3), "weight, mean", weight=w),
                s((2, 3), (2, 3), "weight, none", weight=w, reduction="none"),
                s((2, 3), (2, 3), "weight, sum", weight=w, reduction="sum"),
                s((2, 3), (4, 2, 3), "weight, target enlarges", weight=w),
            ]
        return out

    return make


# --- binary cross entropy ---


def _bce_shape(name: str, input: Shape, target: Shape, weights: dict[str, Any], red: str) -> Shape:
    if tuple(target) != tuple(input):
        raise ShapeError(f"{name}: target {tuple(target)} must have the input's shape {input}")
    for what, s in weights.items():
        if s is not None and broadcast_shapes(input, s) != tuple(input):
            raise ShapeError(f"{name}: {what} {tuple(s)} does not broadcast to the input {input}")
    return _reduced(input, red)


def _bce_logits(
    input: Array, target: Array, weight: Any = None, reduction: str = "mean", pos_weight: Any = None
) -> Array:
    x, t = np.asarray(input, dtype=np.float64), np.asarray(target, dtype=np.float64)
    # pos_weight scales the positive term: 1 + (pos_weight - 1) * target
    lw = 1.0 if pos_weight is None else 1 + (pos_weight - 1) * t
    loss = ((1 - t) * x + lw * np.logaddexp(0.0, -x)) * (1.0 if weight is None else weight)
    return np.asarray(_reduce(loss, reduction)).astype(_ftype(input, target))


def _bce_logits_vjp(
    g: Array,
    out: Array,
    input: Array,
    target: Array,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> tuple[Array, Array, None, None]:
    x, t = np.asarray(input, dtype=np.float64), np.asarray(target, dtype=np.float64)
    gi = _spread(g, x.shape, reduction) * (1.0 if weight is None else weight)
    log_sig, log_sig_neg = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
    pw = 1.0 if pos_weight is None else pos_weight
    gx = ((pw * t + 1 - t) * np.exp(log_sig) - pw * t) * gi
    return gx, (log_sig_neg - pw * log_sig) * gi, None, None


# torch clamps x(1 - x) at 1e-12 held as a float32, even in float64 (1/eps = 1.000000004e12)
_BCE_EPS = float(np.float32(1e-12))


def _bce(input: Array, target: Array, weight: Any = None, reduction: str = "mean") -> Array:
    x, t = np.asarray(input, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if ((x < 0) | (x > 1)).any():
        raise ValueError("binary_cross_entropy: all elements of input must be in [0, 1]")
    with np.errstate(divide="ignore"):  # log(0) = -inf, clamped to -100 as torch
        logs = np.maximum(np.log(x), -100.0), np.maximum(np.log1p(-x), -100.0)
    loss = -(t * logs[0] + (1 - t) * logs[1]) * (1.0 if weight is None else weight)
    return np.asarray(_reduce(loss, reduction)).astype(_ftype(input, target))


def _bce_vjp(
    g: Array, out: Array, input: Array, target: Array, weight: Any = None, reduction: str = "mean"
) -> tuple[Array, Array, None]:
    x, t = np.asarray(input, dtype=np.float64), np.asarray(target, dtype=np.float64)
    gi = _spread(g, x.shape, reduction) * (1.0 if weight is None else weight)
    with np.errstate(divide="ignore"):  # -logit(x): +-inf at 0 and 1, unclamped as torch
        return gi * (x - t) / np.maximum((1 - x) * x, _BCE_EPS), -np.log(x / (1 - x)) * gi, None


# --- kl_div ---


def _kl_div(
    input: Array, target: Array, reduction: str = "mean", log_target: bool = False
) -> Array:
    x, t = np.asarray(input, dtype=np.float64), np.asarray(target, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        xlogx = np.where(t == 0, 0.0, t * np.log(t))  # torch's xlogy(t, t): 0 at t = 0
        loss = np.exp(t) * (t - x) if log_target else xlogx - t * x
    if reduction == "batchmean":  # the sum over the input's first dim (a 0-d input: the sum)
        return np.asarray(np.sum(loss) / (x.shape[0] if x.ndim else 1)).astype(
            _ftype(input, target)
        )
    return np.asarray(_reduce(loss, reduction)).astype(_ftype(input, target))


def _kl_div_vjp(
    g: Array,
    out: Array,
    input: Array,
    target: Array,
    reduction: str = "mean",
    log_target: bool = False,
) -> tuple[Array, Array]:
    x, t = np.asarray(input, dtype=np.float64), np.asarray(target, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, t.shape)
    if reduction == "batchmean":
        gi = np.broadcast_to(np.asarray(g, dtype=np.float64) / (x.shape[0] if x.ndim else 1), shape)
    else:
        gi = _spread(g, shape, reduction)
    with np.errstate(invalid="ignore", divide="ignore"):
        if log_target:  # exp(t) * (t - x): nan where t = -inf, as torch's autograd
            return -np.exp(t) * gi, gi * (t - x) * np.exp(t) + gi * np.exp(t)
        # xlogy(t, t) - t * x through autograd: log(t) (0 at t = 0) + t / t (nan at t = 0) - x
        return -t * gi, gi * np.where(t == 0, 0.0, np.log(t)) + gi * (t / t) - gi * x


def _kl_shape(input: Shape, target: Shape, reduction: str, log_target: bool) -> Shape:
    if reduction not in (*REDUCTIONS, "batchmean"):
        raise ShapeError(
            f"kl_div: reduction must be none, mean, sum or batchmean; got {reduction!r}"
        )
    return _reduced(
        broadcast_shapes(input, target), "sum" if reduction == "batchmean" else reduction
    )


# --- samples ---


def _bce_samples(logits: bool) -> Callable[..., list[Sample]]:
    def make(rng: np.random.Generator) -> list[Sample]:
        def s(note: str, x: Any = None, shape: Shape = (3, 4), **kw: Any) -> Sample:
            if x is None:
                x = rng.normal(size=shape) * 3 if logits else rng.uniform(0.05, 0.95, size=shape)
            x = np.asarray(x)
            return Sample({"input": x, "target": rng.uniform(size=x.shape), **kw}, note)

        out = [
            s("mean"),
            s("sum", reduction="sum"),
            s("none", reduction="none"),
            s("0-d", shape=()),
            s("weight (4,)", weight=rng.uniform(size=4), reduction="none"),
            s("weight (3, 1)", weight=rng.uniform(size=(3, 1))),
        ]
        if logits:
            return out + [
                s("pos_weight (4,)", pos_weight=rng.uniform(0.5, 3, size=4)),
                s("both weights", weight=rng.uniform(size=(3, 1)), pos_weight=rng.uniform(size=4)),
                s("large logits", x=[[-40.0, 40.0, 0.0], [-700.0, 700.0, 1e-3]], reduction="none"),
                s("pos_weight, large logits", x=[-40.0, 40.0, 0.0], pos_weight=np.array([2.0])),
            ]
        edge = np.array([0.0, 1.0, 0.0, 1.0, 1e-30, 0.5])
        target = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.5])
        return out + [
            Sample({"input": edge, "target": target, "reduction": "none"}, "input 0 and 1: clamps"),
        ]

    return make


def _kl_samples(rng: np.random.Generator) -> list[Sample]:
    def s(note: str, shape: Shape = (3, 4), tshape: Shape | None = None, **kw: Any) -> Sample:
        x = (
            np.log(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]))
            if shape
            else np.asarray(-1.0)
        )
        t = rng.uniform(0.05, 1.0, size=shape if tshape is None else tshape)
        if kw.get("log_target"):
            t = np.log(t)
        return Sample({"input": x, "target": t, **kw}, note)

    zero_t = {"input": np.array([-1.0, -0.5, -2.0]), "target": np.array([0.0, 0.3, 0.7])}
    inf_t = {**zero_t, "target": np.array([-np.inf, -1.2, -0.3]), "log_target": True}
    return [
        s("mean"),
        s("batchmean", reduction="batchmean"),
        s("sum", reduction="sum"),
        s("none", reduction="none"),
        s("log_target", log_target=True),
        s("log_target, batchmean", log_target=True, reduction="batchmean"),
        s("0-d, batchmean", shape=(), reduction="batchmean"),
        s("target broadcasts", tshape=(4,), reduction="batchmean"),
        Sample({**zero_t, "reduction": "none"}, "target 0: loss 0, target grad nan"),
        Sample({**inf_t, "reduction": "none"}, "log_target -inf: nan, as torch"),
    ]


OPS: list[Op] = [
    # --- losses of input - target ---
    diff_loss(
        "mse_loss",
        lambda d, a: d * d,
        lambda d, a: 2 * d,
        weight_mean="sum",
        note="grad 0 where input == target; with weight (the input's shape, differentiable), "
        "'mean' divides by the summed weights",
    ),
    diff_loss(
        "l1_loss",
        lambda d, a: np.abs(d),
        lambda d, a: sign(d),
        weight_mean="sum",
        note="sign(0) = 0: grad 0 where input == target, and at a NaN difference (torch's sign "
        "of NaN is 0); weighted 'mean' divides by sum(weight)",
    ),
    diff_loss(
        "smooth_l1_loss",
        lambda d, a: (
            np.abs(d) if a == 0 else np.where(np.abs(d) < a, 0.5 * d * d / a, np.abs(d) - 0.5 * a)
        ),
        lambda d, a: sign(d) if a == 0 else np.clip(d / a, -1.0, 1.0),
        attr=("beta", 1.0, lambda b: b >= 0, "non-negative"),
        note="grad d/beta inside |d| < beta, sign(d) outside (continuous at |d| = beta); "
        "beta 0 is l1_loss: grad 0 at d = 0",
    ),
    diff_loss(
        "huber_loss",
        lambda d, a: np.where(np.abs(d) < a, 0.5 * d * d, a * (np.abs(d) - 0.5 * a)),
        lambda d, a: np.clip(d, -a, a),
        attr=("delta", 1.0, lambda v: v > 0, "positive"),
        weight_mean="count",
        note="grad clip(d, -delta, delta); weighted 'mean' divides by the element count (unlike "
        "mse_loss and l1_loss)",
    ),
    # --- binary cross entropy ---
    Op(
        name="binary_cross_entropy_with_logits",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("target", "tensor"),
            Param("weight", "tensor?", None, grad=False),
            _reduction(),
            Param("pos_weight", "tensor?", None, grad=False),
        ),
        forward=_bce_logits,
        vjp=_bce_logits_vjp,
        torch=lambda t, **kw: t.nn.functional.binary_cross_entropy_with_logits(**kw),
        shape=lambda input, target, weight, reduction, pos_weight: _bce_shape(
            "binary_cross_entropy_with_logits",
            input,
            target,
            {"weight": weight, "pos_weight": pos_weight},
            reduction,
        ),
        samples=_bce_samples(logits=True),
        note="target has the input's shape, weight and pos_weight broadcast to it; "
        "d/dx = ((pw*t + 1 - t) * sigmoid(x) - pw*t) * w; "
        "d/dt = (log_sigmoid(-x) - pw*log_sigmoid(x)) * w",
    ),
    Op(
        name="binary_cross_entropy",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("target", "tensor"),
            Param("weight", "tensor?", None, grad=False),
            _reduction(),
        ),
        forward=_bce,
        vjp=_bce_vjp,
        torch=lambda t, **kw: t.nn.functional.binary_cross_entropy(**kw),
        shape=lambda input, target, weight, reduction: _bce_shape(
            "binary_cross_entropy", input, target, {"weight": weight}, reduction
        ),
        samples=_bce_samples(logits=False),
        note="logs clamp at -100; d/dx = (x - t) / max(x(1 - x), eps) * w, eps = float32(1e-12) "
        "(so about +-1e12 at 0 and 1); d/dt = -logit(x) * w, unclamped (+-inf at 0 and 1)",
    ),
    # --- kl_div ---
    Op(
        name="kl_div",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("target", "tensor"),
            Param("reduction", "str", "mean", choices=(*REDUCTIONS, "batchmean")),
            Param("log_target", "bool", False),
        ),
        forward=_kl_div,
        vjp=_kl_div_vjp,
        torch=lambda t, **kw: t.nn.functional.kl_div(**kw),
        shape=_kl_shape,
        samples=_kl_samples,
        note="input holds log-probabilities; loss xlogy(t, t) - t*x (0 at t = 0, but the target "
        "gradient there is nan, from torch's t/t); 'batchmean' divides the sum by input.shape[0]",
    ),
]
