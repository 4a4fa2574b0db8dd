"""Ops torch lacks: a case's own ops composed of catalogue ops (``ops:``), checked against torch
autograd of the composition, and a RULES module's ``OPS``, checked by goldens and the numeric
oracle. Validation of both at file:line:col (or naming the module and the op)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import runner
from runner.api import rule_sets
from runner.cli import main
from runner.loader import load
from runner.rules.modules import RulesError
from tests.conftest import ROOT

WriteCase = Callable[..., Path]

SWISH = """\
ops:
  swish: {params: {x: tensor, beta: float}, forward: x * sigmoid(beta * x)}
inputs:
  a: {random: normal, shape: [3, 4], seed: 1}
graph:
  h: a * 2
  y: swish(h, beta=1.5)
upstream: {random: normal, seed: 2}
"""
RIGHT = "grad / (1 + np.exp(-beta * x)) * (1 + beta * x * (1 - 1 / (1 + np.exp(-beta * x))))"


def test_a_composed_op_with_a_right_rule_passes_and_the_rule_is_the_case_s() -> None:
    report = runner.check(ROOT / "cases" / "composed" / "swish.yaml")
    assert report.passed, runner.summary_text(report)
    uses = [u for t in report.cases[0].tensors for u in t.rules]
    assert [(u.op, u.argument, u.source) for u in uses] == [("swish", "x", "case")]


def test_a_composed_op_with_a_wrong_rule_fails_naming_its_node_and_argument(
    write_case: WriteCase,
) -> None:
    path = write_case(SWISH + "rules:\n  swish:\n    x: grad / (1 + np.exp(-beta * x))\n")
    report = runner.check(path)
    case = report.cases[0]
    assert case.status == "failed"
    assert case.fault is not None
    assert (case.fault.node, case.fault.op, case.fault.argument) == ("y", "swish", "x")
    assert case.fault.oracle == "torch"
    assert "case.yaml:11:8" in case.fault.rule
    # The node below it (h = a * 2, the catalogue's rule) is not blamed.
    assert "the rule of node 'y' (swish) is wrong for 'x'" in case.messages[0]


def test_a_composed_op_without_a_rule_is_backprop_through_its_body_and_agrees_with_torch(
    write_case: WriteCase,
) -> None:
    report = runner.check(write_case(SWISH))
    case = report.cases[0]
    assert case.status == "passed", case.messages
    grad_a = next(t for t in case.tensors if t.tensor == "a" and t.kind == "grad")
    assert grad_a.comparisons[0].right == "torch" and grad_a.comparisons[0].ok
    assert {u.source for u in grad_a.rules} == {"catalogue"}


def test_the_body_backprop_is_the_formula_and_torch_judges_the_node_alone(
    write_case: WriteCase,
) -> None:
    """The composed op's own VJP and torch's gradient of that node alone (the composition's
    autograd, what fault localisation asks) both equal swish's derivative."""
    from runner.torch_side import node_vjp

    case = load([str(write_case(SWISH))]).cases[0]
    node = case.graph.node("y")
    x = np.random.default_rng(0).standard_normal((3, 4))
    g = np.random.default_rng(1).standard_normal((3, 4))
    s = 1 / (1 + np.exp(-1.5 * x))
    want = g * s * (1 + 1.5 * x * (1 - s))
    out = node.op.forward(x=x, beta=1.5)
    np.testing.assert_allclose(out, x * s, rtol=1e-12)
    (mine,) = node.op.vjp(g, out, x=x, beta=1.5)
    np.testing.assert_allclose(mine, want, rtol=1e-12)
    theirs = node_vjp(node, {"x": x, "beta": 1.5}, g)
    np.testing.assert_allclose(theirs["x"], want, rtol=1e-12)


def test_the_composed_cases_run_as_documented() -> None:
    report = runner.check(ROOT / "cases" / "composed")
    status = {c.name: c.status for c in report.cases}
    assert status == {
        "composed/swish": "passed",
        "composed/swish-wrong": "xfailed",
        "composed/default-param": "passed",
        "composed/nested": "passed",
        "composed/broadcast": "passed",
    }


def test_a_composed_op_s_rule_must_return_its_operand_s_shape(write_case: WriteCase) -> None:
    text = (ROOT / "cases" / "composed" / "broadcast.yaml").read_text()
    path = write_case(text.replace("-(grad * s).sum(axis=0)", "-(grad * s)"))
    case = runner.check(path).cases[0]
    assert case.status == "failed"
    assert "returned shape (3, 4), the operand's is (4,)" in case.messages[0]
    assert "not summed over the broadcast dimensions" in case.messages[0]


