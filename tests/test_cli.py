"""The CLI end to end, in-process: exit statuses, the report's lines, and every kind of bad input
reported at its file:line:col by both `run` and `validate`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.report import Report
from tests.conftest import ROOT
from tests.conftest import run_cli as run

WriteCase = Callable[..., Path]

GOOD = """\
name: t/hadamard
inputs:
  a: [[4.0, 5.0], [1.0, 3.0]]
  b: [[2.0, 2.0], [2.0, 2.0]]
graph:
  c: a * b
upstream: 3
expect:
  grad:
    b: [[12.0, 15.0], [3.0, 9.0]]
"""


def test_passing_case_prints_one_line_and_the_count_line_last(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(GOOD)
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].startswith("PASSED t/hadamard")
    assert lines[-1] == "1 case: 1 passed, 0 failed"
    report = Report.model_validate_json((tmp_path / "r.json").read_text())
    assert report.summary.passed == 1
    case = report.cases[0]
    assert (case.name, case.status, case.line) == ("t/hadamard", "passed", 1)
    assert {(t.tensor, t.kind) for t in case.tensors} == {
        ("c", "value"),
        ("a", "grad"),
        ("b", "grad"),
        ("c", "grad"),
    }


def test_wrong_golden_fails_with_the_worst_element(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(GOOD.replace("[3.0, 9.0]", "[3.0, 9.5]"))
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 1
    assert out.strip().splitlines()[-1] == "1 case: 0 passed, 1 failed"
    assert (
        "t/hadamard: grad of 'b': manual vs expected differ at index [1, 1]: manual 9, "
        "expected 9.5; 1 of 4 differ; abs error 0.5, rel error 0.0526316 (rtol 0.0005, "
        "atol 5e-05 = 3.3e-06 x max|expected| 15 + round-off 5.3e-14)"
    ) in out
    assert "grad of 'b': torch vs expected differ at index [1, 1]" in out
    report = json.loads((tmp_path / "r.json").read_text())
    bad = [c for t in report["cases"][0]["tensors"] for c in t["comparisons"] if not c["ok"]]
    assert [(c["left"], c["right"], c["worst_index"]) for c in bad] == [
        ("manual", "expected", [1, 1]),
        ("torch", "expected", [1, 1]),
    ]


def test_a_wrong_manual_rule_is_caught_by_torch(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runner's core promise, through a case: a rule that disagrees with torch fails."""
    from runner.compile import compile_case  # noqa: F401  (the case below must compile)
    from runner.execute import execute
    from runner.loader import load

    loaded = load([str(write_case(GOOD))])
    case = loaded.cases[0]
    node = case.graph.node("c")
    broken = dataclasses.replace(node.op, vjp=lambda g, out, input, other: (g * other, g * other))
    object.__setattr__(node, "op", broken)
    result = execute(case)
    assert result.status == "failed"
    assert any("grad of 'b': manual vs torch differ at index" in m for m in result.messages)


