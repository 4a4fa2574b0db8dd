"""How much memory a case needs, estimated from its static shapes before it runs, and the budget
it must stay under (``gradcase run --max-memory``, default `DEFAULT_MAX_MEMORY`).

A per-tensor element limit is not a memory limit: 48 chained nodes of 10 million elements each,
or one conv2d whose windows numpy materialises, need gigabytes. The estimate is

    FACTOR x (bytes of every input and node at float64) + the largest op intermediate

where `FACTOR` counts the copies a case keeps alive at once (manual values and gradients, the
torch side's, the float64 copies of the round-off floors and the probes' runs), and an op's
intermediates are what its `Op.intermediates` says (conv's windows, a broadcast matmul's
gradients before they are summed back, pooling's padded input). An upper bound in spirit, not
a measurement: it errs on the side of refusing. Numpy only; never imports torch.
"""

from __future__ import annotations

import math
from typing import Any

from runner.graph import Ref
from runner.ops.intermediates import ITEMSIZE

FACTOR = 6

DEFAULT_MAX_MEMORY = 4 * 2**30


def parse_bytes(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"2.5GiB"``, ``"1000000"`` as bytes (K/M/G/T are powers of 1024).
    Raises ValueError for anything else."""
    units = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    cleaned = text.strip().lower().removesuffix("b").removesuffix("i")
    number = cleaned.rstrip("kmgt")
    unit = cleaned[len(number) :]
    value = float(number)
    if unit not in units or not math.isfinite(value) or value <= 0:
        raise ValueError(f"not an amount of memory: {text!r}")
    return int(value * units[unit])


def shown(size: float) -> str:
    """Bytes as people read them: ``"11.5 GiB"``, ``"300 MiB"``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def estimate(case: Any) -> tuple[int, str]:
    """The estimated peak bytes of running ``case`` (a `runner.compile.CompiledCase`) and what
    the estimate is made of, in words."""
    graph = case.graph
    tensors = sum(math.prod(shape) for shape in graph.shapes.values()) * ITEMSIZE
    worst, where = 0, ""
    for node in graph.nodes:
        extra = node.op.intermediates
        if extra is None:
            continue
        args = {name: _shape_of(value, graph.shapes) for name, value in node.args.items()}
        try:
            size = int(extra(**args))
        except Exception:  # an estimate must not stop a case; its shape rule already held
            continue
        if size > worst:
            worst, where = size, f"{node.op.name} at node '{node.name}'"
    total = FACTOR * tensors + worst
    parts = f"{FACTOR} x {shown(tensors)} of values and gradients"
    if worst:
        parts += f" + {shown(worst)} of intermediates of {where}"
    return total, parts


def _shape_of(value: Any, shapes: dict[str, Any]) -> Any:
    if isinstance(value, Ref):
        return shapes[value.name]
    if isinstance(value, list):
        return [_shape_of(v, shapes) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return value


def memory_refusal(case: Any, budget: int | None) -> str | None:
    """Why ``case`` is refused under ``budget`` bytes (None: no budget), or None."""
    if budget is None:
        return None
    total, parts = estimate(case)
    if total <= budget:
        return None
    return (
        f"the case would need about {shown(total)} of memory ({parts}), over the budget of "
        f"{shown(budget)} (--max-memory); not run"
    )
