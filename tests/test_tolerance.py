"""The default tolerance does not depend on a tensor's scale (issue 7, fault 1): a wrong gradient
fails at 1e-5, 1e-9 and 1e-12 as it does at 1, while round-off that the computation cannot avoid
(a float32 sum whose terms cancel, a golden typed with 4 significant digits) still passes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import runner
from runner.compare import DEFAULT_TOLERANCE, EXPECTED_TOLERANCE, Tolerance, compare
from schemas.report import CaseResult, Comparison

WriteCase = Callable[..., Path]
SCALES = (1e-5, 1e-9, 1e-12)


def run_one(write_case: WriteCase, text: str) -> CaseResult:
    report = runner.check(write_case(text))
    assert not report.diagnostics, report.diagnostics
    (case,) = report.cases
    return case


def failed_pairs(case: CaseResult) -> set[tuple[str, str, str]]:
    return {(t.tensor, c.left, c.right) for t in case.tensors for c in t.comparisons if not c.ok}


def test_the_issues_tied_maxima_under_a_small_upstream_reject_an_all_zero_golden(
    write_case: WriteCase,
) -> None:
    """Four tied maxima under an upstream of 5.714285714285714e-05: each true gradient is
    1.43e-05; zeros (an engine that counted ties in half precision) passed the old atol 1e-4."""
    case = """\
name: t/ties
inputs: {x: [3.0, 3.0, 1.0, 3.0, 3.0]}
graph: {m: max(x)}
upstream: 5.714285714285714e-05
probe: false
expect:
  grad:
    x: GOLDEN
"""
    wrong = run_one(write_case, case.replace("GOLDEN", "[0.0, 0.0, 0.0, 0.0, 0.0]"))
    assert wrong.status == "failed"
    assert failed_pairs(wrong) == {("x", "manual", "expected"), ("x", "torch", "expected")}
    quarter = 5.714285714285714e-05 / 4
    right = f"[{quarter!r}, {quarter!r}, 0.0, {quarter!r}, {quarter!r}]"
    assert run_one(write_case, case.replace("GOLDEN", right)).status == "passed"


SMALL = """\
name: t/small
dtype: DTYPE
inputs:
  a: {random: normal, shape: [3, 4], seed: 1}
  b: {random: normal, shape: [3, 4], seed: 2}
graph:
  s: b / INVERSE
  c: a * s
upstream: {random: normal, seed: 3}
probe: false
rules:
  mul:
    input: RULE
"""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(
    ("rule", "what"),
    [
        ("np.zeros_like(input)", "all zeros"),
        ("grad * other * 1.01", "a 1% error"),
        ("grad * other * 0.99", "a -1% error"),
    ],
)
def test_a_wrong_rule_fails_at_every_scale(
    write_case: WriteCase, dtype: str, scale: float, rule: str, what: str
) -> None:
    """d(a*s)/da = grad * s with s of order ``scale``: the manual gradient of ``a`` is wrong by
    ``what``; b's gradient (the catalogue's, through s) is right."""
    text = SMALL.replace("DTYPE", dtype).replace("INVERSE", repr(1 / scale)).replace("RULE", rule)
    case = run_one(write_case, text)
    assert case.status == "failed", f"{what} at {scale} in {dtype} passed"
    assert ("a", "manual", "torch") in failed_pairs(case)
    assert ("b", "manual", "torch") not in failed_pairs(case)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", SCALES)
def test_the_right_rule_passes_at_every_scale(
    write_case: WriteCase, dtype: str, scale: float
) -> None:
    text = SMALL.replace("DTYPE", dtype).replace("INVERSE", repr(1 / scale))
    assert run_one(write_case, text.replace("RULE", "grad * other")).status == "passed"


@pytest.mark.parametrize("scale", SCALES)
def test_a_zero_rule_fails_under_a_small_upstream(write_case: WriteCase, scale: float) -> None:
    """The gradient is small because the upstream gradient is: zeros still fail."""
    text = SMALL.replace("DTYPE", "float32").replace("INVERSE", "1.0").replace("RULE", "0 * grad")
    text = text.replace("upstream: {random: normal, seed: 3}", f"upstream: {scale!r}")
    case = run_one(write_case, text)
    assert case.status == "failed"
    assert ("a", "manual", "torch") in failed_pairs(case)


def test_float32_round_off_in_a_long_reduction_passes(write_case: WriteCase) -> None:
    """Two sums of 100000 float32 terms of order 1 that cancel to order 1e-2: numpy's and
    torch's summation orders differ by about 1e-5, far above rtol and atol x the result, and
    the round-off floor measured against torch in float64 covers it."""
    case = run_one(
        write_case,
        """\
