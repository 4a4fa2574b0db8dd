"""The fast paths of issue 11 give the same results as the careful code they bypass: the
comparison's finite path against its careful path, field by field, and `scale_of` against its
definition."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from runner.compare import (
    SMALL,
    Tolerance,
    _careful_compare,
    _finite_compare,
    _small_compare,
    compare,
    scale_of,
)

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


def _both_paths() -> list[tuple[Any, Any]]:
    """Each pair as it is (at most `SMALL` elements: the Python-float path) and tiled past
    `SMALL` (numpy's)."""
    big = [(np.tile(a, (3, 1)), np.tile(b, (3, 1))) for a, b in _pairs() if np.ndim(a) == 2]
    assert all(np.size(a) > SMALL for a, _ in big)
    assert all(np.size(a) <= SMALL for a, _ in _pairs())
    return _pairs() + big


@pytest.mark.parametrize("pair", _both_paths(), ids=range(len(_both_paths())))
def test_fast_comparison_fields_equal_careful(pair: tuple[Any, Any]) -> None:
    left, right = pair
    fast = compare(left, right, sources=("manual", "torch"), tol=TOL)
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    careful = _careful_compare(a, b, TOL.rtol, fast.atol, ("manual", "torch"), True, None)
    assert {k: getattr(fast, k) for k in careful} == careful


def test_the_python_float_path_is_numpys_to_the_bit() -> None:
    """`_small_compare` against `_finite_compare` on random small arrays at many scales, equal,
    nearly equal, rounded, half zeroed and unrelated, under three tolerances: every field."""
    rng = np.random.default_rng(1)
    for trial in range(3000):
        shape = [(), (1,), (3,), (2, 3), (8, 8), (2, 2, 2)][trial % 6]
        a = np.asarray(rng.normal(size=shape) * 10.0 ** rng.integers(-8, 8))
        b = [
            a.copy(),
            a + rng.normal(size=shape) * 1e-9,
            np.round(a, 2),
            np.where(rng.random(shape) < 0.5, a, 0.0),
            rng.normal(size=shape),
        ][trial % 5]
        for rtol, allowance in ((1e-7, 1e-7), (0.0, 0.0), (1e-3, 1e-5)):
            fields = _small_compare(a, np.asarray(b), rtol, allowance)
            assert fields == _finite_compare(a, np.asarray(b), rtol, allowance)


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


# --- the streamed report (runner.report.Collector) ---------------------------------------------


def _results() -> list[Any]:
    from schemas.report import CaseResult, Comparison, TensorCheck

    bad = Comparison(
        left="manual", right="torch", ok=False, abs_err=float("inf"), unchecked=2, rtol=1, atol=0
    )
    check = TensorCheck(tensor="a", kind="grad", ok=False, comparisons=[bad])
    return [
        CaseResult(name="p", file="c/p.yaml", line=1, status="passed", duration=0.5, tags=["t"]),
        CaseResult(name="n\u00e9 \U0001f600 \x1b", file="c/n.yaml", line=3, status="passed",
                   duration=1, notes=["a note\nover two lines"]),
        CaseResult(name="f", file="c/f.yaml", line=2, status="failed", duration=0.25,
                   tensors=[check], messages=["m \"quoted\""]),
        CaseResult(name="x", file="c/x.yaml", line=4, status="xfailed", duration=0, xfail="why"),
    ]  # fmt: skip


@pytest.mark.parametrize("count", [0, 1, 4])
@pytest.mark.parametrize("keep", ["all", "slim", "failing"])
def test_the_streamed_json_report_is_the_whole_report_byte_for_byte(
    tmp_path: Any, count: int, keep: Any
) -> None:
    from runner.diagnostics import Location, Problem
    from runner.report import Collector, build, write_json
    from schemas.report import Environment

    results = _results()[:count]
    problems = [Problem(Location("c/bad.yaml", 2, 3), 'cases: [] is "no case"')]
    env = Environment(python="3", numpy="2", timestamp="T")
    collector = Collector(keep, stream=True)
    for r in results:
        collector.add(r)
    report = collector.report(problems, ["module r.py"], env)
    write_json(report, tmp_path / "streamed.json", streamed=collector)
    collector.close()
    whole = build(results, problems, ["module r.py"], env)
    write_json(whole, tmp_path / "whole.json")
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    assert report.summary == whole.summary
    kept = [r.name for r in report.cases]
    if keep == "failing":  # what did not pass, or has notes
        assert kept == [r.name for r in results if r.name != "p"]
    else:
        assert kept == [r.name for r in results]
    if keep == "slim" and count:  # a passed case without notes keeps only what --junit reads
        assert report.cases[0] == results[0].model_copy(update={"tags": []})
        assert report.cases[1:] == results[1:]
