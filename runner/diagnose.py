"""What a wrong gradient looks like: the usual mistakes, tested against the oracle's gradient.

`diagnose` tries each hypothesis in turn (zero, the upstream gradient ignored, the ties handled
the other way, a constant factor, the transpose, not summed over broadcast dimensions) and returns
the first that fits, as "looks like: ..." text. It is a hint for the reader, never a verdict: the
comparison decides pass or fail. Pure numpy; nothing here imports torch.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from runner.ops.spec import Array
from runner.ops.spec import sum_to as reduce_to

# How close a hypothesis must fit, relative to the reference's largest magnitude. Loose enough
# for float32 round-off, tight enough that a coincidence rarely fits.
FIT_RTOL = 1e-4


def diagnose(
    manual: Array,
    reference: Array,
    *,
    upstream: Array | None = None,
    ones_reference: Array | None = None,
    oracle: str = "torch",
) -> str | None:
    """The first usual mistake that explains ``manual`` given the right ``reference``, or None.

    ``manual`` and ``reference``: one operand's gradient from the rule under test and from the
    oracle (any shapes; a shape mismatch is itself tested for the transpose and for missing
    broadcast sums). ``upstream``: the upstream gradient the rule was given; ``ones_reference``:
    the oracle's gradient under an all-ones upstream (both needed for "the upstream ignored").
    ``oracle``: the name of the reference the hint compares with ("torch's", "numeric's").
    """
    return named(_diagnose(manual, reference, upstream, ones_reference), oracle)


# Phrases about torch's own conventions, true whichever oracle gave the reference.
_TORCH_CONVENTIONS = ("the index torch's max/min returns", "torch's convention")


def named(hint: str | None, oracle: str) -> str | None:
    """``hint`` with "torch's" (the reference) said as ``oracle``'s, torch's conventions kept."""
    if hint is None or oracle == "torch":
        return hint
    for i, phrase in enumerate(_TORCH_CONVENTIONS):
        hint = hint.replace(phrase, f"\0{i}\0")
    hint = hint.replace("torch's", f"{oracle}'s")
    for i, phrase in enumerate(_TORCH_CONVENTIONS):
        hint = hint.replace(f"\0{i}\0", phrase)
    return hint


def _diagnose(
    manual: Array, reference: Array, upstream: Array | None, ones_reference: Array | None
) -> str | None:
    m = np.asarray(manual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if m.shape != r.shape:
        return _shape_hint(m, r)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(r))) or not np.any(r):
        return None
    scale = float(np.max(np.abs(r)))
    if not np.any(m):
        return "zero: the rule gives no gradient where torch's is nonzero"
    if (
        upstream is not None
        and ones_reference is not None
        and not np.all(np.asarray(upstream) == 1)
        and _close(m, np.asarray(ones_reference, dtype=np.float64), scale)
    ):
        return (
            "the upstream gradient ignored: it equals torch's gradient under an all-ones "
            "upstream (multiply by grad)"
        )
    square = m.ndim >= 2 and m.shape[-1] == m.shape[-2]
    if square and not _close(m, r, scale) and _close((m + np.swapaxes(m, -1, -2)) / 2, r, scale):
        # Before the ties: one triangle's gradient has the symmetric part's total.
        return (
            "not symmetrised: torch's gradient is (manual + manual^T) / 2 (an op that reads "
            "its input as symmetric: cholesky, eigh)"
        )
    ties = _ties_hint(m, r, scale)
    if ties:
        return ties
    factor = _factor(m, r, scale)
    if factor is not None:
        if factor == -1:
            return "the sign flipped: manual = -1 x torch's"
        return f"a constant factor: manual = {_fraction(factor)} x torch's"
    if square and _close(m, np.swapaxes(r, -1, -2), scale):
        return "the transpose of torch's"
    return None


def _close(a: Array, b: Array, scale: float) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= FIT_RTOL * scale))


def _factor(m: Array, r: Array, scale: float) -> float | None:
    """c when m = c * r for one scalar c != 1 (least squares, then checked elementwise)."""
    if m.size < 2:  # one number is a multiple of any other: no information
        return None
    c = float(np.vdot(m, r) / np.vdot(r, r))
    if c == 0 or abs(c - 1) <= FIT_RTOL or not _close(m, c * r, scale * max(abs(c), 1.0)):
        return None
    return c


def _fraction(c: float) -> str:
    """2, -1, 1/6, 3/2 when c is a small fraction; else 4 significant digits."""
    f = Fraction(c).limit_denominator(1000)
    if abs(float(f) - c) <= FIT_RTOL * abs(c):
        return str(f)
    return f"{c:.4g}"


def _ties_hint(m: Array, r: Array, scale: float) -> str | None:
    """Ties handled the other way: the same total sent to fewer elements (one-hot where torch
    splits), to more (split where torch picks one), or the whole gradient to every tied one."""
    sm, sr = m != 0, r != 0
    same_total = abs(float(m.sum() - r.sum())) <= FIT_RTOL * max(scale * sr.sum(), 1e-300)
    if same_total and np.all(sr[sm]) and sm.sum() < sr.sum():
        return (
            "one-hot at ties: the rule gives the gradient to one tied element where torch "
            "splits it evenly over all of them"
        )
    if same_total and np.all(sm[sr]) and sr.sum() < sm.sum():
        return (
            "split over ties: the rule divides the gradient among tied elements where torch "
            "gives it to one (the index torch's max/min returns)"
        )
    if np.all(sm[sr]) and sr.sum() < sm.sum() and _close(m[sr], r[sr], scale):
        return (
            f"a gradient at {int(sm.sum() - sr.sum())} element(s) where torch's is zero (at a "
            "kink or a tie torch's convention may give 0 there)"
        )
    if np.array_equal(sm, sr):
        ratio = m[sr] / r[sr]
        counts = np.round(ratio)
        integral = np.all(np.abs(ratio - counts) <= FIT_RTOL) and np.all(counts >= 1)
        # All elements tied (the notebook's max of a constant tensor): the factor is their count.
        every = np.all(sr) and np.all(counts == sr.sum()) and np.all(r[sr] == r[sr][0])
        # One count everywhere is as well a constant factor (said by `_factor`), unless every
        # element is one tie; counts that differ are ties of different sizes.
        varied = np.unique(counts).size > 1
        if integral and counts.max() > 1 and (varied or every):
            return (
                "the whole gradient to every tied element: torch splits it evenly over the "
                f"ties (the rule gives up to {int(counts.max())}x torch's)"
            )
    return None


def _shape_hint(m: Array, r: Array) -> str | None:
    if m.ndim >= 2 and m.shape[:-2] + (m.shape[-1], m.shape[-2]) == r.shape:
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        if _close(np.swapaxes(m, -1, -2), r, scale):
            return "the transpose of torch's"
        return "the transpose's shape"
    try:
        summed = reduce_to(m, r.shape)
    except ValueError:
        return None
    if m.size == r.size:
        return "extra dimensions of size 1 (reshape to the operand's shape)"
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    if _close(summed, r, scale):
        return "not summed over the broadcast dimensions (summed, it equals torch's)"
    return "not summed over the broadcast dimensions"
