"""Margin, embedding and likelihood losses of torch.nn.functional (the losses family): each a
per-element or per-sample value, then torch's reduction (see nn_loss.py). Computed in float64 and
cast to torch's result dtype; each VJP follows torch's own formula, including where torch's
composite passes the gradient at a kink (clamp_min passes it at 0)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.losses_ctc import OPS as CTC_OPS
from runner.ops.losses_triplet import OPS as TRIPLET_OPS
from runner.ops.nn_loss import _ftype, _reduce, _reduced, _reduction, _spread
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

FAMILY = "losses"
COS_EPS = 1e-12  # cosine_embedding_loss's EPSILON, added to each squared magnitude


def _f(x: Any) -> Array:
    return np.asarray(x, dtype=np.float64)


def _op(name: str, params: list[Param], forward: Any, vjp: Any, shape: Any, samples: Any,
        note: str = "") -> Op:  # fmt: skip
    return Op(
        name=name,
        family=FAMILY,
        params=tuple(params),
        forward=forward,
        vjp=vjp,
        torch=lambda t, **kw: getattr(t.nn.functional, name)(**kw),
        shape=shape,
        samples=samples,
        note=note,
    )


def _out(loss: Array, reduction: str, *xs: Any) -> Array:
    return np.asarray(_reduce(loss, reduction)).astype(_ftype(*xs))


# --- margin_ranking_loss --------------------------------------------------------------------


def _mrl_z(input1: Any, input2: Any, target: Any, margin: float) -> Array:
    return np.asarray(-_f(target) * (_f(input1) - _f(input2)) + margin)


def _mrl_shape(input1: Shape, input2: Shape, target: Shape, margin: float, reduction: str) -> Shape:
    if not len(input1) == len(input2) == len(target):
        raise ShapeError(
            f"margin_ranking_loss: input1 {tuple(input1)}, input2 {tuple(input2)} and target "
            f"{tuple(target)} must have the same number of dims"
        )
    return _reduced(broadcast_shapes(input1, input2, target), reduction)


def _mrl_vjp(g: Array, out: Array, input1: Any, input2: Any, target: Any, margin: float,
             reduction: str) -> tuple[Array, Array, Array]:  # fmt: skip
    z = _mrl_z(input1, input2, target, margin)
    ge = np.where(z >= 0, _spread(g, z.shape, reduction), 0)  # clamp_min passes at 0
    t = _f(target)
    return (-t * ge, t * ge, -(_f(input1) - _f(input2)) * ge)


def _mrl_samples(rng: np.random.Generator) -> list[Sample]:
    t = np.array([1.0, -1.0, 1.0, -1.0])
    return [
        Sample({"input1": rng.normal(size=4), "input2": rng.normal(size=4), "target": t}, "1-d"),
        Sample(
            {
                "input1": np.array([1.0, 0.0, 2.0, 0.5]),
                "input2": np.array([0.0, 1.0, 2.0, 0.5]),
                "target": t,
                "margin": 1.0,
                "reduction": "none",
            },
            "at the kink: margin - t (x1 - x2) = 0",
        ),  # fmt: skip
        Sample(
            {
                "input1": rng.normal(size=(2, 3)),
                "input2": rng.normal(size=(1, 3)),
                "target": rng.choice([-1.0, 1.0], size=(2, 1)),
                "margin": 0.3,
                "reduction": "sum",
            },
            "broadcast",
        ),  # fmt: skip
        Sample(
            {"input1": np.asarray(0.5), "input2": np.asarray(-0.2), "target": np.asarray(-1.0)},
            "0-d",
        ),
    ]


# --- hinge_embedding_loss -------------------------------------------------------------------


def _hinge(input: Any, target: Any, margin: float, reduction: str) -> Array:
    x, t = np.broadcast_arrays(_f(input), _f(target))
    loss = np.where(t != 1, np.maximum(margin - x, 0), 0) + np.where(t != -1, x, 0)
    return _out(loss, reduction, input, target)


def _hinge_vjp(g: Array, out: Array, input: Any, target: Any, margin: float,
               reduction: str) -> tuple[Array, None]:  # fmt: skip
    x, t = np.broadcast_arrays(_f(input), _f(target))
    ge = _spread(g, x.shape, reduction)
    gx = np.where(t != -1, ge, 0) + np.where((t != 1) & (margin - x >= 0), -ge, 0)
    return (gx, None)


def _hinge_samples(rng: np.random.Generator) -> list[Sample]:
    x = np.array([0.5, 1.0, 2.0, -1.0, 1.0, 0.3])
    t = np.array([-1.0, -1.0, 1.0, 0.0, 1.0, -1.0])
    return [
        Sample({"input": x, "target": t, "reduction": "none"}, "kink at x = margin; target 0"),
        Sample(
            {"input": rng.normal(size=(2, 3)), "target": rng.choice([-1.0, 1.0], (2, 3))}, "2-d"
        ),
        Sample({"input": x, "target": t, "margin": 0.5, "reduction": "sum"}, "margin 0.5"),
        Sample({"input": np.asarray(0.3), "target": np.asarray(-1.0)}, "0-d"),
    ]


# --- soft_margin_loss -----------------------------------------------------------------------


def _soft_margin(input: Any, target: Any, reduction: str) -> Array:
    with np.errstate(over="ignore"):
        loss = np.log1p(np.exp(-_f(input) * _f(target)))
    return _out(loss, reduction, input, target)


def _soft_margin_vjp(g: Array, out: Array, input: Any, target: Any,
                     reduction: str) -> tuple[Array, None]:  # fmt: skip
    x, t = np.broadcast_arrays(_f(input), _f(target))
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.exp(-t * x)
        d = (-t * z) / (1 + z)
    return (d * _spread(g, x.shape, reduction), None)


def _soft_margin_samples(rng: np.random.Generator) -> list[Sample]:
    t = rng.choice([-1.0, 1.0], size=(2, 3))
    return [
        Sample({"input": rng.normal(size=(2, 3)), "target": t}, "mean"),
        Sample({"input": rng.normal(size=(2, 3)), "target": t, "reduction": "none"}, "none"),
        Sample(
            {
                "input": np.array([0.0, -30.0, 30.0]),
                "target": np.array([1.0, 1.0, -1.0]),
                "reduction": "sum",
            },
            "0 and large margins",
        ),  # fmt: skip
        Sample({"input": np.asarray(0.4), "target": np.asarray(-1.0)}, "0-d"),
    ]


def _same_shape(name: str) -> Callable[..., Shape]:
    def shape(input: Shape, target: Shape, reduction: str, **_: Any) -> Shape:
        if tuple(input) != tuple(target):
            raise ShapeError(f"{name}: target {tuple(target)} must have the input's shape {input}")
        return _reduced(input, reduction)

    return shape


# --- multilabel_soft_margin_loss ------------------------------------------------------------


def _logsig(x: Array) -> Array:
    return np.asarray(np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x))))


def _dlogsig(x: Array) -> Array:
    z = np.exp(-np.abs(x))
    return np.asarray(np.where(x < 0, 1, 0) - np.where(x < 0, 1, -1) * (z / (1 + z)))


def _mlsm_parts(input: Any, target: Any, weight: Any) -> tuple[Array, Array, Array, int]:
    x, t = _f(input), _f(target)
    w = np.ones(()) if weight is None else _f(weight)
    return x, t, w, x.shape[-1]


def _mlsm(input: Any, target: Any, weight: Any, reduction: str) -> Array:
    x, t, w, c = _mlsm_parts(input, target, weight)
    loss = -(t * _logsig(x) + (1 - t) * _logsig(-x)) * w
    return _out(np.sum(loss, axis=-1) / c, reduction, input, target, weight)


def _mlsm_vjp(g: Array, out: Array, input: Any, target: Any, weight: Any,
              reduction: str) -> tuple[Array, Array, Array | None]:  # fmt: skip
    x, t, w, c = _mlsm_parts(input, target, weight)
    gs = _spread(g, x.shape[:-1], reduction)[..., None] / c
    ge = -gs * w
    gx = ge * t * _dlogsig(x) - ge * (1 - t) * _dlogsig(-x)
    gt = ge * _logsig(x) - ge * _logsig(-x)
    gw = None if weight is None else -(t * _logsig(x) + (1 - t) * _logsig(-x)) * gs
    return (gx, gt, gw)


def _mlsm_shape(input: Shape, target: Shape, weight: Shape | None, reduction: str) -> Shape:
    if not input:
        raise ShapeError("multilabel_soft_margin_loss: a 0-d input has no class dim")
    if tuple(target) != tuple(input):
        raise ShapeError(
            f"multilabel_soft_margin_loss: target {tuple(target)} must have the input's shape "
            f"{tuple(input)}"
        )
    if weight is not None and broadcast_shapes(input, weight) != tuple(input):
        raise ShapeError(
            f"multilabel_soft_margin_loss: weight {tuple(weight)} does not broadcast to the "
            f"input {tuple(input)}"
        )
    return _reduced(input[:-1], reduction)


def _mlsm_samples(rng: np.random.Generator) -> list[Sample]:
    def s(shape: Shape, note: str, **kw: Any) -> Sample:
        t = rng.choice([0.0, 1.0], size=shape)
        return Sample({"input": rng.normal(size=shape), "target": t, **kw}, note)

    return [
        s((2, 4), "mean"),
        s((2, 4), "none", reduction="none"),
        s((4,), "1-d: one sample", reduction="sum"),
        s((2, 3), "weight per class", weight=rng.uniform(0.2, 2.0, size=3)),
        s((2, 3, 2), "3-d"),
        Sample({"input": rng.normal(size=(2, 3)), "target": rng.uniform(size=(2, 3))}, "soft"),
    ]


# --- poisson_nll_loss -----------------------------------------------------------------------


def _stirling(t: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(t * np.log(t) - t + 0.5 * np.log(2 * math.pi * t))


def _poisson(input: Any, target: Any, log_input: bool, full: bool, eps: float,
             reduction: str) -> Array:  # fmt: skip
    x, t = _f(input), _f(target)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        loss = np.exp(x) - t * x if log_input else x - t * np.log(x + eps)
        if full:
            loss = loss + np.where(t <= 1, 0, _stirling(t))
    return _out(loss, reduction, input, target)


def _poisson_vjp(g: Array, out: Array, input: Any, target: Any, log_input: bool, full: bool,
                 eps: float, reduction: str) -> tuple[Array, Array]:  # fmt: skip
    x, t = np.broadcast_arrays(_f(input), _f(target))
    ge = _spread(g, x.shape, reduction)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if log_input:
            gx, gt = ge * np.exp(x) - ge * t, -ge * x
        else:
            gx, gt = ge - (ge * t) / (x + eps), -ge * np.log(x + eps)
        if full:
            # masked_fill zeroes the upstream where target <= 1; torch still multiplies it
            # through log(target), so target = 0 gives 0 * -inf = NaN, as torch
            gs = np.where(t <= 1, 0, ge)
            two_pi = 2 * math.pi
            gt = gt + (gs * np.log(t) + (gs * t) / t - gs + ((0.5 * gs) / (two_pi * t)) * two_pi)
    return (gx, gt)


def _poisson_shape(input: Shape, target: Shape, reduction: str, **_: Any) -> Shape:
    return _reduced(broadcast_shapes(input, target), reduction)


def _poisson_samples(rng: np.random.Generator) -> list[Sample]:
    counts = np.array([0.5, 1.0, 2.0, 3.0, 7.0, 1.5])
    rates = rng.uniform(0.2, 3.0, size=6)
    return [
        Sample({"input": rng.normal(size=6), "target": counts}, "log input"),
        Sample(
            {"input": rng.normal(size=6), "target": counts, "full": True, "reduction": "none"},
            "full: Stirling term where target > 1",
        ),  # fmt: skip
        Sample({"input": rates, "target": counts, "log_input": False}, "rates"),
        Sample(
            {
                "input": rates,
                "target": counts,
                "log_input": False,
                "full": True,
                "eps": 0.1,
                "reduction": "sum",
            },
            "rates, full, eps",
        ),  # fmt: skip
        Sample({"input": rng.normal(size=(2, 3)), "target": counts[:3]}, "target broadcasts"),
        Sample({"input": np.asarray(0.3), "target": np.asarray(2.0)}, "0-d"),
    ]


# --- gaussian_nll_loss ----------------------------------------------------------------------


def _gnll_var_shape(input: Shape, var: Shape) -> Shape:
    """var as torch shapes it: the input's shape, the input's minus its last dim (unsqueezed),
    or the input's with one dim of size 1."""
    input, var = tuple(input), tuple(var)
    if var == input:
        return var
    if input[:-1] == var and input:
        return (*var, 1)
    if len(input) == len(var) and sum(v for i, v in zip(input, var, strict=True) if i != v) == 1:
        return var
    raise ShapeError(
        f"gaussian_nll_loss: var {var} is of incorrect size for the input {input} (expected the "
        "input's shape, it without its last dim, or it with one dim of size 1)"
    )


