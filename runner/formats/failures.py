"""Each failure of a case with the place in its YAML file it points at, for the reports that
annotate lines (JUnit, GitHub): a golden value that disagrees points at its `expect` entry, a
wrong rule at the rule written in the case (else the node whose rule it is), a broken case at the
location its message starts with, anything else at the case's first line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.report import describe, fault_message
from schemas.report import CaseResult, Fault

_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$")
_LEADING = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+): ")
# Statuses that fail a run.
FAILING = ("failed", "error", "xpassed")


@dataclass(frozen=True)
class Located:
    """One failure: the file, its 1-based line and column (1 when unknown), and the text."""

    file: str
    line: int
    col: int
    message: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


def _parse(where: str, default: Located) -> Located:
    m = _LOCATED.match(where)
    if m is None:
        return default
    return Located(m["file"], int(m["line"]), int(m["col"] or 1), default.message)


def _fault_at(result: CaseResult, fault: Fault, message: str) -> Located:
    """A case rule's own location when the rule is written in this case file, else the node's."""
    at_case = Located(result.file, result.line, 1, message)
    node = _parse(fault.where, at_case)
    if " at " in fault.rule:
        rule = _parse(fault.rule.rsplit(" at ", 1)[1], node)
        if rule.file == result.file:
            return rule
    return node


def located_failures(result: CaseResult) -> list[Located]:
    """Every failure of ``result`` (the fault first, then each failed comparison; for a case
    without comparisons, its messages), located; empty for a case that passed."""
    if result.status == "passed":
        return []
    at_case = Located(result.file, result.line, 1, "")
    found: list[Located] = []
    if result.fault is not None:
        text = fault_message(result.fault)
        found.append(_fault_at(result, result.fault, text))
    for check in result.tensors:
        for c in check.comparisons:
            if c.ok:
                continue
            text = describe(result.name, check, c)
            if c.right == "expected" and check.expect_where:
                found.append(_parse(check.expect_where, Located(result.file, result.line, 1, text)))
            elif result.fault is not None:
                found.append(_fault_at(result, result.fault, text))
            else:
                found.append(Located(result.file, result.line, 1, text))
    if not found:
        for text in result.messages:
            m = _LEADING.match(text)
            if m is not None and m["file"] == result.file:
                found.append(Located(m["file"], int(m["line"]), int(m["col"]), text))
            else:
                found.append(Located(at_case.file, at_case.line, 1, text))
    return found
