"""Sample tables for the reductions sweep: shapes with dims and keepdim, and hand-picked edge
points (ties, zeros, NaN, inf)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner.ops.spec import Array, Sample, Shape

Case = tuple[Shape, Any, bool]  # input shape, dim, keepdim
Fill = Callable[[np.random.Generator, Shape], Array]
Samples = Callable[[np.random.Generator], list[Sample]]

NAN = float("nan")
INF = float("inf")

DIMS_CASES: tuple[Case, ...] = (
    ((2, 3, 4), None, False),
    ((2, 3, 4), None, True),
    ((2, 3, 4), 1, False),
    ((2, 3, 4), -1, True),
    ((2, 3, 4), [0, 2], False),
    ((2, 3, 4), [-1, 0], True),
    ((2, 3, 4), [], False),
    ((5,), 0, False),
    ((5,), -1, True),
    ((), None, False),
    ((), 0, True),
    ((), [-1], False),
)
# For ops whose dim is one int or None (torch's prod, max, min): no keepdim without a dim.
INT_CASES: tuple[Case, ...] = tuple(
    (s, d, k) for s, d, k in DIMS_CASES if not isinstance(d, list) and not (d is None and k)
) + (((2, 3, 4), 0, True),)
# var and std reject dim=[] (see `no_empty_dims`).
STAT_CASES = tuple(c for c in DIMS_CASES if c[1] != [])
SCAN_CASES = (((2, 3, 4), 1), ((2, 3, 4), -1), ((5,), 0), ((), 0), ((), -1), ((3, 1), 1))
NORM_PS = (1, 3, 1.5, 0.5, 0, -1, INF, -INF)

ZEROS = [[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, -2.0, 0.5]]
PEAKS = [[3.0, 1.0, 3.0, 3.0], [NAN, 2.0, NAN, 7.0]]


def uniform(rng: np.random.Generator, shape: Shape) -> Array:
    return np.asarray(rng.uniform(-2.0, 2.0, size=shape))


def ties(rng: np.random.Generator, shape: Shape) -> Array:
    return np.asarray(rng.integers(0, 3, size=shape).astype(np.float64))


def sweep(cases: Sequence[Case], fill: Fill = uniform, **attrs: Any) -> Samples:
    def make(rng: np.random.Generator) -> list[Sample]:
        return [
            Sample(
                {"input": fill(rng, s), "dim": d, "keepdim": k, **attrs},
                note=f"shape {s} dim={d} keepdim={k} {attrs or ''}".strip(),
            )
            for s, d, k in cases
        ]

    return make


def scan_sweep(cases: Sequence[tuple[Shape, int]]) -> Samples:
    return lambda rng: [
        Sample({"input": uniform(rng, s), "dim": d}, note=f"shape {s} dim={d}") for s, d in cases
    ]


def fixed(*items: tuple[str, Any, dict[str, Any]]) -> Samples:
    """Hand-picked edge points: (note, input values, other args)."""
    return lambda rng: [
        Sample({"input": np.asarray(v, dtype=np.float64), **kw}, n) for n, v, kw in items
    ]


def both(*makers: Samples) -> Samples:
    return lambda rng: [s for m in makers for s in m(rng)]
