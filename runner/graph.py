"""The compiled graph a case runs: validated, names resolved, shapes inferred.

Both sides (manual and torch) walk the same `Graph`, so they cannot disagree about the
structure, only about values. A `Graph` is built by `runner.compile` from a validated case model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.ops.spec import Op, Shape


@dataclass(frozen=True)
class Ref:
    """An operand that names an input or an earlier node."""

    name: str


@dataclass(frozen=True)
class Node:
    name: str
    op: Op
    # Bound arguments by parameter name: Ref, a Python number (a literal operand), a list of
    # those (list parameters), or a plain attribute value.
    args: dict[str, Any]
    shape: Shape
    # Declared in the case (checked by default), as opposed to an anonymous sub-expression.
    named: bool = True
    # The expression's text (for anonymous nodes, the sub-expression's), shown in reports.
    text: str = ""

    def bind(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments with every `Ref` replaced by its value in ``env`` (arrays on the manual
        side, tensors on the torch side)."""

        def resolve(arg: Any) -> Any:
            if isinstance(arg, Ref):
                return env[arg.name]
            if isinstance(arg, list):
                return [resolve(a) for a in arg]
            return arg

        return {k: resolve(v) for k, v in self.args.items()}


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    output: str
    # Every input and node: its static shape, and whether a gradient reaches it (float inputs
    # that require grad, and nodes with such an operand in a differentiable position).
    shapes: dict[str, Shape]
    requires_grad: dict[str, bool]
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({n.name: i for i, n in enumerate(self.nodes)})

    def index(self, name: str) -> int:
        return self._index[name]

    def node(self, name: str) -> Node:
        return self.nodes[self._index[name]]

    def reaching(self, start: str | None = None) -> frozenset[str]:
        """The inputs and nodes a gradient from ``start`` (default: the output) reaches; torch
        leaves the others' .grad as None. ``start`` and, recursively, its differentiable operands
        that require grad; linear in the size of the graph."""
        start = self.output if start is None else start
        reached, todo = {start}, [start]
        while todo:
            name = todo.pop()
            if name not in self._index:
                continue
            for ref in differentiable_refs(self.nodes[self._index[name]]):
                if self.requires_grad[ref.name] and ref.name not in reached:
                    reached.add(ref.name)
                    todo.append(ref.name)
        return frozenset(reached)


def differentiable_refs(node: Node) -> list[Ref]:
    """The operands of ``node`` in positions its op differentiates (`Param.grad`), in order."""
    refs = []
    for p in node.op.tensor_params:
        if p.grad:
            arg = node.args[p.name]
            refs += [a for a in (arg if isinstance(arg, list) else [arg]) if isinstance(a, Ref)]
    return refs