# --- validation at file:line:col ---------------------------------------------------------------

HEAD = "inputs:\n  a: {random: normal, shape: [3, 4]}\n  b: {random: normal, shape: [5]}\n"


@pytest.mark.parametrize(
    ("ops", "graph", "where", "message"),
    [
        (
            "  relu: {params: {x: tensor}, forward: x}\n",
            "a * 2",
            "2:3",
            "ops: 'relu' is a catalogue op; a case's op needs a name of its own",
        ),
        (
            "  f: {params: {x: tensor, beta: flaot}, forward: x * beta}\n",
            "a * 2",
            "2:33",
            "ops.f: parameter 'beta' has the unknown kind 'flaot'; did you mean 'float'",
        ),
        (
            "  f: {params: {x: tensor, k: {kind: int, default: 1.5}}, forward: x * k}\n",
            "a * 2",
            "2:30",
            "ops.f: the default of parameter 'k' must be an int, got 1.5",
        ),
        (
            "  f: {params: {x: tensor}, forward: x * y}\n",
            "a * 2",
            "2:41",
            "ops.f: unknown name 'y'; a forward sees only its op's parameters (x)",
        ),
        (
            "  f: {params: {x: tensor}, forward: sigmoidd(x)}\n",
            "a * 2",
            "2:37",
            "ops.f: unknown op 'sigmoidd'; did you mean 'sigmoid'",
        ),
        (
            "  f: {params: {x: tensor}, forward: f(x)}\n",
            "a * 2",
            "2:37",
            "ops.f: 'f' calls itself; an op may not be recursive",
        ),
        (
            "  f: {params: {x: tensor}, forward: g(x)}\n  g: {params: {x: tensor}, forward: x}\n",
            "a * 2",
            "2:37",
            "ops.f: 'f' calls 'g', which is defined after it",
        ),
        (
            "  f: {params: {x: tensor, y: tensor}, forward: x * 2}\n",
            "a * 2",
            "2:27",
            "ops.f: the tensor parameter 'y' is not used by its forward",
        ),
        (
            "  f: {params: {k: int}, forward: k}\n",
            "a * 2",
            "2:15",
            "ops.f: no parameter is a tensor",
        ),
        (
            "  f: {params: {x: tensor}, forward: 'sum(x, dimm=0)'}\n",
            "a * 2",
            "2:45",
            "ops.f: sum has no argument 'dimm'; did you mean 'dim'",
        ),
        (
            "  f: {params: {x: tensor, beta: float}, forward: x * beta}\n",
            "f(a)",
            "7:6",
            "f is missing its argument 'beta' (f(x, beta))",
        ),
        (
            "  f: {params: {x: tensor, beta: float}, forward: x * beta}\n",
            "f(a, beta=1.0, gamma=2)",
            "7:21",
            "f has no argument 'gamma'",
        ),
        (
            "  f: {params: {x: tensor, beta: float}, forward: x * beta}\n",
            "f(a, beta='big')",
            "7:16",
            "f: 'beta' must be a number, got 'big'",
        ),
    ],
)
def test_an_op_of_the_case_is_validated_at_file_line_col(
    write_case: WriteCase,
    capsys: pytest.CaptureFixture[str],
    ops: str,
    graph: str,
    where: str,
    message: str,
) -> None:
    path = write_case(f"ops:\n{ops}{HEAD}graph:\n  y: {graph}\n")
    code = main(["validate", str(path)])
    out = capsys.readouterr().out
    assert code == 2
    assert f"case.yaml:{where}: error: {message}" in out, out


