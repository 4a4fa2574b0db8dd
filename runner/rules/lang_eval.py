"""The interpreter: walks a tree `parse_rule` accepted, one step at a time, and refuses a step
before it could build an array over the element limit; every failure becomes a `RuleEvalError` at
the column of the step that failed.

Internal to the rule language (`runner.rules.lang`, whose `evaluate` runs `_Eval`). The sizes a
step would make come from `runner.rules.lang_shapes` and the estimators of the tables
(`runner.rules.lang_tables`); operators and builtins from `runner.rules.lang_python`.
"""

from __future__ import annotations

import ast
import operator
import time
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NoReturn

import numpy as np

from runner.rules.budget import OverBudget, deadline
from runner.rules.lang_check import _Columns, _is_linalg, _is_np
from runner.rules.lang_limits import (
    MAX_CREATED,
    MAX_INT_BITS,
    MAX_SECONDS,
    MAX_SEQUENCE,
    RuleEvalError,
    _Refused,
    _too_big,
)
from runner.rules.lang_python import _BINOPS, _UNARY, _binop
from runner.rules.lang_shapes import _check_argument, _index_size
from runner.rules.lang_sizes import linalg_work
from runner.rules.lang_tables import (
    _ARRAY_ATTRS,
    _BUILTIN_SPECS,
    _CONVERT,
    _INFO_ATTRS,
    _LINALG,
    _LINALG_SPECS,
    _METHOD_SPECS,
    _NP,
    _NP_SPECS,
    _NP_VALUES,
    _RESULT_ATTRS,
    _SCALAR_TYPES,
    LITERAL_NAMES,
    TYPE_NAMES,
    _bind,
)


def _check_value(v: Any, limit: int, nested: bool = False) -> None:
    """Belt and braces after every step: sizes, and only numbers, bools and numpy's own small
    objects (dtypes, finfo, named linalg results) as values."""
    if isinstance(v, np.ndarray | np.generic):
        if v.size > limit:
            raise _too_big(v.size, limit)
        if v.dtype.kind not in "biuf":
            raise _Refused(f"made a value of dtype {v.dtype}; rules compute with numbers and bools")
    elif isinstance(v, bool | float | slice) or v is None or v is Ellipsis:
        pass
    elif isinstance(v, int):
        if v.bit_length() > MAX_INT_BITS:
            raise _Refused(f"made an int of {v.bit_length()} bits (at most {MAX_INT_BITS})")
    elif isinstance(v, list | tuple | str):
        if len(v) > MAX_SEQUENCE:
            raise _Refused(f"made a sequence of {len(v)} items (at most {MAX_SEQUENCE})")
        if not isinstance(v, str) and not nested:
            # One level: a nested list was checked when it was made (or came from the caller).
            for item in v:
                _check_value(item, limit, nested=True)
    elif not (
        isinstance(v, np.dtype | np.finfo | np.iinfo) or any(v is t for t in _SCALAR_TYPES.values())
    ):
        raise _Refused(f"made a value of type {type(v).__name__}, which rules do not use")


def _owners(v: Any) -> list[np.ndarray[Any, Any]]:
    """The arrays holding the memory of the arrays in ``v`` (a view's is its base's)."""
    items = v if isinstance(v, list | tuple) else (v,)
    found = []
    for item in items:
        if isinstance(item, np.ndarray):
            while isinstance(item.base, np.ndarray):
                item = item.base
            found.append(item)
    return found


