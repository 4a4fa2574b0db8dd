"""Exact small-value tests of the manual engine: broadcasting undone once, accumulation,
user rules asked before the catalogue, and rule errors that name the op, operand and shapes."""

from __future__ import annotations

import numpy as np
import pytest

from runner.engine import RuleError, backward, forward, sum_to
from runner.graph import Graph, Node, Ref
from runner.ops import REGISTRY
from runner.rules import RuleSet


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
    grads = backward(g, values, np.arange(12.0).reshape(3, 4)).grads
    np.testing.assert_array_equal(grads["a"], [[6.0], [22.0], [38.0]])
    np.testing.assert_array_equal(grads["b"], [[12.0, 15.0, 18.0, 21.0]])


def test_a_name_used_twice_accumulates() -> None:
    mul = REGISTRY["mul"]
    g = _graph(
        Node("c", mul, {"input": Ref("a"), "other": Ref("a")}, (2,)), inputs={"a": (2,)}, output="c"
    )
    a = np.array([3.0, -1.0])
    grads = backward(g, forward(g, {"a": a}), np.ones(2)).grads
    np.testing.assert_array_equal(grads["a"], [6.0, -2.0])


def test_a_literal_operand_gets_no_gradient_and_keeps_float32() -> None:
    mul = REGISTRY["mul"]
    g = _graph(
        Node("c", mul, {"input": Ref("a"), "other": 2}, (2,)), inputs={"a": (2,)}, output="c"
    )
    values = forward(g, {"a": np.array([1.0, 2.0], dtype=np.float32)})
    assert values["c"].dtype == np.float32
    grads = backward(g, values, np.ones(2, dtype=np.float32)).grads
    np.testing.assert_array_equal(grads["a"], [2.0, 2.0])
    assert grads["a"].dtype == np.float32


def _mul_graph() -> Graph:
    mul = REGISTRY["mul"]
    return _graph(
        Node("c", mul, {"input": Ref("a"), "other": Ref("b")}, (2,)),
        inputs={"a": (2,), "b": (2,)},
        output="c",
    )


def test_a_user_rule_replaces_the_catalogue_for_the_arguments_it_answers() -> None:
    g = _mul_graph()
    values = forward(g, {"a": np.array([1.0, 2.0]), "b": np.array([5.0, 7.0])})
    # The classic bug: the other operand's gradient uses the wrong factor.
    wrong = RuleSet("case", {"mul": lambda g, out, args: {"other": g * args["other"]}})
    result = backward(g, values, np.array([1.0, 10.0]), [wrong])
    np.testing.assert_array_equal(result.grads["b"], [5.0, 70.0])
    np.testing.assert_array_equal(result.grads["a"], [5.0, 70.0])  # the catalogue's: g * other
    assert result.sources["c"] == {"other": "case", "input": "catalogue"}


def test_the_first_rule_set_that_answers_wins() -> None:
    g = _mul_graph()
    values = forward(g, {"a": np.array([1.0, 2.0]), "b": np.array([5.0, 7.0])})
    first = RuleSet("case", {"mul": lambda g, out, args: {"input": g * 0 + 1.0, "other": None}})
    second = RuleSet(
        "module m", {"mul": lambda g, out, args: {"input": g * 0 + 2.0, "other": g * 0 + 3.0}}
    )
    result = backward(g, values, np.ones(2), [first, second])
    np.testing.assert_array_equal(result.grads["a"], [1.0, 1.0])
    np.testing.assert_array_equal(result.grads["b"], [3.0, 3.0])
    assert result.sources["c"] == {"input": "case", "other": "module m"}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"input": np.ones((2, 2))}, r"returned shape \(2, 2\), the operand's is \(2,\)"),
        (
            {"input": np.ones(2, dtype=np.float32)},
            r"returned dtype float32, the operand's is float64",
        ),
        ({"input": np.ones(2, dtype=np.int64)}, r"returned dtype int64"),
        ({"input": "text"}, r"returned str, not numbers"),
        ({"weight": np.ones(2)}, r"returned a gradient for 'weight', which mul does not have"),
        ([np.ones(2)], r"returned list; a rule returns a dict"),
    ],
)
def test_a_user_rule_is_held_to_its_operand_shape_and_dtype(answer: object, message: str) -> None:
    g = _mul_graph()
    values = forward(g, {"a": np.ones(2), "b": np.ones(2)})
    with pytest.raises(RuleError, match=message) as info:
        backward(g, values, np.ones(2), [RuleSet("case", {"mul": lambda g, out, args: answer})])
    assert info.value.user and info.value.node == "c"


