"""Matching a call's arguments to an op's signature, as Python (and torch) would: positional
then keyword, variadic operands, keyword-only parameters, and whether a literal fits a
parameter's kind. Nothing here lowers an operand; `runner.compile` does that."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.diagnostics import did_you_mean
from runner.expr import Call, Const, Expr, ListOf
from runner.ops import REGISTRY
from runner.ops.spec import Op, Param

KIND_TEXT = {
    "int": "an int",
    "int?": "an int or None",
    "float": "a number",
    "float?": "a number or None",
    "floats?": "a number, a list of numbers or None",
    "bool": "True or False",
    "bool?": "True, False or None",
    "str": "a string",
    "dims": "None, an int or a list of ints",
    "ints": "an int or a list of ints",
    "ints?": "an int, a list of ints or None",
    "sizes": "an int or a list of ints and Nones",
    "axes": "an int or a pair of lists of ints",
    "index": "a subscript",
}


@dataclass
class Match:
    """Which expression each parameter got, and what did not fit (message, column)."""

    given: dict[str, Expr] = field(default_factory=dict)
    errors: list[tuple[str, int]] = field(default_factory=list)


def label(op: Op, call: Call) -> str:
    """How messages name the call: ``sum``, or ``operator @ (matmul)``."""
    return op.name if not call.via else f"{call.via} ({op.name})"


def resolve_overload(op: Op, call: Call) -> Op:
    """The op ``call`` means: its `Op.tensor_overload` when the second positional argument is
    not a literal (``max(a, b)`` is maximum), or, for an op with `Op.overload_params`, when any
    of those is given a tensor (``clamp(x, lo, hi)`` with a tensor bound is clamp.Tensor); else
    ``op``."""
    if not op.tensor_overload:
        return op
    if op.overload_params:
        position = {p.name: i for i, p in enumerate(op.params)}
        given = [call.args[position[n]] for n in op.overload_params if position[n] < len(call.args)]
        given += [value for key, value, _ in call.kwargs if key in op.overload_params]
        if any(not isinstance(v, Const) for v in given):
            return REGISTRY[op.tensor_overload]
        return op
    if len(call.args) > 1 and not isinstance(call.args[1], Const):
        return REGISTRY[op.tensor_overload]
    return op


def match(op: Op, call: Call) -> Match:
    m = Match()
    name = label(op, call)
    params = list(op.params)
    positional = list(call.args)
    rest = next((p for p in params if p.kind == "tensors*"), None)
    if rest is not None:
        head = params[: params.index(rest)]
        m.given.update({p.name: a for p, a in zip(head, positional, strict=False)})
        tail = positional[len(head) :]
        # einsum("ij,jk", [a, b]): torch also takes the operands as one list.
        single = tail[0] if len(tail) == 1 and isinstance(tail[0], ListOf) else None
        m.given[rest.name] = single or ListOf(tuple(tail), call.col)
    else:
        slots = [p for p in params if not p.kw_only]
        if len(positional) > len(slots) and slots[-1].kind == "ints":
            # The tensor-method spelling: reshape(x, 2, 3) for reshape(x, [2, 3]), as torch
            # accepts x.reshape(2, 3).
            extra = positional[len(slots) - 1 :]
            if all(isinstance(a, Const) and is_int(a.value) for a in extra):
                values = [a.value for a in extra if isinstance(a, Const)]
                positional = [*positional[: len(slots) - 1], Const(values, extra[0].col)]
        if len(positional) > len(slots):
            m.errors.append(
                (
                    f"{name} takes at most {len(slots)} positional "
                    f"argument{'s' if len(slots) != 1 else ''} "
                    f"({op.signature()}), got {len(positional)}",
                    call.col,
                )
            )
            return m
        m.given.update({p.name: a for p, a in zip(slots, positional, strict=False)})
    by_name = {p.name: p for p in params}
    for key, value, col in call.kwargs:
        found = by_name.get(key)
        if found is None or found.kind == "index" and not call.via:
            m.errors.append(
                (
                    f"{name} has no argument '{key}'{did_you_mean(key, by_name)} "
                    f"({op.signature()})",
                    col,
                )
            )
        elif key in m.given:
            m.errors.append((f"{name} got '{key}' twice", col))
        else:
            m.given[key] = value
    for p in params:
        if p.name not in m.given and p.required:
            m.errors.append(
                (f"{name} is missing its argument '{p.name}' ({op.signature()})", call.col)
            )
    return m


def is_int(v: Any) -> bool:
    """An int that torch takes (int64), not a bool."""
    return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63


def is_number(v: Any) -> bool:
    """A number attribute: an int torch takes or a float that is not NaN."""
    return is_int(v) or isinstance(v, float) and v == v


def check_attr(p: Param, v: Any) -> str:
    """Empty when the literal ``v`` fits the parameter's kind, else what is wrong with it."""
    kind = p.kind
    if isinstance(v, str) and p.choices and kind != "str":
        # A number-like parameter that also takes named values (conv's padding='same').
        if v in p.choices:
            return ""
        named = ", ".join(repr(c) for c in p.choices)
        return f"must be {KIND_TEXT[kind]} or one of {named}, got {v!r}{did_you_mean(v, p.choices)}"
    if v is None:
        optional = kind.endswith("?") or kind == "dims"
        return "" if optional else f"must be {KIND_TEXT[kind]}, not None"
    base = kind.rstrip("?")
    if base == "int":
        ok = is_int(v)
    elif base == "float":
        ok = is_int(v) or isinstance(v, float) and v == v  # NaN is no attribute value
    elif base == "floats":
        ok = is_number(v) or isinstance(v, list) and len(v) > 0 and all(map(is_number, v))
    elif base == "bool":
        ok = isinstance(v, bool)
    elif base == "str":
        if isinstance(v, str) and p.choices and v not in p.choices:
            return (
                f"must be one of {', '.join(repr(c) for c in p.choices)}, got {v!r}"
                f"{did_you_mean(v, p.choices)}"
            )
        ok = isinstance(v, str)
    elif base in ("dims", "ints"):
        ok = is_int(v) or isinstance(v, list) and all(is_int(i) for i in v)
    elif base == "sizes":
        ok = is_int(v) or isinstance(v, list) and all(i is None or is_int(i) for i in v)
    elif base == "axes":
        ok = is_int(v) or (
            isinstance(v, list)
            and len(v) == 2
            and all(isinstance(d, list) and all(is_int(i) for i in d) for d in v)
        )
    else:
        ok = True
    return "" if ok else f"must be {KIND_TEXT[kind]}, got {v!r}"
