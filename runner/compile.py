"""From a validated case model to a runnable `CompiledCase`: names resolved, ops bound to their
signatures, shapes inferred statically. Every problem is collected with its YAML location; no
array is made here."""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runner.binding import KIND_TEXT, check_attr, is_int, label, match, resolve_overload
from runner.composed import Definition, Local, define_ops, specialise, substitute
from runner.diagnostics import CaseInvalid, Problem, did_you_mean
from runner.expr import Call, Const, Expr, ExprError, ListOf, Name, parse
from runner.graph import Graph, Node, Ref
from runner.inputs import MAX_ELEMENTS, InputPlan, plan_input, written_as_integers
from runner.ops import REGISTRY, public_ops
from runner.ops.meaning import suggest_op
from runner.ops.spec import Op, Param, Shape, ShapeError
from runner.rules import RuleSet
from runner.rules.case import compile_rules
from runner.yaml_source import Document, Path
from schemas.case import Case, LongFormNode, RandomUpstream, literal_shape


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


class _Compiler:
    def __init__(
        self,
        case: Case,
        doc: Document,
        as_int64: frozenset[str] = frozenset(),
        local: Local | None = None,
    ) -> None:
        self.case = case
        self.doc = doc
        # Ops besides the catalogue's: the case's own (`Definition`s) and RULES modules' ops.
        self.local: Local = local or {}
        # Integer-written literals used only as indices or class targets (see Param.integer).
        self.as_int64 = as_int64
        self.integer_only: dict[str, bool] = {}
        self.integer_use: dict[str, str] = {}  # name -> the first integer position it fills
        self.problems: list[Problem] = []
        self.shapes: dict[str, Shape] = {}
        self.requires: dict[str, bool] = {}
        self.nodes: list[Node] = []
        self.inputs: dict[str, InputPlan] = {}
        self.locations: dict[str, str] = {}  # node -> file:line:col of its expression
        self.failed: set[str] = set()  # nodes already reported: their users stay quiet
        # Where each tensor is used as an operand torch cannot differentiate (a class weight,
        # an index), and which tensors are used as differentiable operands.
        self.nondiff_uses: dict[str, tuple[Path, int, str]] = {}
        self.diff_uses: set[str] = set()

    def problem(
        self, path: Path, message: str, offset: int | None = None, at_key: bool = False
    ) -> None:
        self.problems.append(self.doc.problem(path, message, offset, at_key))

    # --- inputs --------------------------------------------------------------------------
    def compile_inputs(self) -> None:
        for name, spec in self.case.inputs.items():
            path: Path = ("inputs", name)
            if not name.isidentifier() or keyword.iskeyword(name):
                self.problem(path, f"input name '{name}' is not a valid identifier", at_key=True)
                self.failed.add(name)
                continue
            plan, problems = plan_input(name, spec, self.case.dtype, name in self.as_int64)
            for message in problems:
                self.problem(path, message)
            if problems:
                self.failed.add(name)
                continue
            self.inputs[name] = plan
            self.shapes[name] = plan.shape
            self.requires[name] = plan.requires_grad

    # --- graph ---------------------------------------------------------------------------
    def compile_graph(self) -> None:
        for name, entry in self.case.graph.items():
            if name in self.inputs:
                self.problem(
                    ("graph", name), f"node '{name}' has the name of an input; pick another name"
                )
            elif not self.compile_node(name, entry):
                # Reported here, or where a name it uses failed: its users stay quiet.
                self.shapes.pop(name, None)
                self.failed.add(name)

    def compile_node(self, name: str, entry: str | LongFormNode) -> bool:
        path: Path = ("graph", name)
        if not name.isidentifier() or keyword.iskeyword(name):
            self.problem(path, f"node name '{name}' is not a valid identifier", at_key=True)
            return False
        try:
            expr = (
                self.long_form(entry, path)
                if isinstance(entry, LongFormNode)
                else parse(entry, frozenset(self.shapes))
            )
        except ExprError as exc:
            self.problem(path, str(exc), exc.col)
            return False
        if isinstance(expr, Name):  # `d: c` is a copy, so d gets a gradient of its own
            expr = Call("clone", (expr,), (), expr.col)
        if not isinstance(expr, Call):
            self.problem(
                path,
                f"node '{name}' must apply an op; put constants under inputs with "
                "requires_grad: false",
            )
            return False
        try:
            return self.lower(expr, path, name, [0]) is not None
        except RecursionError:
            self.problem(path, "expression nests too deeply; split it into named nodes")
            return False

    def long_form(self, entry: LongFormNode, path: Path) -> Expr:
        op = REGISTRY.get(entry.op)
        # Strings are names, except where a parameter takes strings (einsum equation, padding).
        str_params = {p.name for p in op.params if p.kind == "str" or p.choices} if op else set()
        positional = [p.name for p in op.params] if op else []

        def term(value: Any, param: str | None, where: Path) -> Expr:
            if isinstance(value, str) and param not in str_params:
                return Name(value, 0)
            if isinstance(value, list) and any(isinstance(v, str) for v in value):
                return ListOf(tuple(term(v, None, where) for v in value), 0)
            return Const(value, 0)

        args = tuple(
            term(a, positional[i] if i < len(positional) else None, (*path, "args", i))
            for i, a in enumerate(entry.args)
        )
        kwargs = tuple((k, Const(v, 0), 0) for k, v in entry.kwargs.items())
        return Call(entry.op, args, kwargs, 0)

    def lower(self, expr: Expr, path: Path, target: str | None, counter: list[int]) -> Any:
        """Emit nodes for ``expr``; returns the operand it yields (Ref, number, or None when an
        error was reported). ``target`` names the outermost call's node."""
        if isinstance(expr, Name):
            if expr.id in self.failed:
                return None
            if expr.id not in self.shapes:
                known = list(self.inputs) + [n.name for n in self.nodes if n.named]
                later = expr.id in self.case.graph
                hint = (
                    " (it is defined later in graph: order matters)"
                    if later
                    else did_you_mean(expr.id, known)
                )
                self.problem(path, f"unknown name '{expr.id}'{hint}", expr.col)
                return None
            return Ref(expr.id)
        if isinstance(expr, Const):
            if isinstance(expr.value, float) or is_int(expr.value):
                return expr.value
            self.problem(
                path, f"expected a tensor operand, got the literal {expr.value!r}", expr.col
            )
            return None
        if isinstance(expr, ListOf):
            self.problem(
                path,
                "a list of operands is only allowed where the op takes one (e.g. cat([a, b]))",
                expr.col,
            )
            return None
        op = REGISTRY.get(expr.op)
        if op is None and expr.op in self.failed:  # a case's op refused where it is defined
            return None
        defined = self.local.get(expr.op) if op is None else None
        if isinstance(defined, Definition):
            return self.lower_composed(defined, expr, path, target, counter)
        op = op or defined
        if op is None or (op.hidden and not expr.via and expr.op != "clone"):
            names = [o.name for o in public_ops()] + list(self.local)
            hint = suggest_op(expr.op, names)
            if hint.startswith(" (`gradcase ops`"):  # no close name: maybe a module's op
                hint += (
                    "; an op of a RULES module's OPS is known when that module is given "
                    "(--rules, or [tool.gradcase] rules)"
                )
            self.problem(path, f"unknown op '{expr.op}'{hint}", expr.col)
            return None
        op = resolve_overload(op, expr)
        args = self.bind(op, expr, path, counter)
        if args is None:
            return None
        return self.emit(op, args, expr, path, target, counter)

    def lower_composed(
        self, defn: Definition, expr: Call, path: Path, target: str | None, counter: list[int]
    ) -> Ref | None:
        """A call of a case's op: its forward lowered with this call's attribute values and
        operand shapes (by a compiler of its own, so the body's nodes stay inside the op), and
        one node of the op specialised to that body. A problem of the body (a shape that does
        not fit) is reported here, at the call, naming where in the forward it arose."""
        args = self.bind(defn.signature, expr, path, counter)
        if args is None:
            return None
        tensors = [p.name for p in defn.signature.tensor_params]
        attrs = {p.name: args[p.name] for p in defn.signature.params if not p.is_tensor}
        sub = _Compiler(self.case, self.doc, local=self.local)
        sub.shapes = {t: self.shapes[args[t].name] for t in tensors}
        sub.requires = {t: self.requires[args[t].name] for t in tensors}
        body = substitute(defn.body, attrs)
        if isinstance(body, Name):
            body = Call("clone", (body,), (), body.col)
        try:
            out = sub.lower(body, defn.path, None, [0])
        except RecursionError:
            out = None
            sub.problem(defn.path, "the forward nests too deeply")
        who = label(defn.signature, expr)
        for found in sub.problems:
            self.problem(path, f"{who}: in its forward at {found.where}: {found.message}", expr.col)
        if out is None or sub.problems:
            return None
        params = tuple(
            replace(
                p,
                grad=p.name in sub.diff_uses,
                integer=bool(sub.integer_only.get(p.name)) and p.name in sub.integer_use,
            )
            if p.is_tensor
            else p
            for p in defn.signature.params
        )
        signature = replace(defn.signature, params=params)
        op = specialise(signature, tuple(sub.nodes), out.name, sub.shapes)
        return self.emit(op, args, expr, path, target, counter)

    def bind(self, op: Op, expr: Call, path: Path, counter: list[int]) -> dict[str, Any] | None:
        """Every parameter's value: operands lowered to `Ref`s or numbers, attributes checked
        against their kinds, defaults filled in. None when a problem was reported."""
        matched = match(op, expr)
        for message, col in matched.errors:
            self.problem(path, message, col)
        bound: dict[str, Any] = {}
        for p in op.params:
            if p.name not in matched.given:
                bound[p.name] = p.default
                continue
            bound[p.name] = self.argument(
                op, p, matched.given[p.name], path, counter, label(op, expr)
            )
        if matched.errors or any(v is _BAD for v in bound.values()):
            return None
        return bound

    def argument(
        self, op: Op, p: Param, value: Expr, path: Path, counter: list[int], who: str
    ) -> Any:
        if p.kind in ("tensors", "tensors*"):
            items: tuple[Expr, ...]
            if isinstance(value, ListOf):
                items = value.items
            elif isinstance(value, Const) and isinstance(value.value, list):
                items = tuple(Const(v, value.col) for v in value.value)
            else:
                self.problem(
                    path, f"{who}: '{p.name}' takes a list of tensors, e.g. [a, b]", value.col
                )
                return _BAD
            if not items:
                self.problem(path, f"{who}: '{p.name}' needs at least one tensor", value.col)
                return _BAD
            if op.family != "elementwise" and any(isinstance(i, Const) for i in items):
                self.problem(
                    path,
                    f"{who}: '{p.name}' takes tensors, not literals; declare "
                    "constants under inputs",
                    value.col,
                )
                return _BAD
            out = [self.lower(i, path, None, counter) for i in items]
            return _BAD if any(o is None for o in out) else out
        if p.is_tensor:
            if p.kind == "tensor?" and isinstance(value, Const) and value.value is None:
                return None
            if isinstance(value, Const) and op.family != "elementwise":
                # torch takes a Python number only in elementwise ops; elsewhere the numpy and
                # torch sides would not even agree on its dtype.
                self.problem(
                    path,
                    f"{who}: '{p.name}' must be a tensor, not the literal {value.value!r}; "
                    "declare it under inputs (with requires_grad: false for a constant)",
                    value.col,
                )
                return _BAD
            operand = self.lower(value, path, None, counter)
            return _BAD if operand is None else operand
        if not isinstance(value, Const):
            self.problem(
                path,
                f"{who}: '{p.name}' must be a literal "
                f"({KIND_TEXT[p.kind]}), not a tensor expression",
                value.col,
            )
            return _BAD
        error = check_attr(p, value.value)
        if error:
            self.problem(path, f"{who}: '{p.name}' {error}", value.col)
            return _BAD
        return value.value

    def emit(
        self,
        op: Op,
        args: dict[str, Any],
        expr: Call,
        path: Path,
        target: str | None,
        counter: list[int],
    ) -> Ref | None:
        def shape_of(a: Any) -> Any:
            if isinstance(a, Ref):
                return self.shapes[a.name]
            if isinstance(a, list):
                return [shape_of(x) for x in a]
            return ()

        shape_args = {
            p.name: shape_of(args[p.name])
            if p.is_tensor and args[p.name] is not None
            else args[p.name]
            for p in op.params
        }
        where = label(op, expr)
        try:
            shape = tuple(op.shape(**shape_args))
        except ShapeError as exc:
            # Shape rules often name their op already ("matmul: (2, 3) @ ...").
            message = str(exc).removeprefix(f"{op.name}: ")
            self.problem(path, f"{where}: {message}", expr.col)
            return None
        except Exception as exc:  # a shape rule that crashes is a bug, but not the user's
            self.problem(
                path, f"{where}: could not infer the shape ({type(exc).__name__}: {exc})", expr.col
            )
            return None
        if target is None:
            counter[0] += 1
            name = f"{path[-1]}#{counter[0]}"
        else:
            name = target
        refs = []
        for p in op.tensor_params:
            for a in args[p.name] if isinstance(args[p.name], list) else [args[p.name]]:
                if isinstance(a, Ref):
                    integer = p.integer and not (
                        # a target shaped like the input holds class probabilities
                        op.name == "cross_entropy" and self.shapes[a.name] == shape_args["input"]
                    )
                    self.integer_only[a.name] = self.integer_only.get(a.name, True) and integer
                    if integer:
                        self.integer_use.setdefault(a.name, f"{where}: '{p.name}'")
                if isinstance(a, Ref) and p.grad:
                    refs.append(a)
                    self.diff_uses.add(a.name)
                elif isinstance(a, Ref) and not p.accepts_grad:
                    self.nondiff_uses.setdefault(a.name, (path, expr.col, f"{where}: '{p.name}'"))
        if math.prod(shape) > MAX_ELEMENTS:
            self.problem(
                path,
                f"{where}: the result would have shape {shape}, "
                f"{math.prod(shape)} elements (at most {MAX_ELEMENTS})",
                expr.col,
            )
            return None
        self.requires[name] = any(self.requires[r.name] for r in refs)
        self.shapes[name] = shape
        self.nodes.append(Node(name, op, args, shape, named=target is not None, text=expr.text))
        self.locations[name] = str(self.doc.where(path, expr.col))
        return Ref(name)

    def settle_nondifferentiable(self) -> None:
        """torch refuses a tensor that requires grad where an op cannot differentiate (e.g.
        cross_entropy's weight). A float input used only there stops requiring grad, as if the
        case said ``requires_grad: false``; anything else is reported."""
        for name, (path, col, where) in self.nondiff_uses.items():
            if not self.requires.get(name):
                continue
            plan = self.inputs.get(name)
            if plan and plan.spec_requires_grad is None and name not in self.diff_uses:
                self.inputs[name] = replace(plan, requires_grad=False)
                self.requires[name] = False
                continue
            self.problem(
                path,
                f"{where} is not differentiable, but '{name}' requires grad there (torch "
                "refuses it); pass a tensor that does not require grad (requires_grad: false)",
                col,
            )

    # --- output, upstream, check, expect -------------------------------------------------
    def reaching(self, output: str) -> set[str]:
        """The inputs and nodes a gradient from ``output`` reaches (torch leaves the others'
        .grad as None): ``output`` and, recursively, its differentiable operands that require
        grad."""
        nodes = {n.name: n for n in self.nodes}
        reached, todo = {output}, [output]
        while todo:
            node = nodes.get(todo.pop())
            if node is None:
                continue
            for p in node.op.tensor_params:
                arg = node.args[p.name]
                for a in arg if isinstance(arg, list) else [arg]:
                    if p.grad and isinstance(a, Ref) and self.requires[a.name]:
                        if a.name not in reached:
                            reached.add(a.name)
                            todo.append(a.name)
        return reached

    def why_no_grad(self, name: str, output: str) -> str:
        if not self.requires[name]:
            return "an integer or bool tensor, requires_grad: false, or computed from those"
        return f"the output '{output}' does not depend on it"

    def compile_rest(self) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
        """Checks of output, upstream, check and expect; they run even when the graph had
        problems, so a file's problems are reported together. None when anything is wrong."""
        named = [n.name for n in self.nodes if n.named]
        known = [*self.inputs, *named]
        output = self.case.output or list(self.case.graph)[-1]
        ok = False
        if output in self.failed:
            pass
        elif output not in named:
            self.problem(
                ("output",),
                f"output '{output}' is not a node of graph{did_you_mean(output, named)}",
            )
        elif not self.requires[output]:
            self.problem(
                ("output",) if self.case.output else ("graph", output),
                f"output '{output}' does not depend on any input that requires grad; "
                "there is nothing to differentiate",
            )
        else:
            ok = True
        reached = self.reaching(output) if ok else set()
        if ok and not isinstance(self.case.upstream, RandomUpstream):
            up_shape, out_shape = literal_shape(self.case.upstream), self.shapes[output]
            if up_shape != () and up_shape != out_shape:
                self.problem(
                    ("upstream",),
                    f"upstream has shape {up_shape} but output '{output}' has shape "
                    f"{out_shape} (a number fills any shape)",
                )
        if self.case.check is None:
            checks = tuple(n for n in known if n in reached)
        else:
            checks = tuple(self.case.check)
            for i, name in enumerate(checks):
                if name in self.failed:
                    continue
                if name not in known:
                    self.problem(
                        ("check", i),
                        f"check names '{name}', which is neither an input nor a node"
                        f"{did_you_mean(name, known)}",
                    )
                elif ok and name not in reached:
                    self.problem(
                        ("check", i),
                        f"'{name}' never gets a gradient ({self.why_no_grad(name, output)})",
                    )
        for kind, table in (("value", self.case.expect.value), ("grad", self.case.expect.grad)):
            for name, literal in table.items():
                where: Path = ("expect", kind, name)
                if name in self.failed:
                    continue
                if name not in known:
                    self.problem(
                        where,
                        f"expect.{kind} names '{name}', which is neither an input nor a node"
                        f"{did_you_mean(name, known)}",
                    )
                    continue
                if kind == "grad" and ok and name not in reached:
                    self.problem(
                        where,
                        f"expect.grad names '{name}', which never gets a gradient "
                        f"({self.why_no_grad(name, output)})",
                    )
                    continue
                shape = literal_shape(literal)
                if shape != self.shapes[name]:
                    self.problem(
                        where,
                        f"expected {kind} of '{name}' has shape {shape}, but '{name}' has shape "
                        f"{self.shapes[name]}",
                    )
        if self.problems or not ok:
            return None
        order = [n.name for n in self.nodes]
        upto = set(order[: order.index(output) + 1])
        # An explicit check names exactly what is compared; by default every named node's value
        # up to the output is, as the notebook printed them.
        values = tuple(
            n for n in named if (n in checks if self.case.check is not None else n in upto)
        )
        return output, checks, values


