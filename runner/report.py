"""The report: text for people (one line per case, then the details of each failure, then the
count line) and the JSON model of `schemas.report` for machines."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

from runner.diagnostics import Problem
from schemas.report import (
    CaseResult,
    Comparison,
    Diagnostic,
    Environment,
    Fault,
    Report,
    RuleUse,
    Summary,
    TensorCheck,
)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def describe(case: str, check: TensorCheck, c: Comparison) -> str:
    """One failed comparison: the case, the tensor, the stage, the sources, the worst element,
    both numbers, the errors and the tolerance used."""
    what = f"{case}: {check.kind} of '{check.tensor}': {c.left} vs {c.right}"
    if c.problem:
        return f"{what}: {c.problem}{_by(check, c)}"
    if c.projection:
        return (
            f"{what} differ along one direction: {c.left} {_num(c.left_value)}, {c.right} "
            f"{_num(c.right_value)}; abs error {_num(c.abs_err)} ({c.projection}){_by(check, c)}"
        )
    sided = f"; {c.one_sided}" if c.one_sided else ""
    sided += f"; {c.conditioning}" if c.conditioning else ""
    return f"{what} {_worst(c)}{sided}{_by(check, c)}"


def _worst(c: Comparison) -> str:
    count = f"{c.mismatched} of {c.total} differ; " if c.mismatched and c.total else ""
    return (
        f"differ at index {c.worst_index}: {c.left} {_num(c.left_value)}, "
        f"{c.right} {_num(c.right_value)}; {count}abs error {_num(c.abs_err)}, "
        f"rel error {_num(c.rel_err)} ({tolerance_text(c)})"
    )


def tolerance_text(c: Comparison) -> str:
    """The tolerance a comparison applied, with where its absolute part comes from: "rtol 1e-07,
    atol 2.2e-07 = 1e-07 x max|torch| 2.2 + round-off 3e-16"."""
    text = f"rtol {c.rtol:g}, atol {c.atol:g}"
    if c.scale is None:
        return text
    floor = c.floor or 0.0
    fraction = (c.atol - floor) / c.scale if c.scale else 0.0
    parts = [f"{fraction:.2g} x max|{c.right}| {c.scale:.5g}"] if c.scale else []
    parts += [f"round-off {floor:.2g}"] if floor else []
    return f"{text} = {' + '.join(parts)}" if parts else text


def _by(check: TensorCheck, c: Comparison) -> str:
    """Which rules gave a manual gradient, when any is not the catalogue's."""
    if "manual" not in (c.left, c.right) or all(u.source == "catalogue" for u in check.rules):
        return ""
    return " [from " + "; ".join(rule_use(u) for u in check.rules) + "]"


def rule_use(u: RuleUse) -> str:
    node = f"`{u.expression}`" if u.expression else f"'{u.node}'"
    return f"node {node} ({u.op}) '{u.argument}': {u.source} rule"


def node_name(f: Fault) -> str:
    """A node by its name, or, for an anonymous one, by its expression and location."""
    if "#" in f.node and f.expression:
        return f"`{f.expression}` ({f.op}, {f.where})"
    return f"'{f.node}' ({f.op})"


def fault_message(f: Fault) -> str:
    """Which rule is wrong, and how: the node, the argument, the worst element, the hint."""
    rule = f"{f.source} rule" + (f" {f.rule}" if f.rule else "")
    # A rule that raised or was stopped has no one argument it is wrong for.
    which = f" for '{f.argument}'" if f.argument else ""
    text = f"the rule of node {node_name(f)} is wrong{which} ({rule})"
    if f.under != "the case":
        text += f", found by the probe: judged alone under {f.under}"
    if f.comparison is not None:
        text += f": {f.comparison.left} vs {f.comparison.right} {_worst(f.comparison)}"
    elif f.problem:
        text += f": {f.problem}"
    hint = f"looks like: {f.diagnosis}" if f.diagnosis else ""
    if hint and hint not in (f.problem or ""):  # a shape problem says its hint already
        text += f"; {hint}"
    return text


