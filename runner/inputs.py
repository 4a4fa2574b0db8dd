"""Making the arrays a case declares: inputs and the upstream gradient.

Deterministic: every random array comes from its own ``numpy.random.default_rng(seed)``, so a
case's arrays depend only on the case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.compile import CompiledCase, InputPlan
from runner.ops.spec import Array, Shape
from schemas.case import FillInput, RandomInput, RandomUpstream, ValuesInput


def make_input(plan: InputPlan) -> Array:
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


def make_upstream(case: CompiledCase, shape: Shape, dtype: np.dtype[Any]) -> Array:
    spec = case.model.upstream
    if isinstance(spec, RandomUpstream):
        rng = np.random.default_rng(spec.seed)
        data = rng.normal(size=shape) if spec.random == "normal" else rng.uniform(size=shape)
        return np.asarray(data).astype(dtype)
    return np.broadcast_to(np.asarray(spec, dtype=dtype), shape).copy()
