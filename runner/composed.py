"""Ops that torch lacks: ops of a case (``ops:``, compositions of catalogue ops) and ops of a
RULES module (``OPS``: a numpy forward the user wrote).

A case's op is defined once (`define`: its parameters and its forward, a graph expression over
them, checked at ``file:line:col``) and specialised at each call site by `runner.compile`, which
lowers the forward with the call's attribute values and operand shapes into a small graph of
catalogue nodes; `specialise` turns that graph into an `Op` whose

- forward runs the body's numpy forwards;
- torch reference composes the body's torch functions, so torch autograd of the composition is
  the reference for a user's rule of the whole op (as a custom ``torch.autograd.Function``
  checked with ``gradcheck``);
- catalogue VJP, used when no rule is given for it, is backprop through the body with the
  catalogue's rules;
- shape is the body's, inferred by the body's shape rules.

A module's op (`module_op`) has the user's forward, an optional shape rule (default: the
broadcast of its tensor operands, as an elementwise op) and no reference in torch: its rule
comes from the same module's ``RULES``, and goldens (``expect:``) or a numeric oracle check it.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

from runner.binding import check_attr, match, resolve_overload
from runner.diagnostics import Problem, did_you_mean
from runner.dtypes import is_floating
from runner.expr import Call, Const, Expr, ExprError, ListOf, Name, parse
from runner.graph import Graph, Node, Ref
from runner.ops import REGISTRY, public_ops
from runner.ops.spec import (
    REQUIRED,
    Array,
    Op,
    Param,
    ParamKind,
    Shape,
    ShapeError,
    broadcast_shapes,
)
from runner.yaml_source import Document

COMPOSED, MODULE = "composed", "module"
# The parameter kinds an op of the user's may declare (see `runner.ops.spec.ParamKind`).
KINDS = ("tensor", "int", "int?", "float", "float?", "bool", "str", "dims", "ints", "ints?")


class OpSpecError(ValueError):
    """A parameter or op specification that cannot be used; the message says why."""


# Names a composed op's parameter cannot take: its rule would not know which is meant.
RESERVED = {
    "grad": "a rule names the upstream gradient so",
    "out": "a rule names the op's forward value so",
    "np": "a rule names numpy so",
}


def param(name: str, raw: Any) -> Param:
    """A `Param` from ``kind`` or ``{kind, default}`` (a mapping, or `schemas.case.OpParam`).
    Raises `OpSpecError` for an unknown kind, a default that does not fit it, or a tensor with a
    default."""
    if isinstance(raw, str):
        kind, default, has_default = raw, REQUIRED, False
    else:
        data = raw if isinstance(raw, Mapping) else raw.model_dump(exclude_unset=True)
        extra = [k for k in data if k not in ("kind", "default")]
        if extra or "kind" not in data:
            raise OpSpecError(
                f"parameter '{name}' must be a kind or {{kind, default}}"
                + (f", got the key {extra[0]!r}" if extra else "")
            )
        kind, has_default = data["kind"], "default" in data
        default = data.get("default", REQUIRED)
    if kind not in KINDS:
        raise OpSpecError(
            f"parameter '{name}' has the unknown kind {kind!r}{did_you_mean(str(kind), KINDS)} "
            f"(kinds: {', '.join(KINDS)})"
        )
    p = Param(name, cast(ParamKind, kind), default)
    if has_default and kind == "tensor":
        raise OpSpecError(f"parameter '{name}' is a tensor, which takes no default")
    if has_default:
        error = check_attr(p, default)
        if error:
            raise OpSpecError(f"the default of parameter '{name}' {error}")
    return p


# --- ops of a case -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """A case's op as written: its signature (an `Op` whose functions are only specialised
    ones'), its forward expression, and where the forward is in the file."""

    signature: Op
    body: Expr
    path: tuple[str | int, ...]

    @property
    def name(self) -> str:
        return self.signature.name


Local = Mapping[str, "Definition | Op"]