name: t/long-sum
dtype: float32
inputs:
  x: {random: normal, shape: [100000], seed: 5}
graph:
  s: sum(x) - sum(x * 1.0001)
""",
    )
    assert case.status == "passed", case.messages
    (value,) = [t for t in case.tensors if (t.tensor, t.kind) == ("s", "value")]
    (c,) = value.comparisons
    assert c.floor is not None and c.scale is not None
    assert c.abs_err is not None and c.abs_err > c.rtol * abs(c.right_value or 0) + 1e-5 * c.scale
    assert c.abs_err <= c.atol


def test_a_golden_typed_with_4_significant_digits_passes(write_case: WriteCase) -> None:
    x = np.array([-2.0, -0.3, 0.1, 0.7, 4.0])
    s = 1 / (1 + np.exp(-x))
    grad = s * (1 - s)
    text = """\
name: t/golden
inputs: {x: X}
graph: {y: sigmoid(x)}
expect:
  value: {y: VALUE}
  grad: {x: GRAD}
"""

    def typed(a: np.ndarray, digits: int, factor: float = 1.0) -> str:
        return "[" + ", ".join(f"{v * factor:.{digits}g}" for v in a) + "]"

    text = text.replace("X", typed(x, 17))
    ok = text.replace("VALUE", typed(s, 4)).replace("GRAD", typed(grad, 4))
    assert run_one(write_case, ok).status == "passed"
    off = text.replace("VALUE", typed(s, 4)).replace("GRAD", typed(grad, 4, 1.01))
    assert failed_pairs(run_one(write_case, off)) == {
        ("x", "manual", "expected"),
        ("x", "torch", "expected"),
    }


# --- compare itself --------------------------------------------------------------------------


def check(left: np.ndarray, right: np.ndarray, tol: Tolerance) -> Comparison:
    return compare(left, right, sources=("manual", "torch"), tol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", [1.0, *SCALES, 1e6])
def test_a_verdict_is_the_same_at_every_scale(dtype: str, scale: float) -> None:
    """Scaling both tensors by the same factor never changes a verdict."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 5))
    tol = DEFAULT_TOLERANCE[dtype]
    assert check(ref * (1 + 1e-8) * scale, ref * scale, tol).ok
    assert not check(ref * 1.01 * scale, ref * scale, tol).ok
    assert not check(np.zeros_like(ref), ref * scale, tol).ok
    off = ref.copy()
    off[1, 2] += 1e-3 * np.abs(ref).max()
    assert not check(off * scale, ref * scale, tol).ok


def test_the_floor_is_absolute_and_a_case_atol_is_torch_testings() -> None:
    ref = np.array([1e-12, 2e-12])
    zeros = np.zeros(2)
    assert not check(zeros, ref, DEFAULT_TOLERANCE["float64"]).ok
    assert check(zeros, ref, DEFAULT_TOLERANCE["float64"].with_floor(3e-12)).ok
    assert check(zeros, ref, Tolerance(rtol=0.0, atol=1e-11, absolute=True)).ok
    c = check(zeros, ref, Tolerance(rtol=0.0, atol=1e-11, absolute=True))
    assert (c.atol, c.scale) == (1e-11, None)


def test_golden_tolerance_takes_4_significant_digits_and_not_a_tenth_of_a_percent() -> None:
    ref = np.array([1.23456789, 0.000987654321, -55.5555])
    typed = np.array([float(f"{v:.4g}") for v in ref])
    assert compare(ref, typed, sources=("manual", "expected"), tol=EXPECTED_TOLERANCE).ok
    assert not compare(
        ref * 1.001, typed, sources=("manual", "expected"), tol=EXPECTED_TOLERANCE
    ).ok


# --- the floor is each tensor's own (found by a black-box tester) --------------------------


