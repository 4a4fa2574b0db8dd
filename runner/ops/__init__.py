"""The op registry: every family module contributes its `OPS` list; names are unique."""

from __future__ import annotations

from dataclasses import replace

from runner.ops import (
    activations,
    elementwise,
    indexing,
    linalg,
    losses,
    nn,
    normalization,
    norms,
    reductions,
    shape,
)
from runner.ops.kinks import KINKS
from runner.ops.spec import Op

FAMILIES = (
    elementwise,
    reductions,
    linalg,
    shape,
    nn,
    activations,
    losses,
    norms,
    indexing,
    normalization,
)


def _build() -> dict[str, Op]:
    registry: dict[str, Op] = {}
    for family in FAMILIES:
        for op in family.OPS:
            if op.name in registry:
                raise RuntimeError(f"op {op.name!r} is registered twice")
            # Non-differentiable points are one table (runner/ops/kinks.py), read from the op.
            kinks = KINKS.get(op.name)
            registry[op.name] = replace(op, kinks=kinks) if kinks and op.kinks is None else op
    return registry


REGISTRY: dict[str, Op] = _build()


def public_ops() -> list[Op]:
    """The ops a case may call by name, sorted by family then name (the catalogue's order)."""
    order = {f.__name__.rsplit(".", 1)[-1]: i for i, f in enumerate(FAMILIES)}
    return sorted(
        (op for op in REGISTRY.values() if not op.hidden),
        key=lambda op: (order.get(op.family, len(order)), op.name),
    )