def define_ops(
    ops: Mapping[str, Any], doc: Document, modules: Mapping[str, Op]
) -> tuple[dict[str, Definition | Op], list[Problem]]:
    """The ops a case may call besides the catalogue's: ``modules`` (ops of the RULES modules in
    force) and the case's own ``ops:`` (`schemas.case.ComposedOp` by name), each checked at its
    ``file:line:col``: a name of its own (a catalogue op's or a module op's is refused: a rule
    under that name would be ambiguous), known parameter kinds and fitting defaults, a forward
    that parses, uses every parameter and names only its parameters, catalogue ops, module ops
    and ops defined before it (so there is no recursion), each called with arguments that fit."""
    local: dict[str, Definition | Op] = dict(modules)
    problems: list[Problem] = []
    order = list(ops)

    def problem(
        where: tuple[str | int, ...], message: str, col: int | None = None, at_key: bool = False
    ) -> None:
        problems.append(doc.problem(where, message, col, at_key))

    for i, (name, spec) in enumerate(ops.items()):
        params = _declared_params(name, spec, modules, problem)
        if params is None:
            continue
        defined = _defined(name, spec, params, local, order[i + 1 :], problem)
        if defined is not None:
            local[name] = defined
    return local, problems


Report = Callable[..., None]  # problem(path, message, col=None, at_key=False)


def _declared_params(
    name: str, spec: Any, modules: Mapping[str, Op], problem: Report
) -> list[Param] | None:
    """A case's op's name and parameters, checked; None when something was reported."""
    path: tuple[str | int, ...] = ("ops", name)
    if not name.isidentifier() or name in ("True", "False", "None"):
        problem(path, f"op name '{name}' is not a valid identifier", at_key=True)
        return None
    if name in REGISTRY:
        problem(
            path,
            f"ops: '{name}' is a catalogue op; a case's op needs a name of its own (a rule "
            f"under '{name}' would be ambiguous), e.g. 'my_{name}'",
            at_key=True,
        )
        return None
    if name in modules:
        problem(
            path,
            f"ops: '{name}' is already an op of {modules[name].source or 'a module'}"
            "; give the case's op a name of its own",
            at_key=True,
        )
        return None
    params: list[Param] = []
    for pname, raw in spec.params.items():
        if not pname.isidentifier():
            problem(
                (*path, "params", pname),
                f"ops.{name}: parameter name '{pname}' is not a valid identifier",
                at_key=True,
            )
            continue
        if pname in RESERVED:
            problem(
                (*path, "params", pname),
                f"ops.{name}: a parameter cannot be named '{pname}': {RESERVED[pname]}; "
                "pick another name",
                at_key=True,
            )
            continue
        try:
            params.append(param(pname, raw))
        except OpSpecError as exc:
            problem((*path, "params", pname), f"ops.{name}: {exc}")
    if len(params) < len(spec.params):
        return None
    if not any(p.is_tensor for p in params):
        problem(
            (*path, "params"),
            f"ops.{name}: no parameter is a tensor: there is nothing "
            "to differentiate (declare one as `x: tensor`)",
        )
        return None
    return params


def _defined(
    name: str,
    spec: Any,
    params: list[Param],
    local: Local,
    later: list[str],
    problem: Report,
) -> Definition | None:
    """A case's op's forward, checked (see `define_ops`); None when something was reported."""
    path: tuple[str | int, ...] = ("ops", name)
    where = (*path, "forward")
    by_name = {p.name: p for p in params}
    try:
        body = parse(spec.forward, frozenset(by_name))
    except ExprError as exc:
        problem(where, f"ops.{name}: {exc}", exc.col)
        return None
    found = _body_problems(name, body, by_name, local, later)
    for message, col in found:
        problem(where, f"ops.{name}: {message}", col)
    used = {n.id for n in names_in(body)}
    unused = [p for p in params if p.name not in used]
    for p in unused:
        what = "tensor " if p.is_tensor else ""
        problem(
            (*path, "params", p.name),
            f"ops.{name}: the {what}parameter '{p.name}' is not used by its forward",
            at_key=True,
        )
    if found or unused:
        return None
    return Definition(signature_op(name, tuple(params)), body, where)