@pytest.mark.parametrize(
    ("graph", "upstream", "rule", "wrong"),
    [
        # A huge upstream gradient through a tiny Jacobian: the gradient is 1e-5.
        ("y: x * 1e-20", "1e15", "mul: {input: grad * other * 1.01}", "x"),
        # A physical constant as a literal: the gradient is 1e-15 of the upstream's size.
        ("y: x * 1e-15", "1.0", "mul: {input: 0 * grad}", "x"),
        # One tensor's scale (a's gradient, 1e10) must not loosen another's (b's, 1e-10).
        ("y: a * 1e10 + b * 1e-10", "{random: normal, seed: 4}", "add: {other: grad * 1.5}", "b"),
    ],
)
def test_a_wrong_gradient_fails_whatever_the_other_scales(
    write_case: WriteCase, graph: str, upstream: str, rule: str, wrong: str
) -> None:
    case = run_one(
        write_case,
        f"""\
name: t/scales
inputs:
  x: {{random: normal, shape: [3], seed: 1}}
  a: {{random: normal, shape: [3], seed: 2}}
  b: {{random: normal, shape: [3], seed: 3}}
graph:
  {graph}
upstream: {upstream}
probe: false
rules:
  {rule}
""",
    )
    assert case.status == "failed"
    assert (wrong, "manual", "torch") in failed_pairs(case)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "graph",
    [
        "s: softmax(x, dim=1)\n  t: sum(s)",  # a constant function: its gradient is round-off
        "s: layer_norm(x, [6])\n  t: sum(s)",  # the same, and its value is 0 + round-off
        "s: layer_norm(x, [1])",  # normalised over one element: zero Jacobian
        "s: x - mean(x, dim=1, keepdim=True)\n  t: sum(s * s) - sum(s * s)",
    ],
)
def test_gradients_that_vanish_identically_pass_as_round_off(
    write_case: WriteCase, dtype: str, graph: str
) -> None:
    shape = "[4, 1]" if "[1]" in graph else "[4, 6]"
    for upstream in ("1.0", "{random: normal, seed: 5}"):
        case = run_one(
            write_case,
            f"""\
name: t/vanish
dtype: {dtype}
inputs:
  x: {{random: normal, shape: {shape}, seed: 2}}
graph:
  {graph}
upstream: {upstream}
""",
        )
        assert case.status == "passed", case.messages


def test_a_golden_wrong_next_to_a_large_element_fails(write_case: WriteCase) -> None:
    """The golden atol is relative to the largest element but capped at half a printout's last
    decimal: 0.06 for 0.03 next to 1200 fails; 0.0300 typed from torch's printout passes."""
    text = """\
name: t/range
inputs:
  x: [1.0, 1.0]
  w: [1200.0, 0.03]
graph:
  y: x * w
expect:
  grad:
    x: GOLDEN
"""
    wrong = run_one(write_case, text.replace("GOLDEN", "[1200.0, 0.06]"))
    assert ("x", "manual", "expected") in failed_pairs(wrong)
    assert run_one(write_case, text.replace("GOLDEN", "[1200.0, 0.0300]")).status == "passed"


# --- the floors are measured only when a comparison needs them (issue 11) ----------------------


def test_a_passing_case_never_measures_its_floors_and_the_verdict_is_the_same(
    write_case: WriteCase,
) -> None:
    """A floor only widens a tolerance: a case whose tensors agree without one does not pay
    for the float32/float64 walks that measure it, and its report gives no floor; the same
    case with every floor measured up front has the same verdict on every pair."""
    from runner.execute import compare_sources, run_sources
    from runner.loader import load
    from runner.oracles import TORCH

    path = write_case(
        "name: t/lazy\ninputs:\n  a: {random: normal, shape: [3, 4], seed: 1}\n"
        "  b: {random: normal, shape: [4, 2], seed: 2}\ngraph:\n  c: tanh(a @ b)\n"
        "upstream: {random: normal, seed: 3}\n"
    )
    (case,) = load([str(path)]).cases
    lazy = run_sources(case, (), (TORCH,))
    checks = compare_sources(case, lazy, (TORCH,))
    assert all(t.ok for t in checks)
    assert not lazy.floors.measured
    assert all(c.floor is None for t in checks for c in t.comparisons)
    eager = run_sources(case, (), (TORCH,))
    assert eager.floors.get(("grad", "a")) > 0 and eager.floors.measured
    again = compare_sources(case, eager, (TORCH,))
    assert [c.ok for t in again for c in t.comparisons] == [
        c.ok for t in checks for c in t.comparisons
    ]