def _gnll_parts(input: Any, target: Any, var: Any, eps: float) -> tuple[Array, Array]:
    v = _f(var).reshape(_gnll_var_shape(np.shape(input), np.shape(var)))
    if np.any(v < 0):
        raise ValueError("gaussian_nll_loss: var has negative entry/entries")
    return _f(input) - _f(target), np.maximum(v, eps)


def _gnll(input: Any, target: Any, var: Any, full: bool, eps: float, reduction: str) -> Array:
    d, v = _gnll_parts(input, target, var, eps)
    loss = 0.5 * (np.log(v) + d**2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _out(loss, reduction, input, target, var)


def _gnll_vjp(g: Array, out: Array, input: Any, target: Any, var: Any, full: bool, eps: float,
              reduction: str) -> tuple[Array, Array, Array]:  # fmt: skip
    d, v = _gnll_parts(input, target, var, eps)
    d, v = np.broadcast_arrays(d, v)
    h = 0.5 * _spread(g, d.shape, reduction)
    gd = (h / v) * 2 * d
    # the clamp at eps ran under no_grad: var's gradient is the formula's at the clamped value
    gv = h / v + (-h * ((d**2 / v) / v))
    return (gd, -gd, _gnll_var_grad(gv, np.shape(var)))


def _gnll_var_grad(gv: Array, var: Shape) -> Array:
    unsq = var if gv.ndim == len(var) else (*var, 1)
    return sum_to(gv, unsq).reshape(var)


def _gnll_shape(input: Shape, target: Shape, var: Shape, full: bool, eps: float,
                reduction: str) -> Shape:  # fmt: skip
    v = _gnll_var_shape(input, var)
    return _reduced(broadcast_shapes(input, target, v), reduction)


def _gnll_samples(rng: np.random.Generator) -> list[Sample]:
    x, t = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    return [
        Sample({"input": x, "target": t, "var": rng.uniform(0.2, 2.0, (2, 3))}, "heteroscedastic"),
        Sample(
            {"input": x, "target": t, "var": rng.uniform(0.2, 2.0, (2,)), "reduction": "sum"},
            "var one dim short",
        ),  # fmt: skip
        Sample(
            {
                "input": x,
                "target": t,
                "var": rng.uniform(0.2, 2.0, (1, 3)),
                "full": True,
                "reduction": "none",
            },
            "var with a size-1 dim, full",
        ),  # fmt: skip
        Sample(
            {"input": x[0], "target": t[0], "var": np.array([1e-8, 0.5, 0.0]), "reduction": "none"},
            "var clamped at eps: gradient as if not",
        ),  # fmt: skip
        Sample(
            {"input": x[0], "target": t[0], "var": np.array([0.5, 2.0, 1.0]), "eps": 0.75},
            "eps 0.75",
        ),  # fmt: skip
    ]


# --- cosine_embedding_loss ------------------------------------------------------------------


def _cos_parts(input1: Any, input2: Any) -> tuple[Array, Array, Array, Array, Array, Array]:
    a, b = _f(input1), _f(input2)
    p = np.sum(a * b, axis=-1)
    m1 = np.sum(a * a, axis=-1) + COS_EPS
    m2 = np.sum(b * b, axis=-1) + COS_EPS
    den = np.sqrt(m1 * m2)
    return a, b, p, m1, m2, den


def _cos_emb(input1: Any, input2: Any, target: Any, margin: float, reduction: str) -> Array:
    _, _, p, _, _, den = _cos_parts(input1, input2)
    cos, t = p / den, _f(target)
    loss = np.where(t == 1, 1 - cos, 0) + np.where(t == -1, np.maximum(cos - margin, 0), 0)
    return _out(loss, reduction, input1, input2, target)


def _cos_emb_vjp(g: Array, out: Array, input1: Any, input2: Any, target: Any, margin: float,
                 reduction: str) -> tuple[Array, Array, None]:  # fmt: skip
    a, b, p, m1, m2, den = _cos_parts(input1, input2)
    cos, t = p / den, _f(target)
    ge = _spread(g, np.shape(cos), reduction)
    gcos = np.where(t == 1, -ge, 0) + np.where((t == -1) & (cos - margin >= 0), ge, 0)
    gp = gcos / den
    gsq = (-gcos * ((p / den) / den)) / (2 * den)  # through den = sqrt(m1 * m2)
    gm1, gm2 = gsq * m2, gsq * m1
    ga = gp[..., None] * b + gm1[..., None] * a + gm1[..., None] * a
    gb = gp[..., None] * a + gm2[..., None] * b + gm2[..., None] * b
    return (ga, gb, None)


def _cos_emb_shape(input1: Shape, input2: Shape, target: Shape, margin: float,
                   reduction: str) -> Shape:  # fmt: skip
    if tuple(input1) != tuple(input2) or len(input1) not in (1, 2):
        raise ShapeError(
            f"cosine_embedding_loss: input1 {tuple(input1)} and input2 {tuple(input2)} must "
            "have one shape, (N, D) or (D,)"
        )
    if tuple(target) != tuple(input1[:-1]):
        raise ShapeError(
            f"cosine_embedding_loss: target {tuple(target)} must be {tuple(input1[:-1])}, one "
            "per pair"
        )
    return _reduced(input1[:-1], reduction)


def _cos_emb_samples(rng: np.random.Generator) -> list[Sample]:
    t = np.array([1.0, -1.0, -1.0, 1.0])
    a = rng.normal(size=(4, 3))
    return [
        Sample({"input1": a, "input2": rng.normal(size=(4, 3)), "target": t}, "mean"),
        Sample(
            {
                "input1": a,
                "input2": rng.normal(size=(4, 3)),
                "target": t,
                "margin": -0.5,
                "reduction": "none",
            },
            "margin -0.5",
        ),  # fmt: skip
        Sample(
            {
                "input1": np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]),
                "input2": np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]),
                "target": np.array([1.0, -1.0, 0.0]),
                "reduction": "sum",
            },
            "zero vector (eps 1e-12), target 0 (no loss)",
        ),  # fmt: skip
        Sample(
            {
                "input1": rng.normal(size=3),
                "input2": rng.normal(size=3),
                "target": np.asarray(-1.0),
                "margin": -1.0,
            },
            "1-d pair, 0-d target",
        ),  # fmt: skip
    ]