def _body_problems(
    name: str, body: Expr, params: Mapping[str, Param], local: Local, later: list[str]
) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for n in names_in(body):
        if n.id not in params:
            found.append(
                (
                    f"unknown name '{n.id}'{did_you_mean(n.id, params)}; a forward sees only its "
                    f"op's parameters ({', '.join(params)})",
                    n.col,
                )
            )
    for call in calls_in(body):
        op = REGISTRY.get(call.op)
        if call.op == name:
            found.append((f"'{name}' calls itself; an op may not be recursive", call.col))
            continue
        if call.op in later:
            found.append(
                (
                    f"'{name}' calls '{call.op}', which is defined after it; an op may call only "
                    "catalogue ops and ops defined before it (no recursion)",
                    call.col,
                )
            )
            continue
        if op is not None and (op.by_name or call.via):
            op = resolve_overload(op, call)
        else:
            defined = local.get(call.op)
            op = defined.signature if isinstance(defined, Definition) else defined
        if op is None:
            names = [o.name for o in public_ops()] + list(local)
            found.append((f"unknown op '{call.op}'{did_you_mean(call.op, names)}", call.col))
            continue
        found += match(op, call).errors
    if isinstance(body, Name) and body.id in params and not params[body.id].is_tensor:
        found.append((f"the forward is the attribute '{body.id}', not a tensor expression", 0))
    return found


def signature_op(name: str, params: tuple[Param, ...]) -> Op:
    """The op as call sites bind it; running it is an error (only its specialisations run)."""

    def unspecialised(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"op '{name}' runs only specialised at a call site")

    return Op(
        name, COMPOSED, params, unspecialised, unspecialised, unspecialised, unspecialised, _none
    )


def _none(_: np.random.Generator) -> list[Any]:
    return []


def names_in(expr: Expr) -> list[Name]:
    """Every `Name` of an expression, in order."""
    if isinstance(expr, Name):
        return [expr]
    if isinstance(expr, ListOf):
        return [n for item in expr.items for n in names_in(item)]
    if isinstance(expr, Call):
        return [n for a in (*expr.args, *(v for _, v, _ in expr.kwargs)) for n in names_in(a)]
    return []


def calls_in(expr: Expr) -> list[Call]:
    """Every `Call` of an expression, outermost first."""
    if isinstance(expr, ListOf):
        return [c for item in expr.items for c in calls_in(item)]
    if isinstance(expr, Call):
        inner = [c for a in (*expr.args, *(v for _, v, _ in expr.kwargs)) for c in calls_in(a)]
        return [expr, *inner]
    return []


def substitute(expr: Expr, values: Mapping[str, Any]) -> Expr:
    """``expr`` with each name of ``values`` (a call site's attribute arguments) made a literal;
    a list whose items all become literals is a literal list."""
    if isinstance(expr, Name) and expr.id in values:
        return Const(values[expr.id], expr.col)
    if isinstance(expr, ListOf):
        items = tuple(substitute(i, values) for i in expr.items)
        if all(isinstance(i, Const) for i in items):
            return Const([i.value for i in items if isinstance(i, Const)], expr.col)
        return ListOf(items, expr.col)
    if isinstance(expr, Call):
        return replace(
            expr,
            args=tuple(substitute(a, values) for a in expr.args),
            kwargs=tuple((k, substitute(v, values), c) for k, v, c in expr.kwargs),
        )
    return expr


