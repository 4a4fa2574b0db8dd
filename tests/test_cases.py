"""Every case under cases/, as one pytest test each (ids = case names). A failure's message is the
same mismatch text the CLI prints."""

from __future__ import annotations

import pytest

from runner.compile import CompiledCase
from runner.execute import execute
from runner.loader import load
from tests.conftest import ROOT

LOADED = load([str(ROOT / "cases")])


def test_every_case_file_is_valid() -> None:
    assert not LOADED.problems, "\n".join(str(p) for p in LOADED.problems)


def test_the_notebook_examples_are_all_there() -> None:
    seed = {c.name for c in LOADED.cases if c.name.startswith("seed/")}
    assert len(seed) >= 10, sorted(seed)


@pytest.mark.parametrize("case", LOADED.cases, ids=[c.name for c in LOADED.cases])
def test_case(case: CompiledCase) -> None:
    result = execute(case)
    if result.status != "passed":
        pytest.fail("\n".join(result.messages), pytrace=False)
