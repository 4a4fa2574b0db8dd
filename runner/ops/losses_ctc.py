"""ctc_loss (a row of the losses family): the connectionist temporal classification loss by the
forward-backward (alpha-beta) recursions in log space, in float64, and torch's CPU backward
(aten/src/ATen/native/LossCTC.cpp, ctc_loss_backward_cpu_template), which is NOT the derivative
with respect to log_probs: for t < input_length it gives

    (exp(log_probs[t, c]) - exp(lcab[t, c] + nll - log_probs[t, c])) * grad

where the second term alone is the derivative (lcab: logsumexp of alpha + beta over the extended
target's positions holding c). The extra exp(log_probs) * grad is what makes the result the
gradient with respect to the logits when log_probs = log_softmax(logits): log_softmax's backward
removes it exactly (the second term sums to 1 over c at each t). gradcase follows torch."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.nn_loss import _reduction
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, as_ints

FAMILY = "losses"
NEG_INF = -np.inf


def _lse(*xs: Array) -> Array:
    """logsumexp of arrays elementwise, -inf when all are -inf."""
    stack = np.stack(np.broadcast_arrays(*xs))
    top = np.max(stack, axis=0)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(np.sum(np.exp(stack - safe), axis=0)) + safe)


def _shift(v: Array, k: int) -> Array:
    """v moved k places later (k < 0: earlier), -inf shifted in."""
    out = np.full_like(v, NEG_INF)
    if k > 0:
        out[k:] = v[:-k]
    else:
        out[:k] = v[-k:]
    return out


def _sequences(targets: Any, target_lengths: list[int]) -> list[Array]:
    """Each sample's target labels: rows of a padded (N, S) tensor, or consecutive pieces of a
    concatenated 1-d one (unbatched too: torch reads 1-d targets as concatenated, N = 1)."""
    t = np.asarray(targets, dtype=np.int64)
    if t.ndim == 2:
        return [t[b, :n] for b, n in enumerate(target_lengths)]
    ends = np.cumsum(target_lengths)
    return [t[e - n : e] for e, n in zip(ends, target_lengths, strict=True)]


def _one(lp: Array, labels: Array, steps: int, blank: int) -> tuple[float, Array]:
    """(nll, lcab (steps, C)) of one sample: lp (T, C) log-probabilities. No steps (an
    input_length of 0, as torch allows): the empty target has probability 1 (nll 0), any other 0
    (nll inf), and no step gets a gradient."""
    if steps == 0:
        return (0.0 if len(labels) == 0 else np.inf), np.zeros((0, lp.shape[1]))
    ext = np.full(2 * len(labels) + 1, blank, dtype=np.int64)
    ext[1::2] = labels
    s = len(ext)
    skip = np.zeros(s, dtype=bool)  # s may come from s - 2: a label differing from the one before
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    emit = lp[:steps][:, ext]  # (steps, S)
    alpha = np.full((steps, s), NEG_INF)
    beta = np.full((steps, s), NEG_INF)
    alpha[0, : min(2, s)] = emit[0, : min(2, s)]
    beta[-1, max(s - 2, 0) :] = emit[-1, max(s - 2, 0) :]
    later = np.concatenate([skip[2:], [False, False]])[:s]  # s + 2 may come to s
    for t in range(1, steps):
        prev = alpha[t - 1]
        two = np.where(skip, _shift(prev, 2), NEG_INF)
        alpha[t] = _lse(prev, _shift(prev, 1), two) + emit[t]
    for t in range(steps - 2, -1, -1):
        nxt = beta[t + 1]
        two = np.where(later, _shift(nxt, -2), NEG_INF)
        beta[t] = _lse(nxt, _shift(nxt, -1), two) + emit[t]
    nll = -float(_lse(*alpha[steps - 1, max(s - 2, 0) :]))
    lcab = np.full((steps, lp.shape[1]), NEG_INF)
    ab = alpha + beta
    for c in np.unique(ext):
        lcab[:, c] = _lse(*ab[:, ext == c].T)
    return nll, lcab


def _batch(log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any, blank: int
           ) -> tuple[Array, list[int], list[int], list[float], list[Array]]:  # fmt: skip
    lp = np.asarray(log_probs, dtype=np.float64)
    lp3 = lp if lp.ndim == 3 else lp[:, None, :]
    il, tl = list(as_ints(input_lengths)), list(as_ints(target_lengths))
    nlls, lcabs = [], []
    for b, labels in enumerate(_sequences(targets, tl)):
        with np.errstate(invalid="ignore"):
            nll, lcab = _one(lp3[:, b], labels, il[b], blank)
        nlls.append(nll)
        lcabs.append(lcab)
    return lp3, il, tl, nlls, lcabs


def _ctc(log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any, blank: int = 0,
         reduction: str = "mean", zero_infinity: bool = False) -> Array:  # fmt: skip
    _, _, tl, nlls, _ = _batch(log_probs, targets, input_lengths, target_lengths, blank)
    nll = np.asarray(nlls)
    if zero_infinity:
        nll = np.where(nll == np.inf, 0.0, nll)
    if reduction == "mean":
        out: Any = np.mean(nll / np.maximum(np.asarray(tl, np.float64), 1))
    elif reduction == "sum":
        out = np.sum(nll)
    else:
        out = nll if np.ndim(log_probs) == 3 else nll[0]
    return np.asarray(out, dtype=np.asarray(log_probs).dtype)


def _ctc_vjp(g: Array, out: Array, log_probs: Any, targets: Any, input_lengths: Any,
             target_lengths: Any, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False) -> tuple[Array, None]:  # fmt: skip
    lp3, il, tl, nlls, lcabs = _batch(log_probs, targets, input_lengths, target_lengths, blank)
    n = lp3.shape[1]
    g = np.asarray(g, dtype=np.float64)
    if reduction == "mean":  # mean's backward, then the division by the clamped lengths
        grs = [g / n / max(tl[b], 1) for b in range(n)]
    elif reduction == "sum":
        grs = [g] * n
    else:
        grs = list(g.reshape(n))
    grad = np.zeros_like(lp3)
    for b in range(n):
        if zero_infinity and nlls[b] == np.inf:
            continue
        lp = lp3[: il[b], b]
        with np.errstate(invalid="ignore", over="ignore"):
            grad[: il[b], b] = (np.exp(lp) - np.exp(lcabs[b] + nlls[b] - lp)) * grs[b]
    return grad.reshape(np.shape(log_probs)), None


def _ctc_shape(log_probs: Shape, targets: Shape, input_lengths: Any, target_lengths: Any,
               blank: int, reduction: str, zero_infinity: bool) -> Shape:  # fmt: skip
    if len(log_probs) not in (2, 3):
        raise ShapeError(f"ctc_loss: log_probs {tuple(log_probs)} must be (T, N, C) or (T, C)")
    t, c = log_probs[0], log_probs[-1]
    n = log_probs[1] if len(log_probs) == 3 else 1
    if 0 in log_probs:
        raise ShapeError(f"ctc_loss: log_probs {tuple(log_probs)} must not be empty (as torch)")
    for name, v in (("input_lengths", input_lengths), ("target_lengths", target_lengths)):
        if not isinstance(v, list):
            raise ShapeError(f"ctc_loss: {name} must be a list of ints, one per sample, as in "
                             f"torch (a tuple of ints or a tensor): write [{v}]")  # fmt: skip
    il, tl = as_ints(input_lengths), as_ints(target_lengths)
    if len(il) != n or len(tl) != n:
        raise ShapeError(f"ctc_loss: input_lengths {list(il)} and target_lengths {list(tl)} "
                         f"must hold one length per sample ({n})")  # fmt: skip
    if any(not 0 <= x <= t for x in il):
        raise ShapeError(f"ctc_loss: input_lengths {list(il)} must lie in [0, T = {t}]")
    if any(x < 0 for x in tl):
        raise ShapeError(f"ctc_loss: target_lengths {list(tl)} must not be negative")
    if not 0 <= blank < c:
        raise ShapeError(f"ctc_loss: blank {blank} must be a class of the {c}")
    if len(targets) == 2:
        if targets[0] != n or any(x > targets[1] for x in tl):
            raise ShapeError(f"ctc_loss: padded targets {tuple(targets)} must be (N = {n}, S) "
                             f"with target_lengths {list(tl)} <= S")  # fmt: skip
    elif len(targets) == 1:
        if targets[0] != sum(tl):
            raise ShapeError(f"ctc_loss: 1-d targets {tuple(targets)} are the labels of every "
                             f"sample end to end: as in torch they must hold exactly "
                             f"sum(target_lengths {list(tl)}) = {sum(tl)}")  # fmt: skip
    else:
        raise ShapeError(f"ctc_loss: targets {tuple(targets)} must be (N, S) padded or 1-d")
    if reduction not in ("none", "mean", "sum"):
        raise ShapeError(f"ctc_loss: reduction must be none, mean or sum; got {reduction!r}")
    return (n,) if reduction == "none" and len(log_probs) == 3 else ()


def _torch_ctc(t: Any, input_lengths: Any, target_lengths: Any, **kw: Any) -> Any:
    return t.nn.functional.ctc_loss(
        input_lengths=list(as_ints(input_lengths)),
        target_lengths=list(as_ints(target_lengths)),
        **kw,
    )


def _log_softmax(x: Array) -> Array:
    m = x.max(axis=-1, keepdims=True)
    return np.asarray(x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def _ctc_samples(rng: np.random.Generator) -> list[Sample]:
    lp = _log_softmax(rng.normal(size=(6, 2, 4)))
    padded = np.array([[1, 2, 2], [3, 1, 0]])
    both = {"log_probs": lp, "targets": padded, "input_lengths": [6, 5],
            "target_lengths": [3, 2]}  # fmt: skip
    one = {"log_probs": lp[:, 0], "input_lengths": [6], "target_lengths": [2]}
    return [
        Sample(both, "normalised, padded targets, mean"),
        Sample({**both, "reduction": "sum"}, "sum"),
        Sample(
            {**both, "reduction": "none", "blank": 3, "targets": padded % 3}, "none, blank 3"
        ),  # fmt: skip
        Sample(
            {**both, "log_probs": rng.normal(size=(6, 2, 4)), "reduction": "none"},
            "unnormalised log_probs: torch's gradient is not the derivative",
        ),  # fmt: skip
        Sample({**both, "targets": np.array([1, 2, 2, 3, 1])}, "concatenated targets"),
        Sample({**both, "target_lengths": [0, 2]}, "an empty target"),
        Sample(
            {**both, "input_lengths": [2, 5], "reduction": "none", "zero_infinity": True},
            "impossible alignment (3 labels, 2 steps) zeroed",
        ),  # fmt: skip
        Sample(
            {**both, "input_lengths": [2, 5], "reduction": "sum"},
            "impossible alignment: inf, gradient NaN",
        ),  # fmt: skip
        Sample(
            {**both, "input_lengths": [0, 5], "target_lengths": [0, 2], "reduction": "sum"},
            "input_length 0, empty target: loss 0, no gradient",
        ),  # fmt: skip
        Sample(
            {**both, "input_lengths": [0, 5], "reduction": "none"},
            "input_length 0, 3 labels: inf, gradient 0",
        ),  # fmt: skip
        Sample(
            {**both, "input_lengths": [0, 5], "zero_infinity": True},
            "input_length 0, 3 labels, zeroed",
        ),  # fmt: skip
        Sample({**one, "targets": np.array([2, 1])}, "unbatched (T, C)"),
        Sample({**one, "targets": np.array([[2, 1, 3]])}, "unbatched, padded (1, S) targets"),
        Sample(
            {**one, "targets": np.zeros(0, np.int64), "target_lengths": [0]},
            "unbatched, an empty target",
        ),  # fmt: skip
    ]


OPS: list[Op] = [
    Op(
        name="ctc_loss",
        family=FAMILY,
        params=(
            Param("log_probs", "tensor"),
            Param("targets", "tensor", grad=False, integer=True),
            Param("input_lengths", "ints"),
            Param("target_lengths", "ints"),
            Param("blank", "int", 0),
            _reduction(),
            Param("zero_infinity", "bool", False),
        ),
        forward=_ctc,
        vjp=_ctc_vjp,
        torch=_torch_ctc,
        shape=_ctc_shape,
        samples=_ctc_samples,
        note="-log p(target | log_probs) by the alpha-beta recursions; log_probs (T, N, C) or "
        "(T, C), targets padded (N, S) or concatenated 1-d (exactly sum(target_lengths) labels), "
        "lengths as lists of ints (an int is refused, as torch does); an input_length of 0 gives "
        "0 for an empty target and inf for any other, and no gradient. mean "
        "divides each loss by max(target_length, 1), then averages. An impossible alignment "
        "gives inf (its gradient NaN for t < input_length), or 0 and gradient 0 with "
        "zero_infinity. WARNING: torch's gradient for log_probs is NOT the derivative: it is "
        "(exp(log_probs) - exp(lcab + nll - log_probs)) * grad, the derivative plus "
        "exp(log_probs) * grad (0 for t >= input_length); it is right for the logits only "
        "after log_softmax, whose backward cancels the extra term. gradcase follows torch; "
        "the finite-difference oracle declines ctc_loss",
    ),
]
