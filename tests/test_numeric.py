"""The finite-difference oracle (runner/numeric.py): its two paths (whole gradient, random
projection) catch a wrong rule without torch, it declines kinks and non-finite forwards with the
reason, differences intermediate nodes, holds float32 to float32's tolerance, and agrees with
torch on every case of cases/ it does not decline (the measurement of issue 7)."""

from __future__ import annotations

import collections
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.cli import main
from runner.compile import CompiledCase
from runner.execute import run_case
from runner.loader import load
from runner.numeric import JACOBIAN_MAX, NUMERIC, NumericRefused, node_vjp, run_numeric
from runner.ops import REGISTRY
from runner.ops.kinks import KINKS, SMOOTH
from runner.oracles import TORCH
from schemas.report import CaseResult, Comparison

ROOT = Path(__file__).resolve().parent.parent


def one_case(tmp_path: Path, text: str) -> CompiledCase:
    path = tmp_path / "case.yaml"
    path.write_text(text)
    loaded = load([str(path)])
    assert not loaded.problems, loaded.problems
    return loaded.cases[0]


def pair(result: CaseResult, tensor: str, left: str, right: str) -> Comparison:
    check = next(t for t in result.tensors if t.tensor == tensor and t.kind == "grad")
    return next(c for c in check.comparisons if (c.left, c.right) == (left, right))


WRONG_MUL = """\
name: t/wrong-mul
inputs:
  a: {{random: normal, shape: {shape}, seed: 1}}
  b: {{random: normal, shape: {shape}, seed: 2}}
graph:
  c: a * b
upstream: {{random: normal, seed: 3}}
rules:
  mul: {{input: grad * other * 1.01}}
oracles: [numeric]
"""


def test_the_whole_gradient_catches_a_rule_off_by_one_percent_without_torch(
    tmp_path: Path,
) -> None:
    case = one_case(tmp_path, WRONG_MUL.format(shape=[2, 3]))
    result, _ = run_case(case)
    assert result.status == "failed"
    found = pair(result, "a", "manual", "numeric")
    assert not found.ok and found.projection is None and found.mismatched == 6
    assert found.rel_err == pytest.approx(0.01, rel=1e-4)
    assert pair(result, "b", "manual", "numeric").ok  # the catalogue's rule for 'other'
    # Fault localisation works with the numeric oracle alone.
    assert result.fault is not None and result.fault.oracle == "numeric"
    assert (result.fault.node, result.fault.argument) == ("c", "input")
    assert all(
        c.left != "torch" and c.right != "torch" for t in result.tensors for c in t.comparisons
    )


def test_a_random_projection_catches_a_rule_off_by_one_percent(tmp_path: Path) -> None:
    case = one_case(tmp_path, WRONG_MUL.format(shape=[10, 10]))
    assert 100 > JACOBIAN_MAX
    result, _ = run_case(case)
    assert result.status == "failed"
    found = pair(result, "a", "manual", "numeric")
    assert not found.ok and found.projection is not None and found.total == 1
    assert "along one direction" in "\n".join(result.messages)
    assert found.left_value == pytest.approx(1.01 * found.right_value, rel=1e-6)
    assert pair(result, "b", "manual", "numeric").ok


def test_a_right_rule_passes_both_paths(tmp_path: Path) -> None:
    text = WRONG_MUL.replace(" * 1.01", "").replace(
        "oracles: [numeric]", "oracles: [torch, numeric]"
    )
    for shape in ([2, 3], [10, 10]):
        result, _ = run_case(one_case(tmp_path, text.format(shape=shape)))
        assert result.status == "passed", result.messages
        assert pair(result, "a", "torch", "numeric").ok


