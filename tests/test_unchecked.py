"""Where torch itself is inconsistent (hardtanh and elu at NaN: the gradient depends on the
kernel path, so on the tensor's length), the elements concerned are unchecked, with the reason,
counted in the summary; they neither pass nor fail (issue 7, fault 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import runner
from runner.engine import forward
from runner.inputs import make_input
from runner.loader import load
from runner.unchecked import unchecked_grads

WriteCase = Callable[..., Path]


def nan_case(op: str, nans: int, rule: str | None = None) -> str:
    values = [".nan"] * nans + ["0.25", "-3.0", "2.0"]
    text = f"""\
name: t/{op}-{nans}-nan
inputs:
  x: [{", ".join(values)}]
graph:
  h: x * 2
  y: {op}(h)
upstream: {{random: normal, seed: 1}}
"""
    if rule is not None:
        text += f"rules:\n  {op}:\n    input: {rule}\n"
    return text


@pytest.mark.parametrize("op", ["hardtanh", "elu"])
@pytest.mark.parametrize("nans", [9, 17, 40])
def test_nan_elements_are_unchecked_whatever_the_length(
    write_case: WriteCase, op: str, nans: int
) -> None:
    report = runner.check(write_case(nan_case(op, nans)))
    (case,) = report.cases
    assert case.status == "passed", case.messages
    grads = {t.tensor: t for t in case.tensors if t.kind == "grad"}
    for name in ("x", "h"):
        assert "kernel path" in (grads[name].unchecked or "")
        assert {c.unchecked for c in grads[name].comparisons} == {nans}
    assert report.summary.unchecked == 2 * nans
    assert any(f"{nans} element(s) of the gradient of 'x' unchecked" in n for n in case.notes)


def test_a_wrong_rule_still_fails_on_the_checked_elements(write_case: WriteCase) -> None:
    """hardtanh's gradient passes g inside (-1, 1) only; a rule passing it everywhere is wrong
    at -3 and 2 (h = -6, 4), which are checked."""
    report = runner.check(write_case(nan_case("hardtanh", 17, "grad")))
    (case,) = report.cases
    assert case.status == "failed"
    (h,) = [t for t in case.tensors if (t.tensor, t.kind) == ("h", "grad")]
    (c,) = [c for c in h.comparisons if c.right == "torch"]
    assert (c.mismatched, c.unchecked) == (2, 17)
    assert c.worst_index is not None and c.worst_index[0] >= 17


def test_no_nan_no_unchecked(write_case: WriteCase) -> None:
    report = runner.check(write_case(nan_case("hardtanh", 0)))
    (case,) = report.cases
    assert case.status == "passed"
    assert report.summary.unchecked == 0
    assert all(c.unchecked is None for t in case.tensors for c in t.comparisons)


def test_the_taint_follows_the_gradient_back_through_the_graph(write_case: WriteCase) -> None:
    """x (2, 3) with a NaN at [0, 1], through a matmul into hardtanh: the NaN row of the matmul's
    output taints exactly its row of the output gradient, and through W.T all of x's row 0."""
    path = write_case(
        """\
name: t/taint
inputs:
  x: [[1.0, .nan, 2.0], [0.5, -1.0, 3.0]]
  w: {random: normal, shape: [3, 4], seed: 2}
graph:
  m: x @ w
  y: hardtanh(m)
"""
    )
    (case,) = load([str(path)]).cases
    values = forward(case.graph, {k: make_input(p) for k, p in case.inputs.items()})
    found = unchecked_grads(case.graph, values)
    assert np.array_equal(found["m"].mask, [[1, 1, 1, 1], [0, 0, 0, 0]])
    assert np.array_equal(found["x"].mask, [[1, 1, 1], [0, 0, 0]])
    assert "node 'y' (hardtanh)" in found["x"].reason
