"""Requires-grad settling, the third pass: which inputs and nodes a gradient can reach (floating
inputs that require grad, and nodes with such an operand in a differentiable position), with
torch's refusal of a tensor that requires grad where an op cannot differentiate
(`Param.accepts_grad` false: cross_entropy's weight)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from runner.diagnostics import Problem
from runner.graph import Node, differentiable_refs
from runner.inputs import InputPlan
from runner.passes.lower import Use
from runner.yaml_source import Document


@dataclass(frozen=True)
class Requires:
    """The inputs (a float input used only where torch cannot differentiate no longer requires
    grad), whether each input and node requires grad, and the problems found."""

    inputs: Mapping[str, InputPlan]
    requires_grad: Mapping[str, bool]
    problems: tuple[Problem, ...]


def propagate(inputs: Mapping[str, InputPlan], nodes: tuple[Node, ...]) -> dict[str, bool]:
    """requires_grad of every input (its plan's) and node (any differentiable operand's), in
    one walk over the nodes in order."""
    requires = {name: plan.requires_grad for name, plan in inputs.items()}
    for node in nodes:
        requires[node.name] = any(requires[r.name] for r in differentiable_refs(node))
    return requires


def settle_requires(
    inputs: Mapping[str, InputPlan], nodes: tuple[Node, ...], uses: tuple[Use, ...], doc: Document
) -> Requires:
    """torch refuses a tensor that requires grad where an op cannot differentiate. A float input
    used only there stops requiring grad, as if the case said ``requires_grad: false``; anything
    else is reported at its first such use. Settling one changes no node: it was nowhere a
    differentiable operand."""
    requires = propagate(inputs, nodes)
    settled = dict(inputs)
    differentiated = {u.tensor for u in uses if u.differentiable}
    refused: dict[str, Use] = {}
    for use in uses:
        if not use.differentiable and not use.accepts_grad:
            refused.setdefault(use.tensor, use)
    problems = []
    for name, use in refused.items():
        if not requires.get(name):
            continue
        plan = settled.get(name)
        if plan and plan.spec_requires_grad is None and name not in differentiated:
            settled[name] = replace(plan, requires_grad=False)
            requires[name] = False
            continue
        problems.append(
            doc.problem(
                use.path,
                f"{use.where} is not differentiable, but '{name}' requires grad there (torch "
                "refuses it); pass a tensor that does not require grad (requires_grad: false)",
                use.col,
            )
        )
    return Requires(settled, requires, tuple(problems))
