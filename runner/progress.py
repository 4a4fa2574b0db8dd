"""What ``gradcase run`` prints while cases run: one line per case, a progress bar on a terminal.

On a terminal (and ``CI`` unset) a tqdm bar counts the cases at the bottom, shown only once a run
has taken a second (tqdm's ``delay``), with the case lines scrolling above it; when the output is
not a terminal, or ``CI`` is set, plain lines only, nothing rewritten. Status words are coloured
on a terminal unless ``NO_COLOR`` is set (https://no-color.org: any non-empty value).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from runner.diagnostics import printable
from runner.report import case_line, count_line
from schemas.report import CaseResult, Summary

# The statuses ``-q`` still prints: those that fail a run.
FAILING = ("failed", "error", "xpassed")
_COLOURS = {"passed": "32", "failed": "31", "error": "31", "xfailed": "33", "xpassed": "31"}
BAR_DELAY_S = 1.0


def interactive(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """A terminal a bar may be drawn on: a tty, and not a CI job (``CI`` set to anything but
    an empty string or "false")."""
    ci = environ.get("CI", "")
    return _isatty(stream) and ci.lower() in ("", "0", "false")


def coloured(stream: TextIO, environ: Mapping[str, str]) -> bool:
    return _isatty(stream) and not environ.get("NO_COLOR")


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Output:
    """The run's printer: ``case`` after each case (its line, then ``-v``'s side-by-side
    lines), ``line`` for anything else, ``close`` before the summary."""

    def __init__(
        self,
        total: int,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        env = os.environ if environ is None else environ
        self.quiet = quiet
        self.colour = coloured(self.stream, env)
        self.bar: Any = None
        if interactive(self.stream, env) and total > 1:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                file=self.stream,
                delay=BAR_DELAY_S,
                unit="case",
                leave=False,
                dynamic_ncols=True,
                colour=None,
            )

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def case(self, result: CaseResult, shown: list[str] | None = None) -> None:
        if not self.quiet or result.status in FAILING:
            # Escaped before colouring: the only control codes printed are the runner's own.
            text = printable(case_line(result))
            if self.colour:
                word = result.status.upper()
                code = _COLOURS[result.status]
                text = text.replace(word, f"\033[{code}m{word}\033[0m", 1)
            self.line(text)
            if shown is not None:
                self.line(printable("\n".join([*shown, ""])))
        if self.bar is not None:
            self.bar.update(1)

    def count_line(self, summary: Summary) -> str:
        """The count line, in bold on a terminal."""
        text = count_line(summary)
        return f"\033[1m{text}\033[0m" if self.colour else text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