def test_a_shape_error_in_the_body_is_reported_at_the_call_with_the_body_s_place(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    ops = "  f: {params: {x: tensor, y: tensor}, forward: x + y}\n"
    path = write_case(f"ops:\n{ops}{HEAD}graph:\n  y: f(a, b)\n")
    main(["validate", str(path)])
    out = capsys.readouterr().out
    assert (
        "case.yaml:7:6: error: f: in its forward at " in out
        and "case.yaml:2:48: operator + (add): shapes (3, 4) and (5,) do not broadcast" in out
    ), out


def test_a_rule_for_a_case_op_no_node_calls_is_refused(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        SWISH.replace("y: swish(h, beta=1.5)", "y: h * 3") + "rules:\n  swish:\n    x: grad\n"
    )
    main(["validate", str(path)])
    out = capsys.readouterr().out
    assert "case.yaml:10:3: error: rules: no node of this case uses op 'swish'" in out, out


# --- OPS in a RULES module ---------------------------------------------------------------------

MODULE = """\
import numpy as np


def swish(x, beta=1.0):
    return x / (1 + np.exp(-beta * x))


def swish_rule(grad, out, x, beta):
    s = 1 / (1 + np.exp(-beta * x))
    return {"x": FACTOR * grad * s * (1 + beta * x * (1 - s))}


OPS = {"np_swish": {"params": {"x": "tensor", "beta": {"kind": "float", "default": 1.0}},
                    "forward": swish}}
RULES = {"np_swish": swish_rule}
"""
GOLDEN = """\
inputs:
  a: [-1.0, 0.5, 2.0]
graph:
  y: np_swish(a, beta=1.5)
expect:
  value: {y: [-0.1824255, 0.3395893, 1.9051483]}
  grad: {a: [-0.0412942, 0.8425999, 1.0881041]}
"""
NUMERIC = """\
inputs:
  a: {random: normal, shape: [3, 4], seed: 1}
graph:
  y: np_swish(a, beta=1.5)
upstream: {random: normal, seed: 2}
oracles: [numeric]
"""


def _module(tmp_path: Path, factor: float = 1, text: str = MODULE) -> Path:
    path = tmp_path / f"ops_{str(factor).replace('.', '_')}.py"
    path.write_text(text.replace("FACTOR", repr(factor)))
    return path


def test_a_module_op_is_checked_by_goldens_when_torch_has_no_reference(
    write_case: WriteCase, tmp_path: Path
) -> None:
    report = runner.check(write_case(GOLDEN), rules=str(_module(tmp_path)))
    case = report.cases[0]
    assert case.status == "passed", case.messages
    grad = next(t for t in case.tensors if t.kind == "grad")
    assert [(c.left, c.right) for c in grad.comparisons] == [("manual", "expected")]
    assert any("torch has no reference for op 'np_swish'" in n for n in case.notes)


def test_a_module_op_s_wrong_rule_fails_against_goldens_and_the_numeric_oracle(
    write_case: WriteCase, tmp_path: Path
) -> None:
    wrong = str(_module(tmp_path, 2))
    golden = runner.check(write_case(GOLDEN, "golden.yaml"), rules=wrong).cases[0]
    assert golden.status == "failed"
    assert "manual vs expected differ" in golden.messages[0]
    numeric = runner.check(write_case(NUMERIC, "numeric.yaml"), rules=wrong).cases[0]
    assert numeric.status == "failed"
    assert numeric.fault is not None
    assert (numeric.fault.node, numeric.fault.op, numeric.fault.argument) == ("y", "np_swish", "x")
    assert numeric.fault.oracle == "numeric"
    right = runner.check(write_case(NUMERIC, "numeric.yaml"), rules=str(_module(tmp_path)))
    assert right.passed, runner.summary_text(right)


def test_a_module_op_with_no_reference_at_all_is_an_error_saying_so(
    write_case: WriteCase, tmp_path: Path
) -> None:
    text = GOLDEN.split("expect:")[0]
    case = runner.check(write_case(text), rules=str(_module(tmp_path))).cases[0]
    assert case.status == "error"
    assert case.messages == [
        f"torch has no reference for op 'np_swish' (from module {_module(tmp_path)}): use "
        "oracles: [numeric] or expect goldens"
    ]


def test_a_module_op_without_its_module_is_an_unknown_op_with_a_hint(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_case(GOLDEN)
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert (
        "case.yaml:4:6: error: unknown op 'np_swish' (`gradcase ops` lists the ops); an op" in out
    )
    assert "OPS is known when that module is given (--rules, or [tool.gradcase] rules)" in out
    assert main(["validate", str(path), "--rules", str(_module(tmp_path))]) == 0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'RULES = {"np_swish": swish_rule}',
            "RULES = {}",
            "OPS['np_swish'] has no rule: RULES['np_swish'] must give its backward rule",
        ),
        (
            '"kind": "float"',
            '"kind": "flt"',
            "OPS['np_swish'] parameter 'beta' has the unknown kind 'flt'; did you mean 'float'",
        ),
        ('"forward": swish}', '"forward": 3}', "OPS['np_swish'] needs forward"),
        ('"np_swish"', '"relu"', "OPS['relu']: 'relu' is a catalogue op"),
        (
            '"forward": swish}',
            '"forward": swish, "grad": 1}',
            "OPS['np_swish'] has the unknown key 'grad'",
        ),
    ],
)
def test_a_module_s_ops_are_validated_naming_the_module_and_the_op(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _module(tmp_path, text=MODULE.replace(old, new))
    with pytest.raises(RulesError) as info:
        rule_sets(str(path))
    assert f"module {path}: {message}" in str(info.value)
