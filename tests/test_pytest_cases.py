"""The pytest plugin (runner/pytest_plugin.py) through pytest itself (pytester): case files
collected as items named after their cases, at their YAML line, failing with the CLI's text;
invalid files as collection errors; which YAML files are cases; rules, oracles, the header;
``-k``, ``-x``, ``--lf``, ``--junitxml`` and pytest-xdist's ``-n``."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

# pytester's in-process runs drop the modules a run imported, and torch cannot be imported twice
# in one process: imported here, it stays.
import torch  # noqa: F401

import runner.execute  # noqa: F401
import runner.numeric  # noqa: F401
import runner.pytest_plugin
from runner.loader import SUFFIXES
from tests.conftest import ROOT

pytest_plugins = ["pytester"]

# The entry point loads the plugin where gradcase is installed with it; elsewhere (a checkout
# whose install predates it) it is named. Naming it twice would register it twice.
INSTALLED = any(ep.name == "gradcase" for ep in importlib.metadata.entry_points(group="pytest11"))
PLUGIN = () if INSTALLED else ("-p", "runner.pytest_plugin")

TWO = """\
name: t/good
inputs: {a: [1.0, 2.0]}
graph: {c: a * a}
---
name: t/wrong-golden
tags: [golden]
inputs: {a: [1.0, 2.0]}
graph: {c: a * a}
expect:
  grad:
    a: [2.0, 5.0]
"""
MISMATCH = (
    "t/wrong-golden: grad of 'a': manual vs expected differ at index [[]1[]]: manual 4, "
    "expected 5; 1 of 2 differ; abs error 1, rel error 0.2 (rtol 0.0005, atol 5e-05 = *"
)
XFAILS = """\
name: t/xpass
inputs: {a: [1.0, 2.0]}
graph: {c: a * a}
xfail: thought wrong
---
name: t/xfail-golden
inputs: {a: [1.0, 2.0]}
graph: {c: a * a}
xfail: thought wrong
expect: {grad: {a: [2.0, 5.0]}}
---
name: t/xfail-rule
inputs: {a: [1.0, 2.0]}
graph: {c: a * a}
xfail: thought wrong
rules: {mul: {input: grad}}
"""
BAD = """\
name: t/bad
inptus: {a: [1.0, 2.0]}
graph: {c: a * a}
"""
GOOD = "inputs: {a: [1.0, 2.0]}\ngraph: {c: a * a}\n"
WRONG_MUL = """\
def mul(grad, out, input, other):
    return {"input": grad * input}

RULES = {"mul": mul}
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN, *args)


def test_cases_are_items_failing_with_the_cli_text(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"cases/t/two": TWO})
    result = run(pytester, "cases", "-v", f"--junitxml={pytester.path / 'j.xml'}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "gradcase: torch *, device cpu; oracles: torch",
            "cases/t/two.yaml::t/good PASSED*",
            "cases/t/two.yaml::t/wrong-golden FAILED*",
            "*_ case t/wrong-golden _*",
            MISMATCH,
            "(failed t/wrong-golden, cases/t/two.yaml:5)",
        ]
    )
    # The failure is the text alone: no traceback, no source of the plugin.
    assert "Traceback" not in result.stdout.str()
    assert "runtest" not in result.stdout.str() and "raise " not in result.stdout.str()
    junit = (pytester.path / "j.xml").read_text()
    assert 'name="t/wrong-golden"' in junit and "manual vs expected differ" in junit


def test_reportinfo_is_the_case_documents_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"cases/t/two": TWO})
    recorder = pytester.inline_run(*PLUGIN, "cases")
    reports = {r.location[2]: r for r in recorder.getreports("pytest_runtest_logreport")}
    assert reports["case t/good"].location[:2] == ("cases/t/two.yaml", 0)
    # 0-based, as pytest counts: the second document starts on line 5.
    assert reports["case t/wrong-golden"].location[:2] == ("cases/t/two.yaml", 4)


