"""`make bench`: what gradcase costs against the hand-written scripts it replaces, as ratios
measured in one invocation (runs alternating, medians), written into benchmarks/README.md
between the ``bench:start`` and ``bench:end`` marks and printed.

    .venv/bin/python benchmarks/bench.py [--quick] [--no-write]

Sections (issue 11): tiny cases (100, 1,000, 10,000; serial and -j 2) against
`baseline_tiny.py`; the per-stage cost of one tiny case in process; the large case
(`baseline_large.py`, n = 1024 and 2048: time and peak memory); start-up of each command against
``python -c pass``; ``torch.autograd.gradcheck`` (and its fast mode) against gradcase's check of a
float64 matmul. ``--quick``: small sizes and one repeat, for the smoke test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
PY = sys.executable
README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


# As on a user's machine, Python caches bytecode: gradcase's own modules are not compiled again
# at each start (a shell with PYTHONDONTWRITEBYTECODE=1 would add about 0.1 s to every
# gradcase start and nothing to the baselines, whose imports are installed packages).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: Sequence[str], cwd: Path = ROOT) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB, the process itself) of one command; raises
    when it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):  # 1: a case failed, still a measured run
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def paired(commands: dict[str, Sequence[str]], repeat: int) -> dict[str, tuple[float, float]]:
    """Each command run ``repeat`` times, alternating; the median wall time and the median peak
    memory of each."""
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    for _ in range(repeat):
        for key, cmd in commands.items():
            runs[key].append(timed(cmd))
    return {
        k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v))
        for k, v in runs.items()
    }


def gradcase(*args: str) -> list[str]:
    return [PY, "-m", "runner", *args]


def tiny(sizes: Sequence[int], repeat: int, tmp: Path, out: list[str]) -> None:
    from tiny_cases import write

    out += [
        "### Tiny cases: whole process, against `baseline_tiny.py`",
        "",
        "`c = a @ b` (2x3 @ 3x4, float64, random upstream), one file per case "
        "(`benchmarks/tiny_cases.py`); `gradcase run FOLDER -q` (JSON report written) against "
        "`python benchmarks/baseline_tiny.py FOLDER` (same files, same checks); "
        f"median of {repeat}, alternating (one run each at 10,000 cases, for time).",
        "",
        "| cases | mode | gradcase | baseline | ratio | target | gradcase peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        folder = tmp / f"tiny{n}"
        write(n, folder)
        report = str(tmp / "report.json")
        for mode, jobs in (("serial", []), ("-j 2", ["-j", "2"])):
            times = 1 if n >= 10000 else repeat
            got = paired(
                {
                    "g": gradcase("run", str(folder), "-q", "--report", report, *jobs),
                    "b": [PY, str(ROOT / "benchmarks" / "baseline_tiny.py"), str(folder), *jobs],
                },
                times,
            )
            (g, mem), (b, _) = got["g"], got["b"]
            target = "<= 1.2" if mode == "serial" else "<= 0.7"
            row = f"| {n:,} | {mode} | {g:.2f} s | {b:.2f} s | {g / b:.2f} | {target} | "
            out.append(row + (f"{mem:.0f} MiB |" if mode == "serial" else "- |"))
            print(out[-1], flush=True)
    out.append("")


def stages(n: int, tmp: Path, out: list[str]) -> None:
    """Per-stage cost of one tiny case, in process (ms per case, each stage over all cases)."""
    import baseline_tiny
    from tiny_cases import write

    from runner.compile import compile_case
    from runner.execute import run_case
    from runner.loader import _display, discover, load
    from runner.report import build
    from runner.yaml_source import load_stream
    from schemas.case import Case

    folder = tmp / f"stages{n}"
    files = write(n, folder)
    t: dict[str, float] = {}

    def clock(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = fn()
        t[name] = t.get(name, 0.0) + time.perf_counter() - start
        return value

    loaded = load([str(folder)])
    run_case(loaded.cases[0])  # torch's import and first calls are not per-case costs
    found = clock("find (discover files, resolve paths)", lambda: discover([str(folder)]))
    docs = [
        clock("load (read, YAML with marks)", lambda f=f: load_stream(f.read_text(), _display(f)))
        for f, _, _ in found
    ]
    models = [
        clock("validate (pydantic)", lambda d=d: Case.model_validate(d[0][0].data)) for d in docs
    ]
    cases = [
        clock("compile", partial(compile_case, m, d[0][0], f"t{i}", 1))
        for i, (m, d) in enumerate(zip(models, docs, strict=True))
    ]
    for case in cases:
        _run_stages(case, clock)
    results = []
    for case in loaded.cases:
        results.append(run_case(case)[0])
    clock("report (build, JSON)", lambda: build(results, [], [], None).model_dump_json())
    start = time.perf_counter()
    for case in loaded.cases:
        run_case(case)
    whole = time.perf_counter() - start
    start = time.perf_counter()
    for f in files:
        baseline_tiny.check(f)
    base = time.perf_counter() - start
    out += [
        f"### One tiny case, in process, by stage ({n:,} cases, ms per case)",
        "",
        "| stage | ms per case |",
        "|---|---|",
        *[f"| {k} | {v * 1e3 / n:.3f} |" for k, v in t.items()],
        f"| **sum of the stages** | {sum(t.values()) * 1e3 / n:.3f} |",
        f"| `run_case` alone (execute: inputs to compare, probes, notes) | {whole * 1e3 / n:.3f} |",
        f"| baseline `check` (read, YAML, numpy, torch, allclose) | {base * 1e3 / n:.3f} |",
        "",
        f"In process, gradcase's whole per-case cost (the stages) is **{sum(t.values()) / base:.2f}"
        f" x** the baseline's; `run_case` alone is {whole / base:.2f} x (target: <= 2).",
        "",
    ]
    print("\n".join(out[-6 - len(t) :]), flush=True)


def _run_stages(case: Any, clock: Callable[[str, Callable[[], Any]], Any]) -> None:
    """One compiled case through execute's stages, each timed under its name."""
    from runner.engine import backward, forward
    from runner.execute import _floors, compare_sources
    from runner.inputs import make_input, make_upstream
    from runner.oracles import EXPECTED, MANUAL, TORCH, Sources
    from runner.torch_side import run_torch

    graph = case.graph
    inputs = clock("inputs", lambda: {k: make_input(p) for k, p in case.inputs.items()})

    def manual() -> tuple[Any, Any, Any]:
        values = forward(graph, inputs)
        out = values[graph.output]
        up = make_upstream(case.model.upstream, out.shape, out.dtype)
        return values, up, backward(graph, values, up)

    values, up, bw = clock("manual (forward, backward)", manual)
    ref = clock("torch", lambda: run_torch(graph, inputs, up))
    sources = Sources(inputs, up, bw, [], {MANUAL: values}, {MANUAL: bw.grads})
    sources.values["torch"], sources.grads["torch"] = ref.values, ref.grads
    sources.projections["torch"], sources.skipped["torch"] = ref.projections, ref.skipped
    sources.declined["torch"] = ref.unchecked
    sources.values[EXPECTED], sources.grads[EXPECTED] = {}, {}
    # Measured only when a comparison fails without them (never, in a passing case): their
    # cost, when they are, counts in compare's.
    sources.floors.defer(lambda: _floors(case, sources, (TORCH,)))
    clock("compare", lambda: compare_sources(case, sources, (TORCH,)))


