"""Exact small-value tests of the manual engine: broadcasting undone once, accumulation,
rules replaced per node, and rule errors that name the op, operand and shapes."""

from __future__ import annotations

import numpy as np
import pytest

from runner.engine import RuleError, backward, forward, sum_to
from runner.graph import Graph, Node, Ref
from runner.ops import REGISTRY


def _graph(*nodes: Node, inputs: dict[str, tuple[int, ...]], output: str) -> Graph:
    shapes = dict(inputs) | {n.name: n.shape for n in nodes}
    return Graph(nodes=nodes, output=output, shapes=shapes, requires_grad={k: True for k in shapes})


def test_sum_to_reduces_leading_and_size_one_dims() -> None:
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(sum_to(g, (3, 1), what="x"), g.sum(axis=(0, 2))[:, None])
    np.testing.assert_array_equal(sum_to(g, (), what="x"), np.array(276.0))
    assert sum_to(g, (2, 3, 4), what="x") is g


def test_sum_to_rejects_a_gradient_that_cannot_reduce() -> None:
    with pytest.raises(RuleError, match=r"shape \(2, 3\).*operand's shape \(3, 2\)"):
        sum_to(np.zeros((2, 3)), (3, 2), what="node 'c': gradient of mul for input")


def test_broadcast_add_sums_each_side_back() -> None:
    add = REGISTRY["add"]
    g = _graph(
        Node("c", add, {"input": Ref("a"), "other": Ref("b")}, (3, 4)),
        inputs={"a": (3, 1), "b": (1, 4)},
        output="c",
    )
    values = forward(g, {"a": np.zeros((3, 1)), "b": np.zeros((1, 4))})
    grads = backward(g, values, np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(grads["a"], [[6.0], [22.0], [38.0]])
    np.testing.assert_array_equal(grads["b"], [[12.0, 15.0, 18.0, 21.0]])


def test_a_name_used_twice_accumulates() -> None:
    mul = REGISTRY["mul"]
    g = _graph(
        Node("c", mul, {"input": Ref("a"), "other": Ref("a")}, (2,)), inputs={"a": (2,)}, output="c"
    )
    a = np.array([3.0, -1.0])
    grads = backward(g, forward(g, {"a": a}), np.ones(2))
    np.testing.assert_array_equal(grads["a"], [6.0, -2.0])


def test_a_literal_operand_gets_no_gradient_and_keeps_float32() -> None:
    mul = REGISTRY["mul"]
    g = _graph(
        Node("c", mul, {"input": Ref("a"), "other": 2}, (2,)), inputs={"a": (2,)}, output="c"
    )
    values = forward(g, {"a": np.array([1.0, 2.0], dtype=np.float32)})
    assert values["c"].dtype == np.float32
    grads = backward(g, values, np.ones(2, dtype=np.float32))
    np.testing.assert_array_equal(grads["a"], [2.0, 2.0])
    assert grads["a"].dtype == np.float32


def test_a_rule_can_be_replaced_per_node() -> None:
    mul = REGISTRY["mul"]
    g = _graph(
        Node("c", mul, {"input": Ref("a"), "other": Ref("b")}, (2,)),
        inputs={"a": (2,), "b": (2,)},
        output="c",
    )
    values = forward(g, {"a": np.array([1.0, 2.0]), "b": np.array([5.0, 7.0])})
    # The classic bug: the other operand's gradient uses the wrong factor.
    wrong = {"c": lambda g, out, input, other: (g * other, g * other)}
    grads = backward(g, values, np.ones(2), rules=wrong)
    np.testing.assert_array_equal(grads["b"], [5.0, 7.0])


def test_a_rule_returning_the_wrong_count_is_named() -> None:
    mul = REGISTRY["mul"]
    g = _graph(
        Node("c", mul, {"input": Ref("a"), "other": Ref("b")}, (2,)),
        inputs={"a": (2,), "b": (2,)},
        output="c",
    )
    values = forward(g, {"a": np.ones(2), "b": np.ones(2)})
    with pytest.raises(
        RuleError,
        match=r"node 'c': the rule for mul returned 1 gradients, "
        r"expected 2 \(one per operand: input, other\)",
    ):
        backward(g, values, np.ones(2), rules={"c": lambda g, out, **kw: (g,)})


def test_torch_refusing_an_op_is_an_error_at_its_node(tmp_path: object) -> None:
    import dataclasses
    from pathlib import Path

    from runner.execute import execute
    from runner.loader import load

    path = Path(str(tmp_path)) / "case.yaml"
    path.write_text("inputs: {a: [1.0, 2.0]}\ngraph:\n  c: relu(a)\n")
    case = load([str(path)]).cases[0]
    node = case.graph.node("c")

    def refuse(t: object, input: object) -> None:
        raise RuntimeError("not implemented for 'Float'")

    object.__setattr__(node, "op", dataclasses.replace(node.op, torch=refuse))
    result = execute(case)
    assert result.status == "error"
    assert result.messages == [
        f"{case.locations['c']}: node 'c': torch's relu raised RuntimeError: not implemented "
        "for 'Float'"
    ]
    assert case.locations["c"].endswith("case.yaml:3:6")
