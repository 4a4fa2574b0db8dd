"""torch's dtype rules (torch.result_type), for numpy forwards that must return torch's dtype:
numpy widens int64 with float32 to float64 and treats 0-d arrays as full tensors; torch does
neither."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.spec import Array

_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "V": 2}  # "V": ml_dtypes' bfloat16


def _widen(a: np.dtype[Any], b: np.dtype[Any]) -> np.dtype[Any]:
    """Two dtypes of one category, widened as torch does: float16 with bfloat16 is float32 (no
    common type of 16 bits), which numpy does not know."""
    if {a.kind, b.kind} == {"f", "V"} and a.itemsize == b.itemsize == 2:
        return np.dtype(np.float32)
    return np.promote_types(a, b)


def torch_dtype(x: Any) -> np.dtype[Any]:
    """A Python number's dtype as torch promotes it: a float is the default dtype, float32 (it
    decides the result only beside integer and bool tensors)."""
    if isinstance(x, bool):
        return np.dtype(bool)
    if isinstance(x, int):
        return np.dtype(np.int64)
    if isinstance(x, float):
        return np.dtype(np.float32)
    return np.asarray(x).dtype


def _promote(a: np.dtype[Any] | None, b: np.dtype[Any] | None) -> np.dtype[Any] | None:
    # Across categories torch keeps the higher one as is (int64 with float32 is float32, where
    # numpy says float64); within one it widens as numpy does.
    if a is None or b is None:
        return a if b is None else b
    ca, cb = _CATEGORY[a.kind], _CATEGORY[b.kind]
    return _widen(a, b) if ca == cb else (a if ca > cb else b)


def _combine(higher: np.dtype[Any] | None, lower: np.dtype[Any] | None) -> np.dtype[Any] | None:
    if higher is None or lower is None:
        return higher if lower is None else lower
    return _promote(higher, lower) if _CATEGORY[lower.kind] > _CATEGORY[higher.kind] else higher


def result_type(*operands: Any) -> np.dtype[Any]:
    """torch.result_type: dimensioned tensors decide, then 0-d tensors, then Python numbers; a
    lower tier only counts when its category (bool < int < float) is higher. None is skipped."""
    tiers: list[np.dtype[Any] | None] = [None, None, None]
    for x in operands:
        if x is None:
            continue
        tier = 2 if not isinstance(x, np.ndarray | np.generic) else int(np.ndim(x) == 0)
        tiers[tier] = _promote(tiers[tier], torch_dtype(x))
    found = _combine(tiers[0], _combine(tiers[1], tiers[2]))
    assert found is not None, "result_type needs at least one operand"
    return found


def float_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Integer and bool tensors go through a floating op (exp, true division) in torch's default
    dtype, float32."""
    return dtype if dtype.kind == "f" else np.dtype(np.float32)


def operand(x: Any, dtype: np.dtype[Any] | None = None) -> Array:
    return np.asarray(x, dtype=torch_dtype(x) if dtype is None else dtype)
