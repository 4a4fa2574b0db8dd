"""Property-based fuzz (hypothesis, seeded and bounded; issue 10): mutated valid cases and random
expression strings always end in a clean validation result or an error located at
file:line:col, never a traceback, a hang or more than a set memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.test_hostile import PIECES, SEEDS

# Every example is derived from the test's own seed (derandomize) so a failure repeats exactly;
# each may take at most DEADLINE_MS of wall time and PEAK_BYTES of Python allocations.
FUZZ = settings(
    max_examples=120,
    derandomize=True,
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PEAK_BYTES = 256 * 2**20

# One edit of a case's text: insert a hostile piece, delete a run, or swap two lines.
EDIT = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.sampled_from(PIECES)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 8)),
    st.tuples(st.just("swap"), st.integers(0, 100), st.integers(0, 100)),
)
# Expressions built from the graph language's characters, names and ops, and worse.
TOKENS = [*"xyzab0123456789.,()[]+-*/@<>=&|~^ :'\"\\\t", "sum", "relu", "x.T", "F.", "**"]
EXPRESSION = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


def _apply(text: str, edit: tuple[str, int, object]) -> str:
    kind, at, what = edit
    if kind == "insert":
        i = at % (len(text) + 1)
        return text[:i] + str(what) + text[i:]
    if kind == "delete":
        i = at % (len(text) + 1)
        return text[:i] + text[i + int(str(what)) :]
    lines = text.split("\n")
    i, j = at % len(lines), int(str(what)) % len(lines)
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def _validates_cleanly(path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    tracemalloc.start()
    try:
        code, out = run_cli(capsys, "validate", str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code in (0, 2), (text, out)
    assert "Traceback" not in out, (text, out)
    assert peak < PEAK_BYTES, (text, peak)
    if code == 2:
        assert f"{path.name}:" in out and ": error: " in out, (text, out)


@FUZZ
@given(seed=st.sampled_from(SEEDS), edits=st.lists(EDIT, min_size=1, max_size=4))
def test_mutated_cases_validate_or_fail_located(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    seed: str,
    edits: list[tuple[str, int, object]],
) -> None:
    text = seed
    for edit in edits:
        text = _apply(text, edit)
    _validates_cleanly(tmp_path / "case.yaml", text, capsys)


@FUZZ
@given(expression=EXPRESSION)
def test_random_expressions_validate_or_fail_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expression: str
) -> None:
    quoted = expression.replace("\\", "\\\\").replace('"', '\\"')
    text = (
        "inputs:\n  x: {random: normal, shape: [2, 3], seed: 1}\n  a: [1.0, 2.0, 3.0]\n"
        f'graph:\n  y: "{quoted}"\n'
    )
    _validates_cleanly(tmp_path / "case.yaml", text, capsys)