class _Bad:
    pass


_BAD: Any = _Bad()


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

    def front(as_int64: frozenset[str]) -> _Compiler:
        c = _Compiler(case, doc, as_int64, local)
        c.failed |= quiet | refused
        c.problems += op_problems
        c.compile_inputs()
        c.compile_graph()
        return c

    c = front(frozenset())
    as_int64 = frozenset(
        name
        for name, plan in c.inputs.items()
        if c.integer_only.get(name) and written_as_integers(plan.spec)
    )
    mixed = {
        name: c.integer_use[name]
        for name, plan in c.inputs.items()
        if name in c.integer_use and name not in as_int64 and written_as_integers(plan.spec)
    }
    if as_int64:  # again with those inputs as int64: their dtype and requires_grad change
        c = front(as_int64)
    for name, where in mixed.items():
        c.problem(
            ("inputs", name),
            f"input '{name}' is written with integers and used both as integers ({where}) "
            "and as data elsewhere, so its dtype is ambiguous: write it as {values: ..., dtype: "
            "int64} or with decimal points",
        )
    c.settle_nondifferentiable()
    rest = c.compile_rest()
    reached = c.reaching(rest[0]) if rest is not None else None
    rule_set, rule_problems = compile_rules(
        case.rules, doc, c.nodes, c.requires, reached, frozenset(local)
    )
    c.problems += rule_problems
    if rest is None or rule_problems:
        # Without problems of its own, the case failed only through names already reported
        # (``quiet``).
        assert c.problems or quiet, "a case refused without a problem to show"
        raise CaseInvalid(c.problems)
    output, checks, values = rest
    graph = Graph(nodes=tuple(c.nodes), output=output, shapes=c.shapes, requires_grad=c.requires)
    return CompiledCase(
        name=name,
        file=doc.file,
        line=line,
        model=case,
        inputs=c.inputs,
        graph=graph,
        checks=checks,
        values=values,
        locations=c.locations,
        rules=rule_set,
        expect_locations={
            (kind, name): str(doc.where(("expect", kind, name)))
            for kind, given in (("value", case.expect.value), ("grad", case.expect.grad))
            for name in given
        },
    )
