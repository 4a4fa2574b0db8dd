"""The user's own rules end to end: rules in the case file (validated at file:line:col before
anything runs), RULES modules through --rules, pyproject.toml and the API, strict xfail, which
rule is wrong and how, and the side-by-side view."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import runner
from runner.diagnose import diagnose
from schemas.report import Report
from tests.conftest import run_cli as run

WriteCase = Callable[..., Path]

MATMUL = """\
name: t/matmul
inputs:
  a: {random: normal, shape: [2, 3], seed: 1}
  b: {random: normal, shape: [3, 4], seed: 2}
graph:
  c: a @ b
upstream: {random: normal, seed: 3}
rules:
  matmul:
    input: RULE_INPUT
    other: input.T @ grad
"""


def run_yaml(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> tuple[int, str, Path]:
    """Write ``text`` as a case file, run it, return the exit status, the output and the file;
    the report is at tmp_path / "r.json"."""
    path = write_case(text)
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    return code, out, path


def report_of(path: Path) -> Report:
    return Report.model_validate_json(path.read_text())


# --- rules in the case file ------------------------------------------------------------------


def test_a_right_case_rule_passes_and_the_report_names_its_source(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, path = run_yaml(
        write_case, tmp_path, capsys, MATMUL.replace("RULE_INPUT", "grad @ other.T")
    )
    assert code == 0, out
    case = report_of(tmp_path / "r.json").cases[0]
    uses = {(t.tensor, u.node, u.argument, u.source) for t in case.tensors for u in t.rules}
    assert uses == {("a", "c", "input", "case"), ("b", "c", "other", "case")}


def test_an_argument_the_rule_leaves_out_keeps_the_catalogues_rule(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, path = run_yaml(
        write_case, tmp_path, capsys, MATMUL.replace("    input: RULE_INPUT\n", "")
    )
    assert code == 0, out
    case = report_of(tmp_path / "r.json").cases[0]
    sources = {t.tensor: [u.source for u in t.rules] for t in case.tensors if t.kind == "grad"}
    assert sources["a"] == ["catalogue"] and sources["b"] == ["case"]


def test_a_wrong_case_rule_fails_naming_node_argument_worst_element_and_diagnosis(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, path = run_yaml(
        write_case, tmp_path, capsys, MATMUL.replace("RULE_INPUT", "-(grad @ other.T)")
    )
    assert code == 1
    assert (
        "the rule of node 'c' (matmul) is wrong for 'input' (case rule `-(grad @ other.T)` " in out
    )
    assert "case.yaml:10:12): manual vs torch differ at index" in out
    assert "looks like: the sign flipped: manual = -1 x torch's" in out
    assert "6 of 6 differ" in out
    fault = report_of(tmp_path / "r.json").cases[0].fault
    assert fault is not None
    assert (fault.node, fault.op, fault.argument, fault.source) == ("c", "matmul", "input", "case")
    assert fault.comparison is not None and fault.comparison.mismatched == 6
    assert fault.rule.endswith(":10:12")  # the rule's own line and column in the file


def test_the_fault_is_the_first_wrong_rule_walking_back_not_the_leaves(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, path = run_yaml(
        write_case,
        tmp_path,
        capsys,
        """\
inputs:
  x: {random: normal, shape: [3, 4], seed: 1}
  w: {random: normal, shape: [4, 4], seed: 2}
graph:
  h: tanh(x @ w)
  loss: sum(softmax(h, dim=1) * h)
upstream: 1.5
rules:
  softmax:
    input: grad * out * (1 - out)
""",
    )
    assert code == 1
    fault = report_of(tmp_path / "r.json").cases[0].fault
    assert fault is not None and (fault.op, fault.argument) == ("softmax", "input")
    # An anonymous node is named by its expression and location.
    assert fault.node == "loss#1" and fault.expression == "softmax(h, dim=1)"
    assert "the rule of node `softmax(h, dim=1)` (softmax, " in out
    assert "case.yaml:6:13) is wrong for 'input'" in out


@pytest.mark.parametrize(
    ("rule", "diagnosis"),
    [
        ("2 * grad @ other.T", "a constant factor: manual = 2 x torch's"),
        ("grad @ other.T / 3", "a constant factor: manual = 1/3 x torch's"),
        ("np.zeros_like(input)", "zero: the rule gives no gradient"),
        ("np.ones_like(grad) @ other.T", "the upstream gradient ignored"),
    ],
)
def test_each_classic_mistake_is_diagnosed(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rule: str,
    diagnosis: str,
) -> None:
    code, out, path = run_yaml(write_case, tmp_path, capsys, MATMUL.replace("RULE_INPUT", rule))
    assert code == 1
    assert f"looks like: {diagnosis}" in out


def test_a_rule_that_raises_fails_its_case_with_its_location_and_the_shapes_others_run(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_case(MATMUL.replace("RULE_INPUT", "grad @ other"), name="bad.yaml")
    write_case(MATMUL.replace("RULE_INPUT", "grad @ other.T").replace("t/matmul", "t/ok"))
    code, out = run(capsys, "run", str(bad.parent), "--report", str(tmp_path / "r.json"))
    assert code == 1
    assert "bad.yaml:10:12: node 'c' (matmul): the case rule for 'input' (`grad @ other`) " in out
    assert "failed: operator @: ValueError: matmul: Input operand 1 has a mismatch" in out
    assert "(shapes: input (2, 3), other (3, 4), grad (2, 4), out (2, 4))" in out
    assert out.strip().splitlines()[-1] == "2 cases: 1 passed, 1 failed"


FAILING = [
    pytest.param(
        "inputs:\n  a: {random: normal, shape: [2, 3], seed: 1}\n"
        "  b: {random: normal, shape: [1, 3], seed: 2}\ngraph:\n  c: a * b\n"
        "rules:\n  mul:\n    other: grad * input\n",
        "the case rule for 'other' (`grad * input`) returned shape (2, 3), the operand's is "
        "(1, 3); looks like: not summed over the broadcast dimensions",
        id="broadcast shape not summed",
    ),
    pytest.param(
        "dtype: float32\ninputs: {a: [1.0, 2.0]}\ngraph: {c: exp(a)}\n"
        "rules: {exp: {input: (grad * out).astype(np.float64)}}\n",
        "returned dtype float64, the operand's is float32",
        id="wrong dtype",
    ),
    pytest.param(
        "inputs: {a: [1.0]}\ngraph: {c: exp(a)}\n"
        "rules: {exp: {input: 'np.ones((100000, 100000)).sum() * grad'}}\n",
        "10000000000 elements",
        id="array over the element limit",
    ),
]


@pytest.mark.parametrize(("text", "message"), FAILING)
def test_a_rule_that_gives_no_usable_gradient_fails_its_case(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    code, out, _ = run_yaml(write_case, tmp_path, capsys, text)
    assert code == 1
    assert message in out


def test_a_list_parameter_takes_a_list_of_gradients(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, path = run_yaml(
        write_case,
        tmp_path,
        capsys,
        """\