def test_invalid_file_is_reported_and_valid_cases_still_run(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(GOOD, "good.yaml")
    write_case("inputs: {a: [1.0]}\ngraph:\n  c: relu(b)\n", "bad.yaml")
    code, out = run(capsys, "run", str(tmp_path / "cases"), "--report", str(tmp_path / "r.json"))
    assert code == 2
    assert "PASSED t/hadamard" in out
    assert "bad.yaml:3:11: unknown name 'b'" in out
    assert out.strip().splitlines()[-1] == "1 case: 1 passed, 0 failed; 1 invalid file"


# Each kind of bad input: the file, the (line, col) reported, and a part of the message.
BAD_INPUTS: dict[str, tuple[str, tuple[int, int], str]] = {
    "unknown-key": (
        "inputs: {a: [1.0]}\ngraph: {c: relu(a)}\nupstrem: 2\n",
        (3, 1),
        "unknown key 'upstrem'; did you mean 'upstream'?",
    ),
    "unknown-nested-key": (
        "inputs:\n  a: {random: normal, shape: [2], sed: 1}\ngraph: {c: relu(a)}\n",
        (2, 35),
        "inputs.a.sed: unknown key 'sed'; did you mean 'seed'?",
    ),
    "unknown-op": (
        "inputs: {a: [1.0]}\ngraph:\n  c: rellu(a) * 2\n",
        (3, 6),
        "unknown op 'rellu'; did you mean 'relu'",
    ),
    "too-many-arguments": (
        "inputs: {a: [1.0]}\ngraph:\n  c: relu(a, a)\n",
        (3, 6),
        "relu takes at most 1 positional argument (relu(input)), got 2",
    ),
    "unknown-keyword": (
        "inputs: {a: [1.0]}\ngraph:\n  c: add(a, a, alpah=2)\n",
        (3, 16),
        "add has no argument 'alpah'",
    ),
    "missing-argument": (
        "inputs: {a: [1.0]}\ngraph:\n  c: add(a)\n",
        (3, 6),
        "add is missing its argument 'other'",
    ),
    "name-before-definition": (
        "inputs: {a: [1.0]}\ngraph:\n  c: d * 2\n  d: relu(a)\n",
        (3, 6),
        "unknown name 'd' (it is defined later in graph: order matters)",
    ),
    "unknown-name": (
        "inputs: {alpha: [1.0]}\ngraph:\n  c: relu(alpah)\n",
        (3, 11),
        "unknown name 'alpah'; did you mean 'alpha'?",
    ),
    "duplicate-key": (
        "inputs: {a: [1.0]}\ngraph:\n  c: relu(a)\n  c: a * 2\n",
        (4, 3),
        "duplicate key 'c'",
    ),
    "broadcast": (
        "inputs:\n  a: [1.0, 2.0]\n  b: [1.0, 2.0, 3.0]\ngraph:\n  c: a + b\n",
        (5, 6),
        "operator + (add): shapes (2,) and (3,) do not broadcast",
    ),
    "upstream-shape": (
        "inputs: {a: [1.0, 2.0]}\ngraph:\n  c: relu(a)\nupstream: [1.0, 2.0, 3.0]\n",
        (4, 11),
        "upstream has shape (3,) but output 'c' has shape (2,)",
    ),
    "expect-shape": (
        "inputs: {a: [1.0, 2.0]}\ngraph:\n  c: relu(a)\nexpect:\n  grad:\n    a: [1.0]\n",
        (6, 8),
        "expected grad of 'a' has shape (1,), but 'a' has shape (2,)",
    ),
    "python-tag": (
        "inputs: {a: !!python/object/apply:os.system [echo hi]}\ngraph: {c: relu(a)}\n",
        (1, 13),
        "case files may hold only plain data",
    ),
    "ragged": (
        "inputs:\n  a: [[1.0, 2.0], [3.0]]\ngraph: {c: relu(a)}\n",
        (2, 6),
        "ragged literal: element 1 has shape (1,), element 0 has shape (2,)",
    ),
    "yaml-syntax": ("inputs: {a: [1.0, 2.0}\ngraph: {c: relu(a)}\n", (1, 22), "invalid YAML"),
    "expression-syntax": (
        "inputs: {a: [1.0]}\ngraph:\n  c: relu(a +)\n",
        (3, 14),
        "invalid expression",
    ),
    "not-allowed-syntax": (
        "inputs: {a: [1.0]}\ngraph:\n  c: a[0](a)\n",
        (3, 6),
        "only ops can be called",
    ),
    "wrong-dtype-value": (
        "dtype: float8\ninputs: {a: [1.0]}\ngraph: {c: relu(a)}\n",
        (1, 8),
        "dtype: input should be 'float64', 'float32', 'float16' or 'bfloat16'",
    ),
    "requires-grad-on-int": (
        "inputs:\n  i: {values: [1, 2], dtype: int64, requires_grad: true}\n"
        "  a: [1.0, 2.0]\ngraph: {c: a * 2}\n",
        (2, 6),
        "only floating tensors can require gradients",
    ),
    "attribute-type": (
        "inputs: {a: [1.0]}\ngraph:\n  c: add(a, a)\n  d: sum(c, keepdim=2)\n",
        (4, 21),
        "sum: 'keepdim' must be True or False, got 2",
    ),
    "output-unknown": (
        "inputs: {a: [1.0]}\ngraph: {c: relu(a)}\noutput: d\n",
        (3, 9),
        "output 'd' is not a node of graph",
    ),
    "nothing-to-differentiate": (
        "inputs: {a: {values: [1.0], requires_grad: false}}\ngraph: {c: relu(a)}\n",
        (2, 12),
        "output 'c' does not depend on any input that requires grad",
    ),
    "check-unknown": (
        "inputs: {a: [1.0]}\ngraph: {c: relu(a)}\ncheck: [a, cc]\n",
        (3, 12),
        "check names 'cc', which is neither an input nor a node; did you mean 'c'?",
    ),
    "keyword-only-given-positionally": (
        "inputs: {a: [1.0, 2.0]}\ngraph:\n  c: var(a, 0, 1)\n",
        (3, 6),
        "var takes at most 2 positional arguments (var(input, dim=None, *, correction=1",
    ),
    "literal-operand-outside-elementwise": (
        "inputs: {a: [1.0, 2.0]}\ngraph:\n  c: a * sum(2.0)\n",
        (3, 14),
        "sum: 'input' must be a tensor, not the literal 2.0",
    ),
    "negative-slice-step": ("inputs: {a: [1.0, 2.0]}\ngraph:\n  c: a[::-1]\n", (3, 6), "step"),
    "matmul-inner-dims": (
        "inputs:\n  a: {fill: 1.0, shape: [2, 3]}\n  b: {fill: 1.0, shape: [4, 5]}\n"
        "graph:\n  c: a @ b\n",
        (5, 6),
        "operator @ (matmul): (2, 3) @ (4, 5): inner dims 3 and 4 differ",
    ),
    "bad-choice": (
        "inputs: {a: [1.0]}\ngraph:\n  c: gelu(a, approximate='tanhh')\n",
        (3, 26),
        "gelu: 'approximate' must be one of 'none', 'tanh', got 'tanhh'",
    ),
    "conv-same-strided": (
        "inputs:\n  x: {fill: 1.0, shape: [1, 1, 5, 5]}\n  w: {fill: 1.0, shape: [1, 1, 3, 3]}\n"
        "graph:\n  y: conv2d(x, w, padding='same', stride=2)\n",
        (5, 6),
        "conv2d: padding='same' needs stride 1 in every dim, got stride (2, 2)",
    ),
    "conv-padding-typo": (
        "inputs:\n  x: {fill: 1.0, shape: [1, 1, 5, 5]}\n  w: {fill: 1.0, shape: [1, 1, 3, 3]}\n"
        "graph:\n  y: conv2d(x, w, padding='sam')\n",
        (5, 27),
        "conv2d: 'padding' must be an int or a list of ints or one of 'same', 'valid', "
        "got 'sam'; did you mean 'same'?",
    ),
    "norm-fro-three-dims": (
        "inputs:\n  x: {fill: 1.0, shape: [2, 3, 4]}\ngraph:\n  n: norm(x, dim=[0, 1, 2])\n",
        (4, 6),
        "norm: p='fro' takes at most 2 dims, got dim=[0, 1, 2]",
    ),
    "int-values-that-are-not-integers": (
        "inputs:\n  i: {values: [1, 2.5], dtype: int64}\n  a: [1.0, 2.0]\ngraph: {c: a * 2}\n",
        (2, 6),
        "dtype int64 needs integers that fit in int64, got 2.5",
    ),
    "huge-shape": (
        "inputs:\n  a: {random: normal, shape: [100000, 100000]}\ngraph: {c: relu(a)}\n",
        (2, 6),
        "input 'a' has shape (100000, 100000), 10000000000 elements",
    ),
    "huge-result": (
        "inputs:\n  a: {fill: 1.0, shape: [5000]}\ngraph:\n  c: outer(a, a) * outer(a, a)\n",
        (4, 6),
        "outer: the result would have shape (5000, 5000), 25000000 elements",
    ),
    "negative-seed": (
        "inputs:\n  a: {random: normal, shape: [2], seed: -1}\ngraph: {c: relu(a)}\n",
        (2, 41),
        "inputs.a.seed: input should be greater than or equal to 0",
    ),
    "absurd-nesting": (
        "inputs: {a: [1.0]}\ngraph:\n  c: " + "(" * 3000 + "a" + ")" * 3000 + "\n",
        (3, 206),
        "invalid expression: too many nested parentheses",
    ),
    "long-chain": (
        "inputs: {a: [1.0]}\ngraph:\n  c: " + " + ".join(["a"] * 2400) + "\n",
        (3, 6),
        "expression nests too deeply; split it into named nodes",
    ),
    "expect-grad-unreachable": (
        "inputs:\n  x: [1.0, 2.0]\ngraph:\n  y: relu(x)\n  after: y * 10\n"
        "output: y\nexpect:\n  grad:\n    after: [0.0, 0.0]\n",
        (9, 12),
        "expect.grad names 'after', which never gets a gradient (the output 'y' does not "
        "depend on it)",
    ),
    "integer-list-as-targets-and-data": (
        "inputs:\n  x: [[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]]\n  t: [2, 0]\n"
        "graph:\n  y: cross_entropy(x, t) + sum(x[:, 0] * t)\n",
        (3, 6),
        "input 't' is written with integers and used both as integers (cross_entropy: "
        "'target') and as data elsewhere",
    ),
    "third-output-of-max": (
        "inputs: {x: [[1.0, 5.0]]}\ngraph:\n  a: max(x, 1)[2]\n",
        (3, 6),
        "max(...) gives (values, indices): select one with .values, .indices (then index the "
        "tensor)",
    ),
    "values-of-a-tensor": (
        "inputs: {x: [[1.0, 5.0]]}\ngraph:\n  a: x.values\n",
        (3, 6),
        ".values is an output of an op with several (max(x, dim).indices, sort(x, 0).values); "
        "this is a tensor",
    ),
    "merge-of-a-scalar": (
        "inputs: {<<: 5, x: [1.0]}\ngraph: {y: relu(x)}\n",
        (1, 14),
        "invalid merge key",
    ),
    "recursive-alias": (
        "inputs: &a {x: [1.0], z: *a}\ngraph: {y: relu(x)}\n",
        (1, 9),
        "recursive alias",
    ),
    "name-with-newline": (
        'name: "a\\nb"\ninputs: {x: [1.0]}\ngraph: {y: relu(x)}\n',
        (1, 7),
        "name: a case name is one line of printable text",
    ),
    "huge-int-literal": (
        "inputs: {x: [[1.0]]}\ngraph:\n  y: tril(x, 99999999999999999999)\n",
        (3, 14),
        "integer literal 99999999999999999999 does not fit in int64",
    ),
    "truncating-fill": (
        "inputs:\n  i: {fill: 1.7, shape: [2], dtype: int64}\n  x: [1.0]\ngraph: {y: relu(x)}\n",
        (2, 6),
        "dtype int64 needs integers that fit in int64, got 1.7",
    ),
    "empty-max": (
        "inputs:\n  x: {random: normal, shape: [0, 3]}\ngraph:\n  y: amax(x, dim=0)\n",
        (4, 6),
        "amax: cannot reduce an empty slice: dim 0 of (0, 3)",
    ),
    "missing-inputs": ("graph: {c: relu(a)}\n", (1, 1), "missing required key 'inputs'"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_input_is_located(
    kind: str,
    command: str,
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text, (line, col), message = BAD_INPUTS[kind]
    path = write_case(text, f"{kind}.yaml")
    extra = ["--report", str(tmp_path / "r.json")] if command == "run" else []
    code, out = run(capsys, command, str(path), *extra)
    assert code == 2, out
    assert "Traceback" not in out
    located = [ln for ln in out.splitlines() if f"{kind}.yaml:{line}:{col}:" in ln]
    assert located and message in located[0], out


def test_all_problems_of_a_file_are_reported_together(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case("inputs: {a: [1.0]}\ngraph:\n  c: relu(b)\n  d: mull(a, a)\n")
    code, out = run(capsys, "validate", str(path))
    assert code == 2
    assert "case.yaml:3:11: error: unknown name 'b'" in out
    assert "case.yaml:4:6: error: unknown op 'mull'; did you mean 'mul'" in out


def test_schema_and_graph_problems_of_a_file_are_reported_together(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "inputs:\n  a: [1.0]\n  b: {random: normal, shape: [1], sed: 2}\n"
        "graph:\n  c: relu(a) + b\n  d: mull(c, c)\nupstream: {random: cauchy}\n"
    )
    code, out = run(capsys, "validate", str(path))
    assert code == 2
    assert "case.yaml:3:35: error: inputs.b.sed: unknown key 'sed'" in out
    assert "case.yaml:7:20: error: upstream.random: input should be 'normal' or 'uniform'" in out
    assert "case.yaml:6:6: error: unknown op 'mull'" in out
    assert "'b'" not in out.split("sed")[-1], "uses of the rejected input are not reported again"


def test_alias_bombs_are_refused(write_case: WriteCase, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["a0: &a0 [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
        f"*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
        for i in range(1, 9)
    ]
    path = write_case("\n".join(lines) + "\ninputs: {x: *a8}\ngraph: {c: relu(x)}\n")
    code, out = run(capsys, "validate", str(path))
    assert code == 2
    assert "document expands to too many values" in out


def test_duplicate_case_names_in_a_run(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(GOOD, "one.yaml")
    write_case(GOOD, "two.yaml")
    code, out = run(capsys, "validate", str(tmp_path / "cases"))
    assert code == 2
    assert "two.yaml:1:1: error: case name 't/hadamard' is already used by" in out


def test_default_name_is_the_path_under_cases(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(GOOD.replace("name: t/hadamard\n", ""), "fam/prod.yml")
    code, out = run(capsys, "list", str(tmp_path / "cases"))
    assert code == 0
    name, tags, ops, where = out.split()
    assert (name, tags, ops) == ("fam/prod", "[]", "mul")
    assert where.endswith("cases/fam/prod.yml:1")


def test_missing_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "validate", "no/such/dir")
    assert code == 2
    assert "no such file or folder: no/such/dir" in out


def test_commands_that_do_not_run_cases_do_not_import_torch() -> None:
    script = (
        "import sys; from runner.cli import main\n"
        "for argv in (['validate', 'cases'], ['list', 'cases'], ['ops'], ['schema']):\n"
        "    main(argv)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_help_imports_nothing_heavy() -> None:
    """--help parses and prints before anything of the loader, the registry, numpy or torch is
    imported (issue 11: --help at most 3 times `python -c pass`)."""
    script = (
        "import sys, runner.cli\n"
        "try:\n    runner.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('runner.loader', 'runner.ops', 'numpy', 'pydantic', 'torch',"
        " 'importlib.metadata')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_console_script_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "run" in proc.stdout and "validate" in proc.stdout


def test_torch_spellings_max_of_two_tensors_and_method_style_sizes(write_case: WriteCase) -> None:
    from runner.loader import load

    path = write_case(
        "inputs:\n  a: [[1.0, 5.0], [3.0, 3.0]]\n  b: [[2.0, 4.0], [3.0, 0.0]]\ngraph:\n"
        "  m: max(a, b)\n  n: min(a, 1)\n  r: reshape(m, 4, 1)\n  p: permute(r, 1, 0)\n"
    )
    loaded = load([str(path)])
    assert not loaded.problems, loaded.problems
    graph = loaded.cases[0].graph
    assert graph.node("m").op.name == "maximum"  # torch.max(input, other)
    assert (graph.node("n").op.name, graph.node("n").args["dim"]) == ("min", 1)
    assert graph.node("r").args["shape"] == [4, 1]
    assert graph.node("p").shape == (1, 4)


def test_integer_literals_used_only_as_indices_or_targets_are_int64(write_case: WriteCase) -> None:
    from runner.loader import load

    path = write_case(
        "inputs:\n  logits: [[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]]\n  target: [2, 0]\n"
        "  table: [[1, 2], [3, 4], [5, 6]]\n  ids: [[0, 2], [2, 1]]\ngraph:\n"
        "  loss: cross_entropy(logits, target)\n  emb: embedding(ids, table)\n"
        "  total: loss + sum(emb)\n"
    )
    loaded = load([str(path)])
    assert not loaded.problems, loaded.problems
    case = loaded.cases[0]
    dtypes = {name: plan.dtype for name, plan in case.inputs.items()}
    assert dtypes == {"logits": "float64", "target": "int64", "table": "float64", "ids": "int64"}
    assert case.checks == ("logits", "table", "loss", "emb", "total")


def test_a_key_written_after_a_merge_overrides_it(write_case: WriteCase) -> None:
    from runner.loader import load

    path = write_case(
        "inputs:\n  x: &spec {random: uniform, shape: [3], seed: 1, low: 0.5, high: 2.0}\n"
        "  y:\n    <<: *spec\n    seed: 2\ngraph:\n  c: x * y\n"
    )
    loaded = load([str(path)])
    assert not loaded.problems, loaded.problems
    assert loaded.cases[0].inputs["y"].spec.seed == 2


def test_graph_check_and_expect_problems_are_reported_together(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "inputs: {x: [1.0, 2.0]}\ngraph:\n  y: tahn(x)\n  w: y * 2\ncheck: [nope, w]\n"
        "expect:\n  grad:\n    x: [1.0]\n"
    )
    code, out = run(capsys, "validate", str(path))
    assert code == 2
    problems = [line.split("error: ", 1)[1] for line in out.splitlines() if "error: " in line]
    assert problems == [
        "unknown op 'tahn'; did you mean 'tan' or 'tanh'?",
        "check names 'nope', which is neither an input nor a node",
        "expected grad of 'x' has shape (1,), but 'x' has shape (2,)",
    ], "w failed through y: it is not reported again"


def test_the_default_check_leaves_out_what_no_gradient_reaches(write_case: WriteCase) -> None:
    from runner.loader import load

    path = write_case(
        "inputs:\n  x: [1.0, 2.0]\n  unused: [3.0]\ngraph:\n  y: relu(x)\n  after: y * 10\n"
        "output: y\n"
    )
    assert load([str(path)]).cases[0].checks == ("x", "y")


def test_one_bad_document_does_not_stop_the_others(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(GOOD + "---\ninputs: {x: [1.0]}\ngraph:\n  c: 2.0\n")
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 2
    assert "PASSED t/hadamard" in out
    assert (
        "case.yaml:14:6: graph.c: node 'c' must be an expression string (such as 'a @ b') "
        "or {op, args, kwargs}, got 2.0; constants go under inputs"
    ) in out
    assert out.strip().splitlines()[-1] == "1 case: 1 passed, 0 failed; 1 invalid file"


def test_a_forward_that_raises_is_an_error_at_its_node(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "inputs:\n  x: {random: normal, shape: [2, 3], seed: 0}\n"
        "  t: {values: [3, 0], dtype: int64}\ngraph:\n  y: cross_entropy(x, t)\n"
    )
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    # Data refused at run time is the case file's fault: invalid input, exit 2 (issue 10).
    assert code == 2
    assert (
        "case.yaml:5:6: node 'y': forward of cross_entropy raised IndexError: target 3 is "
        "out of bounds for 3 classes (invalid input: the case's data, not a rule)"
    ) in out
    assert out.strip().splitlines()[-1] == "1 case: 0 passed, 0 failed, 1 error"


def test_yaml_12_numbers_and_a_trailing_document_marker(write_case: WriteCase) -> None:
    from runner.loader import load

    path = write_case(
        "name: t\ninputs: {x: [1e-3, 2.5E2]}\ngraph: {y: relu(x)}\n"
        "tolerance: {rtol: 1e-5, atol: 1e-8}\n---\n"
    )
    loaded = load([str(path)])
    assert not loaded.problems, loaded.problems
    (case,) = loaded.cases
    assert case.name == "t"
    assert (case.model.tolerance.rtol, case.model.inputs["x"]) == (1e-5, [1e-3, 250.0])


def test_a_report_path_that_is_a_folder_is_a_usage_error(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "run", str(write_case(GOOD)), "--report", str(tmp_path))
    assert code == 2
    assert f"gradcase: error: --report {tmp_path} is a folder; give a file path" in out


def test_max_with_dim_values_as_torch_spells_them(write_case: WriteCase) -> None:
    from runner.loader import load

    ok = write_case(
        "inputs: {x: [[1.0, 5.0], [7.0, 2.0]], y: [[1.0, 2.0], [3.0, 4.0]]}\ngraph:\n"
        "  a: max(x, 1)[0] + min(x, dim=0).values\n  b: max(x, y)[0]\n"
    )
    loaded = load([str(ok)])
    assert not loaded.problems, loaded.problems
    graph = loaded.cases[0].graph
    assert graph.node("a").shape == (2,)  # torch.max(x, 1)[0] is the values, not row 0
    assert graph.node("b").shape == (2,) and graph.node("b").op.name == "getitem"


def test_einsum_operands_as_one_list(write_case: WriteCase) -> None:
    from runner.loader import load

    path = write_case("inputs: {a: [[1.0, 2.0]]}\ngraph:\n  c: einsum('ij,kj->ik', [a, a])\n")
    loaded = load([str(path)])
    assert not loaded.problems, loaded.problems
    assert loaded.cases[0].graph.node("c").shape == (1, 1)


def test_an_explicit_check_limits_the_values_compared_too(write_case: WriteCase) -> None:
    from runner.loader import load

    path = write_case("inputs: {x: [1.0]}\ngraph:\n  p: x * 2\n  y: relu(p)\ncheck: [x, y]\n")
    case = load([str(path)]).cases[0]
    assert (case.checks, case.values) == (("x", "y"), ("y",))


def test_only_gradcases_own_process_freezes_the_collector(tmp_path: Path) -> None:
    """gc.freeze keeps objects forever: the command line (main() with no arguments: the console
    script, python -m runner) freezes what it loaded and torch's modules, for speed (issue 11);
    main(argv) from Python, as the pytest plugin and runner.check, leaves the collector alone."""
    case = tmp_path / "c.yaml"
    case.write_text("inputs: {a: [1.0, 2.0]}\ngraph: {c: exp(a)}\n")
    report = tmp_path / "r.json"
    script = (
        "import gc, sys, runner.cli\n"
        f"sys.argv = ['gradcase', 'run', {str(case)!r}, '-q', '--report', {str(report)!r}]\n"
        "as_program = sys.argv[1:]\n"
        "mode = MODE\n"
        "code = runner.cli.main() if mode == 'program' else runner.cli.main(as_program)\n"
        "print('frozen', gc.get_freeze_count())\n"
    )
    counts = {}
    for mode in ("program", "library"):
        proc = subprocess.run(
            [sys.executable, "-c", script.replace("MODE", repr(mode))],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        counts[mode] = int(proc.stdout.strip().splitlines()[-1].split()[-1])
    assert counts["program"] > 10_000 and counts["library"] == 0
