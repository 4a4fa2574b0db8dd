"""Integer inference, the second pass: an input written with integers only (``[0, 2, 1]``) and
used only where an op takes integers (`Param.integer`: gather's index, a class target) is
int64, as torch users write ``torch.tensor([0, 2, 1])``; anywhere else it is the case's float
dtype. It reads the uses one lowering recorded, so the graph is lowered once whatever the
inputs' dtypes turn out to be (a shape never depends on a dtype)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runner.diagnostics import Problem
from runner.dtypes import is_floating
from runner.expr import MASK_OPS
from runner.graph import Node, Ref
from runner.inputs import InputPlan, plan_input, written_as_integers
from runner.passes.lower import Lowered, Use
from runner.yaml_source import Document


@dataclass(frozen=True)
class Integers:
    """The inputs with their dtypes settled, the nodes that still stand (an input whose int64
    plan is refused fails, and the nodes computed from it with it), and the problems found."""

    inputs: Mapping[str, InputPlan]
    nodes: tuple[Node, ...]
    failed: frozenset[str]
    problems: tuple[Problem, ...]


def integer_uses(uses: tuple[Use, ...]) -> tuple[frozenset[str], dict[str, str]]:
    """The tensors used only in integer positions, and for every tensor used in one, the first
    such position (for messages)."""
    only: dict[str, bool] = {}
    first: dict[str, str] = {}
    for use in uses:
        only[use.tensor] = only.get(use.tensor, True) and use.integer
        if use.integer:
            first.setdefault(use.tensor, use.where)
    return frozenset(name for name, yes in only.items() if yes), first


def settle_integers(lowered: Lowered, doc: Document, case_dtype: str) -> Integers:
    """Plan as int64 each input written with integers and used only as integers; an input
    written with integers and used both as integers and as data is refused as ambiguous."""
    only, first = integer_uses(lowered.uses)
    inputs = dict(lowered.inputs)
    problems: list[Problem] = []
    failed = set(lowered.failed)
    for name, plan in lowered.inputs.items():
        if not written_as_integers(plan.spec) or name not in first:
            continue
        if name not in only:
            problems.append(
                doc.problem(
                    ("inputs", name),
                    f"input '{name}' is written with integers and used both as integers "
                    f"({first[name]}) and as data elsewhere, so its dtype is ambiguous: write it "
                    "as {values: ..., dtype: int64} or with decimal points",
                )
            )
            continue
        planned, refused = plan_input(name, plan.spec, case_dtype, as_int64=True)
        problems += [doc.problem(("inputs", name), message) for message in refused]
        if refused:
            del inputs[name]
            failed.add(name)
        else:
            inputs[name] = planned
    nodes = _standing(lowered.nodes, failed) if len(failed) > len(lowered.failed) else lowered.nodes
    return Integers(inputs, nodes, frozenset(failed), tuple(problems))


def _standing(nodes: tuple[Node, ...], failed: set[str]) -> tuple[Node, ...]:
    """The nodes not computed from a failed name; the failed ones are added to ``failed``."""
    kept = []
    for node in nodes:
        refs = [
            a
            for arg in node.args.values()
            for a in (arg if isinstance(arg, list) else [arg])
            if isinstance(a, Ref)
        ]
        if any(r.name in failed for r in refs):
            failed.add(node.name)
        else:
            kept.append(node)
    return tuple(kept)


def known_dtype(name: str, inputs: Mapping[str, InputPlan], ops: Mapping[str, str]) -> str | None:
    """What is known statically of a tensor's dtype: an input's planned dtype, "bool" for a
    node of a comparison or logical op; None when it is not known before the forward runs (a
    node that requires grad is floating, but `settle_requires` refuses it in an integer
    position already)."""
    if name in inputs:
        # One written with integers but planned floating is refused as ambiguous already.
        plan = inputs[name]
        return None if written_as_integers(plan.spec) else plan.dtype
    return "bool" if ops.get(name) in MASK_OPS else None


def refuse_non_integers(
    uses: tuple[Use, ...],
    inputs: Mapping[str, InputPlan],
    nodes: tuple[Node, ...],
    doc: Document,
) -> tuple[Problem, ...]:
    """An operand where an op takes integers (`Use.integer`) whose dtype is known to be bool or
    floating is refused here, at its use, rather than by the forward (torch: "tensors used as
    indices must be long, int, byte or bool tensors"; a bool mask: `Param.mask_refused`)."""
    ops = {node.name: node.op.name for node in nodes}
    problems = []
    for use in uses:
        if not use.integer:
            continue
        dtype = known_dtype(use.tensor, inputs, ops)
        if dtype is None or not (dtype == "bool" or is_floating(dtype)):
            continue
        what = f"'{use.tensor}'" if "#" not in use.tensor else "the tensor given"
        if dtype == "bool" and use.mask_refused:
            message = use.mask_refused
        elif dtype != "bool" and use.float_refused:
            message = f"{use.float_refused}, got {what} of dtype {dtype}"
        else:
            message = f"{use.where} takes an integer tensor, got {what} of dtype {dtype}"
        problems.append(doc.problem(use.path, message, use.col))
    return tuple(problems)
