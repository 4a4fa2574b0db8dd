"""Python's own operators and builtins in a rule, each refused before it could build something big:
a broadcast over the element limit, an int of more than `MAX_INT_BITS` bits, a list, tuple or str
of more than `MAX_SEQUENCE` items.

Internal to the rule language (`runner.rules.lang`): the interpreter (`runner.rules.lang_eval`)
runs every operator through `_binop`, and the builtins' rows (`runner.rules.lang_tables`) name
the functions here. Every refusal is a `_Refused`.
"""

from __future__ import annotations

import ast
import builtins
import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.rules.lang_limits import MAX_INT_BITS, MAX_SEQUENCE, _Refused, _too_big
from runner.rules.lang_shapes import _checked_count, _matmul_shapes, _plain, _prod, _shape
from runner.rules.lang_sizes import Bound

# --- operators ---------------------------------------------------------------------------------

_BINOPS: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
    ast.MatMult: ("@", operator.matmul),
    ast.BitAnd: ("&", operator.and_),
    ast.BitOr: ("|", operator.or_),
    ast.BitXor: ("^", operator.xor),
    ast.LShift: ("<<", operator.lshift),
    ast.RShift: (">>", operator.rshift),
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
_SEQUENCES = (list, tuple, str)


def _as_index(v: Any) -> int | None:
    if isinstance(v, _SEQUENCES):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def _binop(op: ast.operator | ast.cmpop, left: Any, right: Any, limit: int) -> Any:
    """``left op right`` after the checks that keep it small."""
    fn = _BINOPS[type(op)][1] if isinstance(op, ast.operator) else _COMPARE[type(op)]
    if isinstance(op, ast.Is | ast.IsNot):
        return fn(left, right)
    if (
        isinstance(op, ast.cmpop)
        and isinstance(left, list | tuple)
        and isinstance(right, list | tuple)
    ):
        # Python compares item by item; arrays among them would broadcast unchecked.
        if not (_plain(left) and _plain(right)):
            raise _Refused("lists and tuples compare only when they hold numbers")
    seq = left if isinstance(left, _SEQUENCES) else right if isinstance(right, _SEQUENCES) else None
    if seq is not None and isinstance(op, ast.Mult):
        times = _as_index(right if seq is left else left)
        if times is not None:
            _check_length(len(seq) * max(times, 0))
            return fn(left, right)
    if isinstance(op, ast.operator) and (isinstance(left, str) or isinstance(right, str)):
        if not (isinstance(op, ast.Add) and type(left) is type(right)):
            raise _Refused("strings only support + and comparisons in a rule")
    if (
        isinstance(op, ast.Add)
        and isinstance(left, list | tuple | str)
        and type(left) is type(right)
    ):
        _check_length(len(left) + len(right))
        return fn(left, right)
    if isinstance(left, np.ndarray | np.generic) or isinstance(right, np.ndarray | np.generic):
        x, y = _shape(left, limit), _shape(right, limit)
        n = (
            _matmul_shapes(x, y)
            if isinstance(op, ast.MatMult)
            else _prod(np.broadcast_shapes(x, y))
        )
        if n > limit:
            raise _too_big(n, limit)
        return fn(left, right)
    if isinstance(left, int) and isinstance(right, int):
        _check_int_op(op, left, right)
    return fn(left, right)


def _check_length(n: int) -> None:
    if n > MAX_SEQUENCE:
        raise _Refused(f"would create a sequence of {n} items (at most {MAX_SEQUENCE})")


def _check_int_op(op: ast.operator | ast.cmpop, left: int, right: int) -> None:
    bits = 0.0
    if isinstance(op, ast.Pow) and right > 0 and abs(left) > 1:
        bits = math.log2(abs(left)) * right
    elif isinstance(op, ast.LShift) and right > 0:
        bits = left.bit_length() + right
    elif isinstance(op, ast.Mult):
        bits = left.bit_length() + right.bit_length()
    if bits > MAX_INT_BITS:
        raise _Refused(f"would make an int of about {int(bits)} bits (at most {MAX_INT_BITS})")


# --- builtins (our own versions, each bounded) -------------------------------------------------

Builtin = Callable[[Bound, int], Any]


def _iterable(v: Any) -> Any:
    n = len(v)
    if n > MAX_SEQUENCE:
        raise _Refused(f"would iterate over {n} items (at most {MAX_SEQUENCE}); use numpy")
    return v


def _b_minmax(pick: Callable[..., Any]) -> Builtin:
    def run(b: Bound, limit: int) -> Any:
        args = b.get("args", ())
        items = _iterable(args[0]) if len(args) == 1 else args
        # Comparing two arrays broadcasts them, out of sight of the size checks.
        if any(isinstance(i, np.ndarray) and i.size != 1 for i in items):
            raise _Refused("compares scalars only; use np.max / np.maximum for arrays")
        return pick(items)

    return run


def _b_sum(b: Bound, limit: int) -> Any:
    # Each + makes a new partial sum: the work is about the elements of all the items.
    _checked_count(b["iterable"], limit)
    total = b.get("start", 0)
    for item in _iterable(b["iterable"]):
        total = _binop(ast.Add(), total, item, limit)
    return total


def _b_round(b: Bound, limit: int) -> Any:
    number, digits = b["number"], b.get("ndigits")
    # round(int, -n) computes 10**n: bound it like any other big int.
    if (
        digits is not None
        and isinstance(number, int)
        and -operator.index(digits) > MAX_INT_BITS // 3
    ):
        raise _Refused(f"round to {digits} digits would make a too big int")
    return builtins.round(number) if digits is None else builtins.round(number, digits)


def _b_sequence(kind: type) -> Builtin:
    def run(b: Bound, limit: int) -> Any:
        return kind(_iterable(b["iterable"])) if "iterable" in b else kind()

    return run


def _b_convert(kind: type) -> Builtin:
    return lambda b, limit: kind(b["x"]) if "x" in b else kind()
