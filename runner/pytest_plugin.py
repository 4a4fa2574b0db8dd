"""gradcase as a pytest plugin: case files are collected and run as tests, one item per case.

Registered through the ``pytest11`` entry point ``gradcase`` (``-p no:gradcase`` turns it off), so
any repository that installs gradcase can run ``pytest cases/``, ``pytest cases/seed/add.yaml``,
with ``-k``, ``-x``, ``--lf``, ``--junitxml`` and pytest-xdist's ``-n``.

Which files are collected: a ``*.yaml``/``*.yml`` file that lies in a folder named ``cases`` (at
any depth; the folder whose path names the case, as for ``gradcase run``), that is named on the
command line itself, or that lies under a folder of the ``gradcase_paths`` ini option. Other YAML
files of a repository (CI configuration, mkdocs.yml) are left alone.

An item is one case, named by the case's name; ``reportinfo`` gives its YAML file and the line of
its document. A failure is the CLI's mismatch text (`runner.report`) as a plain string, never a
traceback. A case marked ``xfail`` is pytest's strict xfail: it counts as expected only when a rule
is wrong, as in ``gradcase run``. An invalid file is a collection error listing every problem at
``file:line:col``; pytest reports it whatever ``-k`` selects.

torch is imported only when a case runs; the header names its version from the package metadata.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from runner.compile import CompiledCase
    from runner.diagnostics import Problem
    from runner.rules import RuleSet

# This module is imported by every pytest run of a repository that installs gradcase: it imports
# nothing of gradcase at the top (numpy, pydantic and the op registry come with the first case).
# `runner.loader.SUFFIXES`, spelt again for that reason (a test holds the two equal).
SUFFIXES = (".yaml", ".yml")
# The torch oracle runs on this device (`runner.oracles.TORCH`).
DEVICE = "cpu"
_STATE = pytest.StashKey["_State"]()


class _State:
    """What every case of a session runs with, loaded when the first case runs (a worker of
    pytest-xdist loads its own)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rules: list[RuleSet] | None = None
        self.error: str | None = None

    def rule_sets(self) -> list[RuleSet]:
        """``--gradcase-rules`` as given, else ``[tool.gradcase] rules`` of the nearest
        pyproject.toml from the invocation folder up (as ``gradcase run --rules``). Raises
        `CaseError` with the reason when they cannot be loaded."""
        from runner.rules.modules import RulesError, find_config
        from runner.rules.modules import load as load_modules

        if self.rules is None and self.error is None:
            here = self.config.invocation_params.dir
            specs = self.config.getoption("gradcase_rules")
            try:
                if specs:
                    self.rules = load_modules(specs, here)
                else:
                    found = find_config(here)
                    self.rules = load_modules(*found) if found else []
            except RulesError as exc:
                self.error = f"gradcase: error: {exc}"
        if self.error is not None:
            raise CaseError([self.error])
        assert self.rules is not None
        return self.rules

    def oracles(self) -> list[Any]:
        from runner.oracles import TORCH, oracle_named

        names = self.config.getoption("gradcase_oracle")
        return [oracle_named(n) for n in dict.fromkeys(names)] if names else [TORCH]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcase", "gradcase: backward rules checked case by case")
    group.addoption(
        "--gradcase-rules",
        action="append",
        dest="gradcase_rules",
        metavar="PATH.py|MODULE",
        help="a module whose RULES dict holds your backward rules (repeatable; asked in order, "
        "after each case's own rules, before the catalogue); replaces [tool.gradcase] rules",
    )
    group.addoption(
        "--gradcase-oracle",
        action="append",
        dest="gradcase_oracle",
        choices=("torch", "numeric"),
        help="an oracle to compare with (repeatable; default: torch) in the cases that do not "
        "name their own `oracles`",
    )
    parser.addini(
        "gradcase_paths",
        type="paths",
        default=[],
        help="folders whose *.yaml/*.yml files are gradcase cases (besides folders named cases)",
    )


