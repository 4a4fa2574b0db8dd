"""Elementwise comparison of two sources of one tensor, torch.testing-style:
``|left - right| <= atol + rtol * |right|``, NaN equal to NaN, infinities equal when identical."""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.report import Comparison, Source

# torch.testing.assert_close's defaults for the dtype.
DEFAULT_TOLERANCE: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-7),
    "float32": (1.3e-6, 1e-5),
}
# Golden values are typed by hand, often from a printout with 4 significant digits.
EXPECTED_TOLERANCE: tuple[float, float] = (1e-4, 1e-4)


def compare(
    left: Any,
    right: Any,
    *,
    sources: tuple[Source, Source],
    rtol: float,
    atol: float,
    equal_nan: bool = True,
) -> Comparison:
    """``right`` is the reference: relative error is measured against it."""

    def result(ok: bool, **found: Any) -> Comparison:
        return Comparison(left=sources[0], right=sources[1], rtol=rtol, atol=atol, ok=ok, **found)

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
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        both_nan = np.isnan(a) & np.isnan(b)
        same = (a == b) | (both_nan & equal_nan)
        diff = np.where(same, 0.0, np.abs(a - b))
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
        excess = np.where(same, -np.inf, diff - (atol + rtol * np.abs(b)))
        excess = np.where(np.isnan(excess), np.inf, excess)  # inf vs finite, NaN reference
        rel = np.where(diff == 0, 0.0, diff / np.abs(b))
    worst = np.unravel_index(int(np.argmax(excess)), a.shape)
    mismatched = int(np.count_nonzero(excess > 0))
    return result(
        mismatched == 0,
        mismatched=mismatched,
        total=int(a.size),
        nan_both=int(np.count_nonzero(both_nan)),
        one_sided=_one_sided(a, b, sources),
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
