"""Lowering, the first pass: a case's inputs and graph become nodes of catalogue ops with static
shapes. Names are resolved, calls bound to their ops' signatures, and every operand's use is
recorded (`Use`) for the passes after it; dtypes and requires_grad are not settled here, so one
lowering serves them all. Every problem is collected with its YAML location; no array is made,
but for a literal bool input used as a subscript's mask, whose true positions become constant
int64 inputs (`_mask_positions`), as torch's ``x[mask]`` is ``x[mask.nonzero(as_tuple=True)]``.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runner.binding import KIND_TEXT, check_attr, is_int, label, match, resolve_overload
from runner.composed import Definition, Local, specialise, substitute
from runner.diagnostics import Problem, did_you_mean
from runner.expr import Call, Const, Expr, ExprError, ListOf, Name, parse
from runner.graph import Node, Ref
from runner.inputs import MAX_ELEMENTS, InputPlan, make_input, plan_input
from runner.ops import COPY, REGISTRY, public_ops
from runner.ops.indexing_subscript import INDEX, expand_masks
from runner.ops.meaning import suggest_op
from runner.ops.spec import Op, Param, Shape, ShapeError
from runner.yaml_source import Document, Path
from schemas.case import Case, LongFormNode, ValuesInput


@dataclass(frozen=True)
class Use:
    """One operand of one node: which tensor fills which parameter, and what the parameter says
    of it (`Param.integer`, `Param.grad`, `Param.accepts_grad`)."""

    tensor: str
    where: str  # the parameter as messages name it: "gather: 'index'"
    path: Path
    col: int
    integer: bool
    differentiable: bool
    accepts_grad: bool
    mask_refused: str = ""  # `Param.mask_refused`, `Param.float_refused`
    float_refused: str = ""


@dataclass(frozen=True)
class Lowered:
    """The graph as lowered: inputs planned as written (no integer inference yet), nodes in
    order, each name's static shape and location, every operand's use, the names that failed
    (their users stay quiet) and the problems."""

    inputs: Mapping[str, InputPlan]
    nodes: tuple[Node, ...]
    shapes: Mapping[str, Shape]
    locations: Mapping[str, str]  # node -> file:line:col of its expression
    uses: tuple[Use, ...]
    failed: frozenset[str]
    problems: tuple[Problem, ...]


def lower_case(
    case: Case, doc: Document, local: Local, quiet: frozenset[str] = frozenset()
) -> Lowered:
    """Lower ``case``'s inputs and graph. ``local``: the ops besides the catalogue's (the case's
    own `Definition`s, RULES modules' ops); ``quiet``: names already reported, whose uses are
    not reported again."""
    lowering = _Lowering(doc, local, frozenset(case.graph), set(quiet))
    inputs = lowering.inputs(case)
    lowering.plans = inputs
    for name, entry in case.graph.items():
        if name in inputs:
            lowering.problem(
                ("graph", name), f"node '{name}' has the name of an input; pick another name"
            )
        elif not lowering.graph_node(name, entry):
            # Reported here, or where a name it uses failed: its users stay quiet.
            lowering.shapes.pop(name, None)
            lowering.failed.add(name)
    return lowering.result({**inputs, **lowering.positions})


def lower_body(
    body: Expr, path: Path, shapes: Mapping[str, Shape], doc: Document, local: Local
) -> tuple[Lowered, Ref | None]:
    """The forward of a case's op lowered over its tensor parameters (``shapes``, by parameter
    name), as its own small graph; and the operand that is the op's value (None on a
    problem)."""
    lowering = _Lowering(doc, local, frozenset(), set())
    lowering.shapes.update(shapes)
    if isinstance(body, Name):
        body = Call(COPY, (body,), (), body.col)
    try:
        out = lowering.lower(body, path, None)
    except RecursionError:
        out = None
        lowering.problem(path, "the forward nests too deeply")
    return lowering.result({}), out if isinstance(out, Ref) else None


def _mask_positions(
    args: dict[str, Any], plans: Mapping[str, InputPlan], input_shape: Shape
) -> tuple[dict[str, Any], dict[str, InputPlan]]:
    """`index_tensor`'s arguments with each literal bool input among its ``indices`` replaced by
    its true positions (`expand_masks`): k constant int64 inputs for a k-d mask, named
    ``m#nonzero0``... ('#' keeps them apart from the case's names), returned beside the new
    arguments. Raises `ShapeError` when a mask does not fit the dims it indexes."""
    masks = {
        slot: make_input(plans[ref.name])
        for slot, ref in enumerate(args["indices"])
        if ref.name in plans and plans[ref.name].dtype == "bool"
    }
    if not masks:
        return args, {}
    template, positions = expand_masks(args["index"], masks, input_shape)
    indices: list[Ref] = []
    added: dict[str, InputPlan] = {}
    for slot, ref in enumerate(args["indices"]):
        if slot not in positions:
            indices.append(ref)
            continue
        for d, where in enumerate(positions[slot]):
            name = f"{ref.name}#nonzero{d}"
            spec = ValuesInput(values=where.tolist(), dtype="int64", requires_grad=False)
            added[name] = InputPlan(spec, "int64", where.shape, False)
            indices.append(Ref(name))
    return {**args, "indices": indices, "index": template}, added


class _Bad:
    pass


_BAD: Any = _Bad()  # an argument that was reported: its call is not emitted
_TENSOR: Any = _Bad()  # a subscript of a tensor, not an output of a call with several


class _Lowering:
    """The state of one lowering: what is in scope (shapes) and what was emitted so far."""

    def __init__(self, doc: Document, local: Local, later: frozenset[str], failed: set[str]):
        self.doc = doc
        self.local = local
        self.later = later  # the graph's names, for "defined later" hints
        self.failed = failed
        self.shapes: dict[str, Shape] = {}
        self.nodes: list[Node] = []
        self.locations: dict[str, str] = {}
        self.uses: list[Use] = []
        self.problems: list[Problem] = []
        self.counter = 0  # anonymous nodes of the current entry
        # Named calls with several outputs (``m: max(x, 1)``): the op and its bound arguments,
        # so ``m.indices`` / ``m[1]`` is a node of that output (``m`` itself is the first).
        self.tuples: dict[str, tuple[Op, dict[str, Any]]] = {}
        # The case's input plans (none in an op's body), and the constant inputs made of the
        # true positions of bool masks (``m#nonzero0``...; '#' keeps them apart from the
        # user's names).
        self.plans: Mapping[str, InputPlan] = {}
        self.positions: dict[str, InputPlan] = {}

    def result(self, inputs: Mapping[str, InputPlan]) -> Lowered:
        return Lowered(
            inputs=dict(inputs),
            nodes=tuple(self.nodes),
            shapes=dict(self.shapes),
            locations=dict(self.locations),
            uses=tuple(self.uses),
            failed=frozenset(self.failed),
            problems=tuple(self.problems),
        )

    def problem(
        self, path: Path, message: str, offset: int | None = None, at_key: bool = False
    ) -> None:
        self.problems.append(self.doc.problem(path, message, offset, at_key))

    def inputs(self, case: Case) -> dict[str, InputPlan]:
        plans = {}
        for name, spec in case.inputs.items():
            path: Path = ("inputs", name)
            if not name.isidentifier() or keyword.iskeyword(name):
                self.problem(path, f"input name '{name}' is not a valid identifier", at_key=True)
                self.failed.add(name)
                continue
            plan, problems = plan_input(name, spec, case.dtype)
            for message in problems:
                self.problem(path, message)
            if problems:
                self.failed.add(name)
                continue
            plans[name] = plan
            self.shapes[name] = plan.shape
        return plans

    def graph_node(self, name: str, entry: str | LongFormNode) -> bool:
        path: Path = ("graph", name)
        if not name.isidentifier() or keyword.iskeyword(name):
            self.problem(path, f"node name '{name}' is not a valid identifier", at_key=True)
            return False
        try:
            expr = (
                long_form(entry)
                if isinstance(entry, LongFormNode)
                else parse(entry, self.shapes.keys())
            )
        except ExprError as exc:
            self.problem(path, str(exc), exc.col)
            return False
        if isinstance(expr, Name):  # `d: c` is a copy, so d gets a gradient of its own
            expr = Call(COPY, (expr,), (), expr.col)
        if not isinstance(expr, Call):
            self.problem(
                path,
                f"node '{name}' must apply an op; put constants under inputs with "
                "requires_grad: false",
            )
            return False
        self.counter = 0
        try:
            return self.lower(expr, path, name) is not None
        except RecursionError:
            self.problem(path, "expression nests too deeply; split it into named nodes")
            return False

    def lower(self, expr: Expr, path: Path, target: str | None) -> Any:
        """Emit nodes for ``expr``; returns the operand it yields (Ref, number, or None when an
        error was reported). ``target`` names the outermost call's node."""
        if isinstance(expr, Name):
            return self.name(expr, path)
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
        # A subscript or an output's name (runner.expr spells both as a subscript).
        # A basic subscript has one operand (it may select an output); one with index
        # tensors has them as a second operand, and is always a tensor's.
        subscript = expr.via == "subscript" and len(expr.args) == 1
        if subscript or any(k == "output" for k, _, _ in expr.kwargs):
            picked = self.pick(expr, path, target)
            if picked is not _TENSOR:
                return picked
        op = self.op(expr, path)
        if isinstance(op, Definition):
            return self.composed(op, expr, path, target)
        if op is None:
            return None
        args = self.bind(op, expr, path)
        if args is None:
            return None
        if op.several(args):  # used as a tensor, a call with several outputs is its first
            if target is not None:
                self.tuples[target] = (op, args)
            op = op.output(0)
        return self.emit(op, args, expr, path, target)

    def pick(self, expr: Call, path: Path, target: str | None) -> Any:
        """``m.indices``, ``m[1]``, ``max(x, 1)[1]``, ``sort(x).values``: one output of a call
        with several, as a node of `Op.output`. `_TENSOR` when ``expr`` subscripts a tensor
        (``x[1]``, ``max(x)[0]``): a getitem."""
        inner = expr.args[0]
        kwargs = dict((k, v) for k, v, _ in expr.kwargs)
        attribute = kwargs.get("output")
        found: tuple[Op, dict[str, Any]] | None = None
        if isinstance(inner, Name) and inner.id in self.tuples:
            found = self.tuples[inner.id]
        elif isinstance(inner, Call) and (op := self.several_call(inner)) is not None:
            args = self.bind(op, inner, path)
            if args is None:
                return None
            found = (op, args)
        if found is None:
            if attribute is None:
                return _TENSOR
            self.problem(
                path,
                f".{attribute.value if isinstance(attribute, Const) else ''} is an output of an "
                "op with several (max(x, dim).indices, sort(x, 0).values); this is a tensor",
                expr.col,
            )
            return None
        op, args = found
        i = self.output_index(op, expr, attribute, kwargs.get("index"), path)
        if i is None:
            return None
        return self.emit(op.output(i), args, expr, path, target)

    def output_index(
        self, op: Op, expr: Call, attribute: Any, index: Any, path: Path
    ) -> int | None:
        """Which output ``[i]`` or ``.name`` selects; None when that was reported."""
        outputs = op.outputs
        listed = (
            ", ".join(f".{n}" for n in outputs)
            if op.output_fields
            else ", ".join(f"[{i}]" for i in range(len(outputs)))
        )
        what = f"{op.name}(...) gives ({', '.join(outputs)}): select one with {listed}"
        if isinstance(attribute, Const):
            if op.output_fields and attribute.value in outputs:
                return outputs.index(attribute.value)
            self.problem(path, f"{what}, not .{attribute.value}", expr.col)
            return None
        key = index.value if isinstance(index, Const) else None
        if isinstance(key, tuple) and len(key) == 1 and is_int(key[0]):
            if -len(outputs) <= key[0] < len(outputs):
                return int(key[0]) % len(outputs)
        self.problem(path, f"{what} (then index the tensor)", expr.col)
        return None

    def several_call(self, call: Call) -> Op | None:
        """The catalogue op of ``call`` when it returns several outputs (read from the call as
        written, before its operands are lowered); None for anything else."""
        op = REGISTRY.get(call.op)
        if op is None:
            return None
        op = resolve_overload(op, call)
        if not op.outputs:
            return None
        given = match(op, call).given.get(op.outputs_with) if op.outputs_with else True
        if given is None or (isinstance(given, Const) and given.value is None):
            return None
        return op

    def name(self, expr: Name, path: Path) -> Ref | None:
        if expr.id in self.failed:
            return None
        if expr.id not in self.shapes:
            hint = (
                " (it is defined later in graph: order matters)"
                if expr.id in self.later
                else did_you_mean(expr.id, self.known())
            )
            self.problem(path, f"unknown name '{expr.id}'{hint}", expr.col)
            return None
        return Ref(expr.id)

    def known(self) -> list[str]:
        """The names a case may use: inputs and named nodes (anonymous ones have a '#')."""
        return [n for n in self.shapes if "#" not in n]

    def op(self, expr: Call, path: Path) -> Op | Definition | None:
        """The op a call names (a catalogue op, its overload, a local op, or a case's
        `Definition`); None when that was reported."""
        op = REGISTRY.get(expr.op)
        if op is None and expr.op in self.failed:  # a case's op refused where it is defined
            return None
        found = op or self.local.get(expr.op)
        if found is None or (isinstance(found, Op) and not found.by_name and not expr.via):
            names = [o.name for o in public_ops()] + list(self.local)
            hint = suggest_op(expr.op, names)
            if hint.startswith(" (`gradcase ops`"):  # no close name: maybe a module's op
                hint += (
                    "; an op of a RULES module's OPS is known when that module is given "
                    "(--rules, or [tool.gradcase] rules)"
                )
            self.problem(path, f"unknown op '{expr.op}'{hint}", expr.col)
            return None
        return resolve_overload(found, expr) if isinstance(found, Op) else found

    def composed(self, defn: Definition, expr: Call, path: Path, target: str | None) -> Ref | None:
        """A call of a case's op: its forward lowered with this call's attribute values and
        operand shapes (a graph of its own, so the body's nodes stay inside the op), and one
        node of the op specialised to that body. A problem of the body (a shape that does not
        fit) is reported here, at the call, naming where in the forward it arose."""
        args = self.bind(defn.signature, expr, path)
        if args is None:
            return None
        signature = defn.signature
        attrs = {p.name: args[p.name] for p in signature.params if not p.is_tensor}
        shapes = {p.name: self.shapes[args[p.name].name] for p in signature.tensor_params}
        sub, out = lower_body(substitute(defn.body, attrs), defn.path, shapes, self.doc, self.local)
        who = label(signature, expr)
        for found in sub.problems:
            self.problem(path, f"{who}: in its forward at {found.where}: {found.message}", expr.col)
        if out is None or sub.problems:
            return None
        params = tuple(_used_as(p, sub.uses) if p.is_tensor else p for p in signature.params)
        op = specialise(replace(signature, params=params), sub.nodes, out.name, sub.shapes)
        return self.emit(op, args, expr, path, target)

    def bind(self, op: Op, expr: Call, path: Path) -> dict[str, Any] | None:
        """Every parameter's value: operands lowered to `Ref`s or numbers, attributes checked
        against their kinds, defaults filled in. None when a problem was reported."""
        matched = match(op, expr)
        for message, col in matched.errors:
            self.problem(path, message, col)
        bound: dict[str, Any] = {}
        for p in op.params:
            given = matched.given.get(p.name)
            if given is None:
                bound[p.name] = p.default
            elif p.kind in ("tensors", "tensors*"):
                bound[p.name] = self.operands(op, p, given, path, label(op, expr))
            elif p.is_tensor:
                bound[p.name] = self.operand(op, p, given, path, label(op, expr))
            else:
                bound[p.name] = self.attribute(p, given, path, label(op, expr))
        if matched.errors or any(v is _BAD for v in bound.values()):
            return None
        return bound

    def operands(self, op: Op, p: Param, value: Expr, path: Path, who: str) -> Any:
        """A list parameter's operands (cat's ``tensors``)."""
        items: tuple[Expr, ...]
        if isinstance(value, ListOf):
            items = value.items
        elif isinstance(value, Const) and isinstance(value.value, list):
            items = tuple(Const(v, value.col) for v in value.value)
        else:
            self.problem(path, f"{who}: '{p.name}' takes a list of tensors, e.g. [a, b]", value.col)
            return _BAD
        if not items:
            self.problem(path, f"{who}: '{p.name}' needs at least one tensor", value.col)
            return _BAD
        if not op.literal_operands and any(isinstance(i, Const) for i in items):
            self.problem(
                path,
                f"{who}: '{p.name}' takes tensors, not literals; declare constants under inputs",
                value.col,
            )
            return _BAD
        out = [self.lower(i, path, None) for i in items]
        return _BAD if any(o is None for o in out) else out

    def operand(self, op: Op, p: Param, value: Expr, path: Path, who: str) -> Any:
        if p.kind == "tensor?" and isinstance(value, Const) and value.value is None:
            return None
        if isinstance(value, Const) and not (op.literal_operands or p.number):
            self.problem(
                path,
                f"{who}: '{p.name}' must be a tensor, not the literal {value.value!r}; "
                "declare it under inputs (with requires_grad: false for a constant)",
                value.col,
            )
            return _BAD
        lowered = self.lower(value, path, None)
        return _BAD if lowered is None else lowered

    def attribute(self, p: Param, value: Expr, path: Path, who: str) -> Any:
        if not isinstance(value, Const):
            infinity = '; infinity is float("inf") or math.inf' if "float" in p.kind else ""
            self.problem(
                path,
                f"{who}: '{p.name}' must be a literal "
                f"({KIND_TEXT[p.kind]}), not a tensor expression{infinity}",
                value.col,
            )
            return _BAD
        error = check_attr(p, value.value)
        if error:
            self.problem(path, f"{who}: '{p.name}' {error}", value.col)
            return _BAD
        return value.value

    def emit(
        self, op: Op, args: dict[str, Any], expr: Call, path: Path, target: str | None
    ) -> Ref | None:
        """One node of ``op`` with its static shape; None when the shape rule refused it."""
        if op is INDEX:
            try:
                args, added = _mask_positions(args, self.plans, self.shape_of(args["input"]))
            except ShapeError as exc:
                self.problem(path, f"subscript: {str(exc).removeprefix('subscript: ')}", expr.col)
                return None
            self.positions.update(added)
            self.shapes.update((name, plan.shape) for name, plan in added.items())
        shape_args = {
            p.name: self.shape_of(args[p.name]) if p.is_tensor else args[p.name] for p in op.params
        }
        where = label(op, expr)
        shape = self.infer_shape(op, shape_args, where, path, expr.col)
        if shape is None:
            return None
        if target is None:
            self.counter += 1
            name = f"{path[-1]}#{self.counter}"
        else:
            name = target
        self.record_uses(op, args, shape_args, where, path, expr.col)
        if math.prod(shape) > MAX_ELEMENTS:
            self.problem(
                path,
                f"{where}: the result would have shape {shape}, "
                f"{math.prod(shape)} elements (at most {MAX_ELEMENTS})",
                expr.col,
            )
            return None
        self.shapes[name] = shape
        self.nodes.append(Node(name, op, args, shape, named=target is not None, text=expr.text))
        self.locations[name] = str(self.doc.where(path, expr.col))
        return Ref(name)

    def shape_of(self, arg: Any) -> Any:
        if isinstance(arg, Ref):
            return self.shapes[arg.name]
        if isinstance(arg, list):
            return [self.shape_of(a) for a in arg]
        return arg if arg is None else ()

    def infer_shape(
        self, op: Op, shape_args: dict[str, Any], where: str, path: Path, col: int
    ) -> Shape | None:
        try:
            return tuple(op.shape(**shape_args))
        except ShapeError as exc:
            # Shape rules often name their op already ("matmul: (2, 3) @ ...").
            message = str(exc).removeprefix(f"{op.name}: ")
            self.problem(path, f"{where}: {message}", col)
        except Exception as exc:  # a shape rule that crashes is a bug, but not the user's
            self.problem(
                path, f"{where}: could not infer the shape ({type(exc).__name__}: {exc})", col
            )
        return None

    def record_uses(
        self,
        op: Op,
        args: dict[str, Any],
        shape_args: dict[str, Any],
        where: str,
        path: Path,
        col: int,
    ) -> None:
        for p in op.tensor_params:
            given = args[p.name]
            for a in given if isinstance(given, list) else [given]:
                if not isinstance(a, Ref):
                    continue
                like = p.probabilities_if_shaped_like
                probabilities = bool(like) and self.shapes[a.name] == shape_args[like]
                self.uses.append(
                    Use(
                        tensor=a.name,
                        where=f"{where}: '{p.name}'",
                        path=path,
                        col=col,
                        integer=p.integer and not probabilities,
                        differentiable=p.grad,
                        accepts_grad=p.accepts_grad,
                        mask_refused=p.mask_refused,
                        float_refused=p.float_refused,
                    )
                )


