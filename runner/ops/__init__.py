"""The op registry: one table of families, each contributing its `OPS` list; names are unique
and each op's family is the table's. The table's order is the catalogue's (`gradcase ops`,
docs/ops.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from runner.ops import (
    activations,
    attention,
    elementwise,
    indexing,
    linalg,
    linalg_decomp,
    linalg_products,
    linalg_spectral,
    losses,
    nn,
    normalization,
    norms,
    reductions,
    resampling,
    shape,
    sorting,
)
from runner.ops.kinks import KINKS
from runner.ops.spec import Op

# (family, its ops), in the catalogue's order.
FAMILIES: tuple[tuple[str, Sequence[Op]], ...] = (
    ("elementwise", elementwise.OPS),
    ("reductions", reductions.OPS),
    ("linalg", linalg.OPS),
    ("linalg_decomp", linalg_decomp.OPS),
    ("linalg_products", linalg_products.OPS),
    ("linalg_spectral", linalg_spectral.OPS),
    ("shape", shape.OPS),
    ("nn", nn.OPS),
    ("activations", activations.OPS),
    ("losses", losses.OPS),
    ("norms", norms.OPS),
    ("indexing", indexing.OPS),
    ("normalization", normalization.OPS),
    ("resampling", resampling.OPS),
    ("attention", attention.OPS),
    ("sorting", sorting.OPS),
)

# The op of a graph node that only names another tensor (``d: c``): a copy, so ``d`` gets a
# gradient of its own.
COPY = "clone"


def _build() -> dict[str, Op]:
    registry: dict[str, Op] = {}
    for family, ops in FAMILIES:
        for op in ops:
            if op.name in registry:
                raise RuntimeError(f"op {op.name!r} is registered twice")
            if op.family != family:
                raise RuntimeError(
                    f"op {op.name!r} says family {op.family!r}, listed in {family!r}"
                )
            # Non-differentiable points are one table (runner/ops/kinks.py), read from the op.
            kinks = KINKS.get(op.name)
            registry[op.name] = replace(op, kinks=kinks) if kinks and op.kinks is None else op
    return registry


REGISTRY: dict[str, Op] = _build()


def public_ops() -> list[Op]:
    """The ops a case may call by name, sorted by family then name (the catalogue's order)."""
    order = {family: i for i, (family, _) in enumerate(FAMILIES)}
    return sorted(
        (op for op in REGISTRY.values() if not op.hidden),
        key=lambda op: (order.get(op.family, len(order)), op.name),
    )