# --- multi_margin_loss ----------------------------------------------------------------------


def _mm_parts(input: Any, target: Any, margin: float) -> tuple[Array, Array, Array]:
    x = np.atleast_2d(_f(input)) if np.ndim(input) else _f(input).reshape(1, 1)
    y = np.asarray(target, dtype=np.int64).reshape(-1)
    z = margin - np.take_along_axis(x, y[:, None], 1) + x
    others = np.arange(x.shape[1])[None, :] != y[:, None]
    return x, y, np.where(others, z, 0)


def _mm_weight(weight: Any, y: Array) -> Array:
    return np.ones((y.size, 1)) if weight is None else _f(weight)[y][:, None]


def _mm(input: Any, target: Any, p: int, margin: float, weight: Any, reduction: str) -> Array:
    x, y, z = _mm_parts(input, target, margin)
    h = np.where(z > 0, z if p == 1 else z * z, 0) * _mm_weight(weight, y)
    loss = np.sum(h, axis=1) / x.shape[1]
    return _out(loss.reshape(np.shape(target)), reduction, input, weight)


def _mm_vjp(g: Array, out: Array, input: Any, target: Any, p: int, margin: float, weight: Any,
            reduction: str) -> tuple[Array, None, None]:  # fmt: skip
    x, y, z = _mm_parts(input, target, margin)
    gs = _spread(g, np.shape(target), reduction).reshape(-1, 1)
    h = np.where(z > 0, 1.0 if p == 1 else 2 * z, 0) * _mm_weight(weight, y) / x.shape[1]
    grad = h * gs
    rows = np.arange(x.shape[0])
    grad[rows, y] = -np.sum(h, axis=1) * gs[:, 0]
    return (grad.reshape(np.shape(input)), None, None)


