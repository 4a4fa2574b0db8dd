"""What numpy would make of a value, measured before it is made: element counts, shapes, the size
of an indexing result, and whether an argument is data (numbers, bools, numeric arrays) at all.

Internal to the rule language (`runner.rules.lang`); the estimators (`runner.rules.lang_sizes`),
the operators (`runner.rules.lang_python`) and the interpreter (`runner.rules.lang_eval`) build on
these. Every refusal is a `_Refused`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.rules.lang_limits import MAX_WORK, _Refused, _too_big, _too_slow


def _prod(dims: Any) -> int:
    return math.prod(int(d) for d in dims)


def _count(v: Any, memo: dict[int, int] | None = None) -> int:
    """Elements numpy makes of ``v`` when it converts it to an array (an upper bound). A list
    repeated inside another (``[[0] * 10**4] * 10**4``) is counted once per object, not walked
    once per use."""
    if isinstance(v, np.ndarray):
        return int(v.size)
    if isinstance(v, list | tuple):
        memo = {} if memo is None else memo
        if id(v) not in memo:
            memo[id(v)] = sum(_count(item, memo) for item in v)
        return memo[id(v)]
    return 1


def _checked_count(v: Any, limit: int) -> int:
    """``_count``, refused over ``limit`` or when numpy would make an array of other things than
    numbers (a list of strings is a string array: big, and nothing a rule computes with)."""
    n = _count(v)
    if n > limit:
        raise _too_big(n, limit)
    if isinstance(v, list | tuple) and not _is_data(v):
        raise _Refused("lists and tuples given to numpy must hold numbers or arrays")
    return n


def _every(v: Any, leaf: Callable[[Any], bool], seen: set[int] | None = None) -> bool:
    """``leaf`` holds for everything in ``v`` that is not a list or tuple (each walked once)."""
    if isinstance(v, list | tuple):
        seen = set() if seen is None else seen
        if id(v) in seen:
            return True
        seen.add(id(v))
        return all(_every(item, leaf, seen) for item in v)
    return leaf(v)


def _is_data(v: Any) -> bool:
    """Numbers, bools, None, numeric arrays, and lists and tuples of those."""
    return _every(v, _is_number)


def _is_number(v: Any) -> bool:
    if isinstance(v, np.ndarray | np.generic):
        return v.dtype.kind in "biuf"
    return v is None or isinstance(v, bool | int | float)


def _plain(v: Any) -> bool:
    """No array of more than one element anywhere in ``v``."""
    return _every(v, lambda item: not isinstance(item, np.ndarray) or item.size == 1)


# Parameters that take a string (einsum's subscripts, norm's ord='fro', pad's mode, ...) or a
# dtype; every other argument of a numpy call must be data (`_is_data`).
_STRING_PARAMS = frozenset(
    (
        "subscripts ord mode kind order UPLO reflect_type value "
        + "dtype int_type arrays_and_dtypes"
    ).split()
)


def _check_argument(key: str, value: Any, limit: int) -> None:
    if key in ("dtype", "int_type") and value is not None:
        _numeric_dtype(value)
    elif key in _STRING_PARAMS and isinstance(value, str | np.dtype | type):
        pass
    elif not _is_data(value):
        raise _Refused(f"{key}= must be numbers or arrays, not {type(value).__name__}")
    else:
        _checked_count(value, limit)


def _numeric_dtype(value: Any) -> None:
    if isinstance(value, np.ndarray | np.generic):  # np.finfo(x) takes x's dtype
        value = value.dtype
    try:
        dtype = np.dtype(value)
    except Exception:
        raise _Refused(f"{value!r} is not a numpy dtype") from None
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise _Refused(f"dtype {dtype} is not allowed; rules compute with numbers and bools")


def _shape(v: Any, limit: int) -> tuple[int, ...]:
    """The shape numpy gives ``v`` as an operand; () for what it is not an array of."""
    if isinstance(v, np.ndarray | np.generic):
        return tuple(v.shape)
    if isinstance(v, list | tuple):
        _checked_count(v, limit)
        return tuple(np.shape(v))
    return ()


def _dims(v: Any) -> tuple[int, ...]:
    """A shape argument (an int or a sequence of ints) as ints; refused when it is not one."""
    try:
        return (operator.index(v),)
    except TypeError:
        pass
    if isinstance(v, np.ndarray | list | tuple) and np.ndim(v) == 1 and len(v) <= 64:
        return tuple(operator.index(d) for d in v)
    raise _Refused("a shape must be an int or a sequence of at most 64 ints")


def _index_size(shape: tuple[int, ...], index: Any, limit: int) -> int:
    """An upper bound on the elements of ``array[index]``: the broadcast shape of the advanced
    (array) indices times every dimension a slice, ``...`` or nothing keeps."""
    items = index if isinstance(index, tuple) else (index,)
    parts: list[tuple[str, int]] = []
    advanced: list[tuple[int, ...]] = []
    for item in items:
        if item is None or isinstance(item, bool | np.bool_):
            parts.append(("new", 0))
        elif item is Ellipsis:
            parts.append(("ellipsis", 0))
        elif isinstance(item, slice):
            parts.append(("slice", 1))
        else:
            if isinstance(item, list | tuple):
                _checked_count(item, limit)
            arr = np.asarray(item)
            if arr.dtype == np.bool_ and arr.ndim > 0:
                parts.append(("array", arr.ndim))
                advanced.append((int(np.count_nonzero(arr)),))
            else:
                parts.append(("array", 1))
                advanced.append(tuple(arr.shape))
    rest = max(len(shape) - sum(n for _, n in parts), 0)
    kept, at, ellipsis_done = 1, 0, False
    for kind, n in parts:
        if kind == "ellipsis" and not ellipsis_done:
            kept *= _prod(shape[at : at + rest])
            at, ellipsis_done = at + rest, True
        elif kind == "slice":
            kept *= shape[at] if at < len(shape) else 1
            at += 1
        elif kind == "array":
            at += n
    kept *= _prod(shape[at:])
    return kept * (_prod(np.broadcast_shapes(*advanced)) if advanced else 1)


def _axis(axis: Any, ndim: int) -> int:
    ax = operator.index(axis)
    return ax + ndim if ax < 0 else ax


def _matmul_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """The size of ``a @ b``; refuses a product over `MAX_WORK` multiply-adds."""
    if not a or not b:
        return 1  # numpy refuses scalars
    a2 = a if len(a) > 1 else (1, *a)
    b2 = b if len(b) > 1 else (*b, 1)
    size = _prod(np.broadcast_shapes(a2[:-2], b2[:-2])) * a2[-2] * b2[-1]
    if size * a2[-1] > MAX_WORK:
        raise _too_slow(size * a2[-1], "the product")
    return size