inputs:
  a: {random: normal, shape: [2, 3], seed: 1}
  b: {random: normal, shape: [1, 3], seed: 2}
graph:
  c: cat([a, b], dim=0)
upstream: {random: normal, seed: 3}
rules:
  cat:
    tensors:
      - grad[:2]
      - grad[2:]
---
inputs:
  a: {random: normal, shape: [2, 3], seed: 1}
  b: {random: normal, shape: [1, 3], seed: 2}
graph:
  c: cat([a, b], dim=0)
upstream: {random: normal, seed: 3}
rules:
  cat:
    tensors: "[grad[:2], grad[2:] * 2]"
""",
    )
    assert code == 1
    cases = report_of(tmp_path / "r.json").cases
    assert [c.status for c in cases] == ["passed", "failed"]
    assert cases[1].fault is not None and cases[1].fault.argument == "tensors[1]"
    assert "manual = 2 x torch's" in (cases[1].fault.diagnosis or "")


# --- validation: every refusal located, nothing runs -------------------------------------------

REFUSED = [
    ("rules: {matmull: {input: grad}}", "unknown op 'matmull'; did you mean 'matmul'", "7:9"),
    (
        "rules: {relu: {input: grad}}",
        "no node of this case uses op 'relu' (its ops: matmul)",
        "7:9",
    ),
    # hidden ops (made by subscripts) are named as catalogue ops are, not called unknown
    (
        "rules: {getitem: {input: grad}}",
        "no node of this case uses op 'getitem' (its ops: matmul)",
        "7:9",
    ),
    (
        "rules: {index_tensor: {input: grad}}",
        "no node of this case uses op 'index_tensor' (its ops: matmul)",
        "7:9",
    ),
    (
        "rules: {matmul: {inpt: grad}}",
        "matmul has no argument 'inpt'; did you mean 'input'?",
        "7:18",
    ),
    ("rules: {matmul: {input: gradd}}", "unknown name 'gradd'; did you mean 'grad'?", "7:25"),
    ("rules: {matmul: {input: grad.__class__}}", "__class__", "7:30"),
    ("rules: {matmul: {input: np.save(grad)}}", "np.save does I/O", "7:28"),
    ("rules: {matmul: {input: '[g for g in grad]'}}", "comprehensions are not allowed", "7:26"),
    ("rules: {matmul: {input: 'lambda: 0'}}", "lambda is not allowed", "7:26"),
    ("rules: {matmul: {input: '(y := grad)'}}", "assignment (:=) is not allowed", "7:27"),
    ("rules: {matmul: {input: 'open(\"x\")'}}", "open() is not allowed", "7:26"),
    ("rules: {matmul: {input: 'np.lib'}}", "np.lib does I/O", "7:29"),
    ("rules: {matmul: {input: '__import__(\"os\")'}}", "__import__() is not allowed", "7:26"),
    (
        "rules: {matmul: {input: 'np.add(grad, 1, out=grad)'}}",
        "out= writes into an existing array",
        "7:42",
    ),
]


@pytest.mark.parametrize(("rules", "message", "where"), REFUSED)
def test_rules_are_refused_at_validation_with_file_line_col_and_nothing_runs(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rules: str,
    message: str,
    where: str,
) -> None:
    base = "inputs:\n  a: [[1.0]]\n  b: [[2.0]]\ngraph:\n  c: a @ b\nupstream: 1.0\n"
    path = write_case(base + rules + "\n")
    for argv in (["validate"], ["run", "--report", str(tmp_path / "r.json")]):
        code, out = run(capsys, *argv, str(path))
        assert code == 2, out
        assert f"case.yaml:{where}: " in out, out
        assert message in out, out
        assert "PASSED" not in out and "FAILED" not in out


def test_a_rule_for_an_argument_that_never_gets_a_gradient_is_refused(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "inputs:\n  a: [1.0, 2.0]\n  t: {values: [1.0, 2.0], requires_grad: false}\n"
        "graph:\n  c: a * t\n  d: c * 2\nrules:\n  mul:\n    other: grad * input\n"
    )
    code, out = run(capsys, "validate", str(path))
    assert code == 2
    assert "case.yaml:9:5: error: rules.mul: the rule for 'other' would never run" in out


def test_a_rule_for_an_argument_torch_does_not_differentiate_is_refused(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "inputs:\n  x: {random: normal, shape: [2, 3]}\n  t: {values: [0, 2], dtype: int64}\n"
        "graph:\n  l: nll_loss(x, t)\nrules:\n  nll_loss:\n    target: grad\n"
    )
    code, out = run(capsys, "validate", str(path))
    assert code == 2
    assert (
        "case.yaml:8:5: error: rules.nll_loss: torch does not differentiate nll_loss's 'target'"
        in out
    )


def test_a_hostile_rule_file_creates_nothing(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = tmp_path / "canary"
    attempts = [
        f"np.save('{canary}', grad)",
        f"np.savetxt('{canary}', grad)",
        f"grad.tofile('{canary}')",
        f"open('{canary}', 'w')",
        f"__import__('os').system('touch {canary}')",
        f"np.lib.npyio.save('{canary}', grad)",
        f"grad.dump('{canary}')",
        f"np.memmap('{canary}', mode='w+', shape=(1,))",
        "np.ctypeslib.as_array(grad)",
        f"getattr(np, 'save')('{canary}', grad)",
    ]
    body = "".join(
        f'---\ninputs: {{a: [1.0]}}\ngraph: {{c: exp(a)}}\nrules: {{exp: {{input: "{a}"}}}}\n'
        for a in attempts
    )
    code, out, path = run_yaml(write_case, tmp_path, capsys, body)
    assert code == 2
    assert out.count(": rules.exp.input: ") == len(attempts), out
    assert not canary.exists()


# --- xfail -----------------------------------------------------------------------------------


def test_xfail_fails_quietly_and_xpass_fails_the_run_strictly(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = MATMUL.replace("RULE_INPUT", "grad @ other").replace(
        "rules:", "xfail: the transpose is missing\nrules:"
    )
    right = MATMUL.replace("RULE_INPUT", "grad @ other.T").replace(
        "rules:", "xfail: believed wrong\nrules:"
    )
    code, out, path = run_yaml(write_case, tmp_path, capsys, wrong)
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "1 case: 0 passed, 0 failed, 1 xfailed"
    assert "expected to fail (xfail): the transpose is missing" in out
    case = report_of(tmp_path / "r.json").cases[0]
    assert (case.status, case.xfail) == ("xfailed", "the transpose is missing")

    path.write_text(right)
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 1
    assert out.strip().splitlines()[-1] == "1 case: 0 passed, 0 failed, 1 xpassed"
    assert "XPASS (strict): the case passed, but it is marked xfail: believed wrong" in out
    assert not report_of(tmp_path / "r.json").passed


def test_the_hypotheses_folder_holds_each_classic_wrong_rule_beside_its_right_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import ROOT

    code, out = run(
        capsys, "run", str(ROOT / "cases" / "hypotheses"), "--report", str(tmp_path / "r.json")
    )
    assert code == 0, out
    cases = {c.name: c for c in report_of(tmp_path / "r.json").cases}
    diagnoses = {n: c.fault.diagnosis for n, c in cases.items() if c.fault is not None}
    assert diagnoses["hypotheses/max-ties-one-hot"].startswith("one-hot at ties")  # type: ignore[union-attr]
    assert "every tied element" in diagnoses["hypotheses/max-ties-mask"]  # type: ignore[operator]
    assert "upstream gradient ignored" in diagnoses["hypotheses/mul-upstream-ignored"]  # type: ignore[operator]
    assert cases["hypotheses/mlp-softmax-diagonal-only"].fault.node == "p"  # type: ignore[union-attr]
    xfailed = {n for n, c in cases.items() if c.status == "xfailed"}
    passed = {n for n, c in cases.items() if c.status == "passed"}
    assert len(xfailed) >= 6 and len(passed) >= 6


# --- RULES modules, config and the API ---------------------------------------------------------

ENGINE = """\
import numpy as np

