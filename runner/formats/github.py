"""GitHub Actions workflow commands: when ``GITHUB_ACTIONS=true``, `gradcase run` prints one
``::error file=F,line=L,col=C,title=T::message`` line per failure (failed, error, xpassed cases
and invalid files), so the failure shows on the YAML line in the pull request's diff. Syntax:
https://docs.github.com/actions/reference/workflow-commands-for-github-actions"""

from __future__ import annotations

from collections.abc import Mapping

from runner.formats.failures import FAILING, located_failures
from schemas.report import Report


def enabled(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def error_lines(report: Report) -> list[str]:
    """One ``::error`` line per located failure of each failing case and per invalid file's
    problem."""
    lines = []
    for d in report.diagnostics:
        lines.append(_error(d.file, d.line, d.col, "gradcase: invalid case file", d.message))
    for case in report.cases:
        if case.status not in FAILING:
            continue
        title = f"gradcase {case.status.upper()} {case.name}"
        for f in located_failures(case):
            lines.append(_error(f.file, f.line, f.col, title, f.message))
    return lines


def _error(file: str, line: int, col: int, title: str, message: str) -> str:
    where = f"file={_property(file)},line={line},col={col},title={_property(title)}"
    return f"::error {where}::{_data(message)}"