def failure_messages(result: CaseResult) -> list[str]:
    return [describe(result.name, t, c) for t in result.tensors for c in t.comparisons if not c.ok]


def tensor_unchecked(check: TensorCheck) -> int:
    """How many elements of one checked tensor no comparison could judge
    (`Comparison.unchecked`): the most any of its comparisons left unchecked."""
    return max((c.unchecked or 0 for c in check.comparisons), default=0)


def unchecked_elements(result: CaseResult) -> int:
    """How many elements of ``result``'s checked tensors no comparison could judge."""
    return sum(tensor_unchecked(t) for t in result.tensors)


def summarize(results: Sequence[CaseResult], problems: Sequence[Problem]) -> Summary:
    return Summary(
        cases=len(results),
        passed=sum(r.status == "passed" for r in results),
        failed=sum(r.status == "failed" for r in results),
        errors=sum(r.status == "error" for r in results),
        invalid_files=len({p.where.file for p in problems}),
        xfailed=sum(r.status == "xfailed" for r in results),
        xpassed=sum(r.status == "xpassed" for r in results),
        unchecked=sum(unchecked_elements(r) for r in results),
    )


def build(
    results: Sequence[CaseResult],
    problems: Sequence[Problem],
    rule_sources: Sequence[str] = (),
    environment: Environment | None = None,
) -> Report:
    """The report of ``results`` and the files' ``problems``."""
    return Report(
        environment=environment,
        rule_sources=list(rule_sources),
        summary=summarize(results, problems),
        cases=list(results),
        diagnostics=[
            Diagnostic(file=p.where.file, line=p.where.line, col=p.where.col, message=p.message)
            for p in problems
        ],
    )


def plural(count: int, word: str) -> str:
    """ "1 case", "2 cases"."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def count_line(summary: Summary) -> str:
    """What each count counts: "343 cases: 340 passed, 1 failed, 2 errors; 1 invalid file"
    (errors, xfailed and xpassed only when there are any; then invalid files)."""
    line = f"{plural(summary.cases, 'case')}: {summary.passed} passed, {summary.failed} failed"
    line += f", {plural(summary.errors, 'error')}" if summary.errors else ""
    line += f", {summary.xfailed} xfailed" if summary.xfailed else ""
    line += f", {summary.xpassed} xpassed" if summary.xpassed else ""
    if summary.invalid_files:
        line += f"; {plural(summary.invalid_files, 'invalid file')}"
    if summary.unchecked:
        line += f" ({summary.unchecked} gradient elements unchecked: see the notes)"
    return line


def case_line(r: CaseResult) -> str:
    return f"{r.status.upper():6} {r.name}  ({r.file}:{r.line}, {r.duration * 1000:.0f} ms)"


def details(report: Report) -> list[str]:
    """What follows the per-case lines: invalid files, then each failure's details."""
    lines = [f"INVALID {d.file}:{d.line}:{d.col}: {d.message}" for d in report.diagnostics]
    lines += [f"NOTE {r.name}: {note}" for r in report.cases for note in r.notes]
    bad = [r for r in report.cases if r.status != "passed"]
    # Expected failures last: what needs attention comes first.
    bad.sort(key=lambda r: r.status == "xfailed")
    if bad:
        lines.append("")
        for r in bad:
            lines.append(f"--- {r.status.upper()} {r.name} ({r.file}:{r.line})")
            lines += [f"  {m}" for m in r.messages]
    return lines


