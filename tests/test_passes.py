"""Each pass of the compiler alone (`runner.passes`), on small cases written as YAML text."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

import runner.compile
from runner.composed import define_ops
from runner.diagnostics import CaseInvalid
from runner.graph import Graph
from runner.loader import compile_document
from runner.ops import REGISTRY
from runner.passes.integers import settle_integers
from runner.passes.lower import Lowered, lower_case
from runner.passes.requires import settle_requires
from runner.passes.resolve import case_output, resolve
from runner.yaml_source import Document, load_stream
from schemas.case import Case

ROOT = Path(__file__).resolve().parent.parent


def _doc(text: str) -> tuple[Case, Document]:
    docs, problems = load_stream(text, "t.yaml")
    assert not problems
    return Case.model_validate(docs[0].data), docs[0]


def _lower(text: str) -> tuple[Case, Document, Lowered]:
    case, doc = _doc(text)
    local, problems = define_ops(case.ops, doc, {})
    assert not problems
    return case, doc, lower_case(case, doc, local)


def _messages(problems: object) -> list[str]:
    return [p.message for p in problems]  # type: ignore[attr-defined]


# --- lowering ---------------------------------------------------------------------------------


def test_lowering_names_anonymous_nodes_infers_shapes_and_records_every_use() -> None:
    _, _, lowered = _lower(
        "inputs: {a: [[1.0, 2.0]], b: [[3.0], [4.0]], i: [0]}\n"
        "graph:\n  c: sum(a @ b * 2)\n  d: index_select(a, 1, i)\n  e: d\n"
    )
    assert [(n.name, n.op.name, n.shape) for n in lowered.nodes] == [
        ("c#1", "matmul", (1, 1)),
        ("c#2", "mul", (1, 1)),
        ("c", "sum", ()),
        ("d", "index_select", (1, 1)),
        ("e", "clone", (1, 1)),  # a node that only names another is a copy
    ]
    assert lowered.nodes[1].args["other"] == 2  # a Python number, elementwise only
    index = [u for u in lowered.uses if u.tensor == "i"]
    assert [(u.where, u.integer, u.differentiable) for u in index] == [
        ("index_select: 'index'", True, False)
    ]
    assert not lowered.problems
    # Lowering plans inputs as written: integer inference is the next pass's.
    assert lowered.inputs["i"].dtype == "float64"


def test_lowering_collects_problems_and_keeps_users_of_a_failed_name_quiet() -> None:
    _, _, lowered = _lower(
        "inputs: {a: [1.0, 2.0]}\ngraph: {b: sum(x), c: b * 2, d: later + a, later: a * 1}\n"
    )
    assert _messages(lowered.problems) == [
        "unknown name 'x'",
        "unknown name 'later' (it is defined later in graph: order matters)",
    ]
    assert {"b", "c", "d"} <= lowered.failed
    assert [n.name for n in lowered.nodes] == ["later"]


def test_a_target_shaped_like_the_input_is_no_integer_use() -> None:
    _, _, lowered = _lower(
        "inputs: {x: [[1.0, 2.0]], p: [[0, 1]], k: [1]}\n"
        "graph:\n  a: cross_entropy(x, p)\n  b: cross_entropy(x, k)\n  c: a + b\n"
    )
    targets = {u.tensor: u.integer for u in lowered.uses if u.where.endswith("'target'")}
    assert targets == {"p": False, "k": True}


# --- integer inference ------------------------------------------------------------------------


def test_integers_are_int64_only_where_every_use_takes_integers() -> None:
    case, doc, lowered = _lower(
        "inputs: {a: [[1.0, 2.0]], i: [0], j: [1], w: [1, 2]}\n"
        "graph:\n  b: index_select(a, 1, i)\n  c: index_select(a, 1, j) * j\n  d: b + c + w\n"
    )
    typed = settle_integers(lowered, doc, case.dtype)
    dtypes = {name: plan.dtype for name, plan in typed.inputs.items()}
    assert dtypes == {"a": "float64", "i": "int64", "j": "float64", "w": "float64"}
    assert typed.inputs["i"].requires_grad is False
    (problem,) = typed.problems
    assert problem.message.startswith(
        "input 'j' is written with integers and used both as integers (index_select: 'index')"
    )
    assert typed.nodes == lowered.nodes


def test_the_graph_is_lowered_once_whatever_the_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = runner.compile.lower_case

    def counted(*args: object, **kwargs: object) -> Lowered:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner.compile, "lower_case", counted)
    case, doc = _doc(
        "inputs: {a: {random: normal, shape: [2, 3], seed: 1}, i: [2, 0]}\n"
        "graph:\n  b: index_select(a, 1, i)\n  c: sum(b)\n"
    )
    compiled = runner.compile.compile_case(case, doc, "t", 1)
    assert calls == [1]
    assert compiled.inputs["i"].dtype == "int64"
    assert compiled.graph.requires_grad == {"a": True, "i": False, "b": True, "c": True}


# --- requires-grad settling -------------------------------------------------------------------


def test_an_input_used_only_where_torch_cannot_differentiate_stops_requiring_grad() -> None:
    case, doc, lowered = _lower(
        "inputs: {x: [[1.0, 2.0]], k: [1], w: [1.0, 2.0]}\n"
        "graph:\n  loss: cross_entropy(x, k, weight=w)\n"
    )
    typed = settle_integers(lowered, doc, case.dtype)
    settled = settle_requires(typed.inputs, typed.nodes, lowered.uses, doc)
    assert settled.inputs["w"].requires_grad is False
    assert settled.requires_grad == {"x": True, "k": False, "w": False, "loss": True}
    assert not settled.problems


def test_a_tensor_said_to_require_grad_where_torch_refuses_it_is_a_problem() -> None:
    case, doc, lowered = _lower(
        "inputs: {x: [[1.0, 2.0]], k: [1], w: {values: [1.0, 2.0], requires_grad: true}}\n"
        "graph:\n  loss: cross_entropy(x, k, weight=w)\n"
    )
    typed = settle_integers(lowered, doc, case.dtype)
    (problem,) = settle_requires(typed.inputs, typed.nodes, lowered.uses, doc).problems
    assert problem.message.startswith(
        "cross_entropy: 'weight' is not differentiable, but 'w' requires grad there"
    )
    assert (problem.where.line, problem.where.col) == (3, 9)  # the call's place


# --- resolution -------------------------------------------------------------------------------


def _resolved(text: str) -> object:
    case, doc, lowered = _lower(text)
    typed = settle_integers(lowered, doc, case.dtype)
    settled = settle_requires(typed.inputs, typed.nodes, lowered.uses, doc)
    graph = Graph(typed.nodes, case_output(case), dict(lowered.shapes), settled.requires_grad)
    return resolve(case, doc, graph, settled.inputs, typed.failed)


def test_resolution_gives_the_default_checks_and_values_up_to_the_output() -> None:
    resolved = _resolved(
        "inputs: {a: [1.0, 2.0], m: {values: [1.0, 1.0], requires_grad: false}}\n"
        "graph: {b: a * m, c: sum(b), d: c * 2}\noutput: c\n"
    )
    assert resolved.output == "c"  # type: ignore[attr-defined]
    assert resolved.checks == ("a", "b", "c")  # type: ignore[attr-defined]
    assert resolved.values == ("b", "c")  # type: ignore[attr-defined]
    assert resolved.problems == ()  # type: ignore[attr-defined]


def test_resolution_collects_output_check_and_expect_problems_together() -> None:
    resolved = _resolved(
        "inputs: {a: [1.0, 2.0], m: {values: [1.0, 1.0], requires_grad: false}}\n"
        "graph: {b: a * m, c: sum(b)}\n"
        "upstream: [1.0, 2.0]\ncheck: [a, m, z]\nexpect: {value: {b: [1.0]}}\n"
    )
    assert _messages(resolved.problems) == [  # type: ignore[attr-defined]
        "upstream has shape (2,) but output 'c' has shape () (a number fills any shape)",
        "'m' never gets a gradient (an integer or bool tensor, requires_grad: false, or "
        "computed from those)",
        "check names 'z', which is neither an input nor a node",
        "expected value of 'b' has shape (1,), but 'b' has shape (2,)",
    ]


def test_reachability_is_the_graph_s() -> None:
    _, _, lowered = _lower("inputs: {a: [1.0], b: [2.0]}\ngraph: {c: a * 2, d: c + b, e: a * 3}\n")
    requires = {"a": True, "b": False, "c": True, "d": True, "e": True}
    graph = Graph(lowered.nodes, "d", dict(lowered.shapes), requires)
    assert graph.reaching() == {"d", "c", "a"}
    assert graph.reaching("e") == {"e", "a"}


# --- the compiler names no op; validation is linear ------------------------------------------


def test_no_op_name_appears_in_the_compiler() -> None:
    files = [ROOT / "runner" / "compile.py", *sorted((ROOT / "runner" / "passes").glob("*.py"))]
    found = [
        (f.name, node.value)
        for f in files
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.Constant) and node.value in REGISTRY
    ]
    assert found == []


def _chain(n: int) -> str:
    nodes = "\n".join(f"  n{i}: n{i - 1} * 1.5" for i in range(1, n))
    return f"inputs: {{x: [1.0, 2.0]}}\ngraph:\n  n0: x * 1.5\n{nodes}\n"


def _validate_seconds(n: int, repeat: int) -> float:
    docs, _ = load_stream(_chain(n), "t.yaml")
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        compiled = compile_document(docs[0], "t")
        best = min(best, time.process_time() - start)
    assert len(compiled.graph.nodes) == n
    return best


def test_validation_is_linear_in_the_number_of_nodes() -> None:
    # 8 times the nodes: linear work costs 8 times as long, quadratic work (a set of every name
    # rebuilt per node, as before) 64 times. CPU time, so a loaded machine matters less; the
    # bound leaves room for noise.
    small, large = _validate_seconds(2000, repeat=3), _validate_seconds(16000, repeat=1)
    assert large < 24 * small, f"2000 nodes: {small:.3f} s, 16000 nodes: {large:.3f} s"


def test_a_case_refused_by_a_later_pass_still_reports_the_earlier_ones() -> None:
    case, doc = _doc(
        "inputs: {a: [1.0], i: [0]}\ngraph:\n  b: index_select(a, 0, i) * i\n  c: sum(q)\n"
    )
    with pytest.raises(CaseInvalid) as info:
        runner.compile.compile_case(case, doc, "t", 1)
    assert [p.message.split(" (")[0] for p in info.value.problems] == [
        "unknown name 'q'",
        "input 'i' is written with integers and used both as integers",
        # as floats (the ambiguity's default), i requires grad where torch refuses it
        "index_select: 'index' is not differentiable, but 'i' requires grad there",
    ]
