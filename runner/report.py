"""The report: text for people (one line per case, then the details of each failure, then the
count line) and the JSON model of `schemas.report` for machines."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from runner.diagnostics import Problem
from schemas.report import CaseResult, Comparison, Diagnostic, Report, Summary, TensorCheck


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def describe(case: str, check: TensorCheck, c: Comparison) -> str:
    """One failed comparison: the case, the tensor, the stage, the sources, the worst element,
    both numbers, the errors and the tolerance used."""
    what = f"{case}: {check.kind} of '{check.tensor}': {c.left} vs {c.right}"
    if c.problem:
        return f"{what}: {c.problem}"
    return (
        f"{what} differ at index {c.worst_index}: {c.left} {_num(c.left_value)}, "
        f"{c.right} {_num(c.right_value)}; abs error {_num(c.abs_err)}, "
        f"rel error {_num(c.rel_err)} (rtol {c.rtol:g}, atol {c.atol:g})"
    )


def failure_messages(result: CaseResult) -> list[str]:
    return [describe(result.name, t, c) for t in result.tensors for c in t.comparisons if not c.ok]


def summarize(results: Sequence[CaseResult], problems: Sequence[Problem]) -> Summary:
    invalid_files = {p.where.file for p in problems}
    return Summary(
        passed=sum(r.status == "passed" for r in results),
        failed=sum(r.status == "failed" for r in results),
        errors=sum(r.status == "error" for r in results) + len(invalid_files),
    )


def build(results: Sequence[CaseResult], problems: Sequence[Problem]) -> Report:
    return Report(
        summary=summarize(results, problems),
        cases=list(results),
        diagnostics=[
            Diagnostic(file=p.where.file, line=p.where.line, col=p.where.col, message=p.message)
            for p in problems
        ],
    )


def count_line(summary: Summary) -> str:
    line = f"{summary.passed} passed, {summary.failed} failed"
    return line + (f", {summary.errors} errors" if summary.errors else "")


def case_line(r: CaseResult) -> str:
    return f"{r.status.upper():6} {r.name}  ({r.file}:{r.line}, {r.duration * 1000:.0f} ms)"


def details(report: Report) -> list[str]:
    """What follows the per-case lines: invalid files, then each failure's details."""
    lines = [f"INVALID {d.file}:{d.line}:{d.col}: {d.message}" for d in report.diagnostics]
    bad = [r for r in report.cases if r.status != "passed"]
    if bad:
        lines.append("")
        for r in bad:
            lines.append(f"--- {r.status.upper()} {r.name} ({r.file}:{r.line})")
            lines += [f"  {m}" for m in r.messages]
    return lines


def render(report: Report) -> str:
    """The whole text report; the count line is the last line."""
    lines = [case_line(r) for r in report.cases] + details(report)
    return "\n".join([*lines, count_line(report.summary)])


def write_json(report: Report, path: Path) -> None:
    """Atomic: a reader never sees a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # model_dump_json writes inf/NaN errors as null: the file stays valid JSON.
            f.write(report.model_dump_json(indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
