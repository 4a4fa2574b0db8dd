"""``gradcase list``: the cases found, one a line: name, tags, ops and file:line (never imports
torch)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from runner.compile import CompiledCase
from runner.diagnostics import printable
from runner.loader import Loaded

COLUMN = 40  # characters a column of `gradcase list` is padded to, at most


def case_ops(case: CompiledCase) -> list[str]:
    """The ops of the case's graph, anonymous nodes included, each once, in graph order."""
    return list(dict.fromkeys(node.op.name for node in case.graph.nodes))


def rows(cases: Sequence[CompiledCase]) -> list[str]:
    """Aligned columns: name, [tags], ops, file:line."""
    table = [
        (c.name, "[" + ", ".join(c.model.tags) + "]", ", ".join(case_ops(c)), f"{c.file}:{c.line}")
        for c in cases
    ]
    # Columns padded to their longest cell, but at most COLUMN characters: one long cell (a
    # case with 20 ops) pushes only its own row out, not every line to 440 characters.
    widths = [min(max((len(row[i]) for row in table), default=0), COLUMN) for i in range(3)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]])
        for row in table
    ]


def list_cases(loaded: Loaded, select: str | None, tags: Sequence[str] | None) -> int:
    """Print the selected cases (``-k``, ``--tag``) and, on stderr, the invalid files' problems.
    Exit status: 2 when a file is invalid, else 0. Raises `runner.loader.UsageError` for an
    empty selection."""
    from runner.select import choose

    for line in rows(choose(loaded.cases, select, tags)):
        print(printable(line, lines=False))
    for problem in sorted(loaded.problems, key=lambda p: p.where):
        print(printable(str(problem)), file=sys.stderr)
    return 2 if loaded.problems else 0
