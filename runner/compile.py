"""From a validated case model to a runnable `CompiledCase`: names resolved, ops bound to their
signatures, shapes inferred statically. Every problem is collected with its YAML location; no
array is made here."""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from runner.diagnostics import CaseInvalid, Problem, did_you_mean
from runner.expr import Call, Const, Expr, ExprError, ListOf, Name, parse
from runner.graph import Graph, Node, Ref
from runner.ops import REGISTRY, public_ops
from runner.ops.spec import Op, Param, Shape, ShapeError
from runner.yaml_source import Document, Path
from schemas.case import (
    Case,
    FillInput,
    LongFormNode,
    RandomInput,
    RandomUpstream,
    ValuesInput,
    literal_shape,
)

# torch.max(input, other) and torch.min(input, other) are the elementwise maximum and minimum.
TENSOR_OVERLOADS = {"max": "maximum", "min": "minimum"}

# A case checks a rule on small tensors; far larger shapes are a typo or hostile, and would only
# exhaust memory.
MAX_ELEMENTS = 10_000_000


@dataclass(frozen=True)
class InputPlan:
    """How to make one input: its validated spec, resolved dtype and requires_grad."""

    spec: Any
    dtype: str
    shape: Shape
    requires_grad: bool

    @property
    def spec_requires_grad(self) -> bool | None:
        """What the case file said; None when it left requires_grad to the default."""
        return getattr(self.spec, "requires_grad", None)


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


def _literal_dtype(value: Any, case_dtype: str) -> str:
    flat = value
    while isinstance(flat, list) and flat:
        flat = flat[0]
    return "bool" if isinstance(flat, bool) else case_dtype


def plan_input(spec: Any, case_dtype: str) -> tuple[str, Shape, bool]:
    """dtype, shape and the default requires_grad of one input spec."""
    if isinstance(spec, RandomInput):
        default = "int64" if spec.random == "integers" else case_dtype
        dtype, shape = spec.dtype or default, tuple(spec.shape)
    elif isinstance(spec, FillInput):
        default = "bool" if isinstance(spec.fill, bool) else case_dtype
        dtype, shape = spec.dtype or default, tuple(spec.shape)
    elif isinstance(spec, ValuesInput):
        dtype = spec.dtype or _literal_dtype(spec.values, case_dtype)
        shape = literal_shape(spec.values)
    else:
        dtype, shape = _literal_dtype(spec, case_dtype), literal_shape(spec)
    return dtype, shape, dtype.startswith("float")


def _written_as_integers(spec: Any) -> bool:
    """A plain literal (or values without a dtype) whose numbers are all written as integers."""
    if isinstance(spec, ValuesInput) and spec.dtype is None:
        spec = spec.values
    elif isinstance(spec, RandomInput | FillInput | ValuesInput):
        return False
    flat = np.asarray(spec, dtype=object).reshape(-1).tolist()
    return bool(flat) and all(isinstance(v, int) and not isinstance(v, bool) for v in flat)


