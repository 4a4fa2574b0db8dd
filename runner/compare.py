"""Elementwise comparison of two sources of one tensor, with a tolerance that does not depend on
the tensor's scale.

An element agrees when ``|left - right| <= rtol * |right| + atol * scale + floor``:

- ``right`` is the reference (an oracle, or the golden values), ``rtol`` is relative to each of
  its elements (torch.testing's rtol for the dtype);
- ``scale`` is the reference tensor's largest finite magnitude, so the absolute allowance
  ``atol * scale`` shrinks with the tensor: a gradient of 1e-12 is checked as strictly as one of
  1, and a rule that returns zeros never passes because the true gradient is small (torch.testing's
  absolute atol of 1e-5 let a float32 rule off by 30% near 1e-5 pass);
- ``floor`` is the round-off the computation itself cannot avoid, in the tensor's units (see
  `runner.roundoff`): a float32 sum whose terms cancel, a gradient that is zero in exact
  arithmetic and 4e-16 in torch's float64. It is measured, never a constant; in half precision
  it is one per element (`Tolerance.elements`).

NaN equals NaN unless ``equal_nan`` is False (and the count is reported either way); an infinity
equals only the same infinity; NaN or an infinity on one side only is a failure that names the
side. A case's explicit ``tolerance: {atol: ...}`` is torch.testing's absolute atol instead.

Per dtype (`DEFAULT_TOLERANCE`): float64 rtol 1e-7, atol 1e-7; float32 rtol 1.3e-6, atol 1e-5;
float16 rtol 1e-3, atol 1e-5; bfloat16 rtol 1.6e-2, atol 1e-5 (torch.testing's rtols), each
atol times the scale; in half precision the floor (2 eps of the scale, and measured) dominates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.report import Comparison, Source


@dataclass(frozen=True)
class Tolerance:
    """How close two tensors must be: ``rtol`` per element of the reference, ``atol`` as a
    fraction of the reference's largest finite magnitude (or, when ``absolute``, in the tensor's
    units as torch.testing has it), plus ``floor``, the round-off allowance in the tensor's
    units."""

    rtol: float
    atol: float
    floor: float = 0.0
    absolute: bool = False
    # The most ``atol * scale`` may allow, in the tensor's units (None: no cap).
    cap: float | None = None
    # A floor per element (an array at the tensors' shape, added to ``floor``): half
    # precision's, where a reference's own error is its element's, not its largest element's.
    elements: Any = None

    def with_floor(self, floor: Any) -> Tolerance:
        """This tolerance with round-off ``floor`` added: a number (the tensor's), or an array
        at the tensor's shape (one per element, `elements`)."""
        if np.ndim(floor) == 0:
            return Tolerance(
                self.rtol, self.atol, max(self.floor, float(floor)), self.absolute, self.cap,
                self.elements,
            )  # fmt: skip
        mine = floor if self.elements is None else np.maximum(self.elements, floor)
        return Tolerance(self.rtol, self.atol, self.floor, self.absolute, self.cap, mine)


# torch.testing.assert_close's rtol for the dtype; atol as a fraction of the tensor's scale. A
# 1% error fails at every scale, and so does 1e-5 relative to the largest element. Half
# precision: torch.testing's rtol (float16 1e-3, bfloat16 1.6e-2) and atol 1e-5, plus the
# round-off floor of `runner.roundoff` at the dtype's eps (float16 2^-10, bfloat16 2^-7), which
# there dominates: a 1% wrong rule fails in float16 and a 5% one in bfloat16 (tests/
# test_half.py), and two computations that round at different places agree.
DEFAULT_TOLERANCE: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "float16": Tolerance(rtol=1e-3, atol=1e-5),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5),
}
# Golden values are typed by hand, often from a printout: a value rounded to 4 significant digits
# is within 5e-4 of itself (rtol); an element typed with fewer digits than the tensor's largest
# (torch prints a tensor with 4 decimals) is checked against 1e-4 of that largest element, but
# never more than 5e-5, half the printout's last decimal: so [1200, 0.06] for [1200, 0.03] fails.
EXPECTED_TOLERANCE = Tolerance(rtol=5e-4, atol=1e-4, cap=5e-5)


