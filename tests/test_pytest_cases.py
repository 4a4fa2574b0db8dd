"""tests/test_cases.py through pytest itself (pytester): one test per case, ids = case names, and
a failure shows the CLI's mismatch text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest_plugins = ["pytester"]

GOOD = """\
name: t/good
inputs: {a: [1.0, 2.0]}
graph: {c: a * a}
"""
WRONG_GOLDEN = """\
name: t/wrong-golden
inputs: {a: [1.0, 2.0]}
graph: {c: a * a}
expect:
  grad:
    a: [2.0, 5.0]
"""


def test_cases_run_as_tests_named_after_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "good.yaml").write_text(GOOD)
    (cases / "wrong.yaml").write_text(WRONG_GOLDEN)
    monkeypatch.setenv("GRADCASE_CASES", str(cases))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess(
        str(ROOT / "tests" / "test_cases.py"),
        "-v",
        "-p",
        "no:cacheprovider",
        f"--rootdir={ROOT}",
    )
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*test_case?t/good? PASSED*",
            "*test_case?t/wrong-golden? FAILED*",
            "*t/wrong-golden: grad of 'a': manual vs expected differ at index [[]1[]]: manual 4, "
            "expected 5; 1 of 2 differ; abs error 1, rel error 0.2 (rtol 0.0005, atol 0.0005 = *",
        ]
    )
