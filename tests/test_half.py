"""float16 and bfloat16 cases: inputs rounded to the dtype, the manual side rounding where torch
does, and tolerances tight enough to catch a wrong rule (1% in float16, 5% in bfloat16; scaled,
negated) and loose enough for a right one written in the rule language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runner.dtypes import BFLOAT16, is_floating, opmath
from runner.engine import backward, forward
from runner.graph import Graph, Node, Ref
from runner.inputs import make_input, make_upstream, plan_input
from runner.ops import REGISTRY
from schemas.case import RandomInput
from tests.conftest import run_cli as run

CASE = """\
name: t/{name}
dtype: {dtype}
inputs:
  a: {{random: normal, shape: [4, 16], seed: 1}}
  b: {{random: normal, shape: [16, 5], seed: 2}}
  x: {{random: normal, shape: [4, 5], seed: 3}}
graph:
  c: a @ b
  s: softmax(c + x, dim=-1)
  t: tanh(s * c)
upstream: {{random: normal, seed: 4}}
rules:
  {op}:
    {arg}: "{rule}"
"""

RIGHT = {
    ("matmul", "input"): "grad @ other.T",
    ("softmax", "input"): "out * (grad - (grad * out).sum(axis=dim, keepdims=True))",
}
TANH = "grad * (1 - out ** 2)"


def _run(write_case, capsys, dtype: str, op: str, arg: str, rule: str) -> tuple[int, str]:
    text = CASE.format(name=f"{op}-{dtype}", dtype=dtype, op=op, arg=arg, rule=rule)
    return run(capsys, "run", str(write_case(text)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("op", "arg"), list(RIGHT))
def test_a_right_rule_passes_and_a_wrong_one_fails_in_half_precision(
    write_case, capsys: pytest.CaptureFixture[str], dtype: str, op: str, arg: str
) -> None:
    right = RIGHT[(op, arg)]
    code, out = _run(write_case, capsys, dtype, op, arg, right)
    assert code == 0, out
    factor = "1.01" if dtype == "float16" else "1.05"
    for wrong in (f"({right}) * {factor}", f"-({right})"):
        code, out = _run(write_case, capsys, dtype, op, arg, wrong)
        assert code == 1, f"{wrong} passed in {dtype}:\n{out}"
        assert "FAILED" in out, out


def test_random_inputs_are_drawn_as_in_float64_then_rounded() -> None:
    spec = RandomInput(random="normal", shape=[3, 4], seed=5)
    wide = make_input(plan_input("x", spec, "float64")[0])
    for dtype in ("float16", "bfloat16"):
        plan, problems = plan_input("x", spec, dtype)
        assert not problems and plan.requires_grad
        x = make_input(plan)
        assert x.dtype == np.dtype(dtype)
        assert np.array_equal(x, wide.astype(dtype))
    ints = RandomInput(random="integers", shape=[3], seed=1, high=5)
    assert make_input(plan_input("i", ints, "bfloat16")[0]).dtype == np.int64
    up = make_upstream(0.1, (2,), BFLOAT16)
    assert up.dtype == BFLOAT16 and float(up[0]) == float(np.float32(0.1).astype(BFLOAT16))


def test_the_manual_side_computes_in_float32_and_rounds_each_node() -> None:
    """A sum of 1000 x bfloat16(0.01): float32 accumulation, one rounding (10.0), not the 4.0
    that adding in bfloat16 gives; the gradient of a node rounds to the operand's dtype."""
    x = np.full(1000, 0.01).astype(BFLOAT16)
    node = Node("s", REGISTRY["sum"], {"input": Ref("x")}, ())
    graph = Graph((node,), "s", {"x": (1000,), "s": ()}, {"x": True, "s": True})
    values = forward(graph, {"x": x})
    assert values["s"].dtype == BFLOAT16 and float(values["s"]) == 10.0
    grads = backward(graph, values, np.asarray(0.1).astype(BFLOAT16)).grads
    assert grads["x"].dtype == BFLOAT16
    assert np.all(opmath(grads["x"]) == np.float32(np.asarray(0.1).astype(BFLOAT16)))
    assert is_floating(BFLOAT16) and not is_floating(np.int64)


