"""Resolution, the last pass: the case's ``output``, ``upstream``, ``check`` and ``expect``
against the settled graph. It runs even when earlier passes found problems, so a file's problems
are reported together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runner.diagnostics import Problem, did_you_mean
from runner.graph import Graph
from runner.inputs import InputPlan
from runner.yaml_source import Document, Path
from schemas.case import Case, RandomUpstream, literal_shape


@dataclass(frozen=True)
class Resolved:
    """What a run compares: the output (None when it was refused), the names whose gradients
    are checked, the nodes whose values are, what the output's gradient reaches, and the
    problems found."""

    output: str | None
    checks: tuple[str, ...]
    values: tuple[str, ...]
    reached: frozenset[str] | None  # None when the output was refused
    problems: tuple[Problem, ...]


def case_output(case: Case) -> str:
    """The node a case differentiates: ``output``, else the graph's last entry."""
    return case.output or list(case.graph)[-1]


def resolve(
    case: Case,
    doc: Document,
    graph: Graph,
    inputs: Mapping[str, InputPlan],
    failed: frozenset[str],
) -> Resolved:
    """Check ``output`` (a node that depends on an input requiring grad), ``upstream`` (a
    number, or the output's shape), ``check`` and ``expect`` (known names, gradients that are
    reached, the shapes of the values given). ``graph.output`` is `case_output`."""
    named = [n.name for n in graph.nodes if n.named]
    problems: list[Problem] = []
    output = _output(case, doc, graph, named, failed, problems)
    reached = graph.reaching() if output is not None else None
    if output is not None and not isinstance(case.upstream, RandomUpstream):
        up_shape, out_shape = literal_shape(case.upstream), graph.shapes[output]
        if up_shape != () and up_shape != out_shape:
            problems.append(
                doc.problem(
                    ("upstream",),
                    f"upstream has shape {up_shape} but output '{output}' has shape "
                    f"{out_shape} (a number fills any shape)",
                )
            )
    known = [*inputs, *named]
    checks = _checks(case, doc, graph, known, reached, failed, problems)
    _expect(case, doc, graph, known, reached, failed, problems)
    if output is None or problems:
        return Resolved(output, checks, (), reached, tuple(problems))
    order = [n.name for n in graph.nodes]
    upto = set(order[: order.index(output) + 1])
    # An explicit check names exactly what is compared; by default every named node's value
    # up to the output is, as the notebook printed them.
    values = tuple(n for n in named if (n in checks if case.check is not None else n in upto))
    return Resolved(output, checks, values, reached, ())


def _output(
    case: Case,
    doc: Document,
    graph: Graph,
    named: list[str],
    failed: frozenset[str],
    problems: list[Problem],
) -> str | None:
    output = graph.output
    if output in failed:
        return None
    if output not in named:
        problems.append(
            doc.problem(
                ("output",),
                f"output '{output}' is not a node of graph{did_you_mean(output, named)}",
            )
        )
        return None
    if not graph.requires_grad[output]:
        problems.append(
            doc.problem(
                ("output",) if case.output else ("graph", output),
                f"output '{output}' does not depend on any input that requires grad; "
                "there is nothing to differentiate",
            )
        )
        return None
    return output


def _why_no_grad(graph: Graph, name: str) -> str:
    if not graph.requires_grad[name]:
        return "an integer or bool tensor, requires_grad: false, or computed from those"
    return f"the output '{graph.output}' does not depend on it"


def _checks(
    case: Case,
    doc: Document,
    graph: Graph,
    known: list[str],
    reached: frozenset[str] | None,
    failed: frozenset[str],
    problems: list[Problem],
) -> tuple[str, ...]:
    if case.check is None:
        return tuple(n for n in known if reached is not None and n in reached)
    checks = tuple(case.check)
    for i, name in enumerate(checks):
        if name in failed:
            continue
        if name not in known:
            problems.append(
                doc.problem(
                    ("check", i),
                    f"check names '{name}', which is neither an input nor a node"
                    f"{did_you_mean(name, known)}",
                )
            )
        elif reached is not None and name not in reached:
            why = _why_no_grad(graph, name)
            problems.append(doc.problem(("check", i), f"'{name}' never gets a gradient ({why})"))
    return checks


def _expect(
    case: Case,
    doc: Document,
    graph: Graph,
    known: list[str],
    reached: frozenset[str] | None,
    failed: frozenset[str],
    problems: list[Problem],
) -> None:
    for kind, table in (("value", case.expect.value), ("grad", case.expect.grad)):
        for name, literal in table.items():
            where: Path = ("expect", kind, name)
            if name in failed:
                continue
            if name not in known:
                problems.append(
                    doc.problem(
                        where,
                        f"expect.{kind} names '{name}', which is neither an input nor a node"
                        f"{did_you_mean(name, known)}",
                    )
                )
            elif kind == "grad" and reached is not None and name not in reached:
                why = _why_no_grad(graph, name)
                problems.append(
                    doc.problem(
                        where, f"expect.grad names '{name}', which never gets a gradient ({why})"
                    )
                )
            elif literal_shape(literal) != graph.shapes[name]:
                problems.append(
                    doc.problem(
                        where,
                        f"expected {kind} of '{name}' has shape {literal_shape(literal)}, but "
                        f"'{name}' has shape {graph.shapes[name]}",
                    )
                )