def _mm_shape(input: Shape, target: Shape, p: int, margin: float, weight: Shape | None,
              reduction: str) -> Shape:  # fmt: skip
    if p not in (1, 2):
        raise ShapeError(f"multi_margin_loss: p must be 1 or 2, got {p}")
    if len(input) > 2:
        raise ShapeError(f"multi_margin_loss: input must be (N, C), (C,) or 0-d, got {input}")
    n = input[0] if len(input) == 2 else 1
    c = input[-1] if input else 1
    if int(np.prod(target, dtype=np.int64)) != n or len(target) > 1:
        raise ShapeError(
            f"multi_margin_loss: target {tuple(target)} must hold one class per sample ({n})"
        )
    if weight is not None and tuple(weight) != (c,):
        raise ShapeError(f"multi_margin_loss: weight {tuple(weight)} must be ({c},), one per class")
    return _reduced(tuple(target), reduction)


def _mm_samples(rng: np.random.Generator) -> list[Sample]:
    y = np.array([0, 2, 1])
    kink = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.5, 1.5, -0.5]])
    w = rng.uniform(0.3, 2.0, size=3)
    return [
        Sample({"input": rng.normal(size=(3, 3)), "target": y}, "mean"),
        Sample({"input": kink, "target": y, "reduction": "none"}, "z = 0 (no loss, no gradient)"),
        Sample(
            {
                "input": rng.normal(size=(3, 3)),
                "target": y,
                "p": 2,
                "margin": 0.5,
                "weight": w,
                "reduction": "sum",
            },
            "p 2, weight",
        ),  # fmt: skip
        Sample(
            {
                "input": rng.normal(size=4),
                "target": np.asarray(3),
                "weight": rng.uniform(0.3, 2.0, size=4),
            },
            "1-d input, 0-d target",
        ),  # fmt: skip
    ]


