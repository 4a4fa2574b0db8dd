"""The floating dtypes of a case, and what generic code must know of them.

float64 and float32 are numpy's own; float16 is numpy's IEEE half; bfloat16 has no numpy type and
comes from `ml_dtypes` (importing this module registers it, so ``np.dtype("bfloat16")`` and
``a.astype("bfloat16")`` work). A bfloat16 array's ``dtype.kind`` is ``"V"``, not ``"f"``, and
``np.issubdtype(bfloat16, np.floating)`` is False: test floating-ness with `is_floating`.

Half precision (float16, bfloat16) is computed as torch's CPU kernels compute it: each op in
float32 ("opmath", `opmath`) from the stored half values, its result rounded to the half dtype
when it is stored (every node's value and every gradient a node gives). Never imports torch.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["EPS", "FLOAT_DTYPES", "HALF_DTYPES", "BFLOAT16", "is_floating", "is_half", "opmath"]

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
HALF_DTYPES = ("float16", "bfloat16")
_HALF = (np.dtype(np.float16), BFLOAT16)

# Machine epsilon of each case dtype (np.finfo / ml_dtypes.finfo ``eps``): the gap from 1.0 to
# the next number, twice the unit round-off.
EPS: dict[str, float] = {
    "float64": 2.220446049250313e-16,
    "float32": 1.1920928955078125e-07,
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
}


def is_floating(dtype: Any) -> bool:
    """Whether ``dtype`` (a numpy dtype or its name) is one of the floating dtypes, bfloat16
    included."""
    d = np.dtype(dtype)
    return bool(d.kind == "f" or d == BFLOAT16)


def is_half(dtype: Any) -> bool:
    """float16 or bfloat16 (a numpy dtype or its name)."""
    return np.dtype(dtype) in _HALF


def opmath(value: Any) -> Any:
    """A half-precision array as float32 (torch's ``opmath_type`` of Half and BFloat16: what its
    CPU kernels compute in); anything else as it is. Lists are mapped element by element."""
    if isinstance(value, list):
        return [opmath(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype in _HALF:
        return value.astype(np.float32)
    return value