def test_a_copy_with_other_manual_gradients_shares_the_cases_floors(
    write_case: WriteCase,
) -> None:
    """`gradcase mutate` compares a mutant's gradients in a copy of the case's `Sources`: the
    floors measured from that copy are the case's (the catalogue's float64 walk is the case's
    own manual side), never the mutant's, which would let a wrong rule widen its own floor."""
    from dataclasses import replace

    from runner.execute import run_sources
    from runner.loader import load
    from runner.oracles import MANUAL, TORCH

    path = write_case(
        "name: t/shared\ninputs:\n  x: {random: normal, shape: [6], seed: 4}\n"
        "graph:\n  y: exp(x)\n  z: sum(y * x)\n"
    )
    (case,) = load([str(path)]).cases
    reference = run_sources(case, (), (TORCH,))
    expected = {k: reference.floors.get(k) for k in [("grad", "x"), ("grad", "y")]}
    sources = run_sources(case, (), (TORCH,))
    huge = {k: v * 1e6 for k, v in sources.grads[MANUAL].items()}
    mutant = replace(sources, grads={**sources.grads, MANUAL: huge})
    assert {k: mutant.floors.get(k) for k in expected} == expected
    assert {k: sources.floors.get(k) for k in expected} == expected


def test_round_off_amplified_by_a_norm_over_one_element_passes_in_float64(
    write_case: WriteCase,
) -> None:
    """group_norm with one element per group: the exact gradient is 0, torch's float64 one is
    about 1e-14 (round-off times rstd = 1/sqrt(eps) = 316), the catalogue's exactly 0. Torch run
    in float32 measures that amplification (its float32 error times eps64/eps32): the case
    passes, and the floor it needed is about 1e-14, nowhere near a wrong rule's error."""
    case = run_one(
        write_case,
        "name: t/gn\ninputs:\n  x: [[0.45, 0.1], [2.7, 1.5]]\ngraph:\n  y: F.group_norm(x, 2)\n"
        "upstream: {random: normal, seed: 7}\n",
    )
    assert case.status == "passed", case.messages
    (grad,) = [t for t in case.tensors if (t.tensor, t.kind) == ("x", "grad")]
    (c,) = grad.comparisons
    assert c.floor is not None and 1e-15 < c.floor < 1e-11


@pytest.mark.parametrize(
    "graph",
    [
        # a constant row: layer_norm's mean rounds, 1/sqrt(eps) = 316 multiplies it (value
        # 4.4e-15 against torch's exact 0), and the gradient is round-off of cancelling terms
        "  n: F.layer_norm(x, [3])\n",
        "  n: F.group_norm(x, 1)\n",
        "  n: F.instance_norm(x)\n",
        # a cosine similarity of one element is constant: the gradient 1e-16 is round-off of
        # terms of size 1, passed on linearly through x * -1.5
        "  m: x * -1.5\n  n: F.cosine_similarity(m, m * m, dim=-1)\n  s: F.softplus(n)\n",
    ],
    ids=["layer_norm", "group_norm", "instance_norm", "cosine-one-element"],
)
def test_round_off_a_computation_amplifies_passes_in_float64(
    write_case: WriteCase, graph: str
) -> None:
    """Found by a black-box tester: where both torch's float64 and float32 results are exact
    (0), only moving the inputs by one unit of round-off shows how much the computation
    amplifies its own (runner.roundoff._perturbed); a gradient downstream of a cancellation
    keeps the scale of the cancelling terms (computation_scales' inflow, from the output back)."""
    x = "[[[-0.9982994637487874, -0.9982994637487874, -0.9982994637487874]]]"
    case = run_one(write_case, f"name: t/amp\ninputs:\n  x: {x}\ngraph:\n{graph}")
    assert case.status == "passed", case.messages


def test_a_kink_that_round_off_decides_fails_saying_so(write_case: WriteCase) -> None:
    """group_norm of a constant row is 3.5e-14 by the catalogue and exactly 0 by torch, and
    norm(p=1)'s gradient is the sign of it: 1 against 0. Moving the inputs by one unit of
    round-off moves that gradient by the whole of it, so no floor may cover it: the failure
    says the tensor is ill-conditioned on this data instead of passing anything."""
    case = run_one(
        write_case,
        "name: t/kink\ninputs:\n  x: [[[-0.9982994637487874, -0.9982994637487874, "
        "-0.9982994637487874]]]\ngraph:\n  n: F.group_norm(x, 1)\n"
        "  y: torch.norm(n, p=1, dim=-1)\nupstream: [[1.0]]\n",
    )
    assert case.status == "failed"
    (grad,) = [t for t in case.tensors if (t.tensor, t.kind) == ("n", "grad")]
    (c,) = grad.comparisons
    assert c.conditioning is not None and "ill-conditioned on this data" in c.conditioning
    assert c.atol < 1e-6  # the floor did not grow to the gradient's size