def _used_as(p: Param, uses: tuple[Use, ...]) -> Param:
    """A case's op's tensor parameter as its body uses it: differentiated where some node
    differentiates it, an integer operand where every use is one."""
    mine = [u for u in uses if u.tensor == p.name]
    return replace(
        p,
        grad=any(u.differentiable for u in mine),
        integer=bool(mine) and all(u.integer for u in mine),
    )


def long_form(entry: LongFormNode) -> Expr:
    """``{op, args, kwargs}`` as the call it spells: strings are names, except where a
    parameter takes strings (einsum's equation, conv's padding)."""
    op = REGISTRY.get(entry.op)
    str_params = {p.name for p in op.params if p.kind == "str" or p.choices} if op else set()
    positional = [p.name for p in op.params] if op else []

    def term(value: Any, param: str | None) -> Expr:
        if isinstance(value, str) and param not in str_params:
            return Name(value, 0)
        if isinstance(value, list) and any(isinstance(v, str) for v in value):
            return ListOf(tuple(term(v, None) for v in value), 0)
        return Const(value, 0)

    args = tuple(
        term(a, positional[i] if i < len(positional) else None) for i, a in enumerate(entry.args)
    )
    kwargs = tuple((k, Const(v, 0), 0) for k, v in entry.kwargs.items())
    return Call(entry.op, args, kwargs, 0)
