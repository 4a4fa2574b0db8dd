"""``x[mask]`` with a literal bool input: lowered to its nonzero positions, as torch's
``x[mask]`` is ``x[mask.nonzero(as_tuple=True)]``; checked against torch's ``x[mask]`` itself
(value and gradient), and the masks that stay refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.oracles import MANUAL, TORCH
from schemas.report import Report
from tests.conftest import run_cli

WriteCase = Callable[..., Path]


def _case(write_case: WriteCase, shape: list[int], mask: Any, graph: str) -> Any:
    from runner.loader import load

    text = (
        f"inputs:\n  x: {{random: normal, shape: {shape}, seed: 7}}\n"
        f"  m: {{values: {mask}, dtype: bool}}\n"
        f"graph:\n  a: {graph}\n  s: sum(a * a)\nupstream: 1.0\n"
    )
    loaded = load([str(write_case(text))])
    assert not loaded.problems, loaded.problems
    return loaded.cases[0]


# (x's shape, the mask, the subscript, the subscript as torch reads it with ``m`` a tensor)
MASKS = [
    ([4, 3], [True, False, True, True], "x[m]", lambda x, m: x[m]),
    ([2, 3, 4], [[True, False, True], [False, False, True]], "x[m]", lambda x, m: x[m]),
    ([2, 3, 4], [True, False, True], "x[:, m]", lambda x, m: x[:, m]),
    ([2, 3, 4], [True, False, True], "x[0, m]", lambda x, m: x[0, m]),
    ([2, 3, 4], [False, True], "x[m, 1:]", lambda x, m: x[m, 1:]),
    ([2, 3, 4], [True, True, False, True], "x[..., m]", lambda x, m: x[..., m]),
    ([2, 3, 4], [[True, False, True, True]] * 3, "x[1, m]", lambda x, m: x[1, m]),
    ([2, 3, 4], [[False] * 4] * 3, "x[:, m]", lambda x, m: x[:, m]),  # nothing selected
    ([3, 2], [[True, False], [False, True], [True, True]], "x[m]", lambda x, m: x[m]),
]


@pytest.mark.parametrize(("shape", "mask", "graph", "torch_form"), MASKS)
def test_a_literal_mask_is_torchs_x_mask_in_value_and_gradient(
    write_case: WriteCase, shape: list[int], mask: Any, graph: str, torch_form: Any
) -> None:
    torch = pytest.importorskip("torch")
    from runner.execute import run_sources

    case = _case(
        write_case, shape, str(mask).replace("True", "true").replace("False", "false"), graph
    )
    node = case.graph.node("a")
    assert node.op.name == "index_tensor"
    assert all("#" in ref.name for ref in node.args["indices"])  # the mask's positions
    sources = run_sources(case)
    x = torch.tensor(sources.inputs["x"], requires_grad=True)
    m = torch.tensor(np.array(mask, dtype=bool))
    a = torch_form(x, m)
    (a * a).sum().backward()
    assert node.shape == tuple(a.shape)
    for source in (MANUAL, TORCH.name):
        assert np.array_equal(sources.values[source]["a"], a.detach().numpy()), source
        assert np.allclose(sources.grads[source]["x"], x.grad.numpy(), rtol=1e-12), source
    # The positions are constants: no gradient, not checked, not the user's inputs.
    assert all("#" not in name for name in case.checks)
    assert not any(case.inputs[r.name].requires_grad for r in node.args["indices"])


@pytest.mark.parametrize(
    ("inputs", "graph", "message"),
    [
        (
            "m: [true, false, true]",
            "y[m]",
            "subscript: the shape of the mask [3] does not match the shape of the indexed "
            "tensor [2, 3, 4] at dim 0",
        ),
        (
            "m: [[true, false, true, true]]",
            "y[0, m]",
            "subscript: the shape of the mask [1, 4] does not match",
        ),
        ("m: {values: true, dtype: bool}", "y[m]", "a 0-d bool mask is not supported"),
        ("m: [true]", "y[y > 0]", "unless the mask is a literal bool input"),
    ],
)
def test_a_mask_that_does_not_fit_or_is_computed_is_refused_at_validation(
    write_case: WriteCase, inputs: str, graph: str, message: str
) -> None:
    from runner.loader import load

    text = (
        "inputs:\n  y: {random: normal, shape: [2, 3, 4], seed: 1}\n"
        f"  {inputs}\ngraph:\n  a: {graph}\n"
    )
    problems = load([str(write_case(text))]).problems
    assert [p.message for p in problems if message in p.message], problems
    assert all(":5:" in str(p.where) for p in problems), problems


def test_a_wrong_user_rule_for_index_tensor_on_a_mask_case_is_caught(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    text = """\
inputs:
  x: {random: normal, shape: [2, 3], seed: 1}
  m: [[true, false, true], [false, true, true]]
graph:
  a: x[m]
  s: sum(a * a)
upstream: 1.0
rules:
  index_tensor:
    input: np.ones_like(input) * grad.sum()
"""
    path = write_case(text)
    code, out = run_cli(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 1, out
    case = Report.model_validate_json((tmp_path / "r.json").read_text()).cases[0]
    assert case.status == "failed"
    assert case.fault is not None
    assert (case.fault.op, case.fault.argument) == ("index_tensor", "input")