def test_xfail_is_strict_and_only_for_a_wrong_rule(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"cases/x": XFAILS})
    result = run(pytester, "cases", "-rxXf")
    result.assert_outcomes(failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*[[]XPASS(strict)[]] thought wrong",
            "xfail (thought wrong) does not cover this failure: no rule is wrong*",
            "XFAIL cases/x.yaml::t/xfail-rule - thought wrong",
        ]
    )


def test_an_invalid_file_is_a_collection_error_under_any_k(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"cases/t/two": TWO, "cases/t/bad": BAD})
    result = run(pytester, "cases", "-k", "good")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting cases/t/bad.yaml*",
            "cases/t/bad.yaml:1:1: error: case: missing required key 'inputs'",
            "cases/t/bad.yaml:2:1: error: inptus: unknown key 'inptus'; did you mean 'inputs'?",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_which_yaml_files_are_cases(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"cases/a": GOOD, "other/b": GOOD, "config": "steps: [1, 2]\n"})
    pytester.makefile(".yml", **{"cases/deep/c": GOOD})
    # Folders named cases, at any depth; not other YAML files.
    run(pytester).assert_outcomes(passed=2)
    # A file named on the command line is collected wherever it is.
    result = run(pytester, "other/b.yaml", "cases/a.yaml", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["other/b.yaml::b PASSED*", "cases/a.yaml::a PASSED*"])
    # As are the folders of the gradcase_paths ini option.
    pytester.makeini("[pytest]\ngradcase_paths = other\n")
    run(pytester).assert_outcomes(passed=3)


def test_rules_from_the_option_and_from_pyproject(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"cases/m": "inputs: {a: [1.0, 2.0]}\ngraph: {c: a * a}\n"})
    pytester.makepyfile(my_rules=WRONG_MUL)
    result = run(pytester, "cases", "--gradcase-rules", "my_rules.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["gradcase: torch *; oracles: torch; rules: my_rules.py", "*module my_rules.py*"]
    )
    pytester.makepyprojecttoml('[tool.gradcase]\nrules = ["my_rules.py"]\n')
    run(pytester, "cases").assert_outcomes(failed=1)
    # Rules named on the command line that cannot be loaded are a usage error, said once (as
    # `gradcase run --rules`), not a failure of every case; no traceback.
    result = run(pytester, "cases", "--gradcase-rules", "missing.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gradcase: error: *missing.py*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    # Broken [tool.gradcase] rules fail the cases with the reason (they are not a command line).
    pytester.makepyprojecttoml('[tool.gradcase]\nrules = ["missing.py"]\n')
    result = run(pytester, "cases")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["gradcase: error: *missing.py*"])


def test_the_oracle_option(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"cases/t/two": TWO})
    result = run(pytester, "cases", "--gradcase-oracle", "numeric", "-k", "wrong")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*oracles: numeric", "t/wrong-golden: grad of 'a': numeric vs*"])
    assert "torch vs" not in result.stdout.str()


def test_x_and_last_failed(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"cases/t/two": TWO, "cases/t/x": XFAILS})
    run(pytester, "cases", "-x").assert_outcomes(passed=1, failed=1)
    run(pytester, "cases").assert_outcomes(passed=1, failed=3, xfailed=1)
    result = run(pytester, "cases", "--lf", "-v")
    result.assert_outcomes(failed=3)
    assert "t/good" not in result.stdout.str()


def test_xdist_runs_the_cases(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    pytester.makefile(".yaml", **{"cases/t/two": TWO, "cases/a": GOOD})
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers import this checkout's runner
    result = pytester.runpytest_subprocess(*PLUGIN, "-n", "2", "cases")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([MISMATCH])


def test_loading_the_plugin_imports_neither_torch_nor_the_registry() -> None:
    # Every pytest run of a repository that installs gradcase loads the plugin.
    code = (
        "import sys, runner.pytest_plugin; "
        "print(sorted(m for m in ('torch', 'numpy', 'pydantic', 'runner.ops') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    assert runner.pytest_plugin.SUFFIXES == SUFFIXES
