"""Rules written in a case file (``rules:``), validated against the case's graph and turned into
the `RuleSet` of source ``"case"``.

Validation refuses, each at its file:line:col: an op no node of the case uses, an argument the op
does not have (did-you-mean) or cannot differentiate, a rule for an argument that never gets a
gradient, a name the expression cannot see, and everything the rule language refuses
(`runner.rules.lang`). Nothing here runs a rule; `RuleSet.rules` does, when the engine asks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from runner.diagnostics import Problem, did_you_mean
from runner.engine import RuleError, describe_shapes
from runner.graph import Node, Ref
from runner.inputs import MAX_ELEMENTS
from runner.ops import REGISTRY
from runner.ops.meaning import suggest_op
from runner.ops.spec import Op
from runner.rules import CASE, RuleFn, RuleSet
from runner.rules.lang import RuleEvalError, RuleExpr, RuleLangError, evaluate, parse_rule
from runner.yaml_source import Document, Path
from schemas.case import ArgumentRules

FIXED_NAMES = ("grad", "out")
# For an op with several outputs: a gradient per output (None where unused), every output.
MULTI_NAMES = ("grads", "outs")


@dataclass(frozen=True)
class ArgumentRule:
    """The rule for one argument: one expression, or one per tensor of a list parameter."""

    op: str
    argument: str
    exprs: tuple[RuleExpr, ...]
    listed: bool  # written as a YAML list, one expression per tensor
    path: Path  # where it is in the case file
    doc: Document

    def where(self, i: int = 0, col: int = 0) -> str:
        path = (*self.path, i) if self.listed else self.path
        return f"{self.doc.where(path, col)}"

    def describe(self) -> str:
        texts = [e.text.strip() for e in self.exprs]
        return texts[0] if not self.listed else "[" + ", ".join(texts) + "]"

    def run(self, env: Mapping[str, Any]) -> Any:
        results = []
        for i, expr in enumerate(self.exprs):
            try:
                value = evaluate(expr, env, max_elements=MAX_ELEMENTS)
                if value is None:
                    raise RuleEvalError("evaluated to None; a rule gives the gradient (an array)")
                results.append(value)
            except RuleEvalError as exc:
                raise RuleError(
                    f"failed: {exc} ({describe_shapes(env)})",
                    user=True,
                    where=self.where(i, exc.col),
                    argument=self.argument,
                ) from None
        return results if self.listed else results[0]


def compile_rules(
    rules: Mapping[str, ArgumentRules],
    doc: Document,
    nodes: Sequence[Node],
    requires: Mapping[str, bool],
    reached: AbstractSet[str] | None,
    local: frozenset[str] = frozenset(),
) -> tuple[RuleSet | None, list[Problem]]:
    """The case's rule set (None when the case has no rules) and the problems found.

    ``reached``: the names a gradient from the output reaches, or None when the output itself
    was refused (then "never gets a gradient" is not judged). ``local``: the names of the ops
    the case may call besides the catalogue's (its own ``ops:``, RULES modules' ``OPS``); a
    rule for one of them replaces its whole VJP, as for a catalogue op.
    """
    problems: list[Problem] = []
    compiled: dict[str, list[ArgumentRule]] = {}
    used = {n.op.name for n in nodes}
    # A case's op is specialised per call site; every specialisation has the same parameters.
    own = {n.op.name: n.op for n in nodes if n.op.name in local}
    for op_name, table in rules.items():
        path: Path = ("rules", op_name)
        op = _rules_op(op_name, table, doc, used, own, local)
        if isinstance(op, Problem):
            problems.append(op)
            continue
        ops_nodes = [n for n in nodes if n.op.name == op_name]
        for argument, text in table.items():
            arg_path: Path = (*path, argument)
            problem = _argument_problem(op, argument, ops_nodes, requires, reached)
            if problem:
                problems.append(doc.problem(arg_path, problem, at_key=True))
                continue
            rule, found = _parse(op, argument, text, arg_path, doc)
            problems += found
            if rule is not None:
                compiled.setdefault(op_name, []).append(rule)
    if problems or not compiled:
        return None, problems
    return _rule_set(compiled), []


def _rules_op(
    op_name: str,
    table: ArgumentRules,
    doc: Document,
    used: set[str],
    own: Mapping[str, Op],
    local: frozenset[str],
) -> Op | Problem:
    """The op that ``rules.<op_name>`` gives rules for (the catalogue's, or the case's own
    ``own``), or the problem that refuses the whole table: an unknown op, an op no node of the
    case uses (a hidden one, getitem or index_tensor, as a catalogue one), or a table that gives
    no argument's rule."""
    path: Path = ("rules", op_name)
    op = REGISTRY.get(op_name) or own.get(op_name)
    if op is None and op_name in local:
        return doc.problem(path, _unused_op(op_name, used), at_key=True)
    if op is None:
        known = sorted(used | {o for o in REGISTRY if not REGISTRY[o].hidden} | local)
        return doc.problem(
            path, f"rules: unknown op '{op_name}'{suggest_op(op_name, known)}", at_key=True
        )
    if op_name not in used:
        return doc.problem(path, _unused_op(op_name, used), at_key=True)
    if not table:
        return doc.problem(
            path,
            f"rules.{op_name}: no argument's rule is given (rules give gradients for: "
            f"{', '.join(op.differentiable()) or 'none'})",
        )
    return op


