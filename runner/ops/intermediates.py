"""What an op makes beyond its operands and result (`Op.intermediates`), in bytes, for the
memory estimate of `runner.memory`: conv's and pooling's materialised windows, a broadcast
batched matmul's gradients before they are summed back. Here, in the ops package, so the op
modules can name these without importing `runner.memory` (which imports the graph, which
imports the ops)."""

from __future__ import annotations

import math
from typing import Any

ITEMSIZE = 8  # float64: the floors and the numeric oracle work in float64 whatever the dtype


def matmul_intermediates(input: Any, other: Any, **_: Any) -> int:
    """A broadcast batched matmul's gradients at the broadcast shape, before they are summed
    back: (batch..., m, k) for ``input`` and (batch..., k, n) for ``other``, made by the manual
    VJP and by torch's backward alike."""
    a = tuple(input) if len(input) > 1 else (1, *input)
    b = tuple(other) if len(other) > 1 else (*other, 1)
    batch = [
        max(x, y) for x, y in zip(_pad(a[:-2], len(b) - 2), _pad(b[:-2], len(a) - 2), strict=True)
    ]
    m, k, n = a[-2], a[-1], b[-1]
    return int(2 * math.prod(batch) * (m * k + k * n) * ITEMSIZE)


def _pad(dims: tuple[int, ...], other: int) -> tuple[int, ...]:
    return (1,) * max(0, other - len(dims)) + dims


def window_intermediates(nd: int, shape_rule: Any) -> Any:
    """Conv's and pooling's materialised windows: every output position times every tap, for
    each input channel, and the padded input."""

    def size(input: Any, **args: Any) -> int:
        out = tuple(shape_rule(input=input, **args))
        weight = args.get("weight")
        kernel = weight[2:] if weight is not None else _ints(args.get("kernel_size"), nd)
        channels = input[-nd - 1]
        batch = math.prod(input[: -nd - 1])
        windows = batch * channels * math.prod(out[-nd:]) * math.prod(kernel)
        pad = (
            _ints(args.get("padding", 0), nd)
            if not isinstance(args.get("padding"), str)
            else (0,) * nd
        )
        padded = (
            batch * channels * math.prod(n + 2 * p for n, p in zip(input[-nd:], pad, strict=True))
        )
        return int((2 * windows + padded) * ITEMSIZE)

    return size


def _ints(value: Any, nd: int) -> tuple[int, ...]:
    if isinstance(value, list | tuple):
        return tuple(value) if len(value) == nd else (int(value[0]),) * nd
    return (int(value or 0),) * nd