def matmul(grad, out, input, other):
    return {"input": grad @ other.T, "other": input.T @ grad}

def wrong_exp(grad, out, input):
    return {"input": grad * input}

RULES = {"matmul": matmul, "exp": wrong_exp}
"""
TWO_OPS = """\
name: t/two
inputs:
  a: {random: normal, shape: [2, 3], seed: 1}
  b: {random: normal, shape: [3, 2], seed: 2}
graph:
  d: a @ b
  c: exp(d)
upstream: {random: normal, seed: 3}
"""


def test_a_rules_module_is_used_and_reported_as_such(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = tmp_path / "engine_rules.py"
    engine.write_text(ENGINE)
    path = write_case(TWO_OPS)
    report = tmp_path / "r.json"
    code, out = run(capsys, "run", str(path), "--rules", str(engine), "--report", str(report))
    assert code == 1
    assert out.splitlines()[0] == f"rules: module {engine}"
    assert f"(module {engine} rule `wrong_exp` at " in out
    fault = report_of(report).cases[0].fault
    assert fault is not None and (fault.node, fault.op, fault.source) == (
        "c",
        "exp",
        f"module {engine}",
    )
    assert report_of(report).rule_sources == [f"module {engine}"]


def test_rules_modules_come_from_pyproject_and_the_command_line_replaces_them(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "my_engine").mkdir()
    (tmp_path / "my_engine" / "rules.py").write_text(ENGINE)
    (tmp_path / "right.py").write_text(
        "RULES = {'exp': lambda grad, out, input: {'input': grad * out}}\n"
    )
    (tmp_path / "pyproject.toml").write_text('[tool.gradcase]\nrules = ["my_engine/rules.py"]\n')
    path = write_case(TWO_OPS)
    monkeypatch.chdir(path.parent)  # found by walking up
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 1 and "rules: module my_engine/rules.py" in out
    code, out = run(
        capsys, "run", str(path), "--rules", "../right.py", "--report", str(tmp_path / "r.json")
    )
    assert code == 0, out
    assert "rules: module ../right.py" in out


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (
            "RULES = {'matmull': print}",
            "RULES names op 'matmull', which gradcase does not have; did you mean 'matmul'",
        ),
        ("RULES = {'exp': 3}", "RULES['exp'] is int, not a callable"),
        ("RULES = [1]", "RULES must be a dict"),
        ("X = 1", "has no module-level RULES dict"),
        ("import nonexistent_pkg_xyz", "importing it raised ModuleNotFoundError"),
        ("def f(:\n", "importing it raised SyntaxError"),
    ],
)
def test_an_unusable_rules_module_is_a_usage_error(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    module: str,
    message: str,
) -> None:
    bad = tmp_path / f"bad_{abs(hash(module))}.py"
    bad.write_text(module)
    code, out = run(capsys, "run", str(write_case(TWO_OPS)), "--rules", str(bad))
    assert code == 2
    assert message in out
    assert "Traceback" not in out


def test_the_api_checks_a_users_rules_and_says_whether_the_run_passed(
    write_case: WriteCase,
) -> None:
    path = write_case(TWO_OPS)

    def exp_rule(grad: np.ndarray, out: np.ndarray, input: np.ndarray) -> dict[str, np.ndarray]:
        return {"input": grad * out}

    report = runner.check(str(path), rules={"exp": exp_rule})
    assert report.passed and report.summary.passed == 1
    assert report.rule_sources == ["api tests.test_rules"]
    uses = [u for t in report.cases[0].tensors for u in t.rules if u.op == "exp"]
    assert uses and all(u.source == "api tests.test_rules" for u in uses)
    wrong = runner.check([path], rules={"exp": lambda grad, out, input: {"input": grad * input}})
    assert not wrong.passed and wrong.summary.failed == 1
    assert wrong.cases[0].fault is not None and wrong.cases[0].fault.op == "exp"


# --- seeing it --------------------------------------------------------------------------------


def test_show_prints_each_source_side_by_side_with_the_worst_element_marked(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "name: t/show\ninputs:\n  a: [[4.0, 5.0], [1.0, 3.0]]\n  b: [[2.0, 2.0], [2.0, 2.0]]\n"
        "graph:\n  c: a * b\nupstream: 3\nrules:\n  mul:\n    other: grad * input * 2\n"
        "expect:\n  grad:\n    b: [[12.0, 15.0], [3.0, 9.0]]\n"
    )
    code, out = run(capsys, "show", "t/show", str(path.parent))
    assert code == 1
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("grad of 'b'")))
    assert "manual vs torch: 4 of 4 differ, worst at [0, 1]" in lines[start]
    assert lines[start + 1] == "  from node 'c' (mul) 'other': case rule"
    header = lines[start + 2].split()
    assert header == ["manual", "torch", "expected", "manual", "-", "torch"]
    assert lines[start + 3].split() == [
        "[",
        "24",
        "*30",
        "]",
        "[",
        "12",
        "*15",
        "]",
        "[",
        "12",
        "*15",
        "]",
        "[",
        "12",
        "*15",
        "]",
    ]
    code, out = run(capsys, "show", str(path))  # a file works too
    assert code == 1 and "grad of 'b'" in out


def test_show_names_close_cases_when_none_matches(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case("name: t/show\ninputs: {a: [1.0]}\ngraph: {c: exp(a)}\n")
    code, out = run(capsys, "show", "t/shwo", str(path.parent))
    assert code == 2
    assert "no case named 't/shwo'; did you mean 't/show'?" in out


def test_run_verbose_shows_every_case_side_by_side(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case("name: t/v\ninputs: {a: [1.0, 2.0]}\ngraph: {c: exp(a)}\n")
    code, out = run(capsys, "run", "-v", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 0
    assert "=== PASSED t/v" in out
    assert "grad of 'a'  (2,) float64: manual vs torch agree" in out


# --- diagnosis, alone --------------------------------------------------------------------------


def test_diagnose_names_the_usual_mistakes_and_nothing_else() -> None:
    r = np.array([[1.0, -2.0], [3.0, 0.5]])
    assert diagnose(-r, r) == "the sign flipped: manual = -1 x torch's"
    assert diagnose(r / 6, r) == "a constant factor: manual = 1/6 x torch's"
    assert diagnose(r.T, r) == "the transpose of torch's"
    assert diagnose(np.zeros_like(r), r).startswith("zero")  # type: ignore[union-attr]
    assert diagnose(np.ones((3, 2, 2)) * r, r * 3).startswith("not summed over the broadcast")  # type: ignore[union-attr]
    assert diagnose(r + np.array([[0.0, 0.0], [0.0, 1e-3]]), r) is None
    ties = np.array([0.5, 0.5, 0.0])
    assert diagnose(np.array([1.0, 0.0, 0.0]), ties).startswith("one-hot at ties")  # type: ignore[union-attr]
    assert diagnose(ties, np.array([1.0, 0.0, 0.0])).startswith("split over ties")  # type: ignore[union-attr]
    g = np.array([2.0, -1.0, 3.0])
    assert diagnose(np.ones(3), g, upstream=g, ones_reference=np.ones(3)).startswith(  # type: ignore[union-attr]
        "the upstream gradient ignored"
    )


def test_the_json_report_carries_fault_and_diagnosis(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(MATMUL.replace("RULE_INPUT", "2 * (grad @ other.T)"))
    run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    data = json.loads((tmp_path / "r.json").read_text())
    fault = data["cases"][0]["fault"]
    assert fault["node"] == "c" and fault["argument"] == "input"
    assert fault["diagnosis"] == "a constant factor: manual = 2 x torch's"
    assert data["summary"] == {
        "passed": 0,
        "failed": 1,
        "errors": 0,
        "xfailed": 0,
        "xpassed": 0,
        "unchecked": 0,
        "cases": 1,
        "invalid_files": 0,
    }


def test_the_readme_lists_the_rule_language_as_it_is() -> None:
    import re

    from runner.rules import lang
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**The rule language**") : readme.index("Refused: names")]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", section))
    tables = (
        lang.NP_FUNCTIONS,
        lang.NP_LINALG_FUNCTIONS,
        lang.NP_CONSTANTS,
        lang.ARRAY_METHODS,
        lang.ARRAY_ATTRIBUTES,
        lang.BUILTINS,
    )
    missing = sorted(name for table in tables for name in table if name not in words)
    assert not missing, f"README's rule language does not list {missing}"


def test_a_constant_upstream_does_not_hide_a_rule_that_ignores_it(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "inputs: {a: [1.0, 2.0], b: [3.0, 4.0]}\ngraph: {c: a * b}\nrules: {mul: {input: RULE}}\n"
    )
    code, out, path = run_yaml(write_case, tmp_path, capsys, text.replace("RULE", "other"))
    assert code == 1
    assert "is wrong for 'input' (case rule `other` at " in out
    assert (
        "found by the probe: judged alone under a random upstream gradient for the whole graph"
        in out
    )
    assert "looks like: the upstream gradient ignored" in out
    fault = report_of(tmp_path / "r.json").cases[0].fault
    assert (
        fault is not None
        and fault.under == "a random upstream gradient for the whole graph (seed 0)"
    )
    path.write_text(text.replace("RULE", "grad * other"))
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 0, out


def test_symmetric_data_does_not_hide_a_missing_transpose(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # b is symmetric, so grad @ b equals grad @ b.T on the case's own data.
    code, out, path = run_yaml(
        write_case,
        tmp_path,
        capsys,
        "inputs:\n  a: [[1.0, 2.0], [3.0, 4.0]]\n  b: [[2.0, 1.0], [1.0, 3.0]]\n"
        "graph: {c: a @ b}\nupstream: {random: normal, seed: 1}\n"
        "rules: {matmul: {input: grad @ other, other: input.T @ grad}}\n",
    )
    assert code == 1, out
    fault = report_of(tmp_path / "r.json").cases[0].fault
    assert fault is not None and (fault.node, fault.argument) == ("c", "input")
    assert fault.under == "random inputs and upstream gradient (seed 0)"


# --- found by trying it as a new user and an attacker -----------------------------------------


def test_a_rule_that_exits_fails_its_case_and_the_run_goes_on(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nRULES = {'exp': lambda grad, out, input: sys.exit(0)}\n")
    write_case(TWO_OPS, name="a.yaml")
    write_case(TWO_OPS.replace("t/two", "t/three"), name="b.yaml")
    report = tmp_path / "r.json"
    code, out = run(
        capsys, "run", str(tmp_path / "cases"), "--rules", str(exits), "--report", str(report)
    )
    assert code == 1
    assert "exits.py rule (`<lambda>`) raised SystemExit: 0 (shapes: grad (2, 2)" in out
    assert out.strip().splitlines()[-1] == "2 cases: 0 passed, 2 failed"
    assert report_of(report).summary.failed == 2


@pytest.mark.parametrize("call", ["os._exit(0)", "os.abort()"])
def test_a_rule_that_ends_the_process_fails_its_case_and_the_run_goes_on(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str], call: str
) -> None:
    """os._exit(0) ended a serial run with exit status 0 and no report (a tester's finding): a
    run that looks green. While a rule runs, both raise instead."""
    exits = tmp_path / "ends.py"
    exits.write_text(f"import os\nRULES = {{'exp': lambda grad, out, input: {call}}}\n")
    write_case(TWO_OPS, name="a.yaml")
    write_case(TWO_OPS.replace("t/two", "t/three"), name="b.yaml")
    report = tmp_path / "r.json"
    code, out = run(
        capsys, "run", str(tmp_path / "cases"), "--rules", str(exits), "--report", str(report)
    )
    assert code == 1
    assert f"raised ProcessExitRefused: the rule called {call}" in out
    assert report_of(report).summary.failed == 2
    import os

    assert os._exit.__module__ == "posix" and os.abort.__module__ == "posix"  # restored


def test_a_module_rule_returning_none_fails_and_an_empty_answer_is_noted(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    none = tmp_path / "none_rules.py"
    none.write_text("def exp(grad, out, input):\n    grad * out\n\nRULES = {'exp': exp}\n")
    empty = tmp_path / "empty_rules.py"
    empty.write_text("RULES = {'exp': lambda grad, out, input: {}}\n")
    path = write_case(TWO_OPS)
    report = str(tmp_path / "r.json")
    code, out = run(capsys, "run", str(path), "--rules", str(none), "--report", report)
    assert code == 1
    assert "rule (`exp`) returned None (a missing return?)" in out
    code, out = run(capsys, "run", str(path), "--rules", str(empty), "--report", report)
    assert code == 0
    assert (
        f"NOTE t/two: the module {empty} rule for exp gave no gradient at node 'c' (it returned "
        "{} or None for every argument), so the catalogue's rule (or a later source's) was used"
    ) in out


def test_xfail_does_not_cover_a_wrong_golden_value(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_yaml(
        write_case,
        tmp_path,
        capsys,
        "xfail: the rule is wrong\ninputs: {a: [1.0, 2.0]}\ngraph: {c: a * a}\n"
        "expect: {grad: {a: [2.0, 5.0]}}\n",
    )
    assert code == 1
    assert out.strip().splitlines()[-1] == "1 case: 0 passed, 1 failed"
    assert "does not cover this failure: no rule is wrong (the manual gradients agree" in out


def test_rules_in_block_and_multi_line_scalars_are_located_at_the_sub_expression(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "inputs: {a: [1.0], b: [2.0]}\ngraph: {c: a * b}\nrules:\n  mul:\n    input: |-\n"
        "      grad * other if np.save('x', grad) is None else 0\n"
        "    other: grad *\n      np.load('x')\n"
    )
    code, out = run(capsys, "validate", str(path))
    assert code == 2
    assert "case.yaml:6:26: error: rules.mul.input: np.save does I/O" in out
    assert "case.yaml:8:10: error: rules.mul.other: np.load does I/O" in out


def test_a_double_quoted_rule_with_escapes_is_located_in_the_file() -> None:
    from runner.yaml_source import load_documents

    text = 'rules: "grad\\t* \\u00e9 + np.save(1)"\n'
    doc = load_documents(text, "f.yaml")[0]
    value = doc.data["rules"]
    assert str(doc.where(("rules",), value.index("save"))) == f"f.yaml:1:{text.index('save') + 1}"


def test_shape_hints_say_only_what_fits() -> None:
    from runner.engine import _shape_problem

    assert _shape_problem((1,), (), ()).endswith("looks like: extra dimensions of size 1")
    assert "not broadcast back" not in _shape_problem((), (2, 3), (2, 4))
    assert _shape_problem((2,), (2, 3), (2,)).endswith("not broadcast back to its input")
    assert diagnose(np.array([1.5]), np.array([-0.7])) is None  # one number fits any factor


def test_bad_api_and_cli_arguments_are_clear_errors(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.rules.modules import RulesError

    path = write_case(TWO_OPS)
    with pytest.raises(RulesError, match="rules must be a RULES dict, a path to a .py file"):
        runner.check(str(path), rules=42)  # type: ignore[arg-type]
    code, out = run(capsys, "run", str(path), "--rules", "no_such_pkg_xyz.rules")
    assert code == 2
    assert "importing it raised ModuleNotFoundError: No module named 'no_such_pkg_xyz'" in out
    assert "runner/rules" not in out
    code, out = run(capsys, "show", "missing.yaml")
    assert (code, out.strip()) == (2, "gradcase: error: no such case file: missing.yaml")


def test_a_rule_that_is_not_a_string_or_gives_no_argument_is_refused(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "inputs: {a: [1.0]}\ngraph: {c: exp(a)}\nrules: {exp: {input: 0}}\n---\n"
        "inputs: {a: [1.0]}\ngraph: {c: exp(a)}\nrules: {exp: {}}\n"
    )
    code, out = run(capsys, "validate", str(path))
    assert code == 2
    assert "rules.exp.input: a rule is a numpy expression written as a string" in out
    assert "rules.exp: no argument's rule is given (rules give gradients for: input)" in out


def test_the_catalogue_given_as_a_users_rules_passes_every_case_probes_included() -> None:
    """Every op's own VJP, handed in as a user's RULES dict, goes through the user-rule path:
    exact shapes and dtypes, fault localisation, and the random-upstream and random-operand
    probes. A right rule must never fail (no false failure at any op's domain or kink)."""
    from runner.ops import REGISTRY
    from runner.ops.spec import Op, sum_to
    from tests.conftest import ROOT

    def as_rule(op: Op) -> Callable[..., dict[str, object]]:
        def fit(g: object, v: object) -> object:
            if g is None or not (isinstance(v, np.ndarray) and v.dtype.kind == "f"):
                return None
            return sum_to(np.asarray(g), v.shape).astype(v.dtype)

        def rule(grad: np.ndarray, out: np.ndarray, **args: object) -> dict[str, object]:
            # One output of several: the VJP takes a gradient per output (derivatives.yaml).
            grads, outs = args.pop("grads", None), args.pop("outs", None)
            raw = op.vjp(grad, out, **args) if grads is None else op.vjp(grads, outs, **args)
            found: dict[str, object] = {}
            for p, g in zip(op.tensor_params, raw, strict=True):
                v = args[p.name]
                if p.grad and isinstance(v, list):
                    found[p.name] = [
                        fit(gi, vi) for gi, vi in zip(g or [None] * len(v), v, strict=True)
                    ]
                elif p.grad:
                    found[p.name] = fit(g, v)
            return found

        return rule

    report = runner.check(
        ROOT / "cases", rules={name: as_rule(op) for name, op in REGISTRY.items()}
    )
    bad = [
        f"{c.name}: {c.messages[:1]}" for c in report.cases if c.status not in ("passed", "xfailed")
    ]
    assert not bad, "\n".join(bad)
    # A case's own op (cases/composed/) without a rule keeps its own VJP, backprop through it.
    sources = {
        u.source for c in report.cases for t in c.tensors for u in t.rules if u.op in REGISTRY
    }
    assert sources == {"api tests.test_rules", "case"}


def test_the_probe_tries_both_signs_and_keeps_constants(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A relu rule that is right only for negative inputs, on negative data: the negated probe
    # gives every element the other sign.
    code, out, path = run_yaml(
        write_case,
        tmp_path,
        capsys,
        "inputs: {x: [[-1.0, -2.0, -3.0], [-0.5, -0.1, -4.0]]}\ngraph: {y: relu(x)}\n"
        "upstream: {random: normal, seed: 1}\nrules: {relu: {input: np.zeros_like(input)}}\n",
    )
    assert code == 1 and "found by the probe" in out
    # cross_entropy with a probability target: the target is a constant the probe keeps.
    path.write_text(
        "inputs:\n  x: {random: normal, shape: [3, 4], seed: 1}\n"
        "  t: {values: [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]],"
        " requires_grad: false}\ngraph:\n  l: cross_entropy(x, t)\nrules:\n  cross_entropy:\n"
        "    input: (np.exp(input) / np.exp(input).sum(axis=1, keepdims=True) - target)"
        " * grad / input.shape[0]\n"
    )
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 0, out


def test_show_prints_the_arrays_of_the_probe_that_found_the_fault(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "name: t/pr\ninputs: {a: [1.0, 2.0], b: [3.0, 4.0]}\ngraph: {c: a * b}\n"
        "upstream: {random: normal, seed: 5}\nrules: {mul: {input: -grad * other * 2}}\n"
        "---\nname: t/pr-data\ninputs: {a: [1.0, 2.0], b: [3.0, 4.0]}\ngraph: {c: a * b}\n"
        "upstream: {random: normal, seed: 5}\n"
        "rules: {mul: {input: grad * np.abs(other)}}\n"
    )
    code, out = run(capsys, "show", "t/pr-data", str(path.parent))
    assert code == 1
    assert "the probe of node 'c', under the same random inputs negated (seed 0):" in out
    lines = out.splitlines()
    at = lines.index("gradient for 'input':")
    assert lines[at + 1].split() == ["manual", "torch", "manual", "-", "torch"]


def test_a_transpose_on_the_wrong_side_is_diagnosed(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    square = MATMUL.replace("shape: [2, 3]", "shape: [3, 3]").replace(
        "shape: [3, 4]", "shape: [3, 3]"
    )
    code, out, _ = run_yaml(
        write_case, tmp_path, capsys, square.replace("RULE_INPUT", "grad @ other")
    )
    assert code == 1
    assert (
        "looks like: torch's gradient with 'other' transposed (a transpose on the wrong side)"
        in out
    )


def test_a_bad_document_does_not_stop_the_others_in_its_file(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_yaml(
        write_case,
        tmp_path,
        capsys,
        "inputs: {a: [1.0]}\ngraph: {c: exp(a)}\n---\n"
        "inputs: {a: [1.0]}\ngraph: {c: exp(a)}\nrules: {exp: {input: grad}, exp: {input: out}}\n"
        "---\ninputs: {a: !!python/name:os.system [1.0]}\ngraph: {c: exp(a)}\n---\n"
        "inputs: {a: [2.0]}\ngraph: {c: exp(a)}\n",
    )
    assert code == 2
    assert "PASSED case[0] " in out and "PASSED case[3] " in out  # names keep their positions
    assert "case.yaml:6:29: duplicate key 'exp'" in out
    assert "case.yaml:8:13: the tag tag:yaml.org,2002:python/name:os.system is not allowed" in out


def test_a_refusal_at_the_start_of_a_quoted_rule_points_inside_the_quotes(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(
        "inputs: {a: [1.0]}\ngraph: {c: exp(a)}\nrules: {exp: {input: 'type(grad)'}}\n"
    )
    code, out = run(capsys, "validate", str(path))
    assert code == 2 and "case.yaml:3:23: error: rules.exp.input: type() is not allowed" in out


def test_the_rules_of_a_case_share_a_time_budget(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from runner.rules import budget

    monkeypatch.setattr(budget, "CASE_SECONDS", 0.5)
    sleepy = tmp_path / "sleepy.py"
    sleepy.write_text("import time\nRULES = {'exp': lambda grad, out, input: time.sleep(30)}\n")
    path = write_case(TWO_OPS)
    start = time.perf_counter()
    code, out = run(
        capsys, "run", str(path), "--rules", str(sleepy), "--report", str(tmp_path / "r.json")
    )
    assert code == 1 and time.perf_counter() - start < 10
    assert "was stopped: the case's rules have run for over 0.5 s in all" in out


def test_probe_false_opts_a_case_out_of_every_probe(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "inputs: {a: [1.0, 2.0], b: [3.0, 4.0]}\ngraph: {c: a * b}\nrules: {mul: {input: other}}\n"
    )
    code, out, path = run_yaml(write_case, tmp_path, capsys, text)
    assert code == 1
    case = report_of(tmp_path / "r.json").cases[0]
    assert "the case passes under its own constant upstream gradient" in case.notes[0]
    path.write_text("probe: false\n" + text)
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 0, out


def test_nan_agrees_on_both_sides_unless_equal_nan_is_false_and_one_side_is_named(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "inputs: {a: [-1.0, 4.0]}\ngraph: {c: sqrt(a)}\n"
    code, out, path = run_yaml(write_case, tmp_path, capsys, text)
    assert code == 0, out
    grad = next(t for t in report_of(tmp_path / "r.json").cases[0].tensors if t.kind == "grad")
    assert grad.comparisons[0].nan_both == 1
    path.write_text("equal_nan: false\n" + text)
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 1 and "manual nan, torch nan" in out
    path.write_text(text + "rules: {sqrt: {input: np.nan_to_num(grad / (2 * out))}}\n")
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 1
    assert "NaN on the torch side only at 1 element(s)" in out


# --- the probe draws inside the op's domain (black-box findings) ------------------------------

DOMAIN = """\
name: t/domain
inputs:
  x: {random: uniform, shape: [4], seed: 1, low: 0.2, high: 0.8}
  y: [0.0, 1.0, 1.0, 0.0]
graph:
  l: binary_cross_entropy(x, y)
rules:
  binary_cross_entropy:
    input: RULE
"""


def test_a_rule_right_only_on_the_case_data_fails_by_a_probe_in_the_ops_domain(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """binary_cross_entropy refuses standard normal operands: the probe draws in (0, 1). The
    rule is right only at x = 0.5, where 1 / (x (1 - x)) = 4, which is all the case holds."""
    rule = "grad * (input - target) * 4 / input.size"
    text = DOMAIN.replace("RULE", rule).replace("low: 0.2, high: 0.8", "low: 0.5, high: 0.5")
    code, out, _ = run_yaml(write_case, tmp_path, capsys, text)
    assert code == 1, out
    assert "found by the probe" in out and "random inputs in (0, 1)" in out


def test_a_rule_right_on_the_ops_domain_passes_the_probe(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """log's rule through its output, grad * exp(-out), is right for x > 0: the negated draw
    (log of a negative is NaN) is not used against it."""
    code, out, _ = run_yaml(
        write_case,
        tmp_path,
        capsys,
        "name: t/log\ninputs:\n  x: {random: uniform, shape: [5], seed: 2, low: 0.5, high: 2}\n"
        "graph:\n  y: log(x)\nupstream: {random: normal, seed: 3}\n"
        "rules:\n  log:\n    input: grad * np.exp(-out)\n",
    )
    assert code == 0, out


def test_composed_op_parameters_named_like_the_torch_module_work_and_rule_names_are_refused(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = (
        "name: t/param-t\nops:\n  f: {params: {x: tensor, t: tensor}, forward: x * t}\n"
        "inputs:\n  a: [1.0, 2.0]\n  b: [3.0, 4.0]\ngraph:\n  y: f(a, b)\n"
    )
    code, out, _ = run_yaml(write_case, tmp_path, capsys, ok)
    assert code == 0, out
    code, out, _ = run_yaml(write_case, tmp_path, capsys, ok.replace("t: tensor", "out: tensor"))
    assert code == 2 and "a parameter cannot be named 'out'" in out


def test_a_non_square_wrong_rule_is_still_named_and_probed(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The transpose hint compared a non-square gradient with its own transpose and raised,
    which stopped the fault search: a wrong qr rule on a 4x3 matrix, right only under the case's
    own upstream (gR = 2R), passed; a wrong matmul rule on 4x5 operands was left unnamed."""
    qr = (
        "inputs:\n  A: {random: normal, shape: [4, 3], seed: 1}\ngraph:\n  r: qr(A).R\n"
        "  y: sum(r * r)\nrules:\n  qr:\n"
        '    A: "0 * A if grads[1] is None else outs[0] @ grads[1]"\n'
    )
    code, out, _ = run_yaml(write_case, tmp_path, capsys, qr)
    assert code == 1, out
    assert "the rule of node 'r' (qr) is wrong for 'A'" in out and "found by the probe" in out
    mm = (
        "inputs:\n  a: {random: normal, shape: [4, 5], seed: 1}\n"
        "  b: {random: normal, shape: [5, 4], seed: 2}\ngraph:\n  c: a @ b\n"
        "upstream: {random: normal, seed: 3}\nrules:\n  matmul:\n    input: grad @ other.T + 1.0\n"
    )
    code, out, _ = run_yaml(write_case, tmp_path, capsys, mm)
    assert code == 1 and "the rule of node 'c' (matmul) is wrong for 'input'" in out, out
    assert "stopped" not in out


def test_a_probe_that_cannot_run_is_not_a_pass(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With user rules, the probe is what catches a rule right only on the case's data: when
    it raises (a gradcase bug), the case is an error that says so, never a clean pass."""
    import runner.execute

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("operands could not be broadcast")

    monkeypatch.setattr(runner.execute, "probe", broken)
    text = (
        "inputs: {a: [1.0, 2.0], b: [3.0, 4.0]}\ngraph: {c: a * b}\n"
        "rules: {mul: {input: grad * other}}\n"
    )
    code, out, _ = run_yaml(write_case, tmp_path, capsys, text)
    assert code == 1 and "1 case: 0 passed, 0 failed, 1 error" in out, out
    assert "the probe of the user's rules could not run (ValueError: operands could not" in out


def test_a_uniform_multiple_with_zeros_is_a_constant_factor_not_ties() -> None:
    """A rule giving 2x torch's gradient where torch's has zeros (an index with no repeats)
    was called "the whole gradient to every tied element"; ties of different sizes still are."""
    r = np.array([0.0, 1.0, 0.0, 2.0, 0.0])
    assert diagnose(2 * r, r) == "a constant factor: manual = 2 x torch's"
    split = np.array([0.5, 0.5, 0.0, 1 / 3, 1 / 3, 1 / 3])
    whole = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    assert "every tied element" in str(diagnose(whole, split))


def test_a_gradient_not_symmetrised_is_said_so() -> None:
    """cholesky's and eigh's textbook gradients are one triangle's; torch's is the symmetric
    part: (manual + manual^T) / 2 (a tester's rule failed with no hint)."""
    manual = np.array([[1.0, 0.0, 0.0], [0.4, 2.0, 0.0], [-0.6, 0.2, 3.0]])
    torch_grad = (manual + manual.T) / 2
    assert str(diagnose(manual, torch_grad)).startswith("not symmetrised")
    assert diagnose(2 * torch_grad, torch_grad) == "a constant factor: manual = 2 x torch's"


def test_a_rule_whose_signature_cannot_take_the_ops_arguments_is_refused_at_load(
    tmp_path: Path,
) -> None:
    """`def inv(grad, A)` (no `out`) or `def det(grad, out, X)` (det's argument is A) failed
    only when called, with Python's bare TypeError (a tester's finding): refused when the
    module loads, at the rule's line, with how gradcase calls it."""
    from runner.diagnostics import RulesError
    from runner.rules.modules import load as load_modules

    module = tmp_path / "sig.py"
    module.write_text(
        "def det(grad, out, X):\n    return {'X': grad}\n\n"
        "def ok(grad, out, **args):\n    return {}\n\nRULES = {'inv': ok, 'det': det}\n"
    )
    with pytest.raises(RulesError) as info:
        load_modules([str(module)], tmp_path)
    text = str(info.value)
    assert "sig.py:1: RULES['det'] cannot be called as a rule of det" in text
    assert "rule(grad, out, A=...)" in text


def test_a_rule_that_raises_names_the_line_that_raised(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rule's def line says little in a 20-line rule: the message also names the line of
    the user's module the exception came from (a tester's finding)."""
    module = tmp_path / "badrules.py"
    module.write_text(
        "import numpy as np\n\ndef exp(grad, out, input):\n    a = grad.sum()\n"
        "    return {'input': grad.reshape(99, 2)}\n\nRULES = {'exp': exp}\n"
    )
    write_case(TWO_OPS, name="a.yaml")
    code, out = run(
        capsys, "run", str(tmp_path / "cases"), "--rules", str(module),
        "--report", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert code == 1
    assert "(`exp`) raised ValueError at " in out and "badrules.py:5: cannot reshape" in out


def test_a_rule_choosing_another_tied_element_is_told_the_data_are_at_a_tie(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A topk rule sending the gradient to the first tied elements (a stable argsort), where
    torch's CPU picks others: no hint said why a valid subgradient fails (a tester's finding).
    The op's kink predicate at distance 0 says the data sit at a tie."""
    module = tmp_path / "topk_rules.py"
    module.write_text(
        "import numpy as np\n\n"
        "def topk(grad, out, input, k, dim=-1, largest=True, sorted=True, grads=None, outs=None):\n"
        "    order = np.argsort(-input, axis=dim, kind='stable')[..., :k]\n"
        "    g = np.zeros_like(input)\n"
        "    np.put_along_axis(g, order, grads[0], axis=dim)\n"
        "    return {'input': g}\n\nRULES = {'topk': topk}\n"
    )
    write_case(
        "name: t/tk\ninputs:\n  x: [[3.0, 2.0, 2.0, 5.0, 2.0, 2.0]]\n"
        "graph:\n  t: topk(x, 3).values\nupstream: [[1.0, -2.0, 0.5]]\n"
    )
    code, out = run(
        capsys, "run", str(tmp_path / "cases"), "--rules", str(module),
        "--report", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert code == 1
    assert "looks like: the data are at a tie or kink of topk" in out


def test_a_module_importing_os_exit_by_name_is_refused_at_load(tmp_path: Path) -> None:
    """`from os import _exit` escapes the patch that makes os._exit raise while a rule runs:
    a serial run ended with exit 0 and no report (a tester's finding). Refused at load."""
    from runner.diagnostics import RulesError
    from runner.rules.modules import load as load_modules

    module = tmp_path / "m3.py"
    module.write_text(
        "from os import _exit\n\ndef det(grad, out, A):\n    _exit(0)\n\nRULES = {'det': det}\n"
    )
    with pytest.raises(RulesError, match="'_exit' is os._exit, imported by name"):
        load_modules([str(module)], tmp_path)


CHOLESKY_RULE = (
    "(np.linalg.inv(L).T @ (np.tril(L.T @ np.tril(grad)) - 0.5 * np.diag(np.diag(L.T @ "
    "np.tril(grad)))) @ np.linalg.inv(L) + (np.linalg.inv(L).T @ (np.tril(L.T @ np.tril(grad)) "
    "- 0.5 * np.diag(np.diag(L.T @ np.tril(grad)))) @ np.linalg.inv(L)).T) / 2"
)


@pytest.mark.parametrize(("out", "right"), [("out", True), ("np.abs(out)", False)])
def test_the_probe_draws_symmetric_positive_definite_matrices_for_cholesky(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    out: str,
    right: bool,
) -> None:
    """cholesky refuses the normal, positive and (0, 1) draws, so a rule using |L| (wrong for
    any matrix with a negative off-diagonal entry) was judged on the case's all-positive
    matrix only and passed (a tester's finding): the probe also draws B B^T / n + I."""
    rule = CHOLESKY_RULE.replace("L", out)
    text = (
        "inputs:\n  a: [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]]\n"
        "graph:\n  l: torch.linalg.cholesky(a)\nupstream: {random: normal, seed: 3}\n"
        f'rules:\n  cholesky:\n    A: "{rule}"\n'
    )
    code, output, _ = run_yaml(write_case, tmp_path, capsys, text)
    assert code == (0 if right else 1), output
    if not right:
        assert "random symmetric positive definite matrices" in output