class _Eval:
    def __init__(self, cols: _Columns, env: Mapping[str, Any], limit: int) -> None:
        self.cols = cols
        self.env = env
        self.limit = limit
        self.created = 0
        self.deadline = time.monotonic() + MAX_SECONDS
        # Arrays already counted (or the caller's), by id; weak, so no array lives longer for it
        # and an id is forgotten before it can be reused.
        self.known: weakref.WeakValueDictionary[int, np.ndarray[Any, Any]]
        self.known = weakref.WeakValueDictionary()
        for value in env.values():
            for arr in _owners(value):
                self.known[id(arr)] = arr

    def account(self, value: Any) -> None:
        """Counts the memory a step's result holds that no earlier value held: every step is
        bounded, but a rule of many steps could still hold many arrays."""
        for arr in _owners(value):
            if self.known.get(id(arr)) is not arr:
                self.known[id(arr)] = arr
                self.created += arr.size
        if self.created > MAX_CREATED * self.limit:
            raise _Refused(
                f"the rule has made {self.created} elements in all "
                f"(at most {MAX_CREATED} x {self.limit})"
            )

    def run(self, what: str, step: Callable[[], Any], col: int) -> Any:
        """One step of the rule: its failures become RuleEvalErrors at ``col``."""
        try:
            value = step()
            _check_value(value, self.limit)
            self.account(value)
            if time.monotonic() > self.deadline:
                raise _Refused(
                    f"the rule has run for over {MAX_SECONDS:g} s; rules check small examples"
                )
            case_end = deadline()
            if case_end is not None and time.monotonic() > case_end:
                raise _Refused(str(OverBudget()))
            return value
        except RuleEvalError:
            raise
        except _Refused as exc:
            raise RuleEvalError(f"{what}: {exc}", col) from None
        except Exception as exc:  # numpy's errors are the user's to read
            raise RuleEvalError(f"{what}: {type(exc).__name__}: {exc}", col) from None

    def expr(self, node: ast.expr) -> Any:
        col = self.cols.of(node)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.name(node, col)
        if isinstance(node, ast.Attribute):
            if _is_np(node.value):
                return _NP_VALUES[node.attr]
            value = self.expr(node.value)
            acol = self.cols.attribute(node)
            return self.run(f".{node.attr}", lambda: _attribute(value, node.attr), acol)
        if isinstance(node, ast.Call):
            return self.call(node, col)
        if isinstance(node, ast.BinOp):
            left, right = self.expr(node.left), self.expr(node.right)
            what = f"operator {_BINOPS[type(node.op)][0]}"
            return self.run(what, lambda: _binop(node.op, left, right, self.limit), col)
        if isinstance(node, ast.UnaryOp):
            operand = self.expr(node.operand)
            if isinstance(node.op, ast.Not):
                return self.run("not", partial(operator.not_, operand), col)
            fn = _UNARY[type(node.op)]
            return self.run("unary operator", lambda: fn(operand), col)
        if isinstance(node, ast.BoolOp):
            value = self.expr(node.values[0])
            for before, part in zip(node.values, node.values[1:], strict=False):
                truth = self.run("and/or", partial(bool, value), self.cols.of(before))
                if truth != isinstance(node.op, ast.And):
                    return value
                value = self.expr(part)
            return value
        if isinstance(node, ast.Compare):
            return self.compare(node, col)
        if isinstance(node, ast.IfExp):
            test = self.expr(node.test)
            if self.run("if/else", partial(bool, test), self.cols.of(node.test)):
                return self.expr(node.body)
            return self.expr(node.orelse)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, col)
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.expr(e) for e in node.elts]
            value = items if isinstance(node, ast.List) else tuple(items)
            _check_value(value, self.limit)  # no new arrays: not counted as made
            return value
        raise RuleEvalError(f"{type(node).__name__} is not allowed in a rule", col)

    def name(self, node: ast.Name, col: int) -> Any:
        if node.id in self.env and node.id != "np":
            return self.env[node.id]
        if node.id in LITERAL_NAMES:
            return LITERAL_NAMES[node.id]
        if node.id in TYPE_NAMES:
            return TYPE_NAMES[node.id]
        bound = ", ".join(sorted(k for k in self.env if isinstance(k, str)))
        raise RuleEvalError(f"name {node.id!r} is not bound (bound: {bound or 'none'})", col)

    def compare(self, node: ast.Compare, col: int) -> Any:
        left = self.expr(node.left)
        result: Any = True
        for i, (op, right_node) in enumerate(zip(node.ops, node.comparators, strict=True)):
            right = self.expr(right_node)
            result = self.run("comparison", partial(_binop, op, left, right, self.limit), col)
            if i + 1 < len(node.ops) and not self.run("comparison", partial(bool, result), col):
                return result
            left = right
        return result

    def subscript(self, node: ast.Subscript, col: int) -> Any:
        value = self.expr(node.value)
        key: Any
        if isinstance(node.slice, ast.Tuple):
            key = tuple(self.index(e) for e in node.slice.elts)
        else:
            key = self.index(node.slice)

        def step() -> Any:
            if isinstance(value, np.ndarray | np.generic):
                n = _index_size(tuple(value.shape), key, self.limit)
                if n > self.limit:
                    raise _too_big(n, self.limit)
            return value[key]

        return self.run("indexing", step, col)

    def index(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Slice):
            parts = [
                None if p is None else self.expr(p) for p in (node.lower, node.upper, node.step)
            ]
            return slice(*parts)
        return self.expr(node)

    def arguments(self, node: ast.Call) -> tuple[list[Any], dict[str, Any]]:
        args = [self.expr(a) for a in node.args]
        kwargs = {k.arg: self.expr(k.value) for k in node.keywords if k.arg is not None}
        return args, kwargs

    def call(self, node: ast.Call, col: int) -> Any:
        func = node.func
        if isinstance(func, ast.Name):
            sig, impl = _BUILTIN_SPECS[func.id]
            args, kwargs = self.arguments(node)
            return self.run(f"{func.id}()", lambda: impl(_bind(sig, args, kwargs), self.limit), col)
        assert isinstance(func, ast.Attribute)
        receiver: Any = None
        if _is_np(func.value):
            label = f"np.{func.attr}"
            spec = _NP_SPECS.get(func.attr, _CONVERT)
            fn = _NP.get(func.attr) or _SCALAR_TYPES[func.attr]
        elif _is_linalg(func.value):
            label, spec, fn = f"np.linalg.{func.attr}", _LINALG_SPECS[func.attr], _LINALG[func.attr]
        else:
            label, spec = f".{func.attr}()", _METHOD_SPECS[func.attr]
            receiver = self.expr(func.value)
            fn = _method(receiver, func.attr)
        args, kwargs = self.arguments(node)
        limit = self.limit

        def step() -> Any:
            bound = _bind(spec.sig, args, kwargs)
            if receiver is not None:
                bound["a"] = receiver
            for key, value in bound.items():
                for item in value if key == spec.sig.var else (value,):
                    _check_argument(key, item, limit)
            if spec.estimate is not None:
                n = spec.estimate(bound, limit)
                if n > limit:
                    raise _too_big(n, limit)
            if label.startswith("np.linalg."):
                linalg_work(bound, limit)
            return fn(*args, **kwargs, **dict(spec.forced))

        return self.run(label, step, col)


def _method(receiver: Any, name: str) -> Callable[..., Any]:
    if not isinstance(receiver, np.ndarray | np.generic):

        def refuse(*args: Any, **kwargs: Any) -> NoReturn:
            raise _Refused(f"{type(receiver).__name__} has no method .{name}() in a rule")

        return refuse
    fn: Callable[..., Any] = getattr(receiver, name)
    return fn


def _attribute(value: Any, attr: str) -> Any:
    allowed = (
        (attr in _ARRAY_ATTRS and isinstance(value, np.ndarray | np.generic))
        or (attr in _INFO_ATTRS and isinstance(value, np.finfo | np.iinfo))
        or (
            attr in _RESULT_ATTRS
            and isinstance(value, tuple)
            and attr in getattr(value, "_fields", ())
        )
    )
    if not allowed:
        raise _Refused(f"{type(value).__name__} has no attribute .{attr} in a rule")
    return getattr(value, attr)
