"""Rule expressions: the numpy a user writes for a backward rule in a case file, run in a sandbox.

A case file comes from a stranger, so its rules (``input: grad @ other.T``) are parsed with
``ast.parse(text, mode="eval")``, checked against whitelists by `parse_rule`, and interpreted by
walking the tree (`evaluate`). Nothing here calls eval, exec or compile, imports torch, or reaches
anything the tables below do not name:

- literals: int, float, str, True/False/None (and true/false/none/null unless bound), tuples and
  lists; ``...`` inside ``[ ]``. No complex, bytes, dict or set literals;
- every binary and unary operator, comparisons (``is`` only against None, never ``in``),
  ``and``/``or``/``not``, ``a if c else b``, any subscript numpy takes;
- names bound by the caller (``grad``, ``out``, the op's arguments); ``np.<name>`` from
  `NP_FUNCTIONS` and `NP_CONSTANTS`, ``np.linalg.<name>`` from `NP_LINALG_FUNCTIONS`,
  ``<value>.<attribute>`` from `ARRAY_ATTRIBUTES`, ``<value>.<method>(...)`` from
  `ARRAY_METHODS` and the builtins `BUILTINS`. Each callable takes only the positional and
  keyword arguments its table row names: never ``out=``, nothing that writes in place.

Resources: before a call or operator that could build a big array runs, its result size is
estimated from its arguments and refused over ``max_elements``; Python ints stay under
`MAX_INT_BITS` bits and Python sequences under `MAX_SEQUENCE` items. A function with neither an
estimate nor a result bounded by its arguments is not on the lists.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import math
import operator
import re
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

import numpy as np

MAX_LENGTH = 10_000
MAX_DEPTH = 100  # tree levels; deeper rules are refused, so evaluating never recurses far
MAX_INT_BITS = 10_000
MAX_SEQUENCE = 10_000  # items in a Python list, tuple or str a rule builds
MAX_EINSUM_OPERANDS = 32
MAX_CREATED = 32  # all the arrays one evaluation makes: at most this many times max_elements
MAX_EINSUM_WORK = 10**10  # multiply-adds of einsum's unoptimised loop, an upper bound on its time
LITERAL_NAMES: dict[str, Any] = {"true": True, "false": False, "none": None, "null": None}
# ``x.astype(float)``: Python's type names as values mean numpy's types (calls are the builtins).
TYPE_NAMES: dict[str, type] = {"bool": np.bool_, "float": np.float64, "int": np.dtype(int).type}


class RuleLangError(Exception):
    """A rule refused by `parse_rule`, before anything runs.

    ``col`` is the 0-based column, in characters, in the text as given (counting every line of a
    multi-line text from the first character) of the offending sub-expression; for a refused
    attribute or method, of the attribute's name (``grad.__class__``: 5).
    """

    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.col = col


class RuleEvalError(Exception):
    """A rule failed while `evaluate` ran it: numpy raised, an array would exceed the element
    limit, a Python int would grow too big, the truth value of an array was asked, a name is not
    bound, ... ``col`` as in `RuleLangError`, of the innermost sub-expression that failed."""

    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.col = col


@dataclass(frozen=True)
class RuleExpr:
    """A validated rule: ``names`` are the free names it uses (not np, not the literal names),
    each with the column of its first use, in order of appearance."""

    text: str
    tree: ast.Expression
    names: tuple[tuple[str, int], ...]


class _Refused(Exception):
    """A resource or type refusal found while evaluating; becomes a RuleEvalError with a col."""


def _too_big(n: int, limit: int) -> _Refused:
    return _Refused(f"would create an array of {n} elements (at most {limit})")


# --- sizes -----------------------------------------------------------------------------------


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
    if isinstance(v, list | tuple) and not _is_data(v, set()):
        raise _Refused("lists and tuples given to numpy must hold numbers or arrays")
    return n


def _is_data(v: Any, seen: set[int]) -> bool:
    """Numbers, bools, None, numeric arrays, and lists and tuples of those (each walked once)."""
    if isinstance(v, list | tuple):
        if id(v) in seen:
            return True
        seen.add(id(v))
        return all(_is_data(item, seen) for item in v)
    if isinstance(v, np.ndarray | np.generic):
        return v.dtype.kind in "biuf"
    return v is None or isinstance(v, bool | int | float)


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
    elif not _is_data(value, set()):
        raise _Refused(f"{key}= must be numbers or arrays, not {type(value).__name__}")
    else:
        _checked_count(value, limit)


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


# --- estimators: elements a call creates, from its bound arguments ----------------------------

Bound = dict[str, Any]
Estimator = Callable[[Bound, int], int]


def _elementwise(b: Bound, limit: int) -> int:
    return _prod(np.broadcast_shapes(*(_shape(v, limit) for k, v in b.items() if k != "dtype")))


def _where(b: Bound, limit: int) -> int:
    if b.get("x") is None and b.get("y") is None:  # np.where(c) is np.nonzero(c)
        return _nonzero(b, limit)
    return _elementwise(b, limit)


def _nonzero(b: Bound, limit: int) -> int:
    shape = _shape(b["a"] if "a" in b else b["condition"], limit)
    return max(len(shape), 1) * _prod(shape)


def _creation(b: Bound, limit: int) -> int:
    return _prod(_dims(b["shape"]))


def _like(b: Bound, limit: int) -> int:
    if b.get("shape") is not None:
        return _prod(_dims(b["shape"]))
    return _count(b["a"])


def _eye(b: Bound, limit: int) -> int:
    n = operator.index(b["N"])
    m = n if b.get("M") is None else operator.index(b["M"])
    return n * m


def _identity(b: Bound, limit: int) -> int:
    return operator.index(b["n"]) ** 2


def _arange(b: Bound, limit: int) -> int:
    first, stop, step = b["start_or_stop"], b.get("stop"), b.get("step", 1)
    start, stop = (0, first) if stop is None else (first, stop)
    start, stop, step = (
        float(np.asarray(x).item()) for x in (start, stop, 1 if step is None else step)
    )
    if step == 0:
        return 0  # numpy raises
    n = (stop - start) / step
    if not math.isfinite(n):
        raise _Refused(f"np.arange({start}, {stop}, {step}) has no finite length")
    return max(math.ceil(n), 0)


def _linspace(b: Bound, limit: int) -> int:
    num = operator.index(b.get("num", 50))
    return num * _prod(np.broadcast_shapes(_shape(b["start"], limit), _shape(b["stop"], limit)))


def _array(b: Bound, limit: int) -> int:
    key = "object" if "object" in b else "a" if "a" in b else "value"
    return _count(b.get(key))


def _product(b: Bound, limit: int) -> int:  # outer, kron
    return _count(b["a"]) * _count(b["b"])


def _tile(b: Bound, limit: int) -> int:
    return _count(b["A"]) * _prod(_dims(b["reps"]))


def _repeat(b: Bound, limit: int) -> int:
    repeats = np.asarray(b["repeats"])
    most = int(repeats.max()) if repeats.size else 0
    return _count(b["a"]) * max(most, 0)


_PAD_MODES = frozenset(
    "constant edge linear_ramp maximum mean median minimum reflect symmetric wrap".split()
)


def _pad(b: Bound, limit: int) -> int:
    shape = _shape(b["array"], limit)
    mode = b.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise _Refused(f"mode must be one of {', '.join(sorted(_PAD_MODES))}")
    width = np.asarray(b["pad_width"])
    if width.dtype.kind not in "iub":
        raise _Refused("pad_width must be ints")
    pairs = np.broadcast_to(width, (len(shape), 2)).tolist()
    if mode in ("reflect", "symmetric", "wrap"):
        # numpy copies one period per loop turn: a pad many times the axis is a long loop.
        turns = sum(max(lo, hi) // max(d - 1, 1) for d, (lo, hi) in zip(shape, pairs, strict=True))
        if turns > 1_000:
            raise _Refused(f"a {mode} pad over 1000 times its axis is not supported")
    return _prod(d + lo + hi for d, (lo, hi) in zip(shape, pairs, strict=True))


def _diag(b: Bound, limit: int) -> int:
    shape = _shape(b["v"], limit)
    k = abs(operator.index(b.get("k", 0)))
    return (shape[0] + k) ** 2 if len(shape) == 1 else min(shape, default=1)


def _diagflat(b: Bound, limit: int) -> int:
    return (_count(b["v"]) + abs(operator.index(b.get("k", 0)))) ** 2


def _tri(b: Bound, limit: int) -> int:  # tril and triu make a 1-D argument square
    shape = _shape(b["m"], limit)
    return shape[0] ** 2 if len(shape) == 1 else _prod(shape)


def _axis(axis: Any, ndim: int) -> int:
    ax = operator.index(axis)
    return ax + ndim if ax < 0 else ax


def _take(b: Bound, limit: int) -> int:
    n = _count(b["indices"])
    if b.get("axis") is None:
        return n
    shape = _shape(b["a"], limit)
    ax = _axis(b["axis"], len(shape))
    return _prod(shape[:ax] + shape[ax + 1 :]) * n


def _take_along_axis(b: Bound, limit: int) -> int:
    if "axis" in b and b["axis"] is None:
        return _count(b["indices"])
    a, i = _shape(b["arr"], limit), _shape(b["indices"], limit)
    n = max(len(a), len(i))
    a, i = (1,) * (n - len(a)) + a, (1,) * (n - len(i)) + i
    return _prod(max(x, y) for x, y in zip(a, i, strict=True))


def _broadcast_to(b: Bound, limit: int) -> int:
    return _prod(_dims(b["shape"]))


def _split(b: Bound, limit: int) -> int:
    sections = b["indices_or_sections"]
    try:
        pieces = operator.index(sections)
    except TypeError:
        pieces = _count(sections) + 1
    if pieces > MAX_SEQUENCE:
        raise _Refused(f"would create {pieces} pieces (at most {MAX_SEQUENCE})")
    return 0  # the pieces are views


def _matmul_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    if not a or not b:
        return 1  # numpy refuses scalars
    a2 = a if len(a) > 1 else (1, *a)
    b2 = b if len(b) > 1 else (*b, 1)
    return _prod(np.broadcast_shapes(a2[:-2], b2[:-2])) * a2[-2] * b2[-1]


def _matmul(b: Bound, limit: int) -> int:
    return _matmul_shapes(_shape(b["x1"], limit), _shape(b["x2"], limit))


def _dot(b: Bound, limit: int) -> int:
    x, y = _shape(b["a"], limit), _shape(b["b"], limit)
    if not x or not y:
        return _prod(x) * _prod(y)
    if len(y) == 1:
        return _prod(x[:-1])
    return _prod(x[:-1]) * _prod(y[:-2]) * y[-1]


def _inner(b: Bound, limit: int) -> int:
    x, y = _shape(b["a"], limit), _shape(b["b"], limit)
    if not x or not y:
        return _prod(x) * _prod(y)
    return _prod(x[:-1]) * _prod(y[:-1])


def _tensordot(b: Bound, limit: int) -> int:
    x, y = _shape(b["a"], limit), _shape(b["b"], limit)
    axes = b.get("axes", 2)
    try:
        n = operator.index(axes)
        if not 0 <= n <= min(len(x), len(y)):
            raise _Refused(f"axes={n} does not fit operands of {len(x)} and {len(y)} dimensions")
        summed_x, summed_y = set(range(len(x) - n, len(x))), set(range(n))
    except TypeError:
        ax, ay = axes
        ax = [ax] if np.ndim(ax) == 0 else list(ax)
        ay = [ay] if np.ndim(ay) == 0 else list(ay)
        summed_x = {_axis(i, len(x)) for i in ax}
        summed_y = {_axis(i, len(y)) for i in ay}
    kept = [d for i, d in enumerate(x) if i not in summed_x]
    kept += [d for i, d in enumerate(y) if i not in summed_y]
    return _prod(kept)


def _einsum(b: Bound, limit: int) -> int:
    subscripts, operands = b["subscripts"], b.get("operands", ())
    if not isinstance(subscripts, str):
        raise _Refused("the first argument must be the subscripts, e.g. 'ij,jk->ik'")
    if len(operands) > MAX_EINSUM_OPERANDS:
        raise _Refused(f"takes at most {MAX_EINSUM_OPERANDS} operands here")
    lhs, arrow, rhs = subscripts.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise _Refused(f"{len(terms)} operand subscripts for {len(operands)} operands")
    dims: dict[str, int] = {}
    uses: Counter[str] = Counter()
    ellipses: list[tuple[int, ...]] = []
    for term, operand in zip(terms, operands, strict=True):
        shape = _shape(operand, limit)
        pre, dots, post = term.partition("...")
        if dots:
            extra = len(shape) - len(pre) - len(post)
            if extra < 0:
                raise _Refused(f"subscripts {term!r} do not fit an operand of shape {shape}")
            ellipses.append(shape[len(pre) : len(pre) + extra])
            sized = [*zip(pre, shape[: len(pre)], strict=True)]
            sized += zip(post, shape[len(pre) + extra :], strict=True)
        elif len(term) == len(shape):
            sized = list(zip(term, shape, strict=True))
        else:
            raise _Refused(f"subscripts {term!r} do not fit an operand of shape {shape}")
        for letter, d in sized:
            if not letter.isalpha():
                raise _Refused(f"invalid subscript {letter!r} in {subscripts!r}")
            dims[letter] = max(dims.get(letter, 1), d)
            uses[letter] += 1
    ellipsis = _prod(np.broadcast_shapes(*ellipses)) if ellipses else 1
    if arrow:
        out, keeps_ellipsis = rhs.replace("...", ""), "..." in rhs
    else:
        out, keeps_ellipsis = "".join(sorted(c for c, n in uses.items() if n == 1)), True
    if any(c not in dims for c in out):
        raise _Refused(f"an output subscript of {subscripts!r} is on no operand")
    work = _prod(dims.values()) * ellipsis
    if work > MAX_EINSUM_WORK:
        raise _Refused(f"would take about {work} multiply-adds (at most {MAX_EINSUM_WORK})")
    return _prod(dims[c] for c in out) * (ellipsis if keeps_ellipsis else 1)


def _batch(b: Bound, limit: int) -> tuple[int, int, int]:
    shape = _shape(b["a"], limit)
    if len(shape) < 2:
        return 1, 1, 1  # numpy refuses
    return _prod(shape[:-2]), shape[-2], shape[-1]


def _svd(b: Bound, limit: int) -> int:
    batch, m, n = _batch(b, limit)
    k = min(m, n)
    if not b.get("compute_uv", True):
        return batch * k
    if b.get("full_matrices", True):
        return batch * (m * m + k + n * n)
    return batch * (m * k + k + k * n)


def _qr(b: Bound, limit: int) -> int:
    batch, m, n = _batch(b, limit)
    k = min(m, n)
    sizes = {"reduced": m * k + k * n, "r": k * n, "raw": m * n + k}
    return batch * sizes.get(b.get("mode", "reduced"), m * m + m * n)


def _solve(b: Bound, limit: int) -> int:
    a, x = _shape(b["a"], limit), _shape(b["b"], limit)
    if len(x) == 1:
        return _prod(a[:-1])
    return _prod(np.broadcast_shapes(a[:-2], x[:-2])) * _prod(x[-2:])


# --- the tables --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sig:
    pos: tuple[str, ...]  # positional parameters, in numpy's order, up to (never including) out
    required: int
    posonly: int  # the first `posonly` of `pos` cannot be passed by keyword
    var: str | None  # *args
    kw: tuple[str, ...]  # further keyword-only parameters

    def keywords(self) -> tuple[str, ...]:
        return self.pos[self.posonly :] + self.kw


def _sig(text: str) -> _Sig:
    """``"a axis? dtype? | keepdims?"``: ``?`` optional, ``/`` ends the positional-only ones,
    ``*name`` varargs, after ``|`` keyword-only."""
    head, _, tail = text.partition("|")
    pos: list[str] = []
    required, posonly, var, optional = 0, 0, None, False
    for token in head.split():
        if token == "/":
            posonly = len(pos)
        elif token.startswith("*"):
            var = token[1:]
        else:
            pos.append(token.rstrip("?"))
            optional = optional or token.endswith("?")
            if not optional:
                required += 1
    return _Sig(tuple(pos), required, posonly, var, tuple(t.rstrip("?") for t in tail.split()))


@dataclass(frozen=True)
class _Spec:
    sig: _Sig
    estimate: Estimator | None  # None: every result is no bigger than an argument
    forced: tuple[tuple[str, Any], ...] = ()


def _spec(text: str, estimate: Estimator | None = None, **forced: Any) -> _Spec:
    return _Spec(_sig(text), estimate, tuple(forced.items()))


_UFUNCS = """abs absolute add arccos arccosh arcsin arcsinh arctan arctan2 arctanh bitwise_and
bitwise_or bitwise_xor cbrt ceil copysign cos cosh deg2rad divide equal exp exp2 expm1 fabs
float_power floor floor_divide fmax fmin fmod greater greater_equal heaviside hypot invert
isfinite isinf isnan less less_equal log log10 log1p log2 logaddexp logaddexp2 logical_and
logical_not logical_or logical_xor maximum minimum mod multiply negative nextafter not_equal
positive power rad2deg reciprocal remainder rint sign signbit sin sinh spacing sqrt square
subtract tan tanh true_divide trunc""".split()


def _rows(names: str, spec: _Spec) -> dict[str, _Spec]:
    return dict.fromkeys(names.split(), spec)


_NP_SPECS: dict[str, _Spec] = {
    # --- elementwise ---
    **{
        name: _spec(
            "x1 x2 / | dtype?" if getattr(np, name).nin == 2 else "x / | dtype?", _elementwise
        )
        for name in _UFUNCS
        if isinstance(getattr(np, name, None), np.ufunc)
    },
    **_rows("sinc isneginf isposinf", _spec("x", _elementwise)),
    **_rows("isclose allclose", _spec("a b rtol? atol? equal_nan?", _elementwise)),
    "where": _spec("condition x? y? /", _where),
    "clip": _spec("a a_min? a_max? | min? max?", _elementwise),
    "nan_to_num": _spec("x | nan? posinf? neginf?", _elementwise),
    "round": _spec("a decimals?", _elementwise),
    # --- reductions and scans: no bigger than their argument ---
    **_rows("sum prod nansum nanprod", _spec("a axis? dtype? | keepdims? initial?")),
    **_rows("mean nanmean", _spec("a axis? dtype? | keepdims?")),
    **_rows("max min amax amin nanmax nanmin", _spec("a axis? | keepdims? initial?")),
    **_rows("any all argmax argmin count_nonzero median ptp", _spec("a axis? | keepdims?")),
    **_rows("var std nanvar nanstd", _spec("a axis? dtype? | ddof? keepdims? correction?")),
    **_rows("cumsum cumprod nancumsum nancumprod", _spec("a axis? dtype?")),
    "average": _spec("a axis? weights? returned? | keepdims?"),
    "trace": _spec("a offset? axis1? axis2? dtype?"),
    "array_equal": _spec("a1 a2 equal_nan?"),
    # --- the same elements in another shape or order ---
    **_rows("copy flatnonzero shape ndim", _spec("a")),
    **_rows("fliplr flipud", _spec("m")),
    **_rows("sort argsort", _spec("a axis? kind? | stable?")),
    **_rows("atleast_1d atleast_2d atleast_3d", _spec("*arys")),
    **_rows("split array_split", _spec("ary indices_or_sections axis?", _split)),
    **_rows("nonzero argwhere", _spec("a", _nonzero)),
    "reshape": _spec("a / shape order?"),
    "transpose": _spec("a axes?"),
    "swapaxes": _spec("a axis1 axis2"),
    "moveaxis": _spec("a source destination"),
    "squeeze": _spec("a axis?"),
    "expand_dims": _spec("a axis"),
    "ravel": _spec("a order?"),
    "flip": _spec("m axis?"),
    "rot90": _spec("m k? axes?"),
    "roll": _spec("a shift axis?"),
    "diagonal": _spec("a offset? axis1? axis2?"),
    # --- new arrays ---
    **_rows("ones zeros", _spec("shape dtype?", _creation)),
    **_rows("ones_like zeros_like", _spec("a dtype? | shape?", _like)),
    **_rows("tril triu", _spec("m k?", _tri)),
    "full": _spec("shape fill_value dtype?", _creation),
    "full_like": _spec("a fill_value dtype? | shape?", _like),
    "eye": _spec("N M? k? dtype?", _eye),
    "identity": _spec("n dtype?", _identity),
    "arange": _spec("start_or_stop / stop? step? | dtype?", _arange),
    "linspace": _spec("start stop num? endpoint? | dtype? axis?", _linspace),
    "array": _spec("object dtype? | ndmin?", _array),
    "asarray": _spec("a dtype?", _array),
    "broadcast_to": _spec("array shape", _broadcast_to),
    "diag": _spec("v k?", _diag),
    "diagflat": _spec("v k?", _diagflat),
    # --- joining (a list argument is bounded by its count) and repeating ---
    **_rows("hstack vstack", _spec("tup | dtype?")),
    **_rows("column_stack dstack", _spec("tup")),
    "stack": _spec("arrays axis? | dtype?"),
    "concatenate": _spec("arrays / axis? | dtype?"),
    "tile": _spec("A reps", _tile),
    "repeat": _spec("a repeats axis?", _repeat),
    "pad": _spec(
        "array pad_width mode? | constant_values? end_values? reflect_type? stat_length?", _pad
    ),
    "take": _spec("a indices axis? | mode?", _take),
    "take_along_axis": _spec("arr indices axis?", _take_along_axis),
    # --- products ---
    **_rows("outer kron", _spec("a b", _product)),
    "matmul": _spec("x1 x2 / | dtype?", _matmul),
    "dot": _spec("a b", _dot),
    "inner": _spec("a b /", _inner),
    "vdot": _spec("a b /"),
    "tensordot": _spec("a b axes?", _tensordot),
    "einsum": _spec("subscripts *operands | dtype?", _einsum, optimize=True),
    # --- about arrays and dtypes ---
    "size": _spec("a axis?"),
    "finfo": _spec("dtype"),
    "iinfo": _spec("int_type"),
    "result_type": _spec("*arrays_and_dtypes"),
}

_LINALG_SPECS: dict[str, _Spec] = {
    **_rows("inv det slogdet", _spec("a")),
    **_rows("eigh eigvalsh", _spec("a UPLO?")),
    "pinv": _spec("a rcond? hermitian? | rtol?"),
    "solve": _spec("a b", _solve),
    "norm": _spec("x ord? axis? keepdims?"),
    "svd": _spec("a full_matrices? compute_uv? hermitian?", _svd),
    "qr": _spec("a mode?", _qr),
    "cholesky": _spec("a / | upper?"),
}

# Methods bind their receiver as "a", so they share the functions' estimators.
_METHOD_SPECS: dict[str, _Spec] = {
    **_rows("sum prod", _spec("axis? dtype? | keepdims? initial?")),
    **_rows("max min", _spec("axis? | keepdims? initial?")),
    **_rows("any all argmax argmin", _spec("axis? | keepdims?")),
    **_rows("var std", _spec("axis? dtype? | ddof? keepdims?")),
    **_rows("cumsum cumprod", _spec("axis? dtype?")),
    **_rows("flatten ravel copy", _spec("")),
    "mean": _spec("axis? dtype? | keepdims?"),
    "reshape": _spec("*shape | order?"),
    "transpose": _spec("*axes"),
    "swapaxes": _spec("axis1 axis2 /"),
    "squeeze": _spec("axis?"),
    "astype": _spec("dtype"),
    "clip": _spec("min? max?", _elementwise),
    "round": _spec("decimals?"),
    "trace": _spec("offset? axis1? axis2? dtype?"),
    "diagonal": _spec("offset? axis1? axis2?"),
    "argsort": _spec("axis? kind? | stable?"),
    "nonzero": _spec("", _nonzero),
    "item": _spec("*args"),
    "dot": _spec("b /", _dot),
    "repeat": _spec("repeats / axis?", _repeat),
    "take": _spec("indices / axis? | mode?", _take),
}

_SCALAR_TYPES: dict[str, type] = {
    "bool": np.bool_,
    **{
        name: getattr(np, name)
        for name in "bool_ float16 float32 float64 int8 int16 int32 int64 intp uint8 uint16 "
        "uint32 uint64".split()
    },
}
_NP_VALUES: dict[str, Any] = {
    **_SCALAR_TYPES,
    **{name: getattr(np, name) for name in ("e", "euler_gamma", "inf", "nan", "pi")},
    "newaxis": None,
}
_CONVERT = _spec("value? /", _array)  # np.float32(x), np.bool_(mask)

_ARRAY_ATTRS = frozenset({"T", "mT", "dtype", "ndim", "shape", "size"})
_INFO_ATTRS = frozenset(
    {"bits", "eps", "epsneg", "max", "min", "precision", "resolution", "smallest_normal", "tiny"}
)
_RESULT_ATTRS = frozenset(  # fields of np.linalg's named results
    {"Q", "R", "S", "U", "Vh", "eigenvalues", "eigenvectors", "logabsdet", "sign"}
)

_IO = "does I/O or reaches the machine; rules may not"
_STATE = "changes numpy's global state; rules may not"
_CALLBACK = "calls back into Python; rules may not"
_REFUSED_NP: dict[str, str] = {
    **dict.fromkeys(
        """save savez savez_compressed load loadtxt savetxt genfromtxt fromfile fromregex
        frombuffer fromstring memmap ctypeslib lib DataSource testing f2py distutils
        show_config show_runtime get_include from_dlpack""".split(),
        _IO,
    ),
    **dict.fromkeys("seterr seterrcall setbufsize set_printoptions errstate".split(), _STATE),
    **dict.fromkeys(
        "vectorize frompyfunc apply_along_axis apply_over_axes piecewise".split(), _CALLBACK
    ),
    "random": "draws random numbers; a rule is a formula of its inputs",
}
_REFUSED_METHODS: dict[str, str] = {
    **dict.fromkeys("tofile dump dumps".split(), _IO),
    **dict.fromkeys(
        "fill put itemset resize setflags byteswap setfield partition".split(),
        "changes the array in place; rules may not",
    ),
    "sort": "sorts in place; use np.sort(x)",
    "view": "reinterprets memory; use .astype(dtype)",
    "tolist": "makes Python lists; keep the array",
    "conj": "is for complex numbers, which rules do not use",
    "conjugate": "is for complex numbers, which rules do not use",
}


# --- builtins (our own versions, each bounded) -------------------------------------------------


def _iterable(v: Any) -> Any:
    n = len(v)
    if n > MAX_SEQUENCE:
        raise _Refused(f"would iterate over {n} items (at most {MAX_SEQUENCE}); use numpy")
    return v


def _b_minmax(pick: Callable[..., Any]) -> Callable[[Bound, int], Any]:
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


def _b_sequence(kind: type) -> Callable[[Bound, int], Any]:
    def run(b: Bound, limit: int) -> Any:
        return kind(_iterable(b["iterable"])) if "iterable" in b else kind()

    return run


def _b_convert(kind: type) -> Callable[[Bound, int], Any]:
    return lambda b, limit: kind(b["x"]) if "x" in b else kind()


_BUILTIN_SPECS: dict[str, tuple[_Sig, Callable[[Bound, int], Any]]] = {
    "abs": (_sig("x /"), lambda b, limit: builtins.abs(b["x"])),
    "bool": (_sig("x? /"), _b_convert(bool)),
    "float": (_sig("x? /"), _b_convert(float)),
    "int": (_sig("x? /"), _b_convert(int)),
    "len": (_sig("obj /"), lambda b, limit: builtins.len(b["obj"])),
    "list": (_sig("iterable? /"), _b_sequence(list)),
    "max": (_sig("*args"), _b_minmax(builtins.max)),
    "min": (_sig("*args"), _b_minmax(builtins.min)),
    "round": (_sig("number ndigits?"), _b_round),
    "sum": (_sig("iterable / start?"), _b_sum),
    "tuple": (_sig("iterable? /"), _b_sequence(tuple)),
}

NP_FUNCTIONS: tuple[str, ...] = tuple(sorted(n for n in _NP_SPECS if hasattr(np, n)))
NP_LINALG_FUNCTIONS: tuple[str, ...] = tuple(sorted(_LINALG_SPECS))
NP_CONSTANTS: tuple[str, ...] = tuple(sorted(_NP_VALUES))
ARRAY_METHODS: tuple[str, ...] = tuple(sorted(_METHOD_SPECS))
ARRAY_ATTRIBUTES: tuple[str, ...] = tuple(sorted(_ARRAY_ATTRS | _INFO_ATTRS | _RESULT_ATTRS))
BUILTINS: tuple[str, ...] = tuple(sorted(_BUILTIN_SPECS))
REFUSED_EXAMPLES: tuple[str, ...] = tuple(
    sorted(n for n, why in {**_REFUSED_NP, **_REFUSED_METHODS}.items() if why == _IO)
)
_NP: dict[str, Callable[..., Any]] = {n: getattr(np, n) for n in NP_FUNCTIONS}
_LINALG: dict[str, Callable[..., Any]] = {n: getattr(np.linalg, n) for n in NP_LINALG_FUNCTIONS}

_CALL_FORMS = (
    f"rules call np.<function>(...), np.linalg.<function>(...), <value>.<method>(...) and "
    f"the builtins {', '.join(BUILTINS)}"
)


# --- positions -----------------------------------------------------------------------------------


class _Columns:
    """ast positions (line, UTF-8 byte offset in the stripped text) as character offsets in the
    text as given."""

    def __init__(self, text: str) -> None:
        self.lead = len(text) - len(text.lstrip())
        self.length = len(text)
        body = text.strip()
        self.starts = [0]
        self.lines: list[bytes] = []
        at = 0
        for newline in re.finditer(r"\r\n|\r|\n", body):
            self.lines.append(body[at : newline.start()].encode())
            at = newline.end()
            self.starts.append(at)
        self.lines.append(body[at:].encode())

    def at(self, lineno: int, byte_col: int) -> int:
        i = min(max(lineno - 1, 0), len(self.lines) - 1)
        chars = len(self.lines[i][:byte_col].decode("utf-8", errors="ignore"))
        return self.lead + self.starts[i] + chars

    def of(self, node: ast.AST) -> int:
        return self.at(getattr(node, "lineno", 1), getattr(node, "col_offset", 0))

    def attribute(self, node: ast.Attribute) -> int:
        end = self.at(node.end_lineno or node.lineno, node.end_col_offset or 0)
        return max(end - len(node.attr), 0)

    def syntax(self, exc: SyntaxError) -> int:
        i = min(max((exc.lineno or 1) - 1, 0), len(self.lines) - 1)
        return min(self.lead + self.starts[i] + max((exc.offset or 1) - 1, 0), self.length)


# --- validation ----------------------------------------------------------------------------------

_REFUSED_NODES: dict[type, str] = {
    ast.Lambda: "lambda is not allowed in a rule",
    ast.ListComp: "comprehensions are not allowed in a rule (there are no loops; use numpy)",
    ast.SetComp: "comprehensions are not allowed in a rule (there are no loops; use numpy)",
    ast.DictComp: "comprehensions are not allowed in a rule (there are no loops; use numpy)",
    ast.GeneratorExp: "generator expressions are not allowed in a rule (use numpy)",
    ast.NamedExpr: "assignment (:=) is not allowed in a rule",
    ast.JoinedStr: "f-strings are not allowed in a rule",
    ast.FormattedValue: "f-strings are not allowed in a rule",
    ast.Await: "await is not allowed in a rule",
    ast.Yield: "yield is not allowed in a rule",
    ast.YieldFrom: "yield is not allowed in a rule",
    ast.Dict: "dict literals are not allowed in a rule (lists and tuples are)",
    ast.Set: "set literals are not allowed in a rule (lists and tuples are)",
    ast.Starred: "* unpacking is not allowed in a rule",
}


def _is_np(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "np"


def _is_linalg(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "linalg" and _is_np(node.value)


def _close(word: str, options: Any) -> str:
    found = difflib.get_close_matches(word, list(options), n=1)
    return found[0] if found else ""


class _Check:
    """Every static refusal; collects the free names."""

    def __init__(self, cols: _Columns) -> None:
        self.cols = cols
        self.names: dict[str, int] = {}

    def fail(self, message: str, col: int) -> NoReturn:
        raise RuleLangError(message, col)

    def expr(self, node: ast.expr, depth: int, index: bool = False) -> None:
        col = self.cols.of(node)
        if depth > MAX_DEPTH:
            self.fail(f"the rule nests more than {MAX_DEPTH} levels deep; split it up", col)
        d = depth + 1
        if isinstance(node, ast.Constant):
            self.constant(node, index, col)
        elif isinstance(node, ast.Name):
            self.name(node, col)
        elif isinstance(node, ast.Attribute):
            self.attribute(node, d)
        elif isinstance(node, ast.Call):
            self.call(node, d)
        elif isinstance(node, ast.BinOp):
            self.expr(node.left, d)
            self.expr(node.right, d)
        elif isinstance(node, ast.UnaryOp):
            self.expr(node.operand, d)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self.expr(value, d)
        elif isinstance(node, ast.Compare):
            self.compare(node, d, col)
        elif isinstance(node, ast.IfExp):
            for part in (node.body, node.test, node.orelse):
                self.expr(part, d)
        elif isinstance(node, ast.Subscript):
            self.expr(node.value, d)
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for item in items:
                self.expr(item, d, index=True)
        elif isinstance(node, ast.Slice) and index:
            for bound in (node.lower, node.upper, node.step):
                if bound is not None:
                    self.expr(bound, d)
        elif isinstance(node, ast.List | ast.Tuple):
            for item in node.elts:
                self.expr(item, d)
        else:
            why = _REFUSED_NODES.get(type(node), f"{type(node).__name__} is not allowed in a rule")
            self.fail(why, col)

    def constant(self, node: ast.Constant, index: bool, col: int) -> None:
        value = node.value
        if value is Ellipsis:
            if not index:
                self.fail("... is only allowed inside [ ]", col)
        elif isinstance(value, complex):
            self.fail("complex numbers are not supported in rules", col)
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            self.fail(f"integer literal of {value.bit_length()} bits (at most {MAX_INT_BITS})", col)
        elif not (value is None or isinstance(value, bool | int | float | str)):
            self.fail(f"{type(value).__name__} literals are not allowed in a rule", col)

    def name(self, node: ast.Name, col: int) -> None:
        if node.id.startswith("__") or node.id.endswith("__"):
            self.fail(f"{node.id}: names with __ are not allowed in a rule", col)
        if node.id == "np":
            self.fail("np can only be used as np.<name>, e.g. np.exp(x) or np.float32", col)
        if node.id not in LITERAL_NAMES and node.id not in TYPE_NAMES:
            self.names.setdefault(node.id, col)

    def attribute(self, node: ast.Attribute, depth: int, called: bool = False) -> _Sig | None:
        """Checks ``node`` (the function of a call when ``called``); returns the call's sig."""
        col, attr = self.cols.attribute(node), node.attr
        if attr.startswith("_"):
            self.fail(f".{attr}: attributes starting with _ are not allowed in a rule", col)
        if _is_np(node.value):
            return self.np_member(attr, called, col)
        if _is_linalg(node.value):
            if attr not in _LINALG_SPECS:
                hint = _close(attr, _LINALG_SPECS)
                self.fail(
                    f"np.linalg.{attr} is not allowed"
                    + (f"; did you mean np.linalg.{hint}?" if hint else "")
                    + f" (np.linalg: {', '.join(NP_LINALG_FUNCTIONS)})",
                    col,
                )
            if not called:
                self.fail(f"np.linalg.{attr} is a function; call it: np.linalg.{attr}(...)", col)
            return _LINALG_SPECS[attr].sig
        self.expr(node.value, depth)
        if called and attr in _METHOD_SPECS:
            return _METHOD_SPECS[attr].sig
        if not called and attr in ARRAY_ATTRIBUTES:
            return None
        if attr in _REFUSED_METHODS:
            self.fail(f".{attr}() {_REFUSED_METHODS[attr]}", col)
        if attr in _METHOD_SPECS:
            self.fail(f".{attr} is a method; call it: .{attr}(...)", col)
        if attr in ARRAY_ATTRIBUTES:
            self.fail(f".{attr} is an attribute, not a method; drop the ()", col)
        hint = _close(attr, (*ARRAY_ATTRIBUTES, *ARRAY_METHODS))
        self.fail(
            f".{attr} is not allowed"
            + (f"; did you mean .{hint}?" if hint else "")
            + f" (attributes: {', '.join(sorted(_ARRAY_ATTRS))};"
            + f" methods: {', '.join(ARRAY_METHODS)})",
            col,
        )

    def np_member(self, attr: str, called: bool, col: int) -> _Sig | None:
        if attr in _REFUSED_NP:
            self.fail(f"np.{attr} {_REFUSED_NP[attr]}", col)
        if attr == "linalg":
            self.fail("np.linalg can only be used as np.linalg.<function>(...)", col)
        if attr in _NP:
            if not called:
                self.fail(f"np.{attr} is a function; call it: np.{attr}(...)", col)
            return _NP_SPECS[attr].sig
        if attr in _SCALAR_TYPES:
            return _CONVERT.sig if called else None
        if attr in _NP_VALUES:
            if called:
                self.fail(f"np.{attr} is a constant, not a function", col)
            return None
        hint = _close(attr, (*_NP, *_NP_VALUES))
        self.fail(
            f"np.{attr} is not allowed in a rule"
            + (
                f"; did you mean np.{hint}?" if hint else " (see NP_FUNCTIONS in runner.rules.lang)"
            ),
            col,
        )

    def call(self, node: ast.Call, depth: int) -> None:
        func, col = node.func, self.cols.of(node.func)
        sig: _Sig | None
        if isinstance(func, ast.Name):
            if func.id not in _BUILTIN_SPECS:
                hint = _close(func.id, _BUILTIN_SPECS)
                self.fail(
                    f"{func.id}() is not allowed; "
                    + (f"did you mean {hint}()? " if hint else "")
                    + _CALL_FORMS,
                    col,
                )
            sig, label = _BUILTIN_SPECS[func.id][0], func.id
        elif isinstance(func, ast.Attribute):
            sig, label = self.attribute(func, depth, called=True), f".{func.attr}"
            if _is_np(func.value):
                label = f"np.{func.attr}"
            elif _is_linalg(func.value):
                label = f"np.linalg.{func.attr}"
        else:
            self.fail(f"only names can be called; {_CALL_FORMS}", col)
        assert sig is not None  # every call form returns its sig or fails
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail("*args is not allowed in a rule", self.cols.of(arg))
            self.expr(arg, depth)
        if len(node.args) > len(sig.pos) and sig.var is None:
            self.fail(
                f"{label}() takes at most {len(sig.pos)} positional arguments in a rule; "
                "pass the others by keyword",
                self.cols.of(node.args[len(sig.pos)]),
            )
        for kw in node.keywords:
            kcol = self.cols.of(kw)
            if kw.arg is None:
                self.fail("**kwargs is not allowed in a rule", kcol)
            if kw.arg == "out":
                self.fail("out= writes into an existing array; rules may not", kcol)
            if kw.arg not in sig.keywords():
                allowed = ", ".join(sig.keywords()) or "none"
                self.fail(
                    f"{label}() takes no keyword {kw.arg!r} in a rule (keywords: {allowed})", kcol
                )
            self.expr(kw.value, depth)

    def compare(self, node: ast.Compare, depth: int, col: int) -> None:
        self.expr(node.left, depth)
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                self.fail("'in' and 'not in' are not allowed in a rule", col)
            if isinstance(op, ast.Is | ast.IsNot) and not (_is_none(left) or _is_none(right)):
                self.fail("'is' and 'is not' only compare with None; use == or !=", col)
            self.expr(right, depth)
            left = right