def specialise(
    signature: Op, nodes: tuple[Node, ...], output: str, shapes: Mapping[str, Shape]
) -> Op:
    """The `Op` of one call site of a case's op: ``nodes`` is its forward lowered with the
    call's attribute values (literals in the nodes) over its tensor parameters (`Ref`s by
    parameter name); ``output`` names the node that is the op's value. ``signature``'s params
    must say which tensor parameters the body differentiates (``grad``)."""
    tensors = [p.name for p in signature.tensor_params]
    graph = _body_graph(nodes, output, shapes, tensors)

    def forward(**args: Any) -> Array:
        from runner.engine import forward as run_forward

        return run_forward(graph(args), {t: args[t] for t in tensors})[output]

    def vjp(g: Array, out: Array, /, **args: Any) -> tuple[Any, ...]:
        # Backprop through the body with the catalogue's rules: the op's catalogue rule.
        from runner.engine import backward
        from runner.engine import forward as run_forward

        body = graph(args)
        values = run_forward(body, {t: args[t] for t in tensors})
        grads = backward(body, values, g).grads
        return tuple(grads.get(t) for t in tensors)

    return replace(
        signature,
        forward=forward,
        vjp=vjp,
        torch=_body_torch(nodes, output, tensors),
        shape=_lowered_shape(signature.name, output, shapes, tensors),
        kinks=_body_kinks(signature.name, graph, nodes, tensors)
        if any(n.op.kinks for n in nodes)
        else None,
        no_torch=next((n.op.no_torch for n in nodes if n.op.no_torch), ""),
    )


def _body_graph(
    nodes: tuple[Node, ...], output: str, shapes: Mapping[str, Shape], tensors: list[str]
) -> Callable[[Mapping[str, Any]], Graph]:
    """The body's `Graph` for one call's arguments: a node requires grad where one of its
    differentiable operands does, starting from the floating tensor arguments."""

    def graph(args: Mapping[str, Any]) -> Graph:
        requires = {t: _floating(args[t]) for t in tensors}
        for node in nodes:
            requires[node.name] = any(
                requires.get(ref.name, False)
                for p in node.op.tensor_params
                if p.grad
                for ref in _refs(node.args[p.name])
            )
        return Graph(nodes, output, dict(shapes), requires)

    return graph


def _body_torch(nodes: tuple[Node, ...], output: str, tensors: list[str]) -> Callable[..., Any]:
    """The torch reference of the body: its nodes' torch functions composed, on the device of
    the first tensor argument (cpu when there is none)."""

    def torch(t: Any, /, **args: Any) -> Any:
        from runner.torch_side import torch_args

        device = next((v.device for v in args.values() if isinstance(v, t.Tensor)), "cpu")
        env: dict[str, Any] = {name: args[name] for name in tensors}
        for node in nodes:
            targs, _ = torch_args(t, node, node.bind(env), device)
            env[node.name] = node.op.torch(t, **targs)
        return env[output]

    return torch


def _lowered_shape(
    name: str, output: str, shapes: Mapping[str, Shape], tensors: list[str]
) -> Callable[..., Shape]:
    """The shape rule of a body lowered for fixed operand shapes: the output's shape, or a
    `ShapeError` when an operand's shape is not the one it was lowered for."""
    shape = tuple(shapes[output])

    def shape_rule(**given: Any) -> Shape:
        for tensor in tensors:
            if tuple(given[tensor]) != tuple(shapes[tensor]):
                raise ShapeError(
                    f"{name} was lowered for '{tensor}' of shape {shapes[tensor]}, "
                    f"got {tuple(given[tensor])}"
                )
        return shape

    return shape_rule


def _body_kinks(
    name: str,
    graph: Callable[[Mapping[str, Any]], Graph],
    nodes: tuple[Node, ...],
    tensors: list[str],
) -> Callable[..., str | None]:
    """The body's non-differentiable points, on the body's own values (for the numeric oracle,
    `runner.ops.kinks`): the first node's kink, named, or None."""

    def kinks(h: float, **args: Any) -> str | None:
        # ``h`` is how far the op's operands move.
        from runner.engine import forward as run_forward

        values = run_forward(graph(args), {t: args[t] for t in tensors})
        for node in nodes:
            found = node.op.kinks(h, **node.bind(values)) if node.op.kinks else None
            if found:
                return f"in the forward of {name}, {node.op.name}: {found}"
        return None

    return kinks


