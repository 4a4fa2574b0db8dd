"""The hand-written check of the large case: ``c = a @ b; d = c @ b; e = tanh(d)``, float64,
a and b n x n, upstream all ones: the forward and the gradients of a and b by hand in numpy,
the same with torch autograd, compared with ``np.allclose``.

    .venv/bin/python benchmarks/baseline_large.py N

Prints ``ok`` or ``FAILED``; `benchmarks/bench.py` measures its time and peak memory against
``gradcase run`` of the same case (`large_case`).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

SEEDS = (1, 2)


def large_case(n: int) -> str:
    """The same case as a gradcase YAML file."""
    return (
        f"name: large/chain-{n}\n"
        "inputs:\n"
        f"  a: {{random: normal, shape: [{n}, {n}], seed: {SEEDS[0]}}}\n"
        f"  b: {{random: normal, shape: [{n}, {n}], seed: {SEEDS[1]}}}\n"
        "graph:\n"
        "  c: a @ b\n"
        "  d: c @ b\n"
        "  e: tanh(d)\n"
        "probe: false\n"
    )


def main(n: int) -> bool:
    a = np.random.default_rng(SEEDS[0]).normal(size=(n, n))
    b = np.random.default_rng(SEEDS[1]).normal(size=(n, n))
    c = a @ b
    d = c @ b
    e = np.tanh(d)
    grad_d = 1.0 - e**2  # upstream of ones
    grad_c = grad_d @ b.T
    grad_b = c.T @ grad_d + a.T @ grad_c
    grad_a = grad_c @ b.T
    ta = torch.from_numpy(a).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    te = torch.tanh((ta @ tb) @ tb)
    te.sum().backward()
    assert ta.grad is not None and tb.grad is not None
    return (
        np.allclose(e, te.detach().numpy())
        and np.allclose(grad_a, ta.grad.numpy())
        and np.allclose(grad_b, tb.grad.numpy())
    )


if __name__ == "__main__":
    print("ok" if main(int(sys.argv[1])) else "FAILED")
