"""`gradcase mutate`: the mutants themselves, survivors named with the reason their data gave,
equivalent mutants left out of the score, and the score of the whole of cases/ held at 100%."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from runner.cli import main
from runner.loader import load
from runner.mutants import Mutant, mutant_rule, mutants_of, transform
from runner.mutate import mutate
from runner.ops import REGISTRY
from tests.conftest import ROOT

WriteCase = Callable[..., Path]

# max of data without ties under the default upstream 1.0; a symmetric matmul by the identity.
WEAK = """\
name: weak/max
inputs:
  x: [[1.0, 5.0, 2.0], [3.0, 0.5, 4.0]]
graph:
  m: max(x)
---
name: weak/symmetric-matmul
inputs:
  a: [[2.0, 1.0], [1.0, 2.0]]
  b: [[1.0, 0.0], [0.0, 1.0]]
graph:
  c: a @ b
"""

# The same ops on random, non-symmetric data with ties, under a random upstream.
STRONG = """\
name: strong/max
inputs:
  x: [[1.0, 5.0, 5.0], [3.0, 0.5, 4.0], [2.0, 5.0, -1.0]]
graph:
  m: max(x)
upstream: 2.5
---
name: strong/matmul
inputs:
  a: {random: normal, shape: [3, 3], seed: 1}
  b: {random: normal, shape: [3, 3], seed: 2}
graph:
  c: a @ b