def write_json(report: Report, path: Path, streamed: Collector | None = None) -> None:
    """Atomic: a reader never sees a half-written report. ``streamed``: the collector whose
    cases make the report's ``cases`` (``report.cases``, what it kept, is then not written);
    the file is byte for byte what ``report`` with every case would serialise to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # model_dump_json writes inf/NaN errors as null: the file stays valid JSON. Serialised
    # before the temporary file exists, so an interruption while serialising leaves nothing.
    if streamed is None:
        head, tail = (report.model_dump_json(indent=2) + "\n").encode(*_UTF8), b""
    else:
        head, tail = streamed.frame(report)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            if streamed is not None:
                streamed.copy_cases(f)
            f.write(tail)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_UTF8 = ("utf-8", "backslashreplace")
# `Report.cases` with no case, as model_dump_json(indent=2) writes it (one per report: the
# summary's "cases" count is indented deeper).
_NO_CASES = b'\n  "cases": [],\n'

Keep = Literal["all", "slim", "failing"]


class Collector:
    """The results of a run as they come (`add`), for a report whose peak memory does not grow
    with the number of cases: each case's JSON goes to an anonymous temporary file at once
    (with ``stream``), the counts are summed, and only what the end needs is kept in memory,
    by ``keep``:

    - ``"failing"``: cases that did not pass, or carry notes or refused input (what the text
      report's details, ``-q``, ``--markdown`` and the GitHub annotations read);
    - ``"slim"``: those, and each passed case without its tensors (``--junit`` lists every
      case with its name, file, line and duration);
    - ``"all"``: every result (``--html`` shows every case; `runner.check` returns them).
    """

    def __init__(self, keep: Keep = "all", stream: bool = False) -> None:
        self.keep = keep
        self.kept: list[CaseResult] = []
        self.counts = {"passed": 0, "failed": 0, "error": 0, "xfailed": 0, "xpassed": 0}
        self.unchecked = 0
        self.cases = 0
        self._file: IO[bytes] | None = tempfile.TemporaryFile() if stream else None

    def add(self, result: CaseResult) -> None:
        self.cases += 1
        self.counts[result.status] += 1
        self.unchecked += unchecked_elements(result)
        if self._file is not None:
            text = result.model_dump_json(indent=2).replace("\n", "\n    ")
            self._file.write((",\n    " if self.cases > 1 else "    ").encode(*_UTF8))
            self._file.write(text.encode(*_UTF8))
        if self.keep == "all" or result.status != "passed" or result.notes or result.invalid_input:
            self.kept.append(result)
        elif self.keep == "slim":
            self.kept.append(
                CaseResult(
                    name=result.name,
                    file=result.file,
                    line=result.line,
                    status=result.status,
                    duration=result.duration,
                )
            )

    def summary(self, problems: Sequence[Problem]) -> Summary:
        """The counts of every case added (`summarize` of them all)."""
        c = self.counts
        return Summary(
            cases=self.cases,
            passed=c["passed"],
            failed=c["failed"],
            errors=c["error"],
            invalid_files=len({p.where.file for p in problems}),
            xfailed=c["xfailed"],
            xpassed=c["xpassed"],
            unchecked=self.unchecked,
        )

    def report(
        self,
        problems: Sequence[Problem],
        rule_sources: Sequence[str] = (),
        environment: Environment | None = None,
    ) -> Report:
        """The report of every case added, its ``cases`` the kept ones (all with ``"all"``)."""
        built = build(self.kept, problems, rule_sources, environment)
        return built.model_copy(update={"summary": self.summary(problems)})

    def frame(self, report: Report) -> tuple[bytes, bytes]:
        """The JSON of ``report`` before and after its cases, which `copy_cases` writes."""
        empty = report.model_copy(update={"cases": []})
        text = (empty.model_dump_json(indent=2) + "\n").encode(*_UTF8)
        head, found, tail = text.partition(_NO_CASES)
        assert found, "the report's JSON has no empty case list"
        if not self.cases:
            return head + _NO_CASES, tail
        return head + b'\n  "cases": [\n', b"\n  ],\n" + tail

    def copy_cases(self, out: IO[bytes]) -> None:
        """Every case's JSON added so far, in order, comma-separated, into ``out``."""
        assert self._file is not None, "a Collector made without stream=True"
        self._file.flush()
        self._file.seek(0)
        shutil.copyfileobj(self._file, out)
        self._file.seek(0, os.SEEK_END)

    def close(self) -> None:
        """Delete the temporary file (also done when the process exits)."""
        if self._file is not None:
            self._file.close()
