"""Edges where torch accepts what a careless rule refuses (or the reverse): empty outputs, zero
lengths, None sizes, torch's spellings of infinity; each checked against what torch 2.13 does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

WriteCase = Callable[[str], Path]


def _load(write_case: WriteCase, inputs: str, graph: str) -> Any:
    from runner.loader import load

    return load([str(write_case(f"inputs:\n{inputs}graph:\n{graph}"))])


def _run(write_case: WriteCase, inputs: str, graph: str) -> Any:
    import runner

    return runner.check(write_case(f"inputs:\n{inputs}graph:\n{graph}"))


CTC_INPUTS = "  u: {random: normal, shape: [3, 2, 4], seed: 1}\n  tg: [[1, 2], [2, 3]]\n"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("3, [2, 1]", "input_lengths must be a list of ints, one per sample, as in torch"),
        ("[3, 3], 1", "target_lengths must be a list of ints, one per sample, as in torch"),
        ("[4, 3], [2, 1]", "input_lengths [4, 3] must lie in [0, T = 3]"),
    ],
)
def test_ctc_lengths_torch_refuses_are_refused(
    write_case: WriteCase, call: str, message: str
) -> None:
    loaded = _load(write_case, CTC_INPUTS, f"  y: F.ctc_loss(u.log_softmax(-1), tg, {call})\n")
    assert any(message in p.message for p in loaded.problems), loaded.problems


def test_ctc_concatenated_targets_must_hold_exactly_the_lengths(write_case: WriteCase) -> None:
    # torch: "Expected tensor to have size 2 at dimension 0, but got size 3"
    inputs = (
        "  u: {random: normal, shape: [3, 2, 4], seed: 1}\n"
        "  tg: {values: [1, 2, 1], dtype: int64}\n"
    )
    loaded = _load(write_case, inputs, "  y: F.ctc_loss(u.log_softmax(-1), tg, [3, 3], [1, 1])\n")
    assert any("exactly sum(target_lengths [1, 1]) = 2" in p.message for p in loaded.problems)


@pytest.mark.parametrize(
    ("inputs", "call"),
    [
        # torch 2.13 gives 7.0346 here; the forward used to raise on the empty reshape
        (
            "  u: {random: normal, shape: [4, 3], seed: 1}\n  tg: {values: [], dtype: int64}\n",
            "tg, [4], [0]",
        ),  # fmt: skip
        (CTC_INPUTS, 'tg, (0, 3), (0, 2), reduction="sum"'),
        (CTC_INPUTS, 'tg, [0, 3], [2, 1], reduction="none", zero_infinity=True'),
    ],
)
def test_ctc_empty_targets_and_zero_input_lengths_agree_with_torch(
    write_case: WriteCase, inputs: str, call: str
) -> None:
    report = _run(write_case, inputs, f"  y: F.ctc_loss(u.log_softmax(-1), {call})\n")
    assert report.passed and report.summary.passed == 1, report


def test_conv_transpose_empty_output_is_refused_with_the_padding_that_fits(
    write_case: WriteCase,
) -> None:
    # torch 2.13, float64: "Calculated output size per channel: (1 x 0). Output size is too
    # small"; only its float32 oneDNN path returns shape (2, 6, 0) here.
    inputs = (
        "  x: {random: normal, shape: [2, 3, 2], seed: 1}\n"
        "  w: {random: normal, shape: [3, 2, 3], seed: 2}\n"
    )
    loaded = _load(write_case, inputs, "  y: F.conv_transpose1d(x, w, padding=[2], groups=3)\n")
    (problem,) = loaded.problems
    assert "gives output size (0,): output size is too small" in problem.message
    assert "in float64 and float16" in problem.message
    assert "reduce the padding to (1,) or less" in problem.message


POOL_INPUTS = "  x: {random: normal, shape: [2, 3, 6, 4], seed: 1}\n"


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize(
    ("size", "shape"), [("[5, None]", (2, 3, 5, 4)), ("(None, None)", (2, 3, 6, 4))]
)
def test_adaptive_pool_2d_none_keeps_that_dim_as_torch(
    write_case: WriteCase, kind: str, size: str, shape: tuple[int, ...]
) -> None:
    graph = f"  y: F.adaptive_{kind}_pool2d(x, {size})\n"
    loaded = _load(write_case, POOL_INPUTS, graph)
    assert not loaded.problems, loaded.problems
    assert loaded.cases[0].graph.node("y").shape == shape
    report = _run(write_case, POOL_INPUTS, graph)
    assert report.passed and report.summary.passed == 1, report


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pool_1d_refuses_none_as_torch(write_case: WriteCase, kind: str) -> None:
    # torch: "argument 'output_size' must be tuple of ints, but found element of type NoneType"
    loaded = _load(write_case, POOL_INPUTS, f"  y: F.adaptive_{kind}_pool1d(x[0], [None])\n")
    assert any("must be an int or a list of ints, got [None]" in p.message for p in loaded.problems)


MATRIX = "  a: {random: normal, shape: [3, 4], seed: 1}\n"


@pytest.mark.parametrize(
    ("spelled", "canonical"),
    [
        ('F.pdist(a, p=float("inf"))', "F.pdist(a, p=1e999)"),
        ('torch.linalg.matrix_norm(a, float("-inf"))', "torch.linalg.matrix_norm(a, -1e999)"),
        ('torch.linalg.vector_norm(a, float("Infinity"))', "torch.linalg.vector_norm(a, 1e999)"),
        ("torch.linalg.vector_norm(a, -math.inf, 1)", "torch.linalg.vector_norm(a, -1e999, 1)"),
        ("torch.linalg.vector_norm(a, ord=torch.inf)", "torch.linalg.vector_norm(a, ord=1e999)"),
    ],
)
def test_pythons_infinity_is_a_literal(write_case: WriteCase, spelled: str, canonical: str) -> None:
    def graph(expression: str) -> list[tuple[str, Any]]:
        loaded = _load(write_case, MATRIX, f"  y: {expression}\n")
        assert not loaded.problems, loaded.problems
        return [(n.op.name, n.args) for n in loaded.cases[0].graph.nodes]

    assert graph(spelled) == graph(canonical)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ('F.pdist(a, p=float("2"))', 'float(...) in a graph is only infinity: float("inf")'),
        ("F.pdist(a, p=inf)", 'not a tensor expression; infinity is float("inf") or math.inf'),
    ],
)
def test_other_floats_are_refused_saying_how_to_write_infinity(
    write_case: WriteCase, expression: str, message: str
) -> None:
    loaded = _load(write_case, MATRIX, f"  y: {expression}\n")
    assert any(message in p.message for p in loaded.problems), loaded.problems
