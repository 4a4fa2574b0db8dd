"""No function in `runner` over 60 lines outside the op tables (issue 8): a long function is
steps that want names."""

from __future__ import annotations

import ast
from pathlib import Path

RUNNER = Path(__file__).resolve().parent.parent / "runner"
MAX_LINES = 60
# Functions still over the limit, being split elsewhere. This list may only shrink: delete an
# entry once its function is short (`test_the_allow_list_names_only_long_functions` says when).
ALLOWED: set[tuple[str, str]] = set()


def _lengths() -> dict[tuple[str, str], int]:
    """(path under runner/, name) -> lines from ``def`` to the function's last line, for every
    function and method (nested ones too) outside runner/ops/."""
    found: dict[tuple[str, str], int] = {}
    for file in sorted(RUNNER.rglob("*.py")):
        relative = file.relative_to(RUNNER)
        if relative.parts[0] == "ops":
            continue
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                key = (relative.as_posix(), node.name)
                found[key] = max(found.get(key, 0), node.end_lineno - node.lineno + 1)
    return found


def test_no_function_outside_the_op_tables_is_over_60_lines() -> None:
    lengths = _lengths()
    assert len(lengths) > 200  # the scan saw the package, not an empty folder
    long = {key: n for key, n in lengths.items() if n > MAX_LINES and key not in ALLOWED}
    assert long == {}, f"split these into named steps of at most {MAX_LINES} lines: {long}"


def test_the_allow_list_names_only_long_functions() -> None:
    lengths = _lengths()
    stale = {key for key in ALLOWED if lengths.get(key, 0) <= MAX_LINES}
    assert stale == set(), f"now short (or gone): remove from ALLOWED: {sorted(stale)}"
