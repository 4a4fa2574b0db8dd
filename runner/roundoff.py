"""The round-off a computation cannot avoid, per tensor, as an absolute allowance (the ``floor``
of `runner.compare.Tolerance`).

A scale-aware tolerance (relative to the reference's largest element) is strict at every scale,
which is right for a wrong rule and wrong for round-off that does not shrink with the result: a
float32 sum whose terms cancel has an error of about eps times the terms, not times the sum; a
gradient that is zero in exact arithmetic is 4e-16 in torch's float64. The floor covers exactly
that, and is measured rather than assumed:

- float32 (any dtype below float64): the torch oracle runs once more on the same inputs and
  upstream gradient cast to float64; the floor of a tensor is `MEASURED_FACTOR` times the largest
  finite difference between the two, i.e. the reference's own measured error, with room for the
  manual side's error of the same kind (another summation order);
- every dtype: at least `EPS_FACTOR` units of float64 round-off of the computation's scale: for
  values the largest magnitude among the case's inputs and reference values, for gradients among
  the upstream gradient and the reference gradients. A gradient that is small because its
  upstream is small (four tied maxima under 5.7e-05) gets a floor that small too. Without a
  float64 measurement (no torch oracle) a float32 case takes float32's epsilon here instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from runner.compare import scale_of

# Unit round-off of each case dtype (np.finfo(dtype).eps).
EPS: dict[str, float] = {"float64": 2.220446049250313e-16, "float32": 1.1920929e-07}
# Units of round-off of the computation's scale that any comparison allows: a handful of
# operations' worth, far below any error a wrong rule makes (a 1% error at any scale).
EPS_FACTOR = 16.0
# The measured float32 error of the reference, times this: the manual side rounds differently
# (another summation order, another formula), with an error of the same size, not the same sign.
MEASURED_FACTOR = 4.0


def eps_floor(eps: float, arrays: Iterable[Any]) -> float:
    """`EPS_FACTOR` units of round-off ``eps`` of the largest finite magnitude among ``arrays``
    (in their units; 0.0 when there is none)."""
    scale = max((scale_of(a) for a in arrays if _floating(a)), default=0.0)
    return EPS_FACTOR * eps * scale


def measured_floor(low: Any, high: Any) -> float:
    """`MEASURED_FACTOR` times the largest finite difference between ``low`` (a reference in the
    case's dtype) and ``high`` (the same computed in float64); 0.0 when either is missing or not
    floating. Elements where either is NaN or infinite do not count (an overflow in float32
    says nothing of round-off)."""
    if low is None or high is None or not (_floating(low) and _floating(high)):
        return 0.0
    a, b = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if a.shape != b.shape:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff = diff[np.isfinite(diff)]
    return MEASURED_FACTOR * float(diff.max()) if diff.size else 0.0


def floors(
    dtype: str,
    scale_values: Iterable[Any],
    scale_grads: Iterable[Any],
    references: Mapping[str, Mapping[str, Any]],
    measured: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[tuple[str, str], float]:
    """The floor of every tensor, keyed by (kind, tensor name) with kind "value" or "grad", for
    a case of ``dtype``.

    ``scale_values``/``scale_grads``: the arrays whose largest magnitude is the computation's
    scale for values (the inputs) and for gradients (the upstream gradient), besides the
    reference's own; ``references``: kind -> tensor -> the reference array in the case's dtype;
    ``measured``: the same computed in float64 (None for a float64 case).
    """
    out: dict[tuple[str, str], float] = {}
    eps = EPS["float64"] if dtype == "float64" or measured is not None else EPS["float32"]
    extra = {"value": list(scale_values), "grad": list(scale_grads)}
    for kind, tensors in references.items():
        base = eps_floor(eps, [*extra[kind], *tensors.values()])
        for name, ref in tensors.items():
            high = (measured or {}).get(kind, {}).get(name)
            out[(kind, name)] = max(base, measured_floor(ref, high))
    return out


def _floating(a: Any) -> bool:
    return a is not None and np.issubdtype(np.asarray(a).dtype, np.floating)


def node_floor(dtype: str, upstream: Any, reference: Any) -> float:
    """The floor of one node judged alone (fault localisation and the probes), where no float64
    measurement is at hand: `EPS_FACTOR` units of ``dtype``'s round-off of the largest magnitude
    of the node's upstream gradient and the reference gradient."""
    return eps_floor(EPS.get(dtype, EPS["float32"]), [upstream, reference])
