"""The benchmark's scripts run (issue 11): the tiny cases and their hand-written baseline agree
that the cases pass, and the per-stage breakdown covers every stage. Ratios are `make bench`'s,
never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench  # noqa: E402
from tiny_cases import write  # noqa: E402


def test_baseline_and_gradcase_pass_the_tiny_cases(tmp_path: Path) -> None:
    write(3, tmp_path / "t")
    base = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "baseline_tiny.py"), str(tmp_path / "t")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert base.stdout.strip() == "3 cases: 3 passed, 0 failed"
    report = tmp_path / "r.json"
    ours = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(tmp_path / "t"), "-q", "--report", str(report)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert "3 cases: 3 passed" in ours.stdout


def test_stages_cover_every_stage(tmp_path: Path) -> None:
    out: list[str] = []
    bench.stages(3, tmp_path, out)
    text = "\n".join(out)
    for stage in ("find", "load", "validate", "compile", "inputs", "manual", "torch", "compare"):
        assert f"| {stage}" in text
    assert "| report" in text and "x** the baseline's" in text
