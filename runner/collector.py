"""The garbage collector's policy for a gradcase process.

A command-line run keeps what it loads (the compiled cases) and what it imports (torch's module
objects, about 176,000) until it exits; full collections walking them again and again were a
fifth of loading and a tenth of a 1,000-case run (issue 11). Such a process moves them out of
the collector's generations (`gc.freeze`). A library caller (`runner.check`, the pytest plugin,
`runner.cli.main` called with arguments from Python) keeps the collector as it is: frozen
objects are never freed, and there they may become garbage.
"""

from __future__ import annotations

import gc

# Set by `runner.cli.main` run as a program and by `-j` workers (`runner.parallel`).
FREEZE = False


def freeze() -> None:
    """Freeze what is alive now (`gc.freeze`), when this process is gradcase's own."""
    if FREEZE:
        gc.freeze()
