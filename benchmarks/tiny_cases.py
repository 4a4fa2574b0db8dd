"""Write N tiny cases (``c = a @ b``, 2x3 and 3x4 float64, a random upstream) into a folder.

    .venv/bin/python benchmarks/tiny_cases.py N FOLDER

The cases of the tiny-case benchmark (`benchmarks/bench.py`); `benchmarks/baseline_tiny.py`
checks the same files by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

CASE = """name: tiny/t{i:05d}
inputs:
  a: {{random: normal, shape: [2, 3], seed: {i}}}
  b: {{random: normal, shape: [3, 4], seed: {j}}}
graph:
  c: a @ b
upstream: {{random: normal, seed: {k}}}
"""


def write(n: int, folder: Path) -> list[Path]:
    """``n`` case files in ``folder`` (made if missing), named t00000.yaml, ...; returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        path = folder / f"t{i:05d}.yaml"
        path.write_text(CASE.format(i=i, j=i + 1, k=i + 2))
        files.append(path)
    return files


if __name__ == "__main__":
    write(int(sys.argv[1]), Path(sys.argv[2]))