def _tgt(name: str = "target", *, accepts: bool = False, integer: bool = False) -> Param:
    return Param(name, "tensor", grad=False, accepts_grad=accepts, integer=integer)


OPS: list[Op] = [
    _op(
        "margin_ranking_loss",
        [
            Param("input1", "tensor"),
            Param("input2", "tensor"),
            Param("target", "tensor"),
            Param("margin", "float", 0.0),
            _reduction(),
        ],  # fmt: skip
        lambda input1, input2, target, margin, reduction: _out(
            np.maximum(_mrl_z(input1, input2, target, margin), 0),
            reduction,
            input1,
            input2,
            target,
        ),
        _mrl_vjp,
        _mrl_shape,
        _mrl_samples,
        "max(0, -target (input1 - input2) + margin); at 0 the gradient passes (torch's "
        "clamp_min keeps x >= 0); target gets a gradient too, as in torch's composite",
    ),
    _op(
        "hinge_embedding_loss",
        [
            Param("input", "tensor"),
            _tgt(accepts=True),
            Param("margin", "float", 1.0),
            _reduction(),
        ],  # fmt: skip
        _hinge,
        _hinge_vjp,
        lambda input, target, margin, reduction: _reduced(
            broadcast_shapes(input, target), reduction
        ),
        _hinge_samples,
        "x where target != -1, plus max(0, margin - x) where target != 1 (a target of 0 takes "
        "both); at x = margin the hinge's gradient -1 passes (clamp_min at 0)",
    ),
    _op(
        "soft_margin_loss",
        [Param("input", "tensor"), _tgt(), _reduction()],
        _soft_margin,
        _soft_margin_vjp,
        _same_shape("soft_margin_loss"),
        _soft_margin_samples,
        "log(1 + exp(-target * input)); torch does not differentiate target",
    ),
    _op(
        "multilabel_soft_margin_loss",
        [
            Param("input", "tensor"),
            Param("target", "tensor"),
            Param("weight", "tensor?", None),
            _reduction(),
        ],  # fmt: skip
        _mlsm,
        _mlsm_vjp,
        _mlsm_shape,
        _mlsm_samples,
        "the mean over the last (class) dim of -(t logsigmoid(x) + (1 - t) logsigmoid(-x)) "
        "* weight; target and weight get gradients, as in torch's composite",
    ),
    Op(
        name="poisson_nll_loss",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("target", "tensor"),
            Param("log_input", "bool", True),
            Param("full", "bool", False),
            Param("eps", "float", 1e-8, kw_only=True),
            Param("reduction", "str", "mean", choices=("none", "mean", "sum"), kw_only=True),
        ),
        forward=_poisson,
        vjp=_poisson_vjp,
        torch=lambda t, **kw: t.nn.functional.poisson_nll_loss(**kw),
        shape=_poisson_shape,
        samples=_poisson_samples,
        note="exp(x) - t x (log_input) or x - t log(x + eps); full adds Stirling's term where "
        "target > 1, masked to 0 elsewhere, where torch's target gradient is still multiplied "
        "through log(target) (NaN at target = 0). eps and reduction are keyword-only here "
        "(torch's deprecated size_average and reduce sit before them)",
    ),
    _op(
        "gaussian_nll_loss",
        [
            Param("input", "tensor"),
            Param("target", "tensor"),
            Param("var", "tensor"),
            Param("full", "bool", False),
            Param("eps", "float", 1e-6),
            _reduction(),
        ],  # fmt: skip
        _gnll,
        _gnll_vjp,
        _gnll_shape,
        _gnll_samples,
        "0.5 (log var + (input - target)^2 / var), var clamped at eps under no_grad: var's "
        "gradient is the formula's at the clamped value, even where the clamp acted; a negative "
        "var is refused (ValueError)",
    ),
    _op(
        "cosine_embedding_loss",
        [
            Param("input1", "tensor"),
            Param("input2", "tensor"),
            _tgt(accepts=True),
            Param("margin", "float", 0.0),
            _reduction(),
        ],  # fmt: skip
        _cos_emb,
        _cos_emb_vjp,
        _cos_emb_shape,
        _cos_emb_samples,
        "1 - cos where target = 1, max(0, cos - margin) where target = -1 (gradient passes at "
        "0), nothing for other targets; each squared magnitude gets 1e-12, so a zero vector "
        "has cos 0 and a finite gradient",
    ),
    _op(
        "multi_margin_loss",
        [
            Param("input", "tensor"),
            _tgt(integer=True),
            Param("p", "int", 1),
            Param("margin", "float", 1.0),
            Param("weight", "tensor?", None, grad=False),
            _reduction(),
        ],  # fmt: skip
        _mm,
        _mm_vjp,
        _mm_shape,
        _mm_samples,
        "sum over classes i != y of max(0, margin - x[y] + x[i])^p * weight[y] / C; where that "
        "is 0 (z = 0 included) no gradient; weight is not differentiated",
    ),
]
OPS += TRIPLET_OPS + CTC_OPS