def pytest_configure(config: pytest.Config) -> None:
    state = _State(config)
    config.stash[_STATE] = state
    if config.getoption("gradcase_rules"):
        # Rules named on the command line that cannot be used are a usage error, said once,
        # as `gradcase run --rules` says it (exit status 4, pytest's usage error), not a
        # failure of every case.
        try:
            state.rule_sets()
        except CaseError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    try:
        torch = f"torch {importlib.metadata.version('torch')}"
    except importlib.metadata.PackageNotFoundError:
        torch = "torch not installed"
    oracles = ", ".join(dict.fromkeys(config.getoption("gradcase_oracle") or ["torch"]))
    # [tool.gradcase] rules are read when the first case runs (reading them here would import
    # the op registry in every pytest run); a failure names the rules that gave a gradient.
    specs = config.getoption("gradcase_rules")
    rules = f"; rules: {', '.join(specs)}" if specs else ""
    return f"gradcase: {torch}, device {DEVICE}; oracles: {oracles}{rules}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CaseFile | None:
    if file_path.suffix in SUFFIXES and is_case_file(file_path, parent.session):
        file: CaseFile = CaseFile.from_parent(parent, path=file_path)
        return file
    return None


def is_case_file(path: Path, session: pytest.Session) -> bool:
    """A YAML file in a folder named ``cases``, named on the command line, or under a folder of
    the ``gradcase_paths`` ini option."""
    if session.isinitpath(path):
        return True
    resolved = path.resolve()
    if any(p.name == "cases" for p in resolved.parents):
        return True
    folders: Sequence[Path] = session.config.getini("gradcase_paths")
    return any(resolved.is_relative_to(Path(f).resolve()) for f in folders)


class InvalidCaseFile(Exception):
    """Every problem of a case file, each at ``file:line:col``."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in sorted(problems, key=lambda p: p.where)))


class CaseError(Exception):
    """A case that failed (or could not run): the CLI's text, one message a line."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("\n".join(messages))


class CaseXfailed(Exception):
    """A case marked xfail whose rule is wrong, as the mark says."""


class CaseFile(pytest.File):
    """One case file: each YAML document a case. A file with any problem is a collection error
    (its valid documents do not run: ``--continue-on-collection-errors`` runs the other files)."""

    def collect(self) -> Iterator[CaseItem]:
        from runner.loader import load

        loaded = load([str(self.path)])
        if loaded.problems:
            raise InvalidCaseFile(loaded.problems)
        for case in loaded.cases:
            yield CaseItem.from_parent(self, name=case.name, case=case)

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> Any:
        if isinstance(excinfo.value, InvalidCaseFile):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class CaseItem(pytest.Item):
    """One case, run with the session's rules and oracles (`runner.execute.execute`)."""

    def __init__(self, *, case: CompiledCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        # -k matches tags as it matches names.
        self.extra_keyword_matches.update(case.model.tags)
        if case.model.xfail is not None:
            # raises=: only a wrong rule is the expected failure (gradcase's xfail); any other
            # failure of the case fails the test, and a pass is XPASS(strict).
            self.add_marker(
                pytest.mark.xfail(reason=case.model.xfail, strict=True, raises=CaseXfailed)
            )

    def runtest(self) -> None:
        from runner.execute import execute

        state = self.config.stash[_STATE]
        result = execute(self.case, state.rule_sets(), state.oracles())
        if result.status not in ("xfailed", "failed", "error"):
            return
        # `gradcase run`'s text of a case that did not pass (runner.report.details), the
        # mismatch first: pytest's short summary shows the first line.
        text = [
            *result.messages,
            *(f"NOTE {result.name}: {note}" for note in result.notes),
            f"({result.status} {result.name}, {result.file}:{result.line})",
        ]
        if result.status == "xfailed":
            raise CaseXfailed("\n".join(text))
        raise CaseError(text)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CaseError | CaseXfailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        # pytest's line is 0-based; the case's is its document's first line, 1-based.
        return self.path, self.case.line - 1, f"case {self.case.name}"
