"""From a validated case model to a runnable `CompiledCase`: a pipeline of passes
(`runner.passes`), each a function from one typed result to the next. Every problem is collected
with its YAML location; no array is made here. The compiler names no op: what it must know of
one is data on its `Op` and `Param`s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.composed import define_ops
from runner.diagnostics import CaseInvalid
from runner.graph import Graph
from runner.inputs import InputPlan
from runner.ops.spec import Op
from runner.passes.integers import refuse_non_integers, settle_integers
from runner.passes.lower import lower_case
from runner.passes.requires import settle_requires
from runner.passes.resolve import case_output, resolve
from runner.rules import RuleSet
from runner.rules.case import compile_rules
from runner.yaml_source import Document
from schemas.case import Case


@dataclass(frozen=True)
class CompiledCase:
    name: str
    file: str
    line: int
    model: Case
    inputs: dict[str, InputPlan]
    graph: Graph
    checks: tuple[str, ...]  # names whose gradients are compared
    values: tuple[str, ...]  # nodes whose forward values are compared
    locations: dict[str, str]  # node -> file:line:col of its expression
    rules: RuleSet | None = None  # the case's own rules (source "case")
    # ("value" | "grad", name) -> file:line:col of its `expect` entry
    expect_locations: dict[tuple[str, str], str] = field(default_factory=dict)


def compile_case(
    case: Case,
    doc: Document,
    name: str,
    line: int,
    quiet: frozenset[str] = frozenset(),
    ops: Mapping[str, Op] | None = None,
) -> CompiledCase:
    """Raises `CaseInvalid` with every problem found. Names in ``quiet`` were reported already
    (by validation): their uses are not reported again. ``ops``: the ops of the RULES modules
    in force (`runner.composed.module_op`), which the case may call besides the catalogue's."""
    local, op_problems = define_ops(case.ops, doc, ops or {})
    refused = frozenset(n for n in case.ops if n not in local)
    lowered = lower_case(case, doc, local, quiet | refused)
    typed = settle_integers(lowered, doc, case.dtype)
    settled = settle_requires(typed.inputs, typed.nodes, lowered.uses, doc)
    refused_dtypes = refuse_non_integers(lowered.uses, settled.inputs, typed.nodes, doc)
    graph = Graph(typed.nodes, case_output(case), dict(lowered.shapes), dict(settled.requires_grad))
    resolved = resolve(case, doc, graph, settled.inputs, typed.failed)
    problems = [
        *op_problems,
        *lowered.problems,
        *typed.problems,
        *settled.problems,
        *refused_dtypes,
        *resolved.problems,
    ]
    # Reachability is judged for rules only in an otherwise valid graph.
    reached = None if problems else resolved.reached
    rule_set, rule_problems = compile_rules(
        case.rules, doc, graph.nodes, graph.requires_grad, reached, frozenset(local)
    )
    problems += rule_problems
    if problems or resolved.output is None:
        # Without problems of its own, the case failed only through names already reported
        # (``quiet``).
        assert problems or quiet, "a case refused without a problem to show"
        raise CaseInvalid(problems)
    return CompiledCase(
        name=name,
        file=doc.file,
        line=line,
        model=case,
        inputs=dict(settled.inputs),
        graph=graph,
        checks=resolved.checks,
        values=resolved.values,
        locations=dict(lowered.locations),
        rules=rule_set,
        expect_locations={
            (kind, name): str(doc.where(("expect", kind, name)))
            for kind, given in (("value", case.expect.value), ("grad", case.expect.grad))
            for name in given
        },
    )
