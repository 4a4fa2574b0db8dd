"""A case's tensors: planning each input from its spec (dtype, shape, requires_grad, problems),
and making the arrays of inputs and upstream.

Deterministic: every random array comes from its own ``numpy.random.default_rng(seed)``, so a
case's arrays depend only on the case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.dtypes import is_floating
from runner.limits import FLOAT64_MAX, INT64_MAX, INT64_MIN, MAX_ELEMENTS, shape_problem
from runner.ops.spec import Array, Shape
from schemas.case import FillInput, RandomInput, RandomUpstream, ValuesInput, literal_shape

__all__ = ["MAX_ELEMENTS", "InputPlan", "make_input", "make_upstream", "plan_input"]


@dataclass(frozen=True)
class InputPlan:
    """How to make one input: its validated spec, resolved dtype and requires_grad."""

    spec: Any
    dtype: str
    shape: Shape
    requires_grad: bool

    @property
    def spec_requires_grad(self) -> bool | None:
        """What the case file said; None when it left requires_grad to the default."""
        return getattr(self.spec, "requires_grad", None)


def _literal_dtype(value: Any, case_dtype: str) -> str:
    """bool when every element is true or false (a mask), else floating, as torch.tensor makes
    [True, 0.5] floating."""
    flat = np.asarray(value, dtype=object).reshape(-1).tolist()
    return "bool" if flat and all(isinstance(v, bool) for v in flat) else case_dtype


def plan_input(
    name: str, spec: Any, case_dtype: str, as_int64: bool = False
) -> tuple[InputPlan, list[str]]:
    """The plan of one input and the problems of its spec. ``as_int64``: an integer-written
    literal used only as indices or class targets (see `Param.integer`)."""
    if isinstance(spec, RandomInput):
        default = "int64" if spec.random == "integers" else case_dtype
        dtype, shape = spec.dtype or default, tuple(spec.shape)
    elif isinstance(spec, FillInput):
        default = "bool" if isinstance(spec.fill, bool) else case_dtype
        dtype, shape = spec.dtype or default, tuple(spec.shape)
    elif isinstance(spec, ValuesInput):
        dtype = spec.dtype or _literal_dtype(spec.values, case_dtype)
        shape = literal_shape(spec.values)
    else:
        dtype, shape = _literal_dtype(spec, case_dtype), literal_shape(spec)
    if as_int64:
        dtype = "int64"
    floating = is_floating(dtype)
    explicit = getattr(spec, "requires_grad", None)
    problems = []
    if explicit and not floating:
        problems.append(
            f"input '{name}' is {dtype}: only floating tensors can require gradients "
            "(drop requires_grad)"
        )
    too_big = shape_problem(shape)
    if too_big is not None:
        problems.append(f"input '{name}' has shape {shape}, {too_big}")
    if isinstance(spec, RandomInput):
        problems += _random_problems(spec, dtype)
    if isinstance(spec, ValuesInput):
        problems += _values_problems(spec.values, dtype)
    if isinstance(spec, FillInput):
        problems += _values_problems(spec.fill, dtype)
    requires = floating if explicit is None else explicit and floating
    return InputPlan(spec, dtype, shape, requires), problems


def _values_problems(values: Any, dtype: str) -> list[str]:
    """An explicit integer or bool dtype must not silently truncate the numbers given."""
    flat = np.asarray(values, dtype=object).reshape(-1).tolist()
    if dtype == "int64":
        bad = [
            v
            for v in flat
            if isinstance(v, float) and not v.is_integer() or not -(2**63) <= v < 2**63
        ]
        what = "integers that fit in int64"
    elif dtype == "bool":
        bad = [v for v in flat if not isinstance(v, bool)]
        what = "true or false"
    else:
        return []
    return [f"dtype {dtype} needs {what}, got {bad[0]!r}"] if bad else []


def _random_problems(spec: RandomInput, dtype: str) -> list[str]:
    low, high = spec.low, spec.high
    if spec.random != "integers" and not is_floating(dtype):
        return [
            f"random: {spec.random} makes floats, which dtype {dtype} would truncate "
            "(use random: integers, or values:)"
        ]
    if spec.random == "normal":
        return (
            ["low/high apply to random: uniform or integers, not normal"]
            if low is not None or high is not None
            else []
        )
    if spec.random == "uniform":
        lo, hi = 0.0 if low is None else low, 1.0 if high is None else high
        if not all(math.isfinite(v) for v in (lo, hi)):
            return [f"random: uniform needs finite bounds, got low={lo} high={hi}"]
        if hi < lo:
            return [f"random: uniform needs low <= high, got low={lo} high={hi}"]
        if hi - lo > FLOAT64_MAX:
            # numpy draws low + (high - low) * u: the range itself must be a float64.
            return [
                f"random: uniform needs high - low to be a finite float64, got low={lo} "
                f"high={hi} (a range of {hi - lo:g})"
            ]
        return []
    problems = []
    if not all(v is None or math.isfinite(v) for v in (low, high)):
        return [f"random: integers needs finite bounds, got low={low} high={high}"]
    lo_i, hi_i = int(low or 0), None if high is None else int(high)
    if lo_i < INT64_MIN or hi_i is not None and hi_i - 1 > INT64_MAX:
        problems.append(
            f"random: integers draws int64 values: low={low} high={high} is outside "
            f"[{INT64_MIN}, {INT64_MAX + 1})"
        )
    if any(v is not None and not float(v).is_integer() for v in (low, high)):
        problems.append(f"random: integers needs integer bounds, got low={low} high={high}")
    if high is None:
        problems.append("random: integers needs high (values are in [low, high))")
    elif high <= (low or 0):
        problems.append(f"random: integers needs high > low, got low={low or 0} high={high}")
    if dtype == "bool":
        problems.append(
            "random: integers makes integer values, not bool (use values: with dtype: bool)"
        )
    return problems


def written_as_integers(spec: Any) -> bool:
    """A plain literal (or values without a dtype) whose numbers are all written as integers."""
    if isinstance(spec, ValuesInput) and spec.dtype is None:
        spec = spec.values
    elif isinstance(spec, RandomInput | FillInput | ValuesInput):
        return False
    flat = np.asarray(spec, dtype=object).reshape(-1).tolist()
    return bool(flat) and all(isinstance(v, int) and not isinstance(v, bool) for v in flat)


def make_input(plan: InputPlan) -> Array:
    """The input's array: random data drawn in float64 (or int64) as for every dtype, literal
    values as written, then cast to the plan's dtype (float16/bfloat16: rounded to nearest)."""
    spec = plan.spec
    if isinstance(spec, RandomInput):
        rng = np.random.default_rng(spec.seed)
        if spec.random == "normal":
            data: Any = rng.normal(size=plan.shape)
        elif spec.random == "uniform":
            low = 0.0 if spec.low is None else spec.low
            high = 1.0 if spec.high is None else spec.high
            data = rng.uniform(low, high, size=plan.shape)
        else:
            assert spec.high is not None  # checked when the case was compiled
            data = rng.integers(int(spec.low or 0), int(spec.high), size=plan.shape)
    elif isinstance(spec, FillInput):
        data = np.full(plan.shape, spec.fill)
    elif isinstance(spec, ValuesInput):
        data = spec.values
    else:
        data = spec
    return np.array(data).astype(plan.dtype).reshape(plan.shape)


def make_upstream(spec: Any, shape: Shape, dtype: np.dtype[Any]) -> Array:
    """A number fills ``shape``; a literal is the gradient itself; a random spec draws one
    (in float64, then rounded to ``dtype``, the output's: a half-precision case's upstream is
    half precision, as torch's ``out.backward(grad)`` needs it)."""
    if isinstance(spec, RandomUpstream):
        rng = np.random.default_rng(spec.seed)
        data = rng.normal(size=shape) if spec.random == "normal" else rng.uniform(size=shape)
        return np.asarray(data).astype(dtype)
    return np.broadcast_to(np.asarray(spec, dtype=dtype), shape).copy()
