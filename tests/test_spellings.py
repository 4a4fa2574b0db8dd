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
    # attributes and methods
    ("x.T", "t(x)"),
    ("x.t()", "t(x)"),
    ("x.mT", "transpose(x, -2, -1)"),
    ("x.sum(dim=0)", "sum(x, dim=0)"),
    ("x.softmax(-1)", "softmax(x, -1)"),
    ("x.reshape(2, 6)", "reshape(x, [2, 6])"),
    ("x.matmul(w)", "matmul(x, w)"),
    ("x.exp().sum(1)", "sum(exp(x), 1)"),
    ("x.clamp(min=0.0)", "clamp(x, min=0.0)"),
    # namespaces
    ("torch.relu(x)", "relu(x)"),
    ("torch.nn.functional.softmax(x, dim=1)", "softmax(x, dim=1)"),
    ("F.softmax(x, dim=1)", "softmax(x, dim=1)"),
    ("nn.functional.gelu(x)", "gelu(x)"),
    ("torch.special.expm1(x)", "expm1(x)"),
    ("torch.linalg.vector_norm(x, 3)", "vector_norm(x, 3)"),
    ("torch.linalg.vector_norm(x, ord=3, dim=1)", "vector_norm(x, ord=3, dim=1)"),
    ("torch.linalg.norm(x)", "norm(x)"),
    # torch.linalg.norm with ord, where the call says which norm (torch's dispatch)
    ("torch.linalg.norm(x, 'fro')", "matrix_norm(x, 'fro')"),
    ("torch.linalg.norm(x, 'nuc')", "matrix_norm(x, 'nuc')"),
    ("torch.linalg.norm(x, 3, 1)", "vector_norm(x, 3, 1)"),
    ("torch.linalg.norm(x, ord=-1, dim=0, keepdim=True)", "vector_norm(x, -1, 0, True)"),
    ("torch.linalg.norm(x, ord=1, dim=(0, 1))", "matrix_norm(x, 1, [0, 1])"),
    ("torch.linalg.norm(x, None, (1, 0))", "matrix_norm(x, dim=[1, 0])"),
    ("torch.linalg.norm(A=x, ord=float('inf'), dim=1)", "vector_norm(x, float('inf'), 1)"),
    ("torch.linalg.matmul(x, w)", "matmul(x, w)"),
    ("torch.inverse(x[:, :3])", "inv(x[:, :3])"),
    ("torch.inverse(input=x[:, :3])", "inv(x[:, :3])"),
    ("x[:, :3].inverse()", "inv(x[:, :3])"),
    ("F.adaptive_avg_pool1d(x, 3)", "adaptive_avg_pool1d(x, 3)"),
    ("torch.adaptive_avg_pool1d(x, output_size=3)", "adaptive_avg_pool1d(x, 3)"),
    ("F.unfold(x[None], [2, 1])", "unfold(x[None], [2, 1])"),
    # torch's aliases, and clamp with tensor bounds (clamp.Tensor) in every spelling
    ("clip(x, 0.0, 1.0)", "clamp(x, 0.0, 1.0)"),
    ("x.clip(min=w)", "clamp(x, min=w)"),
    ("torch.clip(x, w, 2.0)", "clamp(x, w, 2.0)"),
    ("torch.absolute(x)", "abs(x)"),
    ("multiply(x, w)", "mul(x, w)"),
    ("x.arctan2(w)", "atan2(x, w)"),
    # an output of an op with several, selected in torch's every spelling
    ("x.max(dim=1)[0]", "max(x, 1).values"),
    ("torch.max(x, 1)[0]", "max(x, 1).values"),
    ("x.min(0).values", "min(x, 0)[0]"),
    ("torch.max(x, dim=1).values", "max(x, 1)[0]"),
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
        ("np.exp(x)", "np.exp: the graph speaks torch (numpy is for rules): write exp(...)"),
        ("x.frobnicate()", ".frobnicate() is not a tensor method gradcase knows"),
        ("x.shape", "attribute .shape is not allowed in a graph: the attributes are .T and .mT"),
        ("torch.frobnicate(x)", "torch.frobnicate is not in gradcase's catalogue"),
        ("x.unfold(0, 2, 1)", ".unfold() is not a tensor method gradcase knows"),
        ("torch.layer_norm(x, [4])", "nn ops are spelled F.<name>"),
        # a numeric ord without dim: torch chooses by x's number of dims
        ("torch.linalg.norm(x, 2)", "write torch.linalg.vector_norm(x, ord, dim) for a 1-D"),
        ("x.inv()", ".inv() is not a tensor method gradcase knows"),
        ("sum(reshape(x, [3, 2, 2]).T)", "write x.mT (transpose(x, -2, -1))"),
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


