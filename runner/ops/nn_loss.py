"""Class-index losses (part of the nn family), the reduction helpers every loss shares, and the
softmax forwards nn.py uses.

A loss is a per-element (or per-sample) value followed by a reduction: 'none' keeps them, 'sum'
adds them, 'mean' divides by their count -- except class-index nll_loss and cross_entropy, whose
'mean' divides by the summed class weights of the targets that are not ignored (nan when that is
0, as torch). Losses are computed in float64 and cast to torch's result dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.dtypes import result_type
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, norm_dim

FAMILY = "nn"
REDUCTIONS = ("none", "mean", "sum")


def _reduction() -> Param:
    return Param("reduction", "str", "mean", choices=REDUCTIONS)


def _reduced(shape: Shape, reduction: str) -> Shape:
    if reduction not in REDUCTIONS:
        raise ShapeError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    return tuple(shape) if reduction == "none" else ()


def _reduce(loss: Array, reduction: str) -> Array:
    with np.errstate(invalid="ignore"):  # the mean of no elements is nan, as torch
        return (
            loss
            if reduction == "none"
            else np.sum(loss) / (loss.size if reduction == "mean" else 1)
        )


def _spread(g: Array, shape: Shape, reduction: str) -> Array:
    """The upstream of a reduced loss, back at the per-element shape."""
    with np.errstate(divide="ignore"):
        g = np.asarray(g, dtype=np.float64) / (int(np.prod(shape)) if reduction == "mean" else 1)
    return np.broadcast_to(g, shape)


def _ftype(*xs: Any) -> np.dtype[Any]:
    """torch's result dtype among the floating operands; float32 when there are none."""
    floating = [x for x in xs if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)]
    return result_type(*floating) if floating else np.dtype(np.float32)


# --- softmax forwards (the ops are in nn.py) ---


def _shifted(x: Array, dim: int) -> tuple[Array, int]:
    x1 = np.atleast_1d(np.asarray(x))  # a 0-d tensor is one 1-element row
    ax = norm_dim(dim, np.ndim(x))
    with np.errstate(invalid="ignore"):  # an all -inf (or any +inf) row gives nan, as torch
        return x1 - np.max(x1, axis=ax, keepdims=True, initial=-np.inf), ax


def softmax(input: Array, dim: int) -> Array:
    s, ax = _shifted(input, dim)
    e = np.exp(s)
    return np.asarray((e / e.sum(axis=ax, keepdims=True)).reshape(np.shape(input)))


def log_softmax(input: Array, dim: int) -> Array:
    s, ax = _shifted(input, dim)
    with np.errstate(divide="ignore"):
        return np.asarray(
            (s - np.log(np.exp(s).sum(axis=ax, keepdims=True))).reshape(np.shape(input))
        )


# --- class-index losses: nll_loss, cross_entropy ---


def _classes_last(x: Array) -> Array:
    """(N, C, d...) -> (N, d..., C); an unbatched (C,) stays."""
    return x if x.ndim == 1 else np.moveaxis(x, 1, -1)


def _classes_back(x: Array) -> Array:
    return x if x.ndim == 1 else np.moveaxis(x, -1, 1)


def _nll_shape(name: str, input: Shape, target: Shape, weight: Shape | None) -> Shape:
    """The per-sample shape: the input without its class dim (dim 1, or dim 0 when unbatched)."""
    if not input:
        raise ShapeError(f"{name}: input needs at least 1 dim (the classes), got a 0-d tensor")
    c = input[0] if len(input) == 1 else input[1]
    if weight is not None and tuple(weight) != (c,):
        raise ShapeError(f"{name}: weight {tuple(weight)} must hold one weight per class: ({c},)")
    if len(input) == 1:
        if tuple(target) != () and not (tuple(target) == (1,) and c == 1):
            # torch's forward takes any (1,) target here, its backward only when C is 1 too
            raise ShapeError(f"{name}: an unbatched input {input} takes a 0-d target, got {target}")
        return ()
    want = (input[0], *input[2:])
    if tuple(target) != want:
        raise ShapeError(
            f"{name}: target {tuple(target)} does not fit input {tuple(input)}: expected {want} "
            f"(the input without its class dim, {c} classes)"
        )
    return want


def _targets(
    input: Array, target: Array, weight: Array | None, ignore_index: int
) -> tuple[Array, Array, Array]:
    """Safe class indices, the not-ignored mask and each sample's class weight (0 if ignored)."""
    c = input.shape[0 if input.ndim == 1 else 1]
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"class-index targets must be integers, got {t.dtype}")
    t = t.reshape(input.shape[:1] + input.shape[2:] if input.ndim > 1 else ())
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= c))
    if bad.any():
        raise IndexError(f"target {int(t[bad][0])} is out of bounds for {c} classes")
    safe = np.where(keep, t, 0)
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    return safe, keep, np.where(keep, w[safe], 0.0)


def _pick(x: Array, safe: Array) -> Array:
    return np.take_along_axis(x, safe[..., None], -1)[..., 0]


