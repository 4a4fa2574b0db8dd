"""The hand-written check gradcase replaces, for the tiny cases of `benchmarks/tiny_cases.py`:
read each file, make its inputs, compute ``c = a @ b`` and its gradients by hand in numpy and
with torch autograd, compare all three tensors and the value with ``np.allclose``, print a count.

    .venv/bin/python benchmarks/baseline_tiny.py FOLDER [-j N]

It checks what a gradcase run of those cases checks (values and gradients, manual against
torch), reading the same YAML (with libyaml where PyYAML has it, as gradcase does). ``-j N``
splits the files over N forked processes.
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import numpy as np
import torch
import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def check(path: Path) -> bool:
    """Whether the manual gradients of one tiny case agree with torch's."""
    case = yaml.load(path.read_text(), Loader=Loader)
    spec = case["inputs"]
    a = np.random.default_rng(spec["a"]["seed"]).normal(size=spec["a"]["shape"])
    b = np.random.default_rng(spec["b"]["seed"]).normal(size=spec["b"]["shape"])
    c = a @ b
    u = np.random.default_rng(case["upstream"]["seed"]).normal(size=c.shape)
    grad_a, grad_b = u @ b.T, a.T @ u
    ta = torch.from_numpy(a).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    tc = ta @ tb
    (tc * torch.from_numpy(u)).sum().backward()
    assert ta.grad is not None and tb.grad is not None
    return (
        np.allclose(c, tc.detach().numpy())
        and np.allclose(grad_a, ta.grad.numpy())
        and np.allclose(grad_b, tb.grad.numpy())
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("-j", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors: a thread pool only costs
    files = sorted(Path(args.folder).glob("*.yaml"))
    if args.j > 1:
        with multiprocessing.get_context("fork").Pool(args.j) as pool:
            ok = pool.map(check, files, chunksize=max(1, len(files) // (4 * args.j)))
    else:
        ok = [check(f) for f in files]
    print(f"{len(files)} cases: {sum(ok)} passed, {len(ok) - sum(ok)} failed")


if __name__ == "__main__":
    main()