def test_ties_and_kinks_are_skipped_with_the_reason(tmp_path: Path) -> None:
    case = one_case(
        tmp_path,
        """\
inputs:
  a: [[1.0, 3.0, 3.0], [2.0, 0.5, -1.0]]
  b: [0.0, 1.5, -2.0]
  w: [0.5, -1.0, 2.0]
graph:
  m: max(a, dim=1)
  s: abs(b) + w
  t: m * sum(s)
upstream: {random: normal, seed: 7}
oracles: [torch, numeric]
""",
    )
    result, _ = run_case(case)
    assert result.status == "passed", result.messages
    # Only the elements whose perturbation crosses the kink are declined; the others are checked.
    tied = pair(result, "a", "manual", "numeric")
    assert tied.ok and tied.skipped is None and (tied.unchecked, tied.total) == (2, 6)
    reason = next(t.unchecked for t in result.tensors if t.tensor == "a" and t.kind == "grad")
    assert (
        reason is not None
        and "at [0, 1], [0, 2]: node 'm' (max): 1 slice(s) with tied max" in reason
    )
    at_zero = pair(result, "b", "torch", "numeric")
    assert at_zero.skipped is None and at_zero.unchecked == 1
    assert any(
        "1 element(s) of the gradient of 'b' unchecked: the numeric oracle declined at [0]: "
        "node `abs(b)` (abs)" in n
        for n in result.notes
    )
    # w enters after the kink only through a smooth sum: it is still checked.
    assert pair(result, "w", "torch", "numeric").unchecked is None


def test_a_forward_that_is_not_finite_is_skipped(tmp_path: Path) -> None:
    case = one_case(
        tmp_path, "inputs:\n  x: [0.0, 4.0]\ngraph:\n  y: sqrt(x)\noracles: [torch, numeric]\n"
    )
    result, _ = run_case(case)
    assert result.status == "passed"
    found = pair(result, "x", "manual", "numeric")
    assert found.skipped is None and found.unchecked == 1  # x[1] = 4 is checked
    assert any("declined at [0]: the forward is not finite" in n for n in result.notes)


def test_the_gradient_of_an_intermediate_node(tmp_path: Path) -> None:
    case = one_case(
        tmp_path,
        """\
inputs:
  a: {random: normal, shape: [2, 3], seed: 1}
  b: {random: normal, shape: [2, 3], seed: 2}
graph:
  c: a * b
  d: sin(c) * a
upstream: {random: normal, seed: 3}
check: [c, a]
oracles: [torch, numeric]
""",
    )
    result, sources = run_case(case)
    assert result.status == "passed" and sources is not None
    a, b = sources.inputs["a"], sources.inputs["b"]
    v = sources.upstream
    numeric = sources.grads["numeric"]
    # Moving c alone: d(sum(sin(c) * a * v))/dc = cos(c) * a * v, a held fixed.
    np.testing.assert_allclose(numeric["c"], np.cos(a * b) * a * v, rtol=1e-8, atol=1e-9)
    total = np.cos(a * b) * b * a * v + np.sin(a * b) * v
    np.testing.assert_allclose(numeric["a"], total, rtol=1e-8, atol=1e-9)


def test_float32_against_a_float64_reference(tmp_path: Path) -> None:
    case = one_case(
        tmp_path,
        """\
dtype: float32
inputs:
  x: {random: normal, shape: [3, 4], seed: 1}
graph:
  y: softmax(x * 3.0, dim=1)
  z: sum(log(y) * y)
oracles: [torch, numeric]
""",
    )
    result, sources = run_case(case)
    assert result.status == "passed", result.messages
    assert sources is not None and sources.grads["numeric"]["x"].dtype == np.float32
    c = pair(result, "x", "torch", "numeric")
    assert c.rtol == 1e-4 and c.scale is not None and c.scale > 0
    assert c.atol == pytest.approx(1e-4 * c.scale + (c.floor or 0.0))


def test_node_vjp_matches_the_catalogue_and_refuses_a_kink() -> None:
    from runner.graph import Node, Ref

    rng = np.random.default_rng(0)
    a, b, g = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    node = Node("c", REGISTRY["matmul"], {"input": Ref("a"), "other": Ref("b")}, (2, 4))
    found = node_vjp(node, {"input": a, "other": b}, g)
    np.testing.assert_allclose(found["input"], g @ b.T, rtol=1e-8)
    np.testing.assert_allclose(found["other"], a.T @ g, rtol=1e-8)
    relu = Node("r", REGISTRY["relu"], {"input": Ref("x")}, (2,))
    with pytest.raises(NumericRefused, match="within .* of 0"):
        node_vjp(relu, {"input": np.array([0.0, 1.0])}, np.ones(2))