def _at_targets(shape: Shape, safe: Array, values: Array) -> Array:
    out = np.zeros(shape)
    np.put_along_axis(out, safe[..., None], np.asarray(values)[..., None], -1)
    return out


def _per_sample_g(g: Array, wt: Array, reduction: str) -> Array:
    """d loss / d (a sample's weighted loss): g, or g / total weight for 'mean'."""
    g = np.asarray(g, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.broadcast_to(g / wt.sum() if reduction == "mean" else g, wt.shape)


def _class_reduce(loss: Array, wt: Array, reduction: str) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(loss) / np.sum(wt) if reduction == "mean" else _reduce(loss, reduction)


def nll_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    safe, keep, wt = _targets(input, target, weight, ignore_index)
    picked = _pick(_classes_last(np.asarray(input, dtype=np.float64)), safe)
    loss = np.where(keep, -wt * picked, 0.0)
    return np.asarray(_class_reduce(loss, wt, reduction)).astype(input.dtype)


def nll_loss_vjp(
    g: Array,
    out: Array,
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, None, None]:
    safe, keep, wt = _targets(input, target, weight, ignore_index)
    with np.errstate(invalid="ignore"):  # 0 * inf where every weight is 0: nan, as torch
        coef = np.where(keep, -wt * _per_sample_g(g, wt, reduction), 0.0)
    return _classes_back(_at_targets(_classes_last(input).shape, safe, coef)), None, None


def _ce_shape(
    input: Shape,
    target: Shape,
    weight: Shape | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Shape:
    if label_smoothing > 1.0:
        raise ShapeError(
            f"cross_entropy: label_smoothing must be at most 1.0, got {label_smoothing}"
        )
    if input and tuple(target) == tuple(input):  # class probabilities, as torch decides it
        c = input[0] if len(input) == 1 else input[1]
        if weight is not None and tuple(weight) != (c,):
            raise ShapeError(f"cross_entropy: weight {tuple(weight)} must be ({c},)")
        if ignore_index >= 0:
            raise ShapeError(
                f"cross_entropy: ignore_index {ignore_index} needs class-index targets"
            )
        return _reduced((input[0], *input[2:]) if len(input) > 1 else (), reduction)
    return _reduced(_nll_shape("cross_entropy", input, target, weight), reduction)


def _ce_parts(
    input: Array, target: Array, weight: Array | None, label_smoothing: float
) -> tuple[Array, Array, float, Array | None]:
    """log_softmax with classes last, class weights, effective smoothing (torch skips smoothing
    unless it is > 0), and the smoothed probability targets (None for class indices)."""
    x = np.asarray(input, dtype=np.float64)
    lsm = _classes_last(log_softmax(x, 0 if x.ndim == 1 else 1))
    c = lsm.shape[-1]
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    ls = label_smoothing if label_smoothing > 0 else 0.0
    if np.shape(target) != x.shape:
        return lsm, w, ls, None
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.floating):
        raise TypeError(f"cross_entropy: probability targets must be floating, got {t.dtype}")
    t = _classes_last(t.astype(np.float64))
    return lsm, w, ls, (t * (1 - ls) + ls / c if ls else t)


def cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    lsm, w, ls, probs = _ce_parts(input, target, weight, label_smoothing)
    dtype = _ftype(input, target)
    if probs is not None:
        loss = -(lsm * probs * w).sum(-1)
        if reduction != "mean":
            return np.asarray(_reduce(loss, reduction)).astype(dtype)
        with np.errstate(invalid="ignore"):  # divides by the sample count, never the weights
            return np.asarray(loss.sum() / loss.size).astype(dtype)
    safe, keep, wt = _targets(input, target, weight, ignore_index)
    nll = np.where(keep, -wt * _pick(lsm, safe), 0.0)
    loss = _class_reduce(nll, wt, reduction)
    if ls:
        smooth = np.where(keep, -(lsm * w).sum(-1), 0.0)
        loss = (1 - ls) * loss + ls / lsm.shape[-1] * _class_reduce(smooth, wt, reduction)
    return np.asarray(loss).astype(dtype)


def cross_entropy_vjp(
    g: Array,
    out: Array,
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[Array, Array | None, None]:
    """Through log_softmax: dx = G - softmax * sum(G), G the gradient at the log-probabilities."""
    lsm, w, ls, probs = _ce_parts(input, target, weight, label_smoothing)
    gt = None
    with np.errstate(invalid="ignore"):
        if probs is not None:
            gi = _spread(g, lsm.shape[:-1], reduction)[..., None]
            big = -probs * w * gi
            gt = _classes_back(-lsm * w * gi * (1 - ls))
        else:
            safe, keep, wt = _targets(input, target, weight, ignore_index)
            gi = _per_sample_g(g, wt, reduction)
            big = _at_targets(lsm.shape, safe, np.where(keep, -(1 - ls) * wt * gi, 0.0))
            if ls:
                big = big + np.where(keep, -ls / lsm.shape[-1] * gi, 0.0)[..., None] * w
        dx = big - np.exp(lsm) * big.sum(-1, keepdims=True)
    return _classes_back(dx), gt, None


# --- samples ---


def _class_samples(name: str) -> Callable[[np.random.Generator], list[Sample]]:
    def make(rng: np.random.Generator) -> list[Sample]:
        w = rng.uniform(0.2, 2.0, size=4)
        zero_w = np.array([0.0, 0.0, 1.0, 1.0])

        def s(x: Shape, t: Any, note: str, **kw: Any) -> Sample:
            return Sample({"input": rng.normal(size=x), "target": np.asarray(t), **kw}, note)

        def idx(*shape: int) -> Array:
            return rng.integers(0, 4, size=shape)

        out = [
            s((3, 4), idx(3), "mean"),
            s((3, 4), idx(3), "sum", reduction="sum"),
            s((3, 4), idx(3), "none", reduction="none"),
            s((3, 4), [1, -100, 2], "ignored target, weights", weight=w),
            s((3, 4), [1, 2, 2], "ignore_index 2", ignore_index=2, weight=w, reduction="none"),
            s((3, 4), [-100, -100, -100], "all ignored: mean nan, grad 0"),
            s((3, 4), [-100, -100, -100], "all ignored, sum: 0", reduction="sum"),
            s((4,), 2, "unbatched, 0-d target"),
            s((4,), 3, "unbatched, none", reduction="none"),
            s((2, 4, 3), idx(2, 3), "(N, C, d)", weight=w),
            s((2, 4, 3), idx(2, 3), "(N, C, d) none", reduction="none"),
            s((2, 4, 2, 2), idx(2, 2, 2), "(N, C, h, w)", ignore_index=1, weight=w),
            s((2, 4, 1, 2, 2), idx(2, 1, 2, 2), "5-d", reduction="sum"),
            s((3, 4), [0, 3, 1], "zero weights, sum", weight=zero_w, reduction="sum"),
            s((3, 4), [0, -100, 1], "kept weights sum to 0: nan", weight=zero_w),
        ]
        if name == "cross_entropy":
            out += [
                s((3, 4), [1, -100, 3], "label_smoothing, weights", label_smoothing=0.2, weight=w),
                s((3, 4), idx(3), "label_smoothing none", label_smoothing=0.1, reduction="none"),
                s((2, 4, 3), idx(2, 3), "label_smoothing (N, C, d)", label_smoothing=0.3),
                s((4,), 1, "label_smoothing unbatched", label_smoothing=1.0),
                s((3, 4), idx(3), "negative label_smoothing: none", label_smoothing=-0.5),
                s((3, 4), rng.dirichlet(np.ones(4), size=3), "probabilities"),
                s(
                    (3, 4),
                    rng.uniform(size=(3, 4)),
                    "probabilities, weights, sum",
                    weight=w,
                    reduction="sum",
                ),
                s(
                    (2, 4, 3),
                    rng.uniform(size=(2, 4, 3)),
                    "probabilities (N, C, d), smoothing",
                    label_smoothing=0.25,
                    reduction="none",
                ),
                s((4,), rng.uniform(size=4), "probabilities unbatched"),
            ]
        return out

    return make


OPS: list[Op] = [
    # --- class-index losses ---
    Op(
        name="cross_entropy",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            # class indices (never a gradient) or probabilities
            Param("target", "tensor", integer=True, probabilities_if_shaped_like="input"),
            Param("weight", "tensor?", None, grad=False),
            Param("ignore_index", "int", -100),
            _reduction(),
            Param("label_smoothing", "float", 0.0),
        ),
        forward=cross_entropy,
        vjp=cross_entropy_vjp,
        torch=lambda t, **kw: t.nn.functional.cross_entropy(**kw),
        shape=_ce_shape,
        samples=_class_samples("cross_entropy"),
        note="classes on dim 1 (dim 0 unbatched); a target shaped like the input holds "
        "probabilities (differentiable), else class indices; ignored targets get a zero "
        "gradient; 'mean' divides by the summed weights of kept targets (nan when all are "
        "ignored, with a zero gradient); smoothing applies only when label_smoothing > 0",
    ),
    Op(
        name="nll_loss",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("target", "tensor", grad=False, integer=True),
            Param("weight", "tensor?", None, grad=False),
            Param("ignore_index", "int", -100),
            _reduction(),
        ),
        forward=nll_loss,
        vjp=nll_loss_vjp,
        torch=lambda t, **kw: t.nn.functional.nll_loss(**kw),
        shape=lambda input, target, weight, ignore_index, reduction: _reduced(
            _nll_shape("nll_loss", input, target, weight), reduction
        ),
        samples=_class_samples("nll_loss"),
        note="grad is -w[t] * g (/ total weight for 'mean') at each target, zero elsewhere and "
        "on ignored rows; all targets ignored: 'mean' is nan and the gradient 0; kept targets "
        "whose weights sum to 0: nan",
    ),
]
