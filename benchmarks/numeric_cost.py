"""The finite-difference oracle's cost on graphs that stress it: N chained named nodes of 8x8
elements, and one node fed by many 64-element inputs (see README.md, "numeric oracle").

    .venv/bin/python benchmarks/numeric_cost.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.execute import run_case  # noqa: E402
from runner.loader import load  # noqa: E402


def chain(n: int) -> str:
    lines = ["inputs:", "  x: {random: normal, shape: [8, 8], seed: 1}", "graph:"]
    prev = "x"
    for i in range(n):
        lines.append(f"  n{i}: sin({prev}) * 0.01 + {prev}")
        prev = f"n{i}"
    return "\n".join([*lines, "upstream: {random: normal, seed: 2}", "oracles: [numeric]", ""])


def many_inputs(n: int) -> str:
    lines = ["inputs:"]
    lines += [f"  x{i}: {{random: normal, shape: [64], seed: {i}}}" for i in range(n)]
    total = " + ".join(f"x{i}" for i in range(n))
    lines += ["graph:", f"  y: sin({total})", "upstream: {random: normal, seed: 2}"]
    return "\n".join([*lines, "oracles: [numeric]", ""])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for label, text in [
            ("25 chained nodes", chain(25)),
            ("50 chained nodes", chain(50)),
            ("200 chained nodes", chain(200)),
            ("100 inputs of 64 elements", many_inputs(100)),
        ]:
            path = Path(tmp) / "case.yaml"
            path.write_text(text)
            loaded = load([str(path)])
            assert not loaded.problems, loaded.problems
            start = time.perf_counter()
            result, _ = run_case(loaded.cases[0])
            seconds = time.perf_counter() - start
            skipped = sum(1 for n in result.notes if "skipped" in n)
            print(f"{label}: {seconds:.1f} s, {result.status}, {skipped} tensors skipped")


if __name__ == "__main__":
    main()