def test_an_op_torch_has_no_half_kernel_for_is_an_error_naming_node_op_and_dtype(
    write_case, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """\
name: t/mml
dtype: float16
inputs:
  x: {random: normal, shape: [3, 4], seed: 1}
  y: [0, 3, 1]
graph:
  loss: multi_margin_loss(x, y)
"""
    code, out = run(capsys, "run", str(write_case(text)))
    assert code in (1, 2), out
    assert "node 'loss'" in out and "multi_margin_loss" in out and "float16" in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torchs_half_matrix_exp_is_wrong_and_a_case_asking_for_it_says_so(
    write_case, capsys: pytest.CaptureFixture[str], dtype: str
) -> None:
    """torch 2.13's CPU matrix_exp in half precision is wrong (the sweep found it): the op says
    so (`Op.wrong_in_half`) and a case in half is an error naming the bug, not a comparison
    against garbage. When torch fixes it, the first assertion fails: drop wrong_in_half."""
    import torch

    a = torch.tensor([[0.1, 0.2], [0.3, -0.1]])
    exact = torch.linalg.matrix_exp(a.double())
    half = torch.linalg.matrix_exp(a.to(getattr(torch, dtype))).double()
    assert not torch.allclose(half, exact, rtol=0.05, atol=0.05), "torch fixed matrix_exp"
    text = f"dtype: {dtype}\ninputs:\n  A: [[0.1, 0.2], [0.3, -0.1]]\ngraph:\n  E: matrix_exp(A)\n"
    code, out = run(capsys, "run", str(write_case(text)))
    assert code == 1, out
    assert f"matrix_exp in {dtype} that can be trusted" in out and "wrong in half" in out, out
    assert REGISTRY["matrix_exp"].wrong_in_half


def test_half_cases_show_their_dtype_in_the_report(
    write_case, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = CASE.format(name="r", dtype="bfloat16", op="tanh", arg="input", rule=TANH)
    code, out = run(
        capsys, "run", str(write_case(text)), "-v", "--report", str(tmp_path / "r.json")
    )
    assert code == 0, out
    assert "bfloat16" in out
    assert "bfloat16" in (tmp_path / "r.json").read_text()


def test_a_floor_never_lets_a_wrong_rule_pass_where_rounding_moves_a_selection(
    write_case, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rounding x + y to float16 ties the row's maximum that float64 does not: torch's half
    result differs from float64 by the whole gradient there, and that measured floor (2.0 on a
    gradient of 1) let `1.5 * grad` pass. The floor is capped (8 units of float16's round-off
    of the tensor's scale) and the failure says the tensor is ill-conditioned in float16."""
    text = """\
name: t/max-tie
dtype: float16
probe: false
inputs:
  x: [[1.0, 1.0, 0.0], [2.0, 3.0, 4.0]]
  y: [[0.0, 0.000244140625, 0.0], [0.0, 0.0, 0.0]]
graph:
  b: x + y
  m: max(b, 1).values
upstream: [1.0, 1.0]
rules:
  add:
    input: 1.5 * grad
"""
    code, out = run(capsys, "run", str(write_case(text)))
    assert code == 1, out
    assert "grad of 'x': manual vs torch differ" in out
    assert "ill-conditioned on this data" in out and "or in float32" in out
    right = text.replace("1.5 * grad", "grad").replace("t/max-tie", "t/max-tie-right")
    code, out = run(capsys, "run", str(write_case(right, name="right.yaml")))
    assert code == 0, out


def test_float16_with_bfloat16_promotes_to_float32_as_torch_does(
    write_case, capsys: pytest.CaptureFixture[str]
) -> None:
    """No 16-bit type holds both: torch.result_type(float16, bfloat16) is float32. numpy has no
    common type for them, and the promotion raised KeyError: 'V' (bfloat16's dtype kind)."""
    from runner.ops.dtypes import result_type

    f16 = np.zeros(2, np.float16)
    bf16 = np.zeros(2, BFLOAT16)
    assert result_type(f16, bf16) == result_type(bf16, f16) == np.float32
    assert result_type(bf16, np.zeros(2, np.float32)) == np.float32
    assert result_type(bf16, np.zeros((), np.float64)) == BFLOAT16  # a 0-d tensor does not widen
    text = """\
name: t/mix
inputs:
  x: {random: normal, shape: [3], seed: 1, dtype: float16}
  y: {random: normal, shape: [3], seed: 2, dtype: bfloat16}
graph:
  z: x * y
"""
    code, out = run(capsys, "run", str(write_case(text)))
    assert code == 0, out


def test_a_rule_returning_the_wrong_dtype_in_half_precision_names_the_cases_dtype(
    write_case, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule sees half operands in float32 (torch's opmath): a float64 result is refused
    naming the operand's stored dtype and what the rule saw, not float32 alone."""
    text = """\
name: t/f16-dtype
dtype: float16
inputs:
  x: {random: normal, shape: [3], seed: 1}
graph:
  y: exp(x)
rules:
  exp:
    input: "(grad * out).astype(np.float64)"
"""
    code, out = run(capsys, "run", str(write_case(text)))
    assert code == 1, out
    assert "returned dtype float64, the operand's is float16 (the rule sees it as float32" in out


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_catalogue_rule_gets_the_stored_half_output_as_torchs_backward_does(
    write_case, capsys: pytest.CaptureFixture[str], dtype: str
) -> None:
    """softmax's backward is out * (g - sum(g * out)) on the STORED half outputs, which do not
    sum to 1 exactly: under an upstream constant along the row torch's gradient is small but
    not 0. Fed the forward recomputed in float32, the catalogue gave 0 and was called wrong."""
    text = f"""\
name: t/softmax-row-constant
dtype: {dtype}
inputs:
  x: {{random: normal, shape: [2, 5], seed: 1}}
graph:
  y: torch.softmax(x, -1)
upstream: [[1.0, 1.0, 1.0, 1.0, 1.0], [-2.0, -2.0, -2.0, -2.0, -2.0]]
"""
    code, out = run(capsys, "run", str(write_case(text)))
    assert code == 0, out


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_an_identically_zero_gradient_in_half_precision_has_a_floor(
    write_case, capsys: pytest.CaptureFixture[str], dtype: str
) -> None:
    """normalize along a dim of one element is constant: the gradient is 0 in exact arithmetic
    and round-off of terms the size of the inflow in torch's half kernel; its floor is that
    size, not the (zero) result's (found by a black-box tester)."""
    text = f"""\
name: t/normalize-one-element
dtype: {dtype}
inputs:
  x: {{random: normal, shape: [4, 1], seed: 1}}
graph:
  y: F.normalize(x * 7.3, p=3.0, dim=-1)
upstream: {{random: normal, seed: 3}}
"""
    code, out = run(capsys, "run", str(write_case(text)))
    assert code == 0, out


def test_a_sign_error_on_small_elements_beside_a_large_one_fails_in_bfloat16(
    write_case, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tester's false pass: one weight of 10000 beside weights of 1 gave the whole tensor a
    floor of 2 units of bfloat16's eps of 10000 (156), so a rule dropping the sign on the small
    elements passed. The floor in half precision is each element's own measured error."""
    text = """\
name: t/h7
dtype: bfloat16
inputs:
  x: {random: normal, shape: [4], seed: 1}
  w: {values: [10000.0, -1.0, 1.0, -2.0], requires_grad: false}
graph:
  y: sum(x * w)
rules:
  mul:
    input: grad * np.abs(other)
"""
    code, out = run(capsys, "run", str(write_case(text)))
    assert code == 1, out
    assert "grad of 'x': manual vs torch differ" in out
    right = text.replace("np.abs(other)", "other").replace("t/h7", "t/h7-right")
    code, out = run(capsys, "run", str(write_case(right, name="right.yaml")))
    assert code == 0, out
