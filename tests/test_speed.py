"""The fast paths of issue 11 give the same results as the careful code they bypass: the
comparison's finite path against its careful path, field by field, and `scale_of` against its
definition."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from runner.compare import Tolerance, _careful_compare, compare, scale_of

TOL = Tolerance(rtol=1e-7, atol=1e-7, floor=1e-15)


def _pairs() -> list[tuple[Any, Any]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7))
    tiny = np.array([5e-324, -5e-324, 0.0, -0.0])
    return [
        (x, x.copy()),  # all equal: the worst is the first element, as the careful path has it
        (x, x * (1 + 1e-9)),  # within tolerance
        (x, x * 1.5),  # everything off
        (x + np.where(np.arange(35).reshape(5, 7) == 17, 1e-3, 0.0), x),  # one element off
        (x, np.zeros_like(x)),  # reference zero: rel_err is inf
        (np.float64(2.0), np.float64(3.0)),  # 0-d
        (tiny, tiny[::-1].copy()),  # subnormals and signed zeros
        (np.array([1e308, -1e308]), np.array([-1e308, 1e308])),  # the difference overflows
        (x.astype(np.float32), x),  # float32 beside float64
    ]


@pytest.mark.parametrize("pair", _pairs(), ids=range(len(_pairs())))
def test_fast_comparison_fields_equal_careful(pair: tuple[Any, Any]) -> None:
    left, right = pair
    fast = compare(left, right, sources=("manual", "torch"), tol=TOL)
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    careful = _careful_compare(a, b, TOL.rtol, fast.atol, ("manual", "torch"), True, None)
    assert {k: getattr(fast, k) for k in careful} == careful


def test_not_finite_takes_the_careful_path() -> None:
    a = np.array([1.0, np.nan, np.inf, 2.0])
    b = np.array([1.0, np.nan, 1.0, 2.5])
    c = compare(a, b, sources=("manual", "torch"), tol=TOL)
    assert (c.nan_both, c.mismatched, c.worst_index) == (1, 2, [2])
    assert c.one_sided == "inf on the manual side only at 1 element(s)"


@pytest.mark.parametrize(
    "values",
    [[1.0, -3.0, 2.0], [-0.0], [0.0, -0.0], [np.nan, -4.0], [np.inf, 2.0], [np.nan], [], [3, -7]],
)
def test_scale_of(values: list[float]) -> None:
    b = np.abs(np.asarray(values, dtype=np.float64))
    finite = b[np.isfinite(b)]
    expected = float(finite.max()) if finite.size else 0.0
    got = scale_of(np.asarray(values))
    assert got == expected and np.signbit(got) == np.signbit(expected)
    assert scale_of(np.asarray(values, dtype=np.float32)) == float(
        np.float32(expected) if np.isfinite(expected) else expected
    )
