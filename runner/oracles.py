"""Sources of values and gradients, by name: the manual side under test, the oracles it is
compared with (torch autograd, finite differences: `runner.numeric`), and the case's expected
values.

`execute` takes the oracles to compare as a parameter; nothing here imports torch until an
oracle runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.compare import Tolerance
from runner.engine import Backward, Result
from runner.graph import Graph, Node
from runner.ops.spec import Array
from runner.rules import RuleSet
from runner.unchecked import Unchecked
from schemas.report import Source

MANUAL, EXPECTED = "manual", "expected"


@dataclass(frozen=True)
class Oracle:
    """A reference source of values and gradients, by name.

    ``run(graph, inputs, upstream)`` computes every node's value and the gradients of the
    whole graph; ``node_vjp(node, args, grad)`` one node's gradients alone (per tensor
    parameter, see `runner.torch_side.node_vjp`), used to tell which rule is wrong.
    """

    name: str
    run: Callable[[Graph, Mapping[str, Array], Array], Result]
    node_vjp: Callable[[Node, Mapping[str, Any], Array], dict[str, Any]] | None = None
    # False: its forward values are the manual side's own (not compared).
    values: bool = True
    # The tolerance per case dtype when it is the reference of a comparison; None: the defaults
    # of `runner.compare`.
    tolerance: Mapping[str, Tolerance] | None = None
    # Where it computes ("cpu", "cuda:0"), for the report; None: numpy on the CPU.
    device: str | None = None
    # Why the oracle cannot compute a graph (an op it has no reference for), or None.
    refuses: Callable[[Graph], str | None] | None = None


def usable(graph: Graph, oracles: Sequence[Oracle]) -> tuple[list[Oracle], list[str]]:
    """The oracles that can compute ``graph``, and why each of the others cannot."""
    kept, refused = [], []
    for oracle in oracles:
        reason = oracle.refuses(graph) if oracle.refuses is not None else None
        if reason is None:
            kept.append(oracle)
        else:
            refused.append(reason)
    return kept, refused


def _torch_refuses(graph: Graph) -> str | None:
    """torch has no reference for a RULES module's op (nor for a case's op built on one)."""
    return next((n.op.no_torch for n in graph.nodes if n.op.no_torch), None)


def torch_oracle(device: str = "cpu") -> Oracle:
    """torch autograd on ``device``; torch is imported only when it runs."""

    def run(graph: Graph, inputs: Mapping[str, Array], upstream: Array) -> Result:
        from runner.torch_side import run_torch

        return run_torch(graph, inputs, upstream, device)

    def vjp(node: Node, args: Mapping[str, Any], grad: Array) -> dict[str, Any]:
        from runner.torch_side import node_vjp

        return node_vjp(node, args, grad, device)

    return Oracle("torch", run, vjp, refuses=_torch_refuses, device=device)


TORCH = torch_oracle()
# The names a case's `oracles` may list (schemas/case.py spells the same list).
ORACLE_NAMES = ("torch", "numeric")


def oracle_named(name: str) -> Oracle:
    """The oracle a case's ``oracles`` names; KeyError for another name."""
    if name == "torch":
        return TORCH
    if name == "numeric":
        from runner.numeric import NUMERIC

        return NUMERIC
    raise KeyError(name)


class Floors:
    """The round-off floor of every tensor, keyed by ("value" | "grad", tensor name), in the
    tensor's units (`runner.roundoff.tensor_floors`), computed once, on the first `get`.

    The floors cost another walk of the graph or two (the catalogue in float32 and float64, a
    signed backward for the computation's scales, torch again in float64 for a float32 case):
    as much as the case itself. They only ever widen a tolerance, so a comparison that agrees
    without its floor agrees with it: the comparisons ask for a floor only after failing
    without one (`runner.execute`), and a case whose tensors all agree never measures one.
    ``compute`` is bound to the arrays the case computed when it is set (`defer`), so a copy of
    the `Sources` with other manual gradients (a mutant's) shares the same floors."""

    def __init__(self, floors: Mapping[tuple[str, str], float] | None = None) -> None:
        self._floors: dict[tuple[str, str], Any] | None = None if floors is None else dict(floors)
        self._compute: Callable[[], Mapping[tuple[str, str], Any]] | None = None
        self._capped: Mapping[tuple[str, str], float] = {}

    def defer(
        self,
        compute: Callable[[], Mapping[tuple[str, str], float]],
        capped: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        """Measure the floors with ``compute`` when one is first asked for; ``capped`` is
        where it puts the measurements a cap held down (`runner.roundoff.floors`)."""
        self._floors, self._compute = None, compute
        self._capped = {} if capped is None else capped

    def capped(self, key: tuple[str, str]) -> float | None:
        """The measured floor of tensor ``key`` where `runner.roundoff.HALF_FLOOR_CAP` held its
        floor below it (the tensor is ill-conditioned in its half dtype), else None."""
        self.get(key)
        return self._capped.get(key)

    def get(self, key: tuple[str, str], default: float = 0.0) -> Any:
        """The floor of tensor ``key`` (measuring every floor on the first call): a number,
        or in half precision an array of one per element; else ``default``."""
        if self._floors is None:
            compute, self._compute = self._compute, None
            self._floors = dict(compute()) if compute is not None else {}
        return self._floors.get(key, default)

    @property
    def measured(self) -> bool:
        """Whether the floors were measured (or given), as opposed to still deferred."""
        return self._floors is not None


@dataclass(frozen=True)
class Sources:
    """Everything one case computed: the inputs and upstream gradient it made, the manual
    backward walk, and per source name its values and gradients by tensor name."""

    inputs: dict[str, Array]
    upstream: Array
    manual: Backward
    rule_sets: list[RuleSet] = field(default_factory=list)  # in force, in the order asked
    values: dict[Source, dict[str, Array]] = field(default_factory=dict)
    grads: dict[Source, dict[str, Array]] = field(default_factory=dict)
    # An oracle's gradients along one random direction, and the tensors it declined (reasons).
    projections: dict[Source, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[Source, dict[str, str]] = field(default_factory=dict)
    # The arrays of a probe that found a fault: its upstream, the operands, both gradients.
    probe: dict[str, Any] = field(default_factory=dict)
    # The round-off floor of each tensor, by ("value" | "grad", name): see runner.roundoff;
    # measured on first use (a comparison that agrees without one never needs it).
    floors: Floors = field(default_factory=lambda: Floors())
    # Gradient elements torch gives inconsistently, by tensor name (runner.unchecked).
    unchecked: dict[str, Unchecked] = field(default_factory=dict)
    # Per oracle, the elements of its whole gradients it declined (the numeric oracle at a
    # kink or a forward that is not finite), by tensor name.
    declined: dict[Source, dict[str, Unchecked]] = field(default_factory=dict)
