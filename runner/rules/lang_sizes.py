"""Estimators: the elements a numpy call would create, from its bound arguments, computed before
the call runs so that the interpreter can refuse it over the limit.

Internal to the rule language (`runner.rules.lang`); each row of the tables
(`runner.rules.lang_tables`) names its estimator, or none when no result of the call is bigger
than one of its arguments. An estimator may also refuse a call outright (`_Refused`) when its
arguments would make numpy loop for too long.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.rules.lang_limits import (
    MAX_EINSUM_OPERANDS,
    MAX_EINSUM_WORK,
    MAX_SEQUENCE,
    MAX_WORK,
    _Refused,
    _too_slow,
)
from runner.rules.lang_shapes import _axis, _count, _dims, _matmul_shapes, _prod, _shape

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


def _creation(b: Bound, limit: int) -> int:  # also broadcast_to
    return _prod(_dims(b["shape"]))


def _like(b: Bound, limit: int) -> int:
    if b.get("shape") is not None:
        return _creation(b, limit)
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


def _split(b: Bound, limit: int) -> int:
    sections = b["indices_or_sections"]
    try:
        pieces = operator.index(sections)
    except TypeError:
        pieces = _count(sections) + 1
    if pieces > MAX_SEQUENCE:
        raise _Refused(f"would create {pieces} pieces (at most {MAX_SEQUENCE})")
    return 0  # the pieces are views


def _matmul(b: Bound, limit: int) -> int:
    return _matmul_shapes(_shape(b["x1"], limit), _shape(b["x2"], limit))


def _dot(b: Bound, limit: int) -> int:
    x, y = _shape(b["a"], limit), _shape(b["b"], limit)
    if not x or not y:
        return _prod(x) * _prod(y)
    size = _prod(x[:-1]) if len(y) == 1 else _prod(x[:-1]) * _prod(y[:-2]) * y[-1]
    return _worked(size, size * x[-1], "np.dot")


def _inner(b: Bound, limit: int) -> int:
    x, y = _shape(b["a"], limit), _shape(b["b"], limit)
    if not x or not y:
        return _prod(x) * _prod(y)
    size = _prod(x[:-1]) * _prod(y[:-1])
    return _worked(size, size * x[-1], "np.inner")


def _worked(size: int, work: int, what: str) -> int:
    if work > MAX_WORK:
        raise _too_slow(work, what)
    return size


def linalg_work(bound: Bound, limit: int) -> None:
    """Refuses a decomposition, inverse or solve over `MAX_WORK` multiply-adds: about
    batch x m x n x min(m, n) for an (..., m, n) matrix (the Frobenius norm is linear)."""
    matrix = bound.get("a", bound.get("x"))
    shape = _shape(matrix, limit)
    if len(shape) < 2 or ("x" in bound and bound.get("ord") not in (2, -2, "nuc")):
        return
    m, n = shape[-2], shape[-1]
    _worked(0, _prod(shape[:-2]) * m * n * min(m, n), "the decomposition")


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
    summed = _prod([d for i, d in enumerate(x) if i in summed_x])
    return _worked(_prod(kept), _prod(kept) * summed, "np.tensordot")


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