def test_a_tensor_named_like_a_namespace_is_a_tensor(write_case: WriteCase) -> None:
    path = write_case("name: t\ninputs: {F: [[1.0, 2.0]]}\ngraph:\n  y: F.sum(1)\n")
    (case,) = load([str(path)]).cases
    assert [n.op.name for n in case.graph.nodes] == ["sum"]


def test_the_spelling_tables_match_torch() -> None:
    """Every method and namespace entry exists in torch under that name, and every catalogue op
    torch has as a Tensor method is listed (a new op cannot be forgotten)."""
    import torch

    from runner.ops import public_ops
    from runner.ops.meaning import METHOD_ALIASES, NAMESPACES, OTHER_METHODS, TENSOR_METHODS

    names = {op.name for op in public_ops()}
    assert TENSOR_METHODS <= names
    # torch.Tensor.solve is a stub that raises (removed in torch 1.9; torch.linalg.solve is it);
    # OTHER_METHODS are Tensor methods of another op of the same name (Tensor.unfold).
    removed = {"solve"}
    assert (
        TENSOR_METHODS == {n for n in names if hasattr(torch.Tensor, n)} - removed - OTHER_METHODS
    )
    modules = {
        "torch": torch,
        "torch.nn.functional": torch.nn.functional,
        "torch.special": torch.special,
        "torch.linalg": torch.linalg,
    }
    for method, op in METHOD_ALIASES.items():
        assert hasattr(torch.Tensor, method) and op in names, method
    for space, entries in NAMESPACES.items():
        for name in entries:
            assert hasattr(modules[space], name), f"{space}.{name}"


def test_clamp_with_a_tensor_bound_is_clamp_tensor(write_case: WriteCase) -> None:
    ops = [op for _, op, _ in graph_of(write_case, "clamp(x, w, 2.0)")]
    assert ops[0] == "clamp.Tensor"
    ops = [op for _, op, _ in graph_of(write_case, "clamp(x, max=2.0)")]
    assert ops[0] == "clamp"


def test_the_aliases_are_torchs() -> None:
    import torch

    from runner.ops import REGISTRY
    from runner.ops.meaning import TORCH_ALIASES

    for alias, name in TORCH_ALIASES.items():
        assert name in REGISTRY, name
        assert hasattr(torch, alias), alias


@pytest.mark.parametrize(
    ("ord_", "dim", "catalogue"),
    [("fro", None, "matrix"), ("nuc", None, "matrix"), (3.0, 1, "vector"), (1.0, (0, 1), "matrix"),
     (float("inf"), -1, "vector"), (None, (1, 0), "matrix")],
)  # fmt: skip
def test_torchs_linalg_norm_dispatches_as_the_spelling_routes(
    ord_: object, dim: object, catalogue: str
) -> None:
    """torch.linalg.norm with ord is torch.linalg.matrix_norm for a string ord or a pair of
    dims and vector_norm for an int dim (torch's dispatch, which `runner.expr` follows): the
    same value and gradient, checked against torch itself."""
    import torch

    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    kwargs = {} if dim is None else {"dim": dim}
    left = torch.linalg.norm(x, ord_, **kwargs)
    target = torch.linalg.matrix_norm if catalogue == "matrix" else torch.linalg.vector_norm
    right = target(y, "fro" if ord_ is None else ord_, **kwargs)
    left.sum().backward()
    right.sum().backward()
    assert torch.allclose(left, right) and torch.allclose(x.grad, y.grad)