upstream: {random: normal, seed: 3}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def survivor_block(out: str, mutant: str) -> str:
    """The SURVIVED line of ``mutant`` and its reason lines."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"--- SURVIVED {mutant}"))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def test_weak_suite_names_each_survivor_with_why_it_survived(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(WEAK)
    report = tmp_path / "m.json"
    code, out = run(capsys, "mutate", str(path), "--json", str(report))
    assert code == 1, out
    ties = survivor_block(out, "max:ties-one-hot 'input'")
    assert "weak/max, node 'm'" in ties and "no ties in the data" in ties
    dropped = survivor_block(out, "max:upstream-dropped 'input'")
    assert "constant upstream" in dropped and "all 1.0" in dropped
    for argument in ("input", "other"):
        block = survivor_block(out, f"matmul:transposed '{argument}'")
        assert "weak/symmetric-matmul, node 'c'" in block
        assert "symmetric gradient" in block and "upstream" in block
    survived = {
        (m["op"], m["kind"], m["argument"])
        for m in json.loads(report.read_text())["mutants"]
        if m["status"] == "survived"
    }
    assert survived == {
        ("max", "ties-one-hot", "input"),
        ("max", "upstream-dropped", "input"),
        ("matmul", "transposed", "input"),
        ("matmul", "transposed", "other"),
        ("matmul", "upstream-dropped", "input"),
        ("matmul", "upstream-dropped", "other"),
    }
    assert "matmul                             6/10  killed  60.0%" in out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith("mutation score: 9/15 non-equivalent mutants killed (60.0%), 6 survived")
    )


def test_strong_suite_kills_every_mutant(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(STRONG)
    code, out = run(capsys, "mutate", str(path), "-v")
    assert code == 0, out
    assert "SURVIVED" not in out
    # Each kind that applies was run and killed (wrong-axis does not apply to a full max).
    for kind in ("scaled", "negated", "zeroed", "upstream-dropped", "transposed", "ties-one-hot"):
        assert f"killed max:{kind} 'input' by strong/max" in out
    assert "killed matmul:transposed 'other' by strong/matmul" in out
    assert "0 survived, 0 equivalent; 2 cases used, 0 skipped" in out


def test_a_zero_gradient_makes_its_mutants_equivalent_not_survivors(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "name: z/floor\ninputs:\n  x: [0.5, 1.5, -2.5]\ngraph:\n  f: floor(x)\n  y: f * x\n"
        "upstream: {random: normal, seed: 1}\n"
    )
    code, out = run(capsys, "mutate", str(path), "-v")
    assert code == 0, out
    for kind in ("scaled", "negated", "zeroed", "upstream-dropped"):
        assert f"equivalent floor:{kind} 'input'" in out
    assert "floor                              0/0   killed     -  (4 equivalent)" in out


def test_xfail_and_failing_cases_are_skipped(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(
        "name: s/xfail\ninputs:\n  x: [1.0, 2.0]\ngraph:\n  y: exp(x)\nrules:\n  exp:\n"
        "    input: grad * input\nxfail: exp differentiated with its input\n",
        "a.yaml",
    )
    write_case(
        "name: s/golden\ninputs:\n  x: [1.0, 2.0]\ngraph:\n  y: exp(x)\n"
        "expect:\n  grad:\n    x: [0.0, 0.0]\n",
        "b.yaml",
    )
    code, out = run(capsys, "mutate", str(tmp_path / "cases"), "-v")
    assert code == 0, out
    assert "skipped s/xfail: xfail: exp differentiated with its input" in out
    assert "skipped s/golden: fails without mutants" in out
    assert "0 cases used, 2 skipped" in out


def test_a_case_rule_is_not_mutated_and_a_module_rule_is(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "name: r/mul\ninputs:\n  a: [[1.0, 2.0], [3.0, 4.0]]\n  b: [[2.0, 1.0], [0.5, 3.0]]\n"
        "graph:\n  c: a * b\n  d: exp(c)\nrules:\n  mul:\n    input: grad * other\n"
    )
    module = tmp_path / "rules.py"
    module.write_text(
        "import numpy as np\n\ndef exp(grad, out, input):\n    return {'input': grad * out}\n\n"
        "RULES = {'exp': exp}\n"
    )
    data_path = tmp_path / "m.json"
    code, out = run(capsys, "mutate", str(path), "--rules", str(module), "--json", str(data_path))
    assert code == 1, out
    # mul's 'input' is the case's own rule, so no mutant of it ran; 'other' is the catalogue's.
    mutants = json.loads(data_path.read_text())["mutants"]
    ran = {(m["op"], m["argument"]): m["base"] for m in mutants}
    assert ("mul", "input") not in ran
    assert ran[("mul", "other")] == "catalogue"
    assert ran[("exp", "input")] == f"module {module}"
    exp_dropped = next(m for m in mutants if (m["op"], m["kind"]) == ("exp", "upstream-dropped"))
    assert exp_dropped["status"] == "survived"  # the upstream is 1.0 and exp is the output
    assert "constant upstream" in exp_dropped["reasons"][0]


def test_mutants_transform_the_base_gradient_as_documented() -> None:
    maximum, amax, add = REGISTRY["maximum"], REGISTRY["amax"], REGISTRY["add"]
    g = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert transform("transposed", g, None, {}, add).tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert transform("transposed", np.ones((2, 3)), None, {}, add) is None
    assert transform("scaled", g.astype(np.float32), None, {}, add).dtype == np.float32
    # amax over dim 1 of rows with ties: torch splits 1/2, the mutant gives the first the whole.
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    split = np.array([[0.0, 0.5, 0.5], [0.5, 0.5, 0.0]])
    out = x.max(axis=1)
    args = {"input": x, "dim": 1, "keepdim": False}
    one_hot = transform("ties-one-hot", split, out, args, amax)
    assert one_hot.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    # wrong-axis: the mean along the axis amax(dim=1) does not reduce (axis 0).
    assert transform("wrong-axis", split, out, args, amax).tolist() == [[0.25, 0.5, 0.25]] * 2
    # maximum: the upstream at a tie goes wholly to 'input', none to 'other'.
    a, b = np.array([1.0, 2.0, 5.0]), np.array([1.0, 3.0, 5.0])
    up = np.array([2.0, 4.0, 6.0])
    pair = {"input": a, "other": b}
    first = mutant_rule(Mutant("maximum", "ties-one-hot", "input"), [])(up, np.maximum(a, b), pair)
    second = mutant_rule(Mutant("maximum", "ties-one-hot", "other"), [])(up, np.maximum(a, b), pair)
    assert first["input"].tolist() == [2.0, 0.0, 6.0]
    assert second["other"].tolist() == [0.0, 4.0, 0.0]
    assert {m.kind for m in mutants_of(maximum)} >= {"ties-one-hot", "wrong-axis"}
    assert "ties-one-hot" not in {m.kind for m in mutants_of(add)}


def test_every_non_equivalent_mutant_is_killed_by_cases() -> None:
    """The suite's own score: every mutant of every op cases/ uses is caught. When this fails,
    add a case that kills the survivor (random, non-symmetric data, ties for tie ops, a random
    upstream), rather than weakening the mutants."""
    start = time.perf_counter()
    report = mutate(load([str(ROOT / "cases")]).cases)
    elapsed = time.perf_counter() - start
    survivors = [f"{o.mutant}: {o.reasons}" for o in report.survivors]
    assert survivors == []
    assert len(report.counted()) > 600
    assert {o.mutant.kind for o in report.counted()} == {
        "scaled",
        "negated",
        "zeroed",
        "upstream-dropped",
        "transposed",
        "ties-one-hot",
        "wrong-axis",
    }
    assert elapsed < 60, f"mutate over cases/ took {elapsed:.1f} s"


def test_a_change_no_checked_gradient_sees_is_named_as_such(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    # floor's zero gradient hides whatever mul gives the anonymous floor(x) node.
    path = write_case(
        "name: z/hidden\ninputs:\n  x: [0.5, 1.5, -2.5]\ngraph:\n  y: floor(x) * x\n"
        "upstream: {random: normal, seed: 1}\n"
    )
    code, out = run(capsys, "mutate", str(path))
    assert code == 1, out
    block = survivor_block(out, "mul:negated 'input'")
    assert "z/hidden, node 'y'" in block
    assert "no checked gradient changes beyond the tolerance" in block
    assert "SURVIVED mul:negated 'other'" not in out