def large(sizes: Sequence[int], repeat: int, tmp: Path, out: list[str]) -> None:
    from baseline_large import large_case

    out += [
        "### The large case: `c = a @ b; d = c @ b; e = tanh(d)`, float64",
        "",
        f"Whole process, median of {repeat}, alternating; peak RSS of the process. "
        "`probe: false` (the hand-written script does not probe either).",
        "",
        "| n | gradcase | baseline | time ratio | gradcase peak | baseline peak | memory ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        path = tmp / f"large{n}.yaml"
        path.write_text(large_case(n))
        got = paired(
            {
                "g": gradcase("run", str(path), "-q", "--report", str(tmp / "large.json")),
                "b": [PY, str(ROOT / "benchmarks" / "baseline_large.py"), str(n)],
            },
            repeat,
        )
        (g, gm), (b, bm) = got["g"], got["b"]
        out.append(
            f"| {n} | {g:.2f} s | {b:.2f} s | {g / b:.2f} | {gm:.0f} MiB | {bm:.0f} MiB | "
            f"{gm / bm:.2f} |"
        )
        print(out[-1], flush=True)
    out += ["", "Targets: time <= 1.05, memory <= 1.1.", ""]


def startup(repeat: int, tmp: Path, out: list[str]) -> None:
    from tiny_cases import write

    one = write(1, tmp / "one")[0]
    write(1000, tmp / "v1000")
    commands = {
        "`python -c pass`": [PY, "-c", "pass"],
        "`--help`": gradcase("--help"),
        "`validate cases`": gradcase("validate", "cases"),
        "`validate` one tiny case": gradcase("validate", str(one)),
        "`validate` 1,000 tiny cases": gradcase("validate", str(tmp / "v1000")),
        "`list cases`": gradcase("list", "cases"),
        "`ops`": gradcase("ops"),
        "`schema`": gradcase("schema"),
        "`run` one tiny case": gradcase("run", str(one), "-q", "--report", str(tmp / "o.json")),
    }
    got = paired(commands, repeat)
    base = got["`python -c pass`"][0]
    n_cases = len(list((ROOT / "cases").rglob("*.yaml")))
    one, helped = got["`validate` one tiny case"][0], got["`--help`"][0]
    out += [
        f"### Start-up of each command (median of {repeat}, alternating)",
        "",
        "| command | wall | ratio to `python -c pass` |",
        "|---|---|---|",
        *[f"| {k} | {v[0]:.3f} s | {v[0] / base:.1f} |" for k, v in got.items()],
        "",
        "`validate` per 1,000 cases beyond its start-up (`validate` of one tiny case: the "
        "loader's imports; target: 0.3 s): "
        f"{got['`validate` 1,000 tiny cases'][0] - one:.2f} s for tiny cases, "
        f"{(got['`validate cases`'][0] - one) * 1000 / n_cases:.2f} s for the {n_cases} case "
        f"files of `cases/` ({(got['`validate cases`'][0] - helped) * 1000 / n_cases:.2f} s "
        "beyond `--help`'s start-up). `--help` target: <= 3 x `python -c pass`.",
        "",
    ]
    print("\n".join(out[-len(commands) - 4 :]), flush=True)


def gradcheck(sizes: Sequence[int], full_max: int, out: list[str]) -> None:
    import numpy as np
    import torch

    from runner.execute import run_case
    from runner.loader import load

    out += [
        "### `torch.autograd.gradcheck` against gradcase's check: `c = a @ b`, float64",
        "",
        "In process, after warm-up; gradcase's check is `run_case` of the case (manual, torch, "
        "comparisons; round-off floors only when a comparison needs them, and no graph probe: no "
        "user rule is in force).",
        "",
        "| n | gradcase | gradcheck | ratio | gradcheck fast mode | ratio |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            path = Path(d) / f"mm{n}.yaml"
            path.write_text(
                f"name: mm{n}\ninputs:\n  a: {{random: normal, shape: [{n}, {n}], seed: 1}}\n"
                f"  b: {{random: normal, shape: [{n}, {n}], seed: 2}}\ngraph:\n  c: a @ b\n"
            )
            case = load([str(path)]).cases[0]
            run_case(case)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                run_case(case)
                times.append(time.perf_counter() - start)
            ours = statistics.median(times)
            rng = np.random.default_rng(0)
            a = torch.from_numpy(rng.normal(size=(n, n))).requires_grad_(True)
            b = torch.from_numpy(rng.normal(size=(n, n))).requires_grad_(True)

            def check(fast: bool, args: tuple[Any, Any] = (a, b)) -> float:
                start = time.perf_counter()
                torch.autograd.gradcheck(torch.matmul, args, fast_mode=fast)
                return time.perf_counter() - start

            fast = statistics.median(check(True) for _ in range(3))
            full = check(False) if n <= full_max else None
            full_text = f"{full:.2f} s | {full / ours:,.0f}" if full else "not run (hours) | -"
            out.append(
                f"| {n} | {ours * 1e3:.1f} ms | {full_text} | {fast * 1e3:.1f} ms | "
                f"{fast / ours:.1f} |"
            )
            print(out[-1], flush=True)
    out += [
        "",
        "Targets: gradcheck at least 1,000 x gradcase's check at 64x64; gradcase faster than "
        "the fast mode.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--no-write", action="store_true", help="do not touch README.md")
    args = parser.parse_args()
    quick = args.quick
    started = time.perf_counter()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    out = [
        f"Written by `make bench` ({time.strftime('%Y-%m-%d')}, commit {commit}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}).",
        "",
    ]
    # Compile gradcase's bytecode once (see ENV), so that no measured run pays for it.
    subprocess.run(gradcase("--help"), env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    subprocess.run(
        [PY, "-c", "import runner.cli, runner.loader, runner.execute, runner.parallel"],
        env=ENV,
        cwd=ROOT,
        check=True,
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tiny([20] if quick else [100, 1000, 10000], 1 if quick else 3, tmp, out)
        stages(20 if quick else 1000, tmp, out)
        large([64] if quick else [1024, 2048], 1 if quick else 3, tmp, out)
        startup(1 if quick else 5, tmp, out)
        gradcheck([8] if quick else [64, 256], 8 if quick else 64, out)
    out.append(f"The whole benchmark took {time.perf_counter() - started:.0f} s.")
    text = "\n".join(out)
    print(out[-1])
    if not args.no_write:
        readme = README.read_text()
        head, _, rest = readme.partition(START)
        _, _, tail = rest.partition(END)
        README.write_text(f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
