"""How much gradcase costs over the hand-written check it replaces.

Baseline, measured in the same run: torch autograd alone on each case's graph (what a throwaway
script does). Measured: loading and validating every case (no torch), and a full run of each case
(manual rules, torch autograd, comparisons). Results are ratios to the baseline, so they carry
across machines; absolute times are printed for reference only.

    .venv/bin/python benchmarks/run.py [PATH...] [--repeat N]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

from runner.compile import CompiledCase
from runner.engine import backward, forward
from runner.execute import execute
from runner.inputs import make_input, make_upstream
from runner.loader import load
from runner.torch_side import run_torch


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _torch_only(case: CompiledCase) -> None:
    graph = case.graph
    inputs = {name: make_input(plan) for name, plan in case.inputs.items()}
    out = forward(graph, inputs)[graph.output]  # for the upstream's dtype, as execute does
    run_torch(graph, inputs, make_upstream(case.model.upstream, out.shape, out.dtype))


def _manual_only(case: CompiledCase) -> None:
    graph = case.graph
    inputs = {name: make_input(plan) for name, plan in case.inputs.items()}
    values = forward(graph, inputs)
    out = values[graph.output]
    backward(graph, values, make_upstream(case.model.upstream, out.shape, out.dtype))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*", default=["cases"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    load_time = _best(lambda: load(args.paths), args.repeat)
    cases = load(args.paths).cases
    execute(cases[0])  # torch's import and first-call costs are not per-case costs

    # Interleaved per case, so that load on the machine hits baseline and measured alike.
    base = manual = full = 0.0
    for c in cases:
        times: dict[str, list[float]] = {"base": [], "manual": [], "full": []}
        for _ in range(args.repeat):
            for key, fn in (("base", _torch_only), ("manual", _manual_only), ("full", execute)):
                start = time.perf_counter()
                fn(c)
                times[key].append(time.perf_counter() - start)
        base += min(times["base"])
        manual += min(times["manual"])
        full += min(times["full"])

    tracemalloc.start()
    for c in cases:
        execute(c)
    _, peak_full = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for c in cases:
        _torch_only(c)
    _, peak_base = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    n = len(cases)
    print(
        f"{n} cases, best of {args.repeat}; baseline = torch autograd alone, "
        f"{base * 1e3 / n:.2f} ms per case"
    )
    rows = [
        ("load + validate (no torch)", load_time),
        ("manual rules alone", manual),
        ("full run (manual + torch + compare)", full),
    ]
    for label, t in rows:
        print(f"{label:38} {t / base:6.2f} x baseline   ({t * 1e3 / n:.2f} ms per case)")
    print(f"{'peak traced memory, full run':38} {peak_full / max(peak_base, 1):6.2f} x baseline")


if __name__ == "__main__":
    main()
