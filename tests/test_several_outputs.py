"""Ops with several outputs: selection in the graph, a node per output used, integer outputs
without gradient, both float outputs' gradients, and `grads`/`outs` in rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from runner import check
from runner.engine import run_manual
from runner.loader import load
from runner.ops import REGISTRY
from runner.torch_side import run_torch

WriteCase = Callable[..., Path]


def compiled(write_case: WriteCase, text: str):  # type: ignore[no-untyped-def]
    loaded = load([str(write_case(text))])
    assert not loaded.problems, loaded.problems
    return loaded.cases[0]


def test_indices_are_an_int64_node_without_gradient_usable_as_an_index(
    write_case: WriteCase,
) -> None:
    case = compiled(
        write_case,
        "inputs: {x: [[1.0, 3.0, 3.0], [5.0, 1.0, 0.0]], w: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}\n"
        "graph:\n  m: max(x, 1)\n  i: m.indices\n"
        "  y: m[0] * squeeze(gather(w, 1, unsqueeze(i, 1)), 1)\n",
    )
    graph = case.graph
    assert graph.node("m").op.selected == 0 and graph.node("i").op.selected == 1
    assert not graph.requires_grad["i"] and graph.requires_grad["m"]
    inputs = {k: np.asarray(v) for k, v in (("x", [[1.0, 3.0, 3.0], [5.0, 1.0, 0.0]]),)}
    inputs["w"] = np.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    manual = run_manual(graph, inputs, np.ones(2))
    assert manual.values["i"].dtype == np.int64
    assert manual.values["i"].tolist() == [1, 0]  # the first maximum, as torch's CPU max
    # y = max * w[row, argmax]: the gradient goes to the first maximum only.
    assert manual.grads["x"].tolist() == [[0.0, 2.0, 0.0], [4.0, 0.0, 0.0]]
    torch = run_torch(graph, inputs, np.ones(2))
    assert np.array_equal(torch.values["i"], manual.values["i"])
    assert np.allclose(torch.grads["x"], manual.grads["x"])


def test_both_float_outputs_used_send_both_gradients(write_case: WriteCase) -> None:
    case = compiled(
        write_case,
        "inputs: {x: [[1.0, 2.0, 4.0]]}\ngraph:\n  v: var_mean(x, 1, correction=0)\n"
        "  y: v[0] + 3 * v[1]\n",
    )
    x = np.asarray([[1.0, 2.0, 4.0]])
    manual = run_manual(case.graph, {"x": x}, np.ones(1))
    # d var / dx = 2 (x - mean) / 3, d mean / dx = 1/3: both, added.
    expected = 2 * (x - x.mean()) / 3 + 3 / 3
    assert np.allclose(manual.grads["x"], expected)
    assert np.allclose(run_torch(case.graph, {"x": x}, np.ones(1)).grads["x"], expected)


@pytest.mark.parametrize(
    ("expr", "said"),
    [
        ("max(x, 1)[2]", "max(...) gives (values, indices): select one with .values, .indices"),
        ("x.values", ".values is an output of an op with several"),
        ("var_mean(x, 1)[-3]", "var_mean(...) gives (var, mean): select one with [0], [1]"),
        ("sort(x).indices * 1.0 + x", ""),  # int64 indices times a float: no gradient
    ],
)
def test_selection_is_checked_where_it_is_written(
    write_case: WriteCase, expr: str, said: str
) -> None:
    path = write_case(f"inputs: {{x: [[1.0, 5.0]]}}\ngraph:\n  a: {expr}\n")
    problems = [str(p) for p in load([str(path)]).problems]
    if not said:
        assert not problems
        return
    assert len(problems) == 1 and said in problems[0], problems
    assert ":3:6:" in problems[0]


def test_a_full_max_is_one_output_and_max_with_dim_two() -> None:
    op = REGISTRY["max"]
    assert not op.several({"input": None, "dim": None})
    assert op.several({"input": None, "dim": 1})
    values, indices = op.forward(input=np.asarray([[1.0, 4.0, 4.0]]), dim=1, keepdim=False)
    assert values.tolist() == [4.0] and indices.tolist() == [1]
    (grad,) = op.vjp(
        (np.asarray([2.0]), None),
        (values, indices),
        input=np.asarray([[1.0, 4.0, 4.0]]),
        dim=1,
        keepdim=False,
    )
    assert grad.tolist() == [[0.0, 2.0, 0.0]]


def test_sort_descending_puts_nans_first_and_keeps_ties_in_order() -> None:
    values, indices = REGISTRY["sort"].forward(
        input=np.asarray([2.0, np.nan, 1.0, 2.0]), dim=0, descending=True
    )
    assert indices.tolist() == [1, 0, 3, 2]


def test_cummax_gives_the_latest_of_equal_maxima() -> None:
    _, indices = REGISTRY["cummax"].forward(input=np.asarray([2.0, 1.0, 2.0, 0.0]), dim=0)
    assert indices.tolist() == [0, 0, 2, 2]


RULE_CASE = """\
inputs: {{x: [[1.0, 2.0, 4.0], [0.5, -1.0, 3.0]]}}
graph:
  v: var_mean(x, 1)
  y: v[0] * 2 + v[1] * v[1]
upstream: {{random: normal, seed: 3}}
rules:
  var_mean:
    input: "(0 if grads[0] is None else grads[0][:, None] * (input - outs[1][:, None])) +
      (0 if grads[1] is None else np.broadcast_to(grads[1][:, None] / {n}, input.shape))"
"""


@pytest.mark.parametrize(("n", "status"), [(3, "passed"), (2, "failed")])
def test_a_rule_gets_a_gradient_per_output_with_none_for_the_unused(
    write_case: WriteCase, tmp_path: Path, n: int, status: str
) -> None:
    report = check(str(write_case(RULE_CASE.format(n=n))))
    assert [c.status for c in report.cases] == [status]
    if status == "failed":
        assert "node `v[1]` (var_mean" in report.cases[0].messages[0]
