"""`gradcase mutate`: the mutants themselves, survivors named with the reason their data gave,
equivalent mutants left out of the score, and the score of the whole of cases/ held at 100%."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from runner.loader import load
from runner.mutants import Mutant, mutant_rule, mutants_of, transform
from runner.mutate import mutate
from runner.ops import REGISTRY
from tests.conftest import ROOT
from tests.conftest import run_cli as run

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
    assert code == 1, out  # nothing was mutated: not a pass
    assert "skipped s/xfail: xfail: exp differentiated with its input" in out
    assert "skipped s/golden: fails without mutants" in out
    assert "nothing was mutated: every case was skipped" in out
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
    assert "no checked gradient changes: it is multiplied by zeros downstream" in block
    assert "within the tolerance" not in block
    assert "SURVIVED mul:negated 'other'" not in out


# --- tie ops: the equivalence check constructs ties, it does not hope for them ----------------

# (graph, inputs without ties, expected status of ties-one-hot for each argument). A full max or
# min, amax and amin (any dim) and maximum/minimum split a tie's gradient, so giving it all to
# one element is a survivor of data without ties, whatever the shape; max/min with a dim give it
# to the first extremal index as torch does, which is that mutant exactly: equivalent. A slice
# of one element cannot tie.
TIE_TABLE = [
    ("max(x)", {"x": [1.0, 5.0, 3.0]}, {"input": "survived"}),
    ("max(x)", {"x": [1.0, 5.0, 3.0, 2.0]}, {"input": "survived"}),
    ("max(x)", {"x": [[1.0, 5.0], [3.0, 2.0]]}, {"input": "survived"}),
    ("max(x)", {"x": [1.0, 5.0]}, {"input": "survived"}),
    ("max(x)", {"x": [1.0, 5.0, 3.0, 2.0, 0.5, 4.0]}, {"input": "survived"}),
    ("min(x)", {"x": [1.0, 5.0, 3.0]}, {"input": "survived"}),
    ("amax(x)", {"x": [1.0, 5.0, 3.0]}, {"input": "survived"}),
    ("amin(x)", {"x": [[1.0, 5.0], [3.0, 2.0]]}, {"input": "survived"}),
    ("amax(x, dim=1)", {"x": [[1.0, 5.0, 3.0], [4.0, 2.0, 0.5]]}, {"input": "survived"}),
    ("amin(x, dim=0, keepdim=True)", {"x": [[1.0, 5.0], [3.0, 2.0]]}, {"input": "survived"}),
    ("amax(x, dim=[0, 1])", {"x": [[1.0, 5.0], [3.0, 2.0]]}, {"input": "survived"}),
    ("amax(x, dim=1)", {"x": [[1.0], [5.0], [3.0]]}, {"input": "equivalent"}),
    ("max(x, dim=1)", {"x": [[1.0, 5.0, 3.0], [4.0, 2.0, 0.5]]}, {"input": "equivalent"}),
    ("min(x, dim=0)", {"x": [[1.0, 5.0, 3.0], [4.0, 2.0, 0.5]]}, {"input": "equivalent"}),
    (
        "maximum(x, w)",
        {"x": [1.0, 5.0, 3.0], "w": [2.0, 4.0, 0.5]},
        {"input": "survived", "other": "survived"},
    ),
    (
        "minimum(x, w)",
        {"x": [[1.0], [5.0]], "w": [2.0, 4.0, 0.5]},
        {"input": "survived", "other": "survived"},
    ),
    ("maximum(x, c)", {"x": [1.0, 5.0, 3.0], "c": [2.0, 4.0, 0.5]}, {"input": "survived"}),
]


def _case_text(graph: str, inputs: dict[str, list[object]]) -> str:
    lines = ["name: t/ties", "inputs:"]
    for name, data in inputs.items():
        lines.append(
            f"  {name}: {{values: {data}, requires_grad: false}}"
            if name == "c"
            else f"  {name}: {data}"
        )
    return "\n".join([*lines, "graph:", f"  y: {graph}", "upstream: {random: normal, seed: 1}", ""])


@pytest.mark.parametrize(("graph", "inputs", "expected"), TIE_TABLE)
def test_ties_one_hot_is_judged_on_constructed_ties_not_chance(
    write_case: WriteCase, graph: str, inputs: dict[str, list[object]], expected: dict[str, str]
) -> None:
    path = write_case(_case_text(graph, inputs))
    loaded = load([str(path)])
    assert not loaded.problems, loaded.problems
    report = mutate(loaded.cases)
    assert report.cases == ["t/ties"], report.skipped
    ties = {o.mutant.argument: o for o in report.outcomes if o.mutant.kind == "ties-one-hot"}
    assert {a: o.status for a, o in ties.items()} == expected
    for argument, status in expected.items():
        if status == "survived":
            assert any("no ties in the data" in r for r in ties[argument].reasons)


@pytest.mark.parametrize("graph", ["max_pool1d(x, 2)", "max_pool2d(x, 2)"])
def test_max_pool_has_no_ties_mutant_since_torch_gives_one_tap_the_gradient(
    write_case: WriteCase, graph: str
) -> None:
    data = [[[1.0, 5.0, 3.0, 2.0]]] if "1d" in graph else [[[[1.0, 5.0], [3.0, 2.0]]]]
    path = write_case(_case_text(graph, {"x": data}))
    report = mutate(load([str(path)]).cases)
    assert report.cases == ["t/ties"]
    kinds = {o.mutant.kind for o in report.outcomes}
    assert "ties-one-hot" not in kinds and {"scaled", "negated", "zeroed"} <= kinds
    assert all(o.status != "equivalent" for o in report.outcomes if o.mutant.kind == "scaled")


# --- a tiny gradient: equivalence at the gradient's own scale, the tolerance named --------------


def test_a_tiny_gradient_does_not_make_mutants_equivalent_and_the_tolerance_is_named(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    """At a scale of 1e-16 every mutant is judged, and killed: the tolerance and its round-off
    floor are the tensor's own. A change within a case's own loose tolerance survives, and the
    reason names that tolerance."""
    path = write_case(
        "name: t/tiny\ninputs:\n  x: {random: normal, shape: [4], seed: 1}\n"
        "graph:\n  y: sin(x) * 1e-16\nupstream: {random: normal, seed: 2}\n"
    )
    report = mutate(load([str(path)]).cases)
    status = {(o.mutant.op, o.mutant.kind): o.status for o in report.outcomes}
    for op in ("mul", "sin"):
        for kind in ("scaled", "negated", "zeroed", "upstream-dropped"):
            assert status[(op, kind)] == "killed", status
    loose = write_case(
        "name: t/loose\ninputs:\n  x: {random: normal, shape: [4], seed: 1}\n"
        "graph:\n  y: sin(x) * 1e-16\nupstream: {random: normal, seed: 2}\n"
        "tolerance: {rtol: 0.01}\n",
        "loose.yaml",
    )
    code, out = run(capsys, "mutate", str(loose))
    assert code == 1
    assert "(4 equivalent)" not in out
    block = survivor_block(out, "sin:scaled 'input'")
    assert "the change is within the tolerance (atol " in block, block
    assert "incl. round-off " in block and "at this scale" in block
    assert "multiplied by zeros downstream" not in block


# --- nothing tested is not a pass ----------------------------------------------------------------


def test_nothing_to_mutate_is_an_error_and_says_why(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = run(capsys, "mutate", str(empty))
    assert code == 2 and "no cases found" in out
    path = write_case("name: t/max\ninputs:\n  x: [1.0, 5.0, 3.0]\ngraph:\n  m: max(x)\n")
    code, out = run(capsys, "mutate", str(path), "-k", "nothing")
    assert code == 2 and "matches none of the 1 cases" in out
    module = tmp_path / "boom.py"
    module.write_text(
        "def max(grad, out, **_):\n    raise RuntimeError('boom')\n\nRULES = {'max': max}\n"
    )
    code, out = run(capsys, "mutate", str(path), "--rules", str(module))
    assert code == 1, out
    assert "nothing was mutated" in out and "t/max" in out and "boom" in out  # without -v


def test_counts_are_plural_right_and_json_goes_where_run_puts_reports(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "name: t/max\ninputs:\n  x: [1.0, 5.0, 5.0]\ngraph:\n  m: max(x)\nupstream: 2.0\n"
    )
    code, out = run(capsys, "mutate", str(path))
    assert code == 0 and "1 case used, 0 skipped" in out and "1 cases" not in out
    code, out = run(capsys, "mutate", str(path), "--json", str(tmp_path))
    assert code == 2 and f"--json {tmp_path} is a folder" in out and "mutation score" not in out
    # A missing folder is made, as run's --report (whose default reports/ may not exist yet).
    nested = tmp_path / "new" / "dir"
    code, out = run(capsys, "run", str(path), "--report", str(nested / "r.json"))
    assert code == 0 and (nested / "r.json").is_file()
    code, out = run(capsys, "mutate", str(path), "--json", str(nested / "m.json"))
    assert code == 0 and json.loads((nested / "m.json").read_text())["cases"] == ["t/max"]


def test_a_suite_where_no_mutant_applies_is_not_a_pass(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    # The case's own rule gives every gradient: no catalogue rule is left to mutate.
    path = write_case(
        "name: t/own\ninputs:\n  x: [1.0, 2.0]\ngraph:\n  y: exp(x)\n"
        "rules:\n  exp:\n    input: grad * out\n"
    )
    code, out = run(capsys, "mutate", str(path))
    assert code == 1, out
    assert "nothing was mutated: the cases used run no catalogue op rule" in out
    assert out.strip().splitlines()[-1].startswith("mutation score: 0/0")