def _is_none(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and node.value is None) or (
        isinstance(node, ast.Name) and node.id in ("none", "null")
    )


def parse_rule(text: str) -> RuleExpr:
    """Parse and validate one rule expression; every refusal happens here, before anything runs.

    Raises:
        RuleLangError: the text is not a string, is empty or longer than `MAX_LENGTH`
            characters, is not a Python expression, nests deeper than `MAX_DEPTH`, or uses
            anything outside the language in this module's docstring (with the column of the
            offending part and what is allowed instead).
    """
    if not isinstance(text, str):
        raise RuleLangError(f"a rule must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise RuleLangError(f"rule is {len(text)} characters long (at most {MAX_LENGTH})")
    if not text.strip():
        raise RuleLangError("empty rule")
    cols = _Columns(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise RuleLangError(f"invalid rule: {exc.msg}", cols.syntax(exc)) from None
    except (RecursionError, MemoryError, ValueError) as exc:  # absurd nesting, NUL bytes
        raise RuleLangError(f"invalid rule: {type(exc).__name__}") from None
    check = _Check(cols)
    try:
        check.expr(tree.body, 0)
    except RecursionError:
        raise RuleLangError("the rule nests too deeply; split it up") from None
    names = tuple(sorted(check.names.items(), key=lambda item: item[1]))
    return RuleExpr(text, tree, names)


# --- evaluation ----------------------------------------------------------------------------------

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
            n = len(seq) * max(times, 0)
            if n > MAX_SEQUENCE:
                raise _Refused(f"would create a sequence of {n} items (at most {MAX_SEQUENCE})")
            return fn(left, right)
    if isinstance(op, ast.operator) and (isinstance(left, str) or isinstance(right, str)):
        if not (isinstance(op, ast.Add) and type(left) is type(right)):
            raise _Refused("strings only support + and comparisons in a rule")
    if (
        isinstance(op, ast.Add)
        and isinstance(left, list | tuple | str)
        and type(left) is type(right)
    ):
        n = len(left) + len(right)
        if n > MAX_SEQUENCE:
            raise _Refused(f"would create a sequence of {n} items (at most {MAX_SEQUENCE})")
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


def _plain(v: Any, seen: set[int] | None = None) -> bool:
    """No array of more than one element anywhere in ``v`` (each list walked once)."""
    if isinstance(v, list | tuple):
        seen = set() if seen is None else seen
        if id(v) in seen:
            return True
        seen.add(id(v))
        return all(_plain(i, seen) for i in v)
    return not isinstance(v, np.ndarray) or v.size == 1


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


def _numeric_dtype(value: Any) -> None:
    if isinstance(value, np.ndarray | np.generic):  # np.finfo(x) takes x's dtype
        value = value.dtype
    try:
        dtype = np.dtype(value)
    except Exception:
        raise _Refused(f"{value!r} is not a numpy dtype") from None
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise _Refused(f"dtype {dtype} is not allowed; rules compute with numbers and bools")


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
        if isinstance(node, ast.List):
            items = [self.expr(e) for e in node.elts]
            _check_value(items, self.limit)  # no new arrays: not counted as made
            return items
        if isinstance(node, ast.Tuple):
            elts = tuple(self.expr(e) for e in node.elts)
            _check_value(elts, self.limit)
            return elts
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

    def call(self, node: ast.Call, col: int) -> Any:
        func = node.func
        if isinstance(func, ast.Name):
            sig, impl = _BUILTIN_SPECS[func.id]
            args = [self.expr(a) for a in node.args]
            kwargs = {k.arg: self.expr(k.value) for k in node.keywords if k.arg is not None}
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
        args = [self.expr(a) for a in node.args]
        kwargs = {k.arg: self.expr(k.value) for k in node.keywords if k.arg is not None}
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


def _bind(sig: _Sig, args: list[Any], kwargs: Mapping[str, Any]) -> Bound:
    bound: Bound = dict(zip(sig.pos, args, strict=False))
    if len(args) > len(sig.pos):
        if sig.var is None:
            raise _Refused(f"takes at most {len(sig.pos)} positional arguments")
        bound[sig.var] = tuple(args[len(sig.pos) :])
    for key, value in kwargs.items():
        if key in bound or key not in sig.keywords():
            raise _Refused(f"got a second or unknown value for {key!r}")
        bound[key] = value
    missing = [p for p in sig.pos[: sig.required] if p not in bound]
    if missing:
        raise _Refused(f"missing the argument {missing[0]!r}")
    return bound


def evaluate(rule: RuleExpr, env: Mapping[str, Any], *, max_elements: int) -> Any:
    """Run ``rule`` with the names in ``env`` bound (``grad``, ``out``, the op's arguments);
    ``np`` is always the sandboxed namespace. Floating-point warnings are silenced (inf and NaN
    are values like any other). Returns what the rule computes: usually an array, a list of
    arrays for a list parameter.

    ``max_elements`` bounds every array the rule creates (checked before the step that would
    create it, and on its result).

    Raises:
        RuleEvalError: and nothing else: a name not bound, numpy raised, a result would exceed
            ``max_elements`` elements, `MAX_INT_BITS` bits or `MAX_SEQUENCE` items, the truth
            value of an array was asked, a dtype that is not numeric or bool, ...
    """
    try:
        if not isinstance(max_elements, int) or max_elements < 0:
            raise RuleEvalError(f"max_elements must be an int >= 0, not {max_elements!r}")
        with np.errstate(all="ignore"):
            return _Eval(_Columns(rule.text), env, max_elements).expr(rule.tree.body)
    except RuleEvalError:
        raise
    except RecursionError:
        raise RuleEvalError("the rule nests too deeply; split it up") from None
    except Exception as exc:  # a last resort: nothing but RuleEvalError leaves evaluate
        raise RuleEvalError(f"{type(exc).__name__}: {exc}") from None
