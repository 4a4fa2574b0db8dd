"""The hand-written check of the large case: ``c = a @ b; d = c @ b; e = tanh(d)``, float64,
a and b n x n, upstream all ones: the forward and the gradients by hand in numpy, the same with
torch autograd, compared with ``np.allclose``: the values of c, d and e and the gradients of a,
b, c, d and e, the tensors gradcase checks in the case by default (every named one).

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
    tc = ta @ tb
    td = tc @ tb
    te = torch.tanh(td)
    for t in (tc, td, te):
        t.retain_grad()
    te.sum().backward()
    # The same checks as gradcase's by default: every named tensor's value and gradient.
    pairs = [(c, tc), (d, td), (e, te)]
    pairs += [(grad_a, ta.grad), (grad_b, tb.grad), (grad_c, tc.grad), (grad_d, td.grad)]
    pairs += [(np.ones_like(e), te.grad)]
    return all(t is not None and np.allclose(x, t.detach().numpy()) for x, t in pairs)


if __name__ == "__main__":
    print("ok" if main(int(sys.argv[1])) else "FAILED")