def _floating(value: Any) -> bool:
    return isinstance(value, np.ndarray) and is_floating(value.dtype)


def _refs(arg: Any) -> list[Ref]:
    return [a for a in (arg if isinstance(arg, list) else [arg]) if isinstance(a, Ref)]


# --- ops of a RULES module ---------------------------------------------------------------------

SPEC_KEYS = ("params", "forward", "shape", "description")


def no_torch_message(name: str, source: str) -> str:
    return (
        f"torch has no reference for op '{name}' (from {source}): use oracles: [numeric] or "
        "expect goldens"
    )


def module_op(name: str, spec: Any, source: str) -> Op:
    """The `Op` of ``OPS[name]`` of a RULES module (``source``: ``module rules.py``): a mapping
    with ``params`` (name -> kind or ``{kind, default}``), ``forward(**args) -> array`` (numpy;
    tensor parameters as arrays, attributes as values) and optionally ``shape(**args) ->
    shape`` (tensor parameters as shape tuples; default: their broadcast) and ``description``.
    Raises `OpSpecError` saying what is wrong with the spec."""
    signature, fn, shape_fn = _module_spec(spec)
    tensors = [p.name for p in signature if p.is_tensor]

    def forward(**args: Any) -> Array:
        return np.asarray(fn(**args))

    def vjp(*_: Any, **__: Any) -> Any:
        raise ValueError(
            f"op '{name}' (from {source}) has no catalogue rule: RULES['{name}'] must return "
            "the gradient of every argument that requires grad"
        )

    message = no_torch_message(name, source)

    def torch(*_: Any, **__: Any) -> Any:
        raise NotImplementedError(message)

    def shape(**given: Any) -> Shape:
        if shape_fn is None:
            return broadcast_shapes(*(tuple(given[t]) for t in tensors))
        try:
            found = shape_fn(**given)
            result = tuple(int(n) for n in found)
        except ShapeError:
            raise
        except Exception as exc:  # the user's code: its message is the best we have
            raise ShapeError(
                f"the shape rule of {source} raised {type(exc).__name__}: {exc}"
            ) from None
        return result

    return Op(
        name,
        MODULE,
        signature,
        forward,
        vjp,
        torch,
        shape,
        _none,
        note=str(spec.get("description", "")),
        no_torch=message,
        source=source,
    )


def _module_spec(spec: Any) -> tuple[tuple[Param, ...], Callable[..., Any], Any]:
    """The parts of a RULES module's op spec, checked: its parameters, its forward and its
    shape function (None when it has none). Raises `OpSpecError` saying what is wrong."""
    if not isinstance(spec, Mapping):
        raise OpSpecError(
            f"must be a dict with params, forward and optionally shape; got {type(spec).__name__}"
        )
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise OpSpecError(f"has the unknown key {unknown[0]!r} (keys: {', '.join(SPEC_KEYS)})")
    raw = spec.get("params")
    if not isinstance(raw, Mapping) or not raw:
        raise OpSpecError("needs params: a dict of parameter name -> kind (e.g. {'x': 'tensor'})")
    params = []
    for pname, kind in raw.items():
        if not isinstance(pname, str) or not pname.isidentifier():
            raise OpSpecError(f"parameter name {pname!r} is not an identifier")
        params.append(param(pname, kind))
    if not any(p.is_tensor for p in params):
        raise OpSpecError("has no tensor parameter: there is nothing to differentiate")
    fn = spec.get("forward")
    if not callable(fn):
        raise OpSpecError("needs forward: a function forward(**args) returning a numpy array")
    shape_fn = spec.get("shape")
    if shape_fn is not None and not callable(shape_fn):
        raise OpSpecError("shape must be a function shape(**shapes) returning a tuple")
    return tuple(params), fn, shape_fn