def scale_of(reference: Any) -> float:
    """The largest finite magnitude of ``reference`` (0.0 when it has none)."""
    b = np.asarray(reference)
    if b.dtype.kind != "f":
        b = b.astype(np.float64)
    if b.size == 0:
        return 0.0
    # The common case without a temporary: max |x| is max(max x, -min x) when both are finite
    # (a float32 maximum cast to float64 is the float64 maximum: the cast is exact and monotone).
    hi, lo = float(np.maximum.reduce(b, axis=None)), float(np.minimum.reduce(b, axis=None))
    if math.isfinite(hi) and math.isfinite(lo):
        return abs(max(hi, -lo))  # abs: never -0.0
    b = np.abs(b.astype(np.float64))
    finite = b[np.isfinite(b)]
    return float(finite.max()) if finite.size else 0.0


def compare(
    left: Any,
    right: Any,
    *,
    sources: tuple[Source, Source],
    tol: Tolerance,
    equal_nan: bool = True,
    unchecked: Any = None,
) -> Comparison:
    """``left`` against the reference ``right`` (arrays of one shape, or None for a missing
    gradient) under ``tol`` (see the module's docstring). The `Comparison` records the
    effective absolute allowance as ``atol`` (``atol * scale + floor``), with ``scale`` and
    ``floor`` beside it; a failure names the worst element (largest excess over the allowance)
    and counts the elements out of tolerance. ``unchecked``: a bool mask at the tensors' shape of
    elements that neither pass nor fail (`runner.unchecked`); their count is recorded."""
    scale = 0.0 if right is None else scale_of(right)
    allowance = tol.atol if tol.absolute else tol.atol * scale
    if tol.cap is not None and not tol.absolute:
        allowance = min(allowance, tol.cap)
    allowance += tol.floor
    # Per-element floors: the report gives the largest (the allowance at its worst).
    most = 0.0 if tol.elements is None else float(np.max(tol.elements, initial=0.0))

    def result(ok: bool, **found: Any) -> Comparison:
        return Comparison(
            left=sources[0],
            right=sources[1],
            rtol=tol.rtol,
            atol=allowance + most,
            scale=None if tol.absolute else scale,
            floor=(tol.floor + most) or None,
            ok=ok,
            **found,
        )

    if left is None or right is None:
        if left is None and right is None:
            return result(True)
        missing = sources[0] if left is None else sources[1]
        return result(False, problem=f"no gradient from {missing}")
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    if a.shape != b.shape:
        return result(False, problem=f"shape {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.size == 0:
        return result(True, abs_err=0.0, rel_err=0.0, mismatched=0, total=0)
    per: Any = allowance
    if tol.elements is not None:
        per = allowance + np.broadcast_to(np.asarray(tol.elements, np.float64), a.shape)
    if unchecked is None or not np.any(unchecked):
        small = a.size <= SMALL and tol.elements is None
        fast = (_small_compare if small else _finite_compare)(a, b, tol.rtol, per)
        if fast is not None:
            return result(fast["mismatched"] == 0, **fast)
    return result(**_careful_compare(a, b, tol.rtol, per, sources, equal_nan, unchecked))


# At most this many elements, `compare` works on Python floats (`_small_compare`): numpy's
# per-call cost (about a dozen calls and an errstate, 30 us) is most of a tiny case's comparison.
SMALL = 64


def _small_compare(a: Any, b: Any, rtol: float, allowance: float) -> dict[str, Any] | None:
    """`_finite_compare` on Python floats, for arrays of at most `SMALL` elements: the same
    IEEE double arithmetic in the same order, so the same fields to the bit (the first element
    of the largest excess is the worst, as ``argmax``'s); None when some ``a - b`` is not
    finite."""
    xs, ys = a.ravel().tolist(), b.ravel().tolist()
    flat, worst, mismatched = 0, -math.inf, 0
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        d = x - y
        if not math.isfinite(d):
            return None
        excess = -math.inf if d == 0 else abs(d) - (abs(y) * rtol + allowance)
        mismatched += excess > 0
        if excess > worst or i == 0:
            flat, worst = i, excess
    d, ref = abs(xs[flat] - ys[flat]), ys[flat]
    rel = 0.0 if d == 0 else (d / abs(ref) if ref != 0 else math.inf)
    return {
        "mismatched": mismatched,
        "total": len(xs),
        "nan_both": 0,
        "one_sided": None,
        "unchecked": None,
        "worst_index": [int(i) for i in np.unravel_index(flat, a.shape)] if a.ndim else [],
        "left_value": xs[flat],
        "right_value": ref,
        "abs_err": d,
        "rel_err": rel,
    }


def _finite_compare(a: Any, b: Any, rtol: float, allowance: Any) -> dict[str, Any] | None:
    """`_careful_compare`'s fields when every element of ``a - b`` is finite (so both sides
    are, and there is nothing to skip), with two float64 and two bool temporaries instead of
    about thirteen and nine; None when something is not finite. The same arithmetic in the same
    order, so the same numbers to the bit: an element whose difference is 0 has excess -inf
    (as when ``a == b``, the careful path's ``same``), any other ``|a - b| - (allowance + rtol *
    |b|)``."""
    with np.errstate(over="ignore", invalid="ignore"):
        diff = np.asarray(np.subtract(a, b))  # asarray: a 0-d result is a scalar
        # A finite sum means every term is finite; an overflowing one takes the careful path.
        if not np.isfinite(diff.sum()):
            return None
        np.abs(diff, out=diff)
        excess = np.asarray(np.abs(b))
        np.multiply(excess, rtol, out=excess)
        np.add(excess, allowance, out=excess)
        np.subtract(diff, excess, out=excess)
    excess[diff == 0] = -np.inf
    flat = int(np.argmax(excess))
    worst = np.unravel_index(flat, a.shape)
    d, ref = float(diff.flat[flat]), float(b.flat[flat])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = 0.0 if d == 0 else float(np.float64(d) / np.float64(abs(ref)))
    return {
        "mismatched": int(np.count_nonzero(excess > 0)),
        "total": int(a.size),
        "nan_both": 0,
        "one_sided": None,
        "unchecked": None,
        "worst_index": [int(i) for i in worst],
        "left_value": float(a.flat[flat]),
        "right_value": ref,
        "abs_err": d,
        "rel_err": rel,
    }


def _careful_compare(
    a: Any,
    b: Any,
    rtol: float,
    allowance: Any,
    sources: tuple[Source, Source],
    equal_nan: bool,
    unchecked: Any,
) -> dict[str, Any]:
    """The comparison's fields (``ok`` among them) with NaN, infinities and unchecked elements
    handled one by one; see `compare`."""
    skip = np.zeros(a.shape, bool) if unchecked is None else np.broadcast_to(unchecked, a.shape)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        both_nan = np.isnan(a) & np.isnan(b) & ~skip
        same = (a == b) | (both_nan & equal_nan) | skip
        diff = np.where(same, 0.0, np.abs(a - b))
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
        excess = np.where(same, -np.inf, diff - (allowance + rtol * np.abs(b)))
        excess = np.where(np.isnan(excess), np.inf, excess)  # inf vs finite, NaN reference
        rel = np.where(diff == 0, 0.0, diff / np.abs(b))
    worst = np.unravel_index(int(np.argmax(excess)), a.shape)
    mismatched = int(np.count_nonzero(excess > 0))
    return dict(
        ok=mismatched == 0,
        mismatched=mismatched,
        total=int(a.size),
        nan_both=int(np.count_nonzero(both_nan)),
        one_sided=_one_sided(a[~skip], b[~skip], sources),
        unchecked=int(np.count_nonzero(skip)) or None,
        worst_index=[int(i) for i in worst],
        left_value=float(a[worst]),
        right_value=float(b[worst]),
        abs_err=float(diff[worst]),
        rel_err=float(rel[worst]),
    )


def _one_sided(a: Any, b: Any, sources: tuple[Source, Source]) -> str | None:
    """Which side alone has NaN or an infinity, and at how many elements (None: neither)."""
    parts = []
    for kind, test in (("NaN", np.isnan), ("inf", np.isinf)):
        for side, mine, theirs in ((sources[0], a, b), (sources[1], b, a)):
            alone = int(np.count_nonzero(test(mine) & ~test(theirs)))
            if alone:
                parts.append(f"{kind} on the {side} side only at {alone} element(s)")
    return "; ".join(parts) or None
