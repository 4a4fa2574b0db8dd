"""What numpy and torch accept, as numbers validation checks against before anything runs.

A value that validates must run: a shape numpy refuses (more than 64 dims, a zero-element shape
whose other dims overflow its size arithmetic), a random bound whose range overflows float64 or
int64, an integer attribute torch reads as a symbolic size, are all refused here, at the file's
``file:line:col``, rather than raising at run time. Imports nothing of gradcase.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# A case checks a rule on small tensors; far larger shapes are a typo or hostile, and would only
# exhaust memory.
MAX_ELEMENTS = 10_000_000
# numpy's NPY_MAXDIMS (numpy 2); torch takes as many.
MAX_DIMS = 64
# torch stores a size or an integer attribute as a SymInt, which reads values below -2**62 as
# pointers to a symbolic size ("expected to contain only concrete integers"); a VJP may negate
# an attribute (roll's shifts), so both signs stay inside.
MAX_ATTR_INT = 2**62 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT64_MAX = 1.7976931348623157e308


def shape_problem(shape: Iterable[Any]) -> str | None:
    """Why numpy or torch would refuse a tensor of ``shape`` (a sequence of ints), or None.
    A dim over `MAX_ELEMENTS` is refused even beside a 0 (no elements): numpy refuses such
    shapes once the product of the other dims overflows, and a real case never needs one."""
    dims = list(shape)
    if len(dims) > MAX_DIMS:
        return f"{len(dims)} dims (numpy and torch take at most {MAX_DIMS})"
    big = [d for d in dims if isinstance(d, int) and d > MAX_ELEMENTS]
    if big:
        return f"a dim of size {big[0]} (at most {MAX_ELEMENTS}, even beside a 0)"
    if math.prod(dims) > MAX_ELEMENTS:
        return f"{math.prod(dims)} elements (at most {MAX_ELEMENTS})"
    return None


def attribute_problem(value: Any) -> str | None:
    """Why torch would refuse an integer attribute (or a list of them), or None."""
    items = value if isinstance(value, list | tuple) else [value]
    for v in items:
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_ATTR_INT:
            return f"{v} is outside what torch takes for an integer argument (|value| < 2**62)"
    return None