def test_every_op_is_classified_kinked_or_smooth() -> None:
    assert set(KINKS).isdisjoint(SMOOTH)
    assert set(KINKS) | SMOOTH == set(REGISTRY)
    assert all((REGISTRY[n].kinks is not None) == (n in KINKS) for n in REGISTRY)


@pytest.mark.parametrize(
    ("op", "args", "reason"),
    [
        ("floor", {"input": np.array([0.5, 2.0])}, "1 element"),
        ("floor", {"input": np.array([0.5, 2.5])}, None),
        ("round", {"input": np.array([1.5, 2.0])}, "1 element"),
        ("trunc", {"input": np.array([0.0, 0.3])}, None),
        ("clamp", {"input": np.array([1.0]), "min": 1.0, "max": -1.0}, None),
        ("clamp", {"input": np.array([1.0]), "min": -1.0, "max": 1.0}, "bound 1.0"),
        ("maximum", {"input": np.array([1.0, 2.0]), "other": 2.0}, "1 element"),
        ("pow", {"input": np.array([0.0]), "exponent": 2}, None),
        ("pow", {"input": np.array([0.0]), "exponent": 0.5}, "1 element"),
        ("leaky_relu", {"input": np.array([0.0]), "negative_slope": 1.0}, None),
        ("std", {"input": np.array([[1.0, 1.0], [1.0, 2.0]]), "dim": 1}, "1 element"),
        (
            "max_pool1d",
            {"input": np.array([[1.0, 3.0, 3.0, 0.0]]), "kernel_size": 2, "stride": 1},
            "1 slice",
        ),
        (
            "max_pool3d",
            {"input": np.array([[[[[1.0, 3.0], [3.0, 0.0]]]]]), "kernel_size": [1, 2, 2]},
            "1 slice",
        ),
        # windows [0, 2) and [1, 3): only the second holds the tie
        (
            "adaptive_max_pool1d",
            {"input": np.array([[1.0, 3.0, 3.0]]), "output_size": 2},
            "1 slice",
        ),
        ("adaptive_max_pool1d", {"input": np.array([[1.0, 3.0, 2.0]]), "output_size": 2}, None),
        (
            "adaptive_max_pool2d",
            {"input": np.array([[[2.0, 0.0, 2.0], [1.0, 0.0, 1.0]]]), "output_size": [1, 2]},
            None,
        ),
        (
            "embedding",
            {"input": np.array([0, 1]), "weight": np.ones((3, 2)), "padding_idx": 1},
            "padding_idx",
        ),
    ],
)
def test_kink_predicates(op: str, args: dict[str, Any], reason: str | None) -> None:
    full = {p.name: p.default for p in REGISTRY[op].params if not p.required} | args
    kinks = REGISTRY[op].kinks
    assert kinks is not None
    found = kinks(1e-6, **full)
    assert (found is None) if reason is None else (found is not None and reason in found)


def test_a_case_names_only_known_oracles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("inputs:\n  a: [1.0]\ngraph:\n  c: exp(a)\noracles: [torch, numerik]\n")
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert "bad.yaml:5:18:" in out and "'torch' or 'numeric'" in out


def test_the_cli_oracle_option_applies_to_cases_that_name_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("inputs:\n  a: [1.0, 2.0]\ngraph:\n  c: exp(a)\n")
    report = tmp_path / "r.json"
    assert main(["run", str(path), "--report", str(report), "--oracle", "numeric"]) == 0
    text = report.read_text()
    assert '"right": "numeric"' in text and '"right": "torch"' not in text


