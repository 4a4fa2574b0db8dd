"""Hostile and broken input (issue 10): never a traceback, a hang, memory blown or a result lost.

`tests/bad_cases/` holds one file per kind of bad input; its first line says where the error
must be and what it must say (``# expect LINE:COL: words``). The rest are the behaviours of a run
under hostile conditions: several documents, unreadable folders, a closed stdout, Ctrl-C, the
per-case time limit and the memory estimate, and a seeded fuzz of mutated cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.diagnostics import printable
from runner.loader import load
from runner.yaml_source import load_stream
from tests.conftest import ROOT

BAD = sorted((Path(__file__).parent / "bad_cases").glob("*.yaml"))
GOOD = "inputs:\n  a: [1.0, 2.0]\n  b: [3.0, 4.0]\ngraph:\n  y: a * b\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_case_is_a_located_error(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = path.read_text(encoding="utf-8").split("\n", 1)[0]
    place, words = head.removeprefix("# expect ").split(": ", 1)
    code, out = run(capsys, "validate", str(path))
    assert code == 2, out
    assert "Traceback" not in out
    located = [ln for ln in out.splitlines() if f"{path.name}:{place}: error: " in ln]
    assert located and words in located[0], out
    assert "\x1b" not in out  # nothing echoed from a case drives the terminal


def test_data_refused_at_run_time_is_invalid_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "gather": ("a: [[1.0, 2.0]]\n  i: [[5]]", "gather(a, 1, i)", "index 5 is out of range"),
        "embedding": ("w: [[1.0], [2.0]]\n  i: [7]", "embedding(i, w)", "index 7 is out of range"),
        "nll": ("x: [[1.0, 2.0]]\n  t: [9]", "nll_loss(x, t)", "target 9 is out of bounds"),
    }
    for name, (inputs, expr, words) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"inputs:\n  {inputs}\ngraph:\n  y: {expr}\n")
        report = tmp_path / f"{name}.json"
        code, out = run(capsys, "run", str(path), "--report", str(report))
        assert code == 2, out
        assert f"{name}.yaml:5:6: node 'y'" in out and words in out
        assert "(invalid input: the case's data, not a rule)" in out
        data = json.loads(report.read_text())
        assert data["summary"]["errors"] == 1 and data["cases"][0]["invalid_input"]


def test_one_bad_document_loses_no_other() -> None:
    bad_kinds = [
        "inputs: {a: [1.0], a: [2.0]}\ngraph: {y: sum(a)}\n",  # duplicate key
        "inputs: &x\n  a: *x\ngraph: {y: sum(a)}\n",  # recursive alias
        "inputs: !!python/object:os.system {}\ngraph: {y: sum(a)}\n",  # a python tag
        "inputs:\n  a: [1.0\ngraph:\n  y: [sum(a)\n",  # a syntax error
        "description: 2024-02-30\ninputs: {a: [1.0]}\ngraph: {y: sum(a)}\n",  # a bad scalar
    ]
    good = "inputs:\n  a: [1.0, 2.0]\ngraph:\n  y: sum(a)\n"
    for bad in bad_kinds:
        text = f"{good}---\n{bad}---\n{good}"
        docs, problems = load_stream(text, "f.yaml")
        assert [d.index for d in docs] == [0, 2], bad
        assert len(problems) >= 1 and all(p.where.line >= 5 for p in problems), problems
        # the third document keeps its own lines
        assert docs[1].where(("graph", "y")).line == text.split("\n").index("  y: sum(a)", 6) + 1


def test_the_value_budget_is_per_document() -> None:
    doc = "inputs:\n  a: [" + ", ".join(["1.0"] * 600_000) + "]\ngraph:\n  y: sum(a)\n"
    docs, problems = load_stream(doc + "---\n" + doc, "f.yaml")
    assert len(docs) == 2 and not problems


def test_an_unreadable_folder_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.yaml").write_text(GOOD)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.yaml").write_text(GOOD)
    real = os.scandir

    def scandir(path: object = ".") -> object:
        if Path(os.fsdecode(path)) == locked:  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", os.fsdecode(path))  # type: ignore[arg-type]
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    loaded = load([str(tmp_path)])
    assert [c.name for c in loaded.cases] == ["ok/a"]
    assert [p.message for p in loaded.problems] == ["cannot read this folder: Permission denied"]
    code, out = run(capsys, "validate", str(tmp_path))
    assert code == 2 and "locked:1:1: error: cannot read this folder" in out


def test_paths_too_long_and_names_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "validate", str(tmp_path / ("a" * 300 + ".yaml")))
    assert code == 2 and "File name too long" in out and "Traceback" not in out
    good = tmp_path / "g.yaml"
    good.write_text(GOOD)
    code, out = run(capsys, "run", str(good), "--report", str(tmp_path / ("r" * 300 + ".json")))
    assert code == 2 and "--report" in out and "File name too long" in out
    odd = os.fsencode(tmp_path) + b"/bad\xff\x1b.yaml"
    with open(odd, "w") as f:
        f.write(GOOD)
    report = tmp_path / "r.json"
    code, out = run(capsys, "run", os.fsdecode(odd), "--report", str(report))
    assert code == 0, out
    assert "bad\\xff\\x1b" in json.loads(report.read_text())["cases"][0]["file"]
    assert "\x1b" not in out


def test_printable_escapes_what_drives_a_terminal() -> None:
    assert printable("a\x1b[2J\x9b\u202eb\nc") == "a\\x1b[2J\\x9b\\u202eb\nc"
    assert printable("a\nb\tc", lines=False) == "a\\nb\\tc"


def test_a_closed_stdout_keeps_the_verdict_and_the_report(tmp_path: Path) -> None:
    (tmp_path / "pass.yaml").write_text(GOOD)
    (tmp_path / "fail.yaml").write_text(GOOD + "expect:\n  grad:\n    a: [9.0, 9.0]\n")
    report = tmp_path / "r.json"
    shell = (
        f"{sys.executable} -m runner run {tmp_path} --report {report} | head -c 1 >/dev/null; "
        "exit ${PIPESTATUS[0]}"
    )
    done = subprocess.run(
        ["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(report.read_text())["summary"]["failed"] == 1


def test_a_case_over_its_timeout_is_an_error_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "slow.py"
    rules.write_text(
        "import time\ndef mul(grad, out, input, other):\n    time.sleep(60)\nRULES = {'mul': mul}\n"
    )
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("a * b", "a + b"))
    report = tmp_path / "r.json"
    code, out = run(
        capsys, "run", str(tmp_path), "--rules", str(rules), "--timeout", "1",
        "--report", str(report),
    )  # fmt: skip
    assert code == 1, out
    assert "the case ran for over 1 s (--timeout 1) and was stopped" in out
    statuses = {c["name"]: c["status"] for c in json.loads(report.read_text())["cases"]}
    assert statuses == {"a": "error", "b": "passed"}


def test_memory_over_the_budget_is_refused_with_the_estimate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conv = (
        "inputs:\n  x: {random: normal, shape: [1, 1, 300, 300]}\n"
        "  w: {random: normal, shape: [1, 1, 150, 150]}\ngraph:\n  y: conv2d(x, w)\n"
    )
    matmul = (
        "inputs:\n  a: {random: normal, shape: [150, 1, 1, 10000]}\n"
        "  b: {random: normal, shape: [1, 150, 10000, 1]}\ngraph:\n  y: a @ b\n"
    )
    chain = "inputs:\n  x: {fill: 1.0, shape: [10000000]}\ngraph:\n" + "".join(
        f"  n{i}: {'x' if i == 0 else f'n{i - 1}'} * 1.5\n" for i in range(48)
    )
    for name, text, words in (
        ("conv", conv, "of intermediates of conv2d at node 'y'"),
        ("matmul", matmul, "of intermediates of matmul at node 'y'"),
        ("chain", chain, "6 x 3.65 GiB of values and gradients"),
    ):
        (tmp_path / f"{name}.yaml").write_text(text)
        code, out = run(
            capsys, "run", str(tmp_path / f"{name}.yaml"), "--report", str(tmp_path / "r.json")
        )
        assert code == 1, out
        assert "the case would need about" in out and words in out, out
        assert "over the budget of 4 GiB (--max-memory); not run" in out
    code, out = run(
        capsys, "run", str(tmp_path / "conv.yaml"), "--max-memory", "100G",
        "--report", str(tmp_path / "r.json"), "--timeout", "0.001",
    )  # fmt: skip
    assert "the case would need" not in out  # the budget is settable


def test_max_pool_with_a_huge_kernel_validates_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "inputs:\n  x: [[[1.0]]]\ngraph:\n"
        "  y: max_pool1d(x, kernel_size=10000000000, padding=5000000000)\n"
    )
    code, out = run(capsys, "validate", str(path))  # was a loop over 10^10 taps
    assert code == 0, out


def test_an_interrupted_run_writes_the_cases_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import runner.execute as execute

    for i in range(3):
        (tmp_path / f"c{i}.yaml").write_text(GOOD)
    real = execute.run_case
    calls = []

    def interrupting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(execute, "run_case", interrupting)
    report = tmp_path / "r.json"
    code, out = run(capsys, "run", str(tmp_path), "--report", str(report))
    assert code == 130 and "Traceback" not in out
    data = json.loads(report.read_text())
    assert data["interrupted"] and [c["name"] for c in data["cases"]] == ["c0"]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


# --- fuzz: mutated cases end in a clean result or a located error, never a traceback ----------

SEEDS = [
    GOOD,
    "inputs:\n  x: {random: normal, shape: [2, 3], seed: 1}\n  w: [[1.0], [2.0], [3.0]]\n"
    "graph:\n  h: relu(x @ w)\n  y: sum(h * 2, dim=0)\nupstream: {random: normal}\n"
    "rules:\n  relu:\n    input: grad * (out > 0)\n",
]
PIECES = [
    "[", "]", "{", "}", ":", ",", "-", "!!int x", "&a", "*a", "<<: *a", "2024-02-30", "0x_",
    "1e999", "-1e308", "\x1b[2J", "'", '"', "\t", "\n  ", "[" * 90, "9" * 5000, "2**70",
    "shape: [0, 4611686018427387904]", "check: []", "(" * 300, "sum(", "@", "**", "random:",
    "nll_loss(", "---\n", "\\xff",
]  # fmt: skip


def test_max_memory_imports_cleanly_first() -> None:
    """--max-memory's parser imports runner.memory before anything else: it must not meet the
    ops package half-initialised (a black-box tester's traceback on every --max-memory)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import runner.memory; print(runner.memory.parse_bytes('4G'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == str(4 * 2**30), proc.stderr


def test_list_escapes_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cases" / "c.yaml"
    path.parent.mkdir()
    path.write_text('name: tx\ntags: ["\\x1b[2J"]\ninputs: {a: [1.0]}\ngraph: {y: a * 2}\n')
    code, out = run(capsys, "list", str(path))
    assert code == 0 and "\x1b" not in out and "\\x1b[2J" in out
