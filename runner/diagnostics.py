"""Problems found before running, located at a YAML node: ``file:line:col: message``."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

# C0 and C1 control characters (ESC starts terminal escape codes), DEL, and bidirectional
# overrides that reorder what a terminal shows; a line break and a tab stay.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


_CONTROL_LINES = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, lines: bool = True) -> str:
    """``text`` safe to echo on a terminal: every control character that could move the cursor,
    clear the screen or recolour it written as an escape (``\\x1b``), so a case file cannot
    print a fake result through a key, a value or its own name. ``lines=False`` escapes line
    breaks and tabs too (a one-line message cannot then print a line of its own)."""
    pattern = _CONTROL if lines else _CONTROL_LINES
    return pattern.sub(lambda m: repr(m.group())[1:-1], text)


@dataclass(frozen=True, order=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{printable(self.file, lines=False)}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    where: Location
    message: str

    def __str__(self) -> str:
        return f"{self.where}: error: {printable(self.message, lines=False)}"


class UsageError(Exception):
    """A bad command line (a path that does not exist): exit status 2, no traceback."""


class RulesError(Exception):
    """A rules module or setting that cannot be used: exit status 2 with this message."""


class CaseInvalid(Exception):
    """Every problem found in one file, reported together."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'matmul'?"`` for close matches, else ``""``."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