def test_numeric_agrees_with_torch_on_every_case_it_does_not_skip(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The measurement of issue 7: every case of cases/ under [torch, numeric]."""
    checked, projected, partial, disagree = 0, 0, 0, []
    skipped: collections.Counter[str] = collections.Counter()
    for case in load([str(ROOT / "cases")]).cases:
        case = replace(case, model=case.model.model_copy(update={"oracles": None}))
        result, sources = run_case(case, (), (TORCH, NUMERIC))
        for t in result.tensors:
            for c in t.comparisons:
                if (c.left, c.right) != ("torch", "numeric"):
                    continue
                if c.skipped:
                    skipped[_kind(c.skipped)] += 1
                    continue
                checked += 1
                partial += bool(c.unchecked)
                projected += c.projection is not None
                if not c.ok:
                    disagree.append((case.name, t.tensor, c))
    with capsys.disabled():
        print(
            f"\nnumeric vs torch: {checked} gradients checked ({projected} by projection, "
            f"{partial} with some elements declined), "
            f"{sum(skipped.values())} skipped: {dict(skipped.most_common())}"
        )
    assert not disagree, disagree
    assert checked >= 1000 and projected >= 15
    # Cases placed at kinks on purpose (one per kinked op) decline elements by design; the cap
    # catches a predicate that declines far more than its kink.
    assert sum(skipped.values()) <= 140


def _kind(reason: str) -> str:
    """The op at the kink, or the kind of the other reasons."""
    at = re.match(r"node (?:'[^']*'|`[^`]*`) \((\w+)\)", reason)
    if at:
        return at.group(1)
    for kind in ("not finite", "round-off", "raised"):
        if kind in reason:
            return kind
    return reason


def test_run_numeric_never_raises_for_a_domain_error() -> None:
    from runner.graph import Graph, Node, Ref

    op = REGISTRY["binary_cross_entropy"]
    node = Node(
        "l", op, {"input": Ref("p"), "target": Ref("t"), "weight": None, "reduction": "mean"}, ()
    )
    graph = Graph((node,), "l", {"p": (2,), "t": (2,), "l": ()}, {"p": True, "t": False, "l": True})
    found = run_numeric(
        graph, {"p": np.array([0.0, 0.5]), "t": np.array([1.0, 0.0])}, np.array(1.0)
    )
    assert "the forward of node 'l' (binary_cross_entropy) raised" in found.skipped["p"]
    assert set(found.grads) == {"l"}


# --- the black-box tester's faults: each would pass (or fail) falsely before the fix ---------

RELU_KINK = """\
inputs:
  x: [0.0, 1.0, -2.0, 3.0]
graph:
  y: relu(x)
upstream: {random: normal, seed: 3}
rules: {relu: {input: grad * (input > 0) * 2}}
probe: false
oracles: [numeric]
"""


def test_one_kink_declines_only_its_element(tmp_path: Path) -> None:
    result, _ = run_case(one_case(tmp_path, RELU_KINK))
    assert result.status == "failed", result.messages  # x[1] and x[3] are wrong, and checked
    found = pair(result, "x", "manual", "numeric")
    assert (found.mismatched, found.unchecked, found.total) == (2, 1, 4)
    assert any("declined at [0]: node 'y' (relu)" in n for n in result.notes)


def test_a_nan_elsewhere_does_not_hide_a_wrong_rule(tmp_path: Path) -> None:
    case = one_case(
        tmp_path,
        """\
inputs:
  x: [.nan, 1.0]
  w: [0.5, 1.0]
graph:
  y: relu(x)
  z: sin(w)
  out: cat([y, z])
upstream: {random: normal, seed: 3}
rules: {sin: {input: grad * 0}}
probe: false
oracles: [numeric]
""",
    )
    result, _ = run_case(case)
    assert result.status == "failed"
    assert not pair(result, "w", "manual", "numeric").ok
    x = pair(result, "x", "manual", "numeric")  # x[1] checked, x[0] (NaN) declined
    assert x.ok and x.unchecked == 1
    assert any(
        "declined at [0]: the element is not finite in the case's data" in n for n in result.notes
    )


def test_a_nan_output_element_declines_what_depends_on_it(tmp_path: Path) -> None:
    case = one_case(
        tmp_path,
        """\
inputs:
  x: [.nan, 1.0]
  w: [0.5, 1.0]
graph:
  out: x + sin(w)
upstream: {random: normal, seed: 3}
oracles: [torch, numeric]
""",
    )
    result, _ = run_case(case)
    assert result.status == "passed", result.messages
    w = pair(result, "w", "torch", "numeric")
    assert w.ok and w.unchecked == 1  # w[0] reaches the NaN output element; w[1] is checked
    assert any(
        "declined at [0]: the output is not finite at the case's own data where it depends" in n
        for n in result.notes
    )


def test_a_gradient_only_the_numeric_oracle_would_check_and_did_not_is_an_error(
    tmp_path: Path,
) -> None:
    text = RELU_KINK.replace("[0.0, 1.0, -2.0, 3.0]", "[0.0, 0.0]").replace(" * 2}", "}")
    result, _ = run_case(one_case(tmp_path, text))
    assert result.status == "error"
    assert result.messages[0].startswith(
        "no reference checked the gradient of 'x': the numeric oracle declined all 2 element(s)"
    )
    # With torch as well, the numeric oracle's declining is a note.
    both = text.replace("oracles: [numeric]", "oracles: [torch, numeric]")
    assert run_case(one_case(tmp_path, both))[0].status == "passed"


SINE = """\
inputs:
  x: {x}
graph:
  y: sin(x)
upstream: {{random: normal, seed: 3}}
rules: {{sin: {{input: {rule}}}}}
oracles: [{oracles}]
"""


@pytest.mark.parametrize("x", ["[30000.0, -30001.5]", "[1.0e7, 2.5e7]"])
def test_the_truncation_error_at_large_arguments_is_estimated(tmp_path: Path, x: str) -> None:
    text = SINE.format(x=x, rule="grad * np.cos(input)", oracles="torch, numeric")
    result, _ = run_case(one_case(tmp_path, text))
    assert result.status == "passed", result.messages
    found = pair(result, "x", "torch", "numeric")
    # Checked with smaller steps where the Richardson estimate asks for them: never wrong.
    assert found.ok and not found.unchecked and found.total == 2


def test_a_one_percent_wrong_rule_is_still_caught_at_moderate_arguments(tmp_path: Path) -> None:
    text = SINE.format(
        x="[3.0, -20.0, 150.0]", rule="grad * np.cos(input) * 1.01", oracles="numeric"
    )
    result, _ = run_case(one_case(tmp_path, text))
    assert result.status == "failed"
    found = pair(result, "x", "manual", "numeric")
    assert found.mismatched == 3 and not found.unchecked


def test_a_long_chain_is_cheap_and_the_budget_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import runner.numeric as numeric

    lines = ["inputs:", "  x: {random: normal, shape: [8, 8], seed: 1}", "graph:"]
    prev = "x"
    for i in range(50):
        lines.append(f"  n{i}: sin({prev}) * 0.01 + {prev}")
        prev = f"n{i}"
    text = "\n".join([*lines, "upstream: {random: normal, seed: 2}", "oracles: [numeric]", ""])
    case = one_case(tmp_path, text)
    start = time.perf_counter()
    result, sources = run_case(case)
    assert time.perf_counter() - start < 15  # was 14 s for 50 nodes, 66 s on a slower machine
    assert result.status == "passed", result.messages
    # Near the output, whole gradients; far back (64 elements x 150 nodes), one projection.
    assert sources is not None and "n48" in sources.grads["numeric"]
    assert {"x", "n10"} <= set(sources.projections["numeric"])
    # Out of time: what was not reached is skipped and, with no other reference, an error.
    monkeypatch.setattr(numeric, "BUDGET", 0.0)
    result, _ = run_case(case)
    assert result.status == "error"
    assert "time budget (0 s per case) ran out" in result.messages[0]


def test_the_forward_is_not_finite_at_the_case_data_says_so(tmp_path: Path) -> None:
    text = "inputs:\n  x: [-1.0, 4.0]\ngraph:\n  y: sqrt(x)\noracles: [torch, numeric]\n"
    result, _ = run_case(one_case(tmp_path, text))
    assert any(
        "declined at [0]: the output is not finite at the case's own data" in n
        for n in result.notes
    ), result.notes
    assert not any("moved by" in n for n in result.notes)


def test_a_diagnosis_names_the_oracle_it_used(tmp_path: Path) -> None:
    case = one_case(tmp_path, WRONG_MUL.format(shape=[2, 3]).replace(" * 1.01", " * 2"))
    result, _ = run_case(case)
    assert result.fault is not None and result.fault.diagnosis is not None
    assert result.fault.diagnosis == "a constant factor: manual = 2 x numeric's"
