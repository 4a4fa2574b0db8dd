"""Every case under cases/ runs as one pytest item through gradcase's pytest plugin
(runner/pytest_plugin.py; ``cases`` is in pyproject's testpaths, ids = file::case name). This file
only checks that the plugin is there to collect them."""

from __future__ import annotations

import pytest

import runner.pytest_plugin
from runner.loader import load
from tests.conftest import ROOT


def test_the_plugin_collects_the_cases(pytestconfig: pytest.Config) -> None:
    # Without it pytest would pass over cases/ in silence.
    assert pytestconfig.pluginmanager.is_registered(runner.pytest_plugin), (
        "the gradcase pytest plugin is not loaded: reinstall (pip install -e '.[dev]', or "
        "`make test`) so that its pytest11 entry point is registered"
    )


def test_the_notebook_examples_are_all_there() -> None:
    loaded = load([str(ROOT / "cases" / "seed")])
    assert not loaded.problems
    assert len({c.name for c in loaded.cases if c.name.startswith("seed/")}) >= 10
