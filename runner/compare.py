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
    left: Any, right: Any, *, sources: tuple[Source, Source], rtol: float, atol: float
) -> Comparison:
    """``right`` is the reference: relative error is measured against it."""
    base = {"left": sources[0], "right": sources[1], "rtol": rtol, "atol": atol}
    if left is None or right is None:
        missing = sources[0] if left is None else sources[1]
        if left is None and right is None:
            return Comparison(ok=True, **base)
        return Comparison(ok=False, problem=f"no gradient from {missing}", **base)
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    if a.shape != b.shape:
        return Comparison(ok=False, problem=f"shape {tuple(a.shape)} vs {tuple(b.shape)}", **base)
    if a.size == 0:
        return Comparison(ok=True, abs_err=0.0, rel_err=0.0, **base)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        diff = np.where(same, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        allowed = atol + rtol * np.abs(b)
        excess = diff - allowed
        rel = np.where(
            b != 0, diff / np.abs(np.where(b != 0, b, 1.0)), np.where(diff > 0, np.inf, 0.0)
        )
    worst = np.unravel_index(int(np.argmax(excess)), a.shape)
    ok = bool(np.all(diff <= allowed))
    return Comparison(
        ok=ok,
        worst_index=[int(i) for i in worst],
        left_value=float(a[worst]),
        right_value=float(b[worst]),
        abs_err=float(diff[worst]),
        rel_err=float(rel[worst]),
        **base,
    )
