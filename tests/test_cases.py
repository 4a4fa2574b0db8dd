"""Every case under cases/, as one pytest test each (ids = case names). A failure's message is the
same mismatch text the CLI prints."""

from __future__ import annotations

import os

import pytest

from runner.compile import CompiledCase
from runner.execute import execute
from runner.loader import load
from tests.conftest import ROOT

# GRADCASE_CASES points the same tests at other case folders (tests/test_pytest_cases.py does).
CASES = os.environ.get("GRADCASE_CASES", str(ROOT / "cases"))
LOADED = load([CASES])


def test_every_case_file_is_valid() -> None:
    assert not LOADED.problems, "\n".join(str(p) for p in LOADED.problems)


@pytest.mark.skipif("GRADCASE_CASES" in os.environ, reason="checks the project's own cases")
def test_the_notebook_examples_are_all_there() -> None:
    seed = {c.name for c in LOADED.cases if c.name.startswith("seed/")}
    assert len(seed) >= 10, sorted(seed)


@pytest.mark.parametrize("case", LOADED.cases, ids=[c.name for c in LOADED.cases])
def test_case(case: CompiledCase) -> None:
    result = execute(case)
    if result.status == "xfailed":
        pytest.xfail(f"{result.xfail} -- {result.messages[0]}")
    if result.status != "passed":
        pytest.fail("\n".join(result.messages), pytrace=False)