def test_a_user_rule_that_raises_is_named_with_the_shapes() -> None:
    g = _mul_graph()
    values = forward(g, {"a": np.ones(2), "b": np.ones(2)})

    def broken(g: object, out: object, args: dict[str, object]) -> object:
        raise ValueError("boom")

    with pytest.raises(
        RuleError,
        match=r"node 'c' \(mul\): the module m rule raised ValueError at \S*test_engine.py:\d+: "
        r"boom \(shapes: grad \(2,\), out \(2,\), input \(2,\), other \(2,\)\)",
    ):
        backward(g, values, np.ones(2), [RuleSet("module m", {"mul": broken})])


def test_a_user_rule_cannot_change_the_runs_arrays() -> None:
    g = _mul_graph()
    a = np.array([1.0, 2.0])
    values = forward(g, {"a": a, "b": np.array([3.0, 4.0])})

    def vandal(g: np.ndarray, out: np.ndarray, args: dict[str, np.ndarray]) -> dict[str, object]:
        args["input"][:] = 100.0
        g[:] = 100.0
        return {}

    result = backward(g, values, np.ones(2), [RuleSet("module m", {"mul": vandal})])
    np.testing.assert_array_equal(values["a"], [1.0, 2.0])
    np.testing.assert_array_equal(result.grads["a"], [3.0, 4.0])


def test_a_catalogue_rule_returning_the_wrong_count_is_named() -> None:
    from runner.engine import apply_vjp

    with pytest.raises(
        RuleError,
        match=r"node 'c': the rule for mul returned 1 gradients, "
        r"expected 2 \(one per operand: input, other\)",
    ):
        apply_vjp(
            REGISTRY["mul"],
            lambda g, out, **kw: (g,),
            np.ones(2),
            np.ones(2),
            {"input": np.ones(2), "other": np.ones(2)},
            where="node 'c'",
        )


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


def test_torch_refusing_a_backward_is_an_error_at_that_node(tmp_path: object) -> None:
    """A backward kernel that raises after every forward ran (torch 2.13's group_norm with a
    bias and no weight: "tensor does not have a device") is found by differentiating each node
    alone and reported at that node's file:line:col, not as a bare RuntimeError."""
    from pathlib import Path

    from runner.execute import execute
    from runner.loader import load

    path = Path(str(tmp_path)) / "case.yaml"
    path.write_text(
        "inputs:\n  x: {random: normal, shape: [1, 2], seed: 1}\n"
        "  b: {random: normal, shape: [2], seed: 2}\n"
        "graph:\n  h: x * 2.0\n  y: F.group_norm(h, 1, bias=b)\n  z: sum(y)\n"
    )
    case = load([str(path)]).cases[0]
    result = execute(case)
    assert result.status == "error"
    (message,) = result.messages
    assert message.startswith(f"{case.locations['y']}: node 'y': torch's backward of group_norm")
    assert "tensor does not have a device" in message


def test_a_value_in_the_wrong_precision_fails_even_when_the_numbers_agree(tmp_path: object) -> None:
    import dataclasses
    from pathlib import Path

    from runner.execute import execute
    from runner.loader import load

    path = Path(str(tmp_path)) / "case.yaml"
    path.write_text("dtype: float32\ninputs: {a: [1.0, 2.0]}\ngraph:\n  c: exp(a)\n")
    case = load([str(path)]).cases[0]
    node = case.graph.node("c")
    in_float64 = dataclasses.replace(
        node.op, forward=lambda input: np.exp(input.astype(np.float64))
    )
    object.__setattr__(node, "op", in_float64)
    result = execute(case)
    assert result.status == "failed"
    value = next(t for t in result.tensors if (t.tensor, t.kind) == ("c", "value"))
    assert value.comparisons[0].problem == "dtype float64 vs float32"


def test_a_catalogue_rule_that_refuses_says_so_as_torch_does(tmp_path: object) -> None:
    """qr with mode='complete' and more rows than columns has no gradient in torch; the
    catalogue's rule refuses the same: said as a refusal of the catalogue's rule, located."""
    from pathlib import Path

    from runner.execute import execute
    from runner.loader import load

    path = Path(str(tmp_path)) / "case.yaml"
    path.write_text(
        "inputs:\n  A: {random: normal, shape: [4, 3], seed: 1}\n"
        "graph:\n  q: qr(A, mode='complete').Q\nupstream: {random: normal, seed: 2}\n"
    )
    case = load([str(path)]).cases[0]
    result = execute(case)
    assert result.status == "error"
    (message,) = result.messages
    assert message.startswith(f"{case.locations['q']}: node 'q': the catalogue's rule for qr ")
    assert "refuses: The QR decomposition is not differentiable" in message
