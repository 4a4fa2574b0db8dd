"""Problems found before running, located at a YAML node: ``file:line:col: message``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    where: Location
    message: str

    def __str__(self) -> str:
        return f"{self.where}: error: {self.message}"


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