class _Compiler:
    def __init__(self, case: Case, doc: Document, as_int64: frozenset[str] = frozenset()) -> None:
        self.case = case
        self.doc = doc
        # Integer-written literals used only as indices or class targets (see Param.integer).
        self.as_int64 = as_int64
        self.integer_only: dict[str, bool] = {}
        self.problems: list[Problem] = []
        self.shapes: dict[str, Shape] = {}
        self.requires: dict[str, bool] = {}
        self.nodes: list[Node] = []
        self.inputs: dict[str, InputPlan] = {}
        self.failed: set[str] = set()  # nodes already reported: their users stay quiet
        # Where each tensor is used as an operand torch cannot differentiate (a class weight,
        # an index), and which tensors are used as differentiable operands.
        self.nondiff_uses: dict[str, tuple[Path, int, str]] = {}
        self.diff_uses: set[str] = set()

    def problem(self, path: Path, message: str, offset: int = 0) -> None:
        self.problems.append(self.doc.problem(path, message, offset))

    # --- inputs --------------------------------------------------------------------------
    def compile_inputs(self) -> None:
        for name, spec in self.case.inputs.items():
            path: Path = ("inputs", name)
            if not name.isidentifier() or keyword.iskeyword(name):
                self.problem(path, f"input name '{name}' is not a valid identifier")
                continue
            dtype, shape, default_grad = plan_input(spec, self.case.dtype)
            if name in self.as_int64:
                dtype, default_grad = "int64", False
            explicit = getattr(spec, "requires_grad", None)
            if explicit and not dtype.startswith("float"):
                self.problem(
                    path,
                    f"input '{name}' is {dtype}: only floating tensors can "
                    "require gradients (drop requires_grad)",
                )
                continue
            if isinstance(spec, RandomInput):
                self.check_random(spec, dtype, path)
            if isinstance(spec, ValuesInput):
                self.check_values(spec.values, dtype, path)
            if math.prod(shape) > MAX_ELEMENTS:
                self.problem(
                    path,
                    f"input '{name}' has shape {shape}, "
                    f"{math.prod(shape)} elements (at most {MAX_ELEMENTS})",
                )
                continue
            requires = default_grad if explicit is None else explicit
            self.inputs[name] = InputPlan(spec, dtype, shape, requires)
            self.shapes[name] = shape
            self.requires[name] = requires

    def check_values(self, values: Any, dtype: str, path: Path) -> None:
        """An explicit integer or bool dtype must not silently truncate the numbers given."""
        flat = np.asarray(values, dtype=object).reshape(-1).tolist()
        if dtype == "int64":
            bad = [v for v in flat if isinstance(v, float) and not v.is_integer()]
            what = "integers"
        elif dtype == "bool":
            bad = [v for v in flat if not isinstance(v, bool)]
            what = "true or false"
        else:
            return
        if bad:
            self.problem(path, f"dtype {dtype} needs {what}, got {bad[0]!r}")

    def check_random(self, spec: RandomInput, dtype: str, path: Path) -> None:
        if spec.random == "normal" and (spec.low is not None or spec.high is not None):
            self.problem(path, "low/high apply to random: uniform or integers, not normal")
        if spec.random == "integers":
            if spec.high is None:
                self.problem(path, "random: integers needs high (values are in [low, high))")
            elif spec.high <= (spec.low or 0):
                self.problem(
                    path,
                    f"random: integers needs high > low, got low={spec.low or 0} high={spec.high}",
                )
            if dtype == "bool":
                self.problem(
                    path,
                    "random: integers makes integer values, not bool "
                    "(use values: with dtype: bool)",
                )
        elif spec.low is not None and spec.high is not None and spec.high < spec.low:
            self.problem(
                path, f"random: uniform needs low <= high, got low={spec.low} high={spec.high}"
            )

    # --- graph ---------------------------------------------------------------------------
    def compile_graph(self) -> None:
        for name, entry in self.case.graph.items():
            path: Path = ("graph", name)
            if not name.isidentifier() or keyword.iskeyword(name):
                self.problem(path, f"node name '{name}' is not a valid identifier")
                continue
            if name in self.inputs:
                self.problem(path, f"node '{name}' has the name of an input; pick another name")
                continue
            try:
                expr = (
                    self.long_form(entry, path)
                    if isinstance(entry, LongFormNode)
                    else parse(entry, frozenset(self.shapes))
                )
            except ExprError as exc:
                self.problem(path, str(exc), exc.col)
                continue
            if isinstance(expr, Name):  # `d: c` is a copy, so d gets a gradient of its own
                expr = Call("clone", (expr,), (), expr.col)
            if not isinstance(expr, Call):
                self.problem(
                    path,
                    f"node '{name}' must apply an op; put constants under "
                    "inputs with requires_grad: false",
                )
                continue
            before = len(self.problems)
            try:
                self.lower(expr, path, name, [0])
            except RecursionError:
                self.problem(path, "expression nests too deeply; split it into named nodes")
            if len(self.problems) > before:
                self.shapes.pop(name, None)
                self.failed.add(name)

    def long_form(self, entry: LongFormNode, path: Path) -> Expr:
        op = REGISTRY.get(entry.op)
        str_params = {p.name for p in op.params if p.kind == "str"} if op else set()
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
            if isinstance(expr.value, int | float) and not isinstance(expr.value, bool):
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
        if op is None or (op.hidden and not expr.via and expr.op != "clone"):
            names = [o.name for o in public_ops()]
            self.problem(path, f"unknown op '{expr.op}'{did_you_mean(expr.op, names)}", expr.col)
            return None
        overload = TENSOR_OVERLOADS.get(op.name)
        if overload and len(expr.args) > 1 and not isinstance(expr.args[1], Const):
            op = REGISTRY[overload]
        args = self.bind(op, expr, path, target, counter)
        if args is None:
            return None
        return self.emit(op, args, expr, path, target, counter)

    def bind(
        self, op: Op, expr: Call, path: Path, target: str | None, counter: list[int]
    ) -> dict[str, Any] | None:
        label = f"{op.name}" if not expr.via else f"{expr.via} ({op.name})"
        params = list(op.params)
        given: dict[str, tuple[Param, Expr]] = {}
        ok = True
        rest = next((p for p in params if p.kind == "tensors*"), None)
        fixed = [p for p in params if p is not rest]
        positional = list(expr.args)
        if rest is not None:
            head = fixed[: params.index(rest)]
            for p, a in zip(head, positional, strict=False):
                given[p.name] = (p, a)
            given[rest.name] = (rest, ListOf(tuple(positional[len(head) :]), expr.col))
        else:
            slots = [p for p in params if not p.kw_only]
            if len(positional) > len(slots) and slots[-1].kind == "ints":
                # Tensor-method spelling, reshape(x, 2, 3) for reshape(x, [2, 3]), as torch
                # accepts for x.reshape(2, 3).
                extra = positional[len(slots) - 1 :]
                if all(isinstance(a, Const) and _is_int(a.value) for a in extra):
                    values = [a.value for a in extra if isinstance(a, Const)]
                    positional = [*positional[: len(slots) - 1], Const(values, extra[0].col)]
            if len(positional) > len(slots):
                self.problem(
                    path,
                    f"{label} takes at most {len(slots)} positional arguments "
                    f"({op.signature()}), got {len(positional)}",
                    expr.col,
                )
                return None
            for p, a in zip(slots, positional, strict=False):
                given[p.name] = (p, a)
        by_name = {p.name: p for p in params}
        for key, value, col in expr.kwargs:
            found = by_name.get(key)
            if found is None or found.kind == "index" and not expr.via:
                self.problem(
                    path,
                    f"{label} has no argument '{key}'"
                    f"{did_you_mean(key, by_name)} ({op.signature()})",
                    col,
                )
                ok = False
            elif key in given:
                self.problem(path, f"{label} got '{key}' twice", col)
                ok = False
            else:
                given[key] = (found, value)
        bound: dict[str, Any] = {}
        for p in params:
            if p.name not in given:
                if p.required:
                    self.problem(
                        path,
                        f"{label} is missing its argument '{p.name}' ({op.signature()})",
                        expr.col,
                    )
                    ok = False
                else:
                    bound[p.name] = p.default
                continue
            value = self.argument(op, p, given[p.name][1], path, counter, label)
            if value is _BAD:
                ok = False
            bound[p.name] = value
        return bound if ok else None

    def argument(
        self, op: Op, p: Param, value: Expr, path: Path, counter: list[int], label: str
    ) -> Any:
        if p.kind in ("tensors", "tensors*"):
            items: tuple[Expr, ...]
            if isinstance(value, ListOf):
                items = value.items
            elif isinstance(value, Const) and isinstance(value.value, list):
                items = tuple(Const(v, value.col) for v in value.value)
            else:
                self.problem(
                    path, f"{label}: '{p.name}' takes a list of tensors, e.g. [a, b]", value.col
                )
                return _BAD
            if not items:
                self.problem(path, f"{label}: '{p.name}' needs at least one tensor", value.col)
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
                    f"{label}: '{p.name}' must be a tensor, not the literal {value.value!r}; "
                    "declare it under inputs (with requires_grad: false for a constant)",
                    value.col,
                )
                return _BAD
            operand = self.lower(value, path, None, counter)
            return _BAD if operand is None else operand
        if not isinstance(value, Const):
            self.problem(
                path,
                f"{label}: '{p.name}' must be a literal "
                f"({_KIND_TEXT[p.kind]}), not a tensor expression",
                value.col,
            )
            return _BAD
        error = _check_attr(p, value.value)
        if error:
            self.problem(path, f"{label}: '{p.name}' {error}", value.col)
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
        label = op.name if not expr.via else f"{expr.via} ({op.name})"
        try:
            shape = tuple(op.shape(**shape_args))
        except ShapeError as exc:
            self.problem(path, f"{label}: {exc}", expr.col)
            return None
        except Exception as exc:  # a shape rule that crashes is a bug, but not the user's
            self.problem(
                path, f"{label}: could not infer the shape ({type(exc).__name__}: {exc})", expr.col
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
                    self.integer_only[a.name] = self.integer_only.get(a.name, True) and p.integer
                if isinstance(a, Ref) and p.grad:
                    refs.append(a)
                    self.diff_uses.add(a.name)
                elif isinstance(a, Ref):
                    self.nondiff_uses.setdefault(a.name, (path, expr.col, f"{label}: '{p.name}'"))
        if math.prod(shape) > MAX_ELEMENTS:
            self.problem(
                path,
                f"{label}: the result would have shape {shape}, "
                f"{math.prod(shape)} elements (at most {MAX_ELEMENTS})",
                expr.col,
            )
            return None
        self.requires[name] = any(self.requires[r.name] for r in refs)
        self.shapes[name] = shape
        self.nodes.append(Node(name, op, args, shape, named=target is not None))
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
    def compile_rest(self) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
        if not self.nodes or self.problems:
            return None
        output = self.case.output or self.nodes[-1].name
        if output in self.failed:
            return None
        if output not in self.shapes or output in self.inputs:
            known = [n.name for n in self.nodes if n.named]
            self.problem(
                ("output",),
                f"output '{output}' is not a node of graph{did_you_mean(output, known)}",
            )
            return None
        if not self.requires[output]:
            self.problem(
                ("output",) if self.case.output else ("graph",),
                f"output '{output}' does not depend on any input that requires grad; "
                "there is nothing to differentiate",
            )
            return None
        out_shape = self.shapes[output]
        if not isinstance(self.case.upstream, RandomUpstream):
            up_shape = literal_shape(self.case.upstream)
            if up_shape != () and up_shape != out_shape:
                self.problem(
                    ("upstream",),
                    f"upstream has shape {up_shape} but output "
                    f"'{output}' has shape {out_shape} (a number fills any shape)",
                )
        named = [n.name for n in self.nodes if n.named]
        upto = {n.name for n in self.nodes[: [n.name for n in self.nodes].index(output) + 1]}
        if self.case.check is None:
            checks = tuple(n for n in [*self.inputs, *named] if self.requires[n])
        else:
            checks = tuple(self.case.check)
            for i, name in enumerate(checks):
                if name in self.failed:
                    continue
                if name not in self.shapes or name not in self.inputs and name not in named:
                    self.problem(
                        ("check", i),
                        f"check names '{name}', which is neither an "
                        f"input nor a node{did_you_mean(name, [*self.inputs, *named])}",
                    )
                elif not self.requires[name]:
                    self.problem(
                        ("check", i),
                        f"'{name}' never gets a gradient (an integer or "
                        "bool tensor, requires_grad: false, or no such operand upstream)",
                    )
        values = tuple(n for n in named if n in upto or n in checks)
        for kind, table in (("value", self.case.expect.value), ("grad", self.case.expect.grad)):
            for name, literal in table.items():
                where: Path = ("expect", kind, name)
                if name in self.failed:
                    continue
                if name not in self.shapes or name not in self.inputs and name not in named:
                    self.problem(
                        where,
                        f"expect.{kind} names '{name}', which is neither an "
                        f"input nor a node{did_you_mean(name, [*self.inputs, *named])}",
                    )
                    continue
                if kind == "grad" and not self.requires[name]:
                    self.problem(where, f"expect.grad names '{name}', which never gets a gradient")
                    continue
                shape = literal_shape(literal)
                if shape != self.shapes[name]:
                    self.problem(
                        where,
                        f"expected {kind} of '{name}' has shape {shape}, but "
                        f"'{name}' has shape {self.shapes[name]}",
                    )
        return output, checks, values


class _Bad:
    pass


_BAD: Any = _Bad()
_KIND_TEXT = {
    "int": "an int",
    "int?": "an int or None",
    "float": "a number",
    "float?": "a number or None",
    "bool": "True or False",
    "str": "a string",
    "dims": "None, an int or a list of ints",
    "ints": "an int or a list of ints",
    "ints?": "an int, a list of ints or None",
    "index": "a subscript",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_attr(p: Param, v: Any) -> str:
    """Empty when ``v`` fits the parameter kind, else what is wrong."""
    kind = p.kind
    optional = kind.endswith("?") or kind == "dims"
    if v is None:
        return "" if optional else f"must be {_KIND_TEXT[kind]}, not None"
    base = kind.rstrip("?")
    if base == "int":
        ok = _is_int(v)
    elif base == "float":
        ok = _is_int(v) or isinstance(v, float)
    elif base == "bool":
        ok = isinstance(v, bool)
    elif base == "str":
        if not isinstance(v, str):
            ok = False
        elif p.choices and v not in p.choices:
            return (
                f"must be one of {', '.join(repr(c) for c in p.choices)}, got {v!r}"
                f"{did_you_mean(v, p.choices)}"
            )
        else:
            ok = True
    elif base in ("dims", "ints"):
        ok = _is_int(v) or isinstance(v, list) and all(_is_int(i) for i in v)
    else:
        ok = True
    return "" if ok else f"must be {_KIND_TEXT[kind]}, got {v!r}"


def compile_case(
    case: Case, doc: Document, name: str, line: int, quiet: frozenset[str] = frozenset()
) -> CompiledCase:
    """Raises `CaseInvalid` with every problem found. Names in ``quiet`` were reported already
    (by validation): their uses are not reported again."""
    def front(as_int64: frozenset[str]) -> _Compiler:
        c = _Compiler(case, doc, as_int64)
        c.failed |= quiet
        c.compile_inputs()
        c.compile_graph()
        return c

    c = front(frozenset())
    as_int64 = frozenset(
        name
        for name, plan in c.inputs.items()
        if c.integer_only.get(name) and _written_as_integers(plan.spec)
    )
    if as_int64:  # again with those inputs as int64: their dtype and requires_grad change
        c = front(as_int64)
    c.settle_nondifferentiable()
    rest = c.compile_rest()
    if c.problems or rest is None:
        raise CaseInvalid(c.problems or [doc.problem(("graph",), "graph has no nodes")])
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
    )