def _unused_op(op_name: str, used: set[str]) -> str:
    message = (
        f"rules: no node of this case uses op '{op_name}' (its ops: {', '.join(sorted(used))})"
    )
    overload = REGISTRY[op_name].tensor_overload if op_name in REGISTRY else ""
    if overload in used:
        message += (
            f"; {op_name}(a, b) of two tensors is the op '{overload}': write the rule under "
            f"'{overload}'"
        )
    return message


def _argument_problem(
    op: Op,
    argument: str,
    nodes: Sequence[Node],
    requires: Mapping[str, bool],
    reached: AbstractSet[str] | None,
) -> str:
    params = {p.name: p for p in op.params}
    differentiable = ", ".join(op.differentiable()) or "none"
    p = params.get(argument)
    if p is None:
        return (
            f"rules.{op.name}: {op.name} has no argument '{argument}'"
            f"{did_you_mean(argument, params)} ({op.signature()}; rules give gradients for: "
            f"{differentiable})"
        )
    if not p.is_tensor:
        return (
            f"rules.{op.name}: '{argument}' is a parameter of {op.name}, not a tensor argument; "
            f"rules give gradients for: {differentiable}"
        )
    if not p.grad:
        return (
            f"rules.{op.name}: torch does not differentiate {op.name}'s '{argument}'; rules give "
            f"gradients for: {differentiable}"
        )
    if reached is None:
        return ""
    if not any(node.name in reached for node in nodes):
        return (
            f"rules.{op.name}: the rule for '{argument}' would never run: the output's gradient "
            f"reaches no node of {op.name} (the output does not depend on them)"
        )
    for node in nodes:
        if node.name not in reached:
            continue
        arg = node.args[argument]
        for operand in arg if isinstance(arg, list) else [arg]:
            if isinstance(operand, Ref) and requires.get(operand.name):
                return ""
    return (
        f"rules.{op.name}: the rule for '{argument}' would never run: no node of {op.name} that "
        f"the output's gradient reaches has an '{argument}' that requires grad (a number, an "
        "integer or bool tensor, requires_grad: false, or computed from those)"
    )


def _parse(
    op: Op, argument: str, text: str | list[str], path: Path, doc: Document
) -> tuple[ArgumentRule | None, list[Problem]]:
    listed = isinstance(text, list)
    param = next(p for p in op.params if p.name == argument)
    if listed and param.kind not in ("tensors", "tensors*"):
        return None, [
            doc.problem(
                path,
                f"rules.{op.name}.{argument}: a list of expressions is only for a list "
                "parameter (such as cat's 'tensors'); give one expression",
            )
        ]
    texts = text if isinstance(text, list) else [text]
    allowed = [*FIXED_NAMES, *(MULTI_NAMES if op.outputs else ()), *(p.name for p in op.params)]
    problems: list[Problem] = []
    exprs = []
    for i, source in enumerate(texts):
        where: Path = (*path, i) if listed else path
        try:
            expr = parse_rule(source)
        except RuleLangError as exc:
            problems.append(doc.problem(where, f"rules.{op.name}.{argument}: {exc}", exc.col))
            continue
        for name, col in expr.names:
            if name not in allowed:
                problems.append(
                    doc.problem(
                        where,
                        f"rules.{op.name}.{argument}: unknown name '{name}'"
                        f"{did_you_mean(name, allowed)} (a rule sees {', '.join(allowed)} "
                        "and np)",
                        col,
                    )
                )
        exprs.append(expr)
    if problems:
        return None, problems
    return ArgumentRule(op.name, argument, tuple(exprs), listed, path, doc), []


def _rule_set(compiled: Mapping[str, list[ArgumentRule]]) -> RuleSet:
    def make(rules: list[ArgumentRule]) -> RuleFn:
        def rule(grad: Any, out: Any, args: dict[str, Any]) -> dict[str, Any]:
            # A call of one output of an op that may have several (max(x)) has it alone.
            env = {"grads": (grad,), "outs": (out,), **args, "grad": grad, "out": out}
            return {r.argument: r.run(env) for r in rules}

        return rule

    where = {f"{op}.{r.argument}": r.where() for op, rs in compiled.items() for r in rs}
    texts = {f"{op}.{r.argument}": r.describe() for op, rs in compiled.items() for r in rs}
    return RuleSet(CASE, {op: make(rs) for op, rs in compiled.items()}, where, texts)
