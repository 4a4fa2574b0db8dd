"""torch's own spellings compile to the same graph as their canonical form (issue 8), and the
spellings still refused say what to write instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.loader import load

WriteCase = Callable[..., Path]

INPUTS = """\
inputs:
  x: {random: normal, shape: [3, 4], seed: 1}
  w: {random: normal, shape: [4], seed: 2}
  m: {values: [[true, false, true, false]], dtype: bool}
"""


def graph_of(write_case: WriteCase, expression: str) -> list[tuple[str, str, Any]]:
    path = write_case(f"name: t\n{INPUTS}graph:\n  y: {expression}\n  s: sum(y * 1.0)\n")
    loaded = load([str(path)])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    (case,) = loaded.cases
    return [(n.name, n.op.name, n.args) for n in case.graph.nodes]


PAIRS = [
    ("where(x > 0, x, 0.0)", "where(gt(x, 0), x, 0.0)"),
    ("where(x >= w, x, w)", "where(ge(x, w), x, w)"),
    ("(x == w) * x", "mul(eq(x, w), x)"),
    ("(x != 0.5) * x", "mul(ne(x, 0.5), x)"),
    ("(x < w) * x", "mul(lt(x, w), x)"),
    ("(x <= 10.0) * x", "mul(le(x, 10.0), x)"),
    ("((x > 0) & m) * x", "mul(bitwise_and(gt(x, 0), m), x)"),
    ("((x > 0) | m) * x", "mul(bitwise_or(gt(x, 0), m), x)"),
    ("((x > 0) ^ m) * x", "mul(bitwise_xor(gt(x, 0), m), x)"),
    ("~m * x", "mul(bitwise_not(m), x)"),
]


@pytest.mark.parametrize(("spelled", "canonical"), PAIRS)
def test_a_spelling_compiles_to_its_canonical_graph(
    write_case: WriteCase, spelled: str, canonical: str
) -> None:
    assert graph_of(write_case, spelled) == graph_of(write_case, canonical)


@pytest.mark.parametrize(
    ("expression", "said"),
    [
        ("(0 < x < 1) * x", "write (a < b) & (b < c)"),
        ("(x > 0 and m) * x", "for bool tensors write a & b"),
        ("(not m) * x", "write ~mask"),
        ("(x is w) * x", "not a tensor comparison"),
    ],
)
def test_python_only_spellings_say_what_to_write(
    write_case: WriteCase, expression: str, said: str
) -> None:
    path = write_case(f"name: t\n{INPUTS}graph:\n  y: {expression}\n")
    loaded = load([str(path)])
    messages = [p.message for p in loaded.problems]
    assert any(said in m for m in messages), messages


def test_a_comparison_gives_no_gradient_and_its_operand_keeps_requiring_grad(
    write_case: WriteCase,
) -> None:
    """x is used in x > 0 (no gradient there, as torch) and as data: it still gets its gradient;
    the bool node does not require grad."""
    path = write_case(f"name: t\n{INPUTS}graph:\n  k: x > 0\n  y: where(k, x, 0.0)\n")
    (case,) = load([str(path)]).cases
    assert case.graph.requires_grad["x"] and not case.graph.requires_grad["k"]
    assert "x" in case.checks and "k" not in case.checks
