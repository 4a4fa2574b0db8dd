"""The CLI's verbs and flags of issue 9: selection (-k, --tag, --shard), -x, -q, --version, -j,
--device, list, ops NAME, new, golden, the count line and the progress output."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.cli import main
from runner.loader import UsageError
from runner.select import Expression, ExpressionError, parse_shard, shard
from schemas.report import Report, Summary
from tests.conftest import run_cli as run

WriteCase = Callable[..., Path]

CASE = """\
name: NAME
tags: [TAGS]
inputs:
  a: [[4.0, 5.0], [1.0, 3.0]]
  b: [[2.0, 2.0], [2.0, 2.0]]
graph:
  c: a * b
upstream: 3
"""
# A rule that is wrong: the case fails.
WRONG = "rules:\n  mul:\n    input: grad * input\n"


def case(name: str, tags: str = "", wrong: bool = False) -> str:
    return CASE.replace("NAME", name).replace("TAGS", tags) + (WRONG if wrong else "")


def cases_of(path: Path) -> list[str]:
    return [c.name for c in Report.model_validate_json(path.read_text()).cases]


# --- -k expressions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "selected"),
    [
        ("matmul", {"linalg/matmul-2d", "linalg/matmul-float32"}),
        ("matmul and not float32", {"linalg/matmul-2d"}),
        ("not matmul", {"nn/relu"}),
        ("relu or float32", {"nn/relu", "linalg/matmul-float32"}),
        ("(relu or matmul) and not 2d", {"nn/relu", "linalg/matmul-float32"}),
        ("not (relu or matmul)", set()),
        ("MATMUL and 2D", {"linalg/matmul-2d"}),  # any case
        ("act", {"nn/relu"}),  # a tag's substring
        ("linalg/matmul-2d", {"linalg/matmul-2d"}),
        ("", {"linalg/matmul-2d", "linalg/matmul-float32", "nn/relu"}),
        ("not not relu", {"nn/relu"}),
        ("nn or linalg and float32", {"nn/relu", "linalg/matmul-float32"}),  # and binds tighter
    ],
)
def test_k_expressions_select_as_pytest_does(text: str, selected: set[str]) -> None:
    cases = {
        "linalg/matmul-2d": ["linalg"],
        "linalg/matmul-float32": ["linalg", "float32"],
        "nn/relu": ["activation"],
    }
    expression = Expression.parse(text)
    assert {n for n, tags in cases.items() if expression.matches(n, tags)} == selected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("matmul and", "expected a word, 'not' or '(' at column 11"),
        ("(matmul", "expected ')' at column 8 to close '(' at column 1"),
        ("matmul relu", "unexpected 'relu' at column 8"),
        ("a ) b", "unexpected ')' at column 3"),
        ("__import__('os')", 'unexpected character "\'" at column 12'),
        ("and", "expected a word, 'not' or '(' at column 1, got 'and'"),
    ],
)
def test_a_bad_k_expression_is_a_usage_error_with_its_column(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        Expression.parse(text)
    assert message in str(info.value)


def test_k_and_tag_through_the_cli(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(case("t/matmul", "linalg"), "a.yaml")
    write_case(case("t/matmul-f32", "linalg, float32"), "b.yaml")
    write_case(case("t/relu", "activation"), "c.yaml")
    report = tmp_path / "r.json"
    folder = str(tmp_path / "cases")
    code, out = run(capsys, "run", folder, "--report", str(report), "-k", "matmul and not float32")
    assert code == 0, out
    assert cases_of(report) == ["t/matmul"]
    code, out = run(capsys, "run", folder, "--report", str(report), "--tag", "float32")
    assert cases_of(report) == ["t/matmul-f32"]
    run(capsys, "run", folder, "--report", str(report), "--tag", "linalg", "-k", "f32")
    assert cases_of(report) == ["t/matmul-f32"]
    code, out = run(capsys, "list", folder, "--tag", "activation")
    assert (code, out.split()[0]) == (0, "t/relu")


def test_a_selection_that_matches_nothing_fails_and_leaves_the_report_alone(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(case("t/one"))
    report = tmp_path / "r.json"
    report.write_text("the previous report\n")
    code, out = run(
        capsys, "run", str(tmp_path / "cases"), "--report", str(report), "-k", "nomatch"
    )
    assert code == 2
    assert "-k 'nomatch' matches none of the 1 cases found" in out
    assert report.read_text() == "the previous report\n"
    code, out = run(capsys, "run", str(tmp_path / "cases"), "--report", str(report), "--tag", "x")
    assert (code, report.read_text()) == (2, "the previous report\n")
    assert "--tag x matches none" in out


# --- --shard --------------------------------------------------------------------------------


def test_shards_are_disjoint_cover_everything_and_do_not_depend_on_order() -> None:
    names = [f"c{i:02d}" for i in range(11)]
    shards = [shard(names, names, i, 3) for i in (1, 2, 3)]
    assert sorted(n for s in shards for n in s) == names
    assert [len(s) for s in shards] == [4, 4, 3]
    backwards = names[::-1]
    assert set(shard(backwards, backwards, 2, 3)) == set(shards[1])


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2"])
def test_a_bad_shard_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def test_shard_through_the_cli(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("t/a", "t/b", "t/c"):
        write_case(case(name), f"{name[2]}.yaml")
    folder, report = str(tmp_path / "cases"), tmp_path / "r.json"
    seen = []
    for i in (1, 2):
        code, _ = run(capsys, "run", folder, "--report", str(report), "--shard", f"{i}/2")
        seen.append(cases_of(report))
    assert seen == [["t/a", "t/c"], ["t/b"]]
    code, out = run(capsys, "run", folder, "--report", str(report), "--shard", "3/2")
    assert code == 2 and "I must be between 1 and N" in out


# --- -x, -q, --version, the count line -------------------------------------------------------


def test_exitfirst_stops_after_the_first_failure(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(case("t/1-ok"), "a.yaml")
    write_case(case("t/2-bad", wrong=True), "b.yaml")
    write_case(case("t/3-bad", wrong=True), "c.yaml")
    report = tmp_path / "r.json"
    code, out = run(capsys, "run", str(tmp_path / "cases"), "--report", str(report), "-x")
    assert code == 1
    assert cases_of(report) == ["t/1-ok", "t/2-bad"]
    assert out.strip().splitlines()[-1] == "2 cases: 1 passed, 1 failed"


def test_quiet_prints_only_failures_and_the_count_line(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(case("t/ok"), "a.yaml")
    write_case(case("t/bad", wrong=True), "b.yaml")
    code, out = run(
        capsys, "run", str(tmp_path / "cases"), "--report", str(tmp_path / "r.json"), "-q"
    )
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0].startswith("FAILED t/bad")
    assert not any("t/ok" in line for line in lines)
    assert "report:" not in out
    assert lines[-1] == "2 cases: 1 passed, 1 failed"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gradcase {version('gradcase')}"


@pytest.mark.parametrize(
    ("counts", "line"),
    [
        ({"passed": 1, "failed": 0, "errors": 0, "cases": 1}, "1 case: 1 passed, 0 failed"),
        (
            {"passed": 340, "failed": 1, "errors": 2, "cases": 343, "invalid_files": 1},
            "343 cases: 340 passed, 1 failed, 2 errors; 1 invalid file",
        ),
        (
            {"passed": 0, "failed": 0, "errors": 1, "xfailed": 2, "cases": 4, "xpassed": 1},
            "4 cases: 0 passed, 0 failed, 1 error, 2 xfailed, 1 xpassed",
        ),
        (
            {"passed": 0, "failed": 0, "errors": 0, "cases": 0, "invalid_files": 2},
            "0 cases: 0 passed, 0 failed; 2 invalid files",
        ),
    ],
)
def test_the_count_line_says_what_it_counts(counts: dict[str, int], line: str) -> None:
    from runner.report import count_line

    assert count_line(Summary(**counts)) == line


def test_validate_counts_cases_and_files(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(case("t/ok"), "a.yaml")
    write_case("inputs: {a: [1.0]}\ngraph: {c: relu(b)}\n", "bad.yaml")
    code, out = run(capsys, "validate", str(tmp_path / "cases"))
    assert (code, out.strip().splitlines()[-1]) == (2, "1 valid case; 1 invalid file")


# --- list, ops, new -------------------------------------------------------------------------


def test_list_shows_name_tags_ops_and_location(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(case("t/one", "seed, mul").replace("c: a * b", "c: relu(a * b)"))
    code, out = run(capsys, "list", str(tmp_path / "cases"))
    assert code == 0
    name, rest = out.strip().split("  ", 1)
    assert name == "t/one"
    assert "[seed, mul]" in rest and "mul, relu" in rest
    assert rest.rstrip().endswith("cases/case.yaml:1")


def test_one_long_cell_does_not_widen_every_line_of_list() -> None:
    """Columns are padded to their longest cell but at most `COLUMN` characters: the
    repository's list had every line 440 characters wide because of one case's ops."""
    from types import SimpleNamespace

    from runner.listing import COLUMN, rows

    def fake(name: str, ops: list[str]) -> object:
        nodes = [SimpleNamespace(op=SimpleNamespace(name=o)) for o in ops]
        return SimpleNamespace(
            name=name, model=SimpleNamespace(tags=[]), graph=SimpleNamespace(nodes=nodes),
            file="c.yaml", line=1,
        )  # fmt: skip

    short, long = rows([fake("t/a", ["exp"]), fake("t/b", [f"op{i}" for i in range(40)])])
    assert len(short) <= 3 * (COLUMN + 2) + len("c.yaml:1")
    assert len(long) > len(short) and long.endswith("c.yaml:1")


def test_ops_looks_ops_up_by_name_pattern_or_part(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "ops", "matmul")
    assert code == 0 and [line.split()[0] for line in out.strip().splitlines()] == ["matmul"]
    code, out = run(capsys, "ops", "*_pool2d")
    listed = [line.split()[0] for line in out.strip().splitlines()]
    assert listed == ["adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d", "max_pool2d"]
    code, out = run(capsys, "ops", "softm")
    assert {line.split()[0] for line in out.strip().splitlines()} >= {"softmax", "log_softmax"}
    code, out = run(capsys, "ops", "matmull")
    assert code == 2 and "no op matches 'matmull'; did you mean 'matmul'" in out
    # The ops expressions make are not listed, but their exact name finds their signature.
    code, out = run(capsys, "ops", "index_tensor")
    assert code == 0 and out.startswith("index_tensor  index_tensor(input, indices, index)")
    assert "made by the graph's expressions" in out
    code, out = run(capsys, "ops", "*index*")
    assert "index_tensor" not in out


def test_new_writes_a_commented_skeleton_that_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = run(capsys, "new", "fam/my-op")
    path = tmp_path / "cases" / "fam" / "my-op.yaml"
    assert (code, out.strip()) == (0, "wrote cases/fam/my-op.yaml")
    text = path.read_text()
    assert text.count("\n#") >= 5 and "# name: fam/my-op" in text
    code, out = run(capsys, "run", "-q", "--report", "r.json")
    assert code == 0, out
    assert cases_of(tmp_path / "r.json") == ["fam/my-op"]
    code, out = run(capsys, "new", "fam/my-op")
    assert code == 2 and "already exists" in out
    assert path.read_text() == text


# --- golden ---------------------------------------------------------------------------------

COMMENTED = """\
# Golden values for a product (a comment above everything)
name: t/g   # the name
inputs:
  a: [[4.0, 5.0], [1.0, 3.0]]   # a's comment
  b: [[2.0, 2.0], [2.0, 2.0]]
graph:
  c: a * b
  s: sum(c)      # a 0-d node
upstream: 3.3
expect:
  grad:
    a: [[0.0, 0.0], [0.0, 0.0]]   # stale
# a comment at the end
"""


def test_golden_writes_agreed_values_keeping_comments_and_layout(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(COMMENTED)
    code, out = run(capsys, "golden", str(path))
    assert code == 0, out
    assert "wrote 2 values, 4 gradients of t/g" in out
    text = path.read_text()
    before = COMMENTED.splitlines()
    after = text.splitlines()
    assert after[:10] == before[:10]  # everything above expect, comments included
    assert after[-1] == "# a comment at the end"
    assert "    a: [[6.6, 6.6], [6.6, 6.6]]   # stale" in after
    assert "    b: [[13.2, 16.5], [3.3, 9.899999999999999]]" in after  # 17 significant digits
    assert "    s: 3.3" in after and "    s: 26.0" in after  # 0-d: a number
    code, out = run(capsys, "run", str(path), "--report", str(tmp_path / "r.json"))
    assert code == 0, out
    report = Report.model_validate_json((tmp_path / "r.json").read_text())
    pairs = {(c.left, c.right) for t in report.cases[0].tensors for c in t.comparisons}
    assert ("manual", "expected") in pairs
    run(capsys, "golden", str(path))
    assert path.read_text() == text  # idempotent


def test_golden_float32_writes_the_shortest_float32_decimal(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case("dtype: float32\ninputs:\n  a: [0.1, 0.2]\ngraph:\n  c: a * 3\n")
    assert run(capsys, "golden", str(path))[0] == 0
    assert "    c: [0.3, 0.6]" in path.read_text().splitlines()


def test_golden_leaves_out_a_gradient_torch_does_not_give(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reaches the output only through slogdet's sign, which has no gradient: torch gives A
    none (it raised KeyError here before), so the golden has no entry for A."""
    path = write_case("inputs:\n  A: [[2.0, 1.0], [0.5, 3.0]]\ngraph:\n  s: slogdet(A).sign\n")
    assert run(capsys, "golden", str(path))[0] == 0
    written = yaml.safe_load(path.read_text())["expect"]
    assert written == {"value": {"s": 1.0}, "grad": {"s": 1.0}}


def test_golden_refuses_where_manual_and_torch_disagree(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(COMMENTED + WRONG)
    code, out = run(capsys, "golden", str(path))
    assert code == 1
    assert "golden: refused: t/g: grad of 'a': manual vs torch differ" in out
    assert "not written" in out
    assert path.read_text() == COMMENTED + WRONG


# --- -j N -----------------------------------------------------------------------------------


def _stripped(path: Path) -> Any:
    data = json.loads(path.read_text())
    for c in data["cases"]:
        c["duration"] = 0.0
    data["environment"]["timestamp"] = "when the run started"
    return data


def test_parallel_report_equals_the_serial_one(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i, name in enumerate(["t/b", "t/a", "t/d", "t/c", "t/e"]):
        write_case(case(name, wrong=i == 2), f"{i}.yaml")
    write_case("inputs: {a: [1.0]}\ngraph: {c: relu(b)}\n", "bad.yaml")
    folder = str(tmp_path / "cases")
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    code1, out1 = run(capsys, "run", folder, "--report", str(serial), "-v")
    code2, out2 = run(capsys, "run", folder, "--report", str(parallel), "-v", "-j", "2")
    assert (code1, code2) == (2, 2)
    assert _stripped(serial) == _stripped(parallel)
    assert cases_of(parallel) == ["t/b", "t/a", "t/d", "t/c", "t/e"]

    def without_durations(text: str) -> list[str]:
        return [line.split(", ")[0] for line in text.splitlines()]

    assert without_durations(out1) == without_durations(
        out2.replace("parallel.json", "serial.json")
    )


def test_workers_load_each_file_alone_yet_name_its_cases_as_the_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not under a `cases` folder: default names are relative to the folder given, which a
    # worker loading one nested file must be told; a file of two documents, one name twice.
    suite = tmp_path / "suite"
    (suite / "sub").mkdir(parents=True)
    unnamed = case("x").replace("name: x\n", "")
    (suite / "sub" / "deep.yaml").write_text(unnamed)
    (suite / "two.yaml").write_text(unnamed + "---\n" + case("t/dup"))
    (suite / "three.yaml").write_text(case("t/dup", wrong=True) + "---\n" + unnamed)
    (suite / "one.yaml").write_text(unnamed)
    monkeypatch.chdir(tmp_path)
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    code1, out1 = run(capsys, "run", "suite", "--report", str(serial))
    code2, out2 = run(capsys, "run", "suite", "--report", str(parallel), "-j", "2")
    assert (code1, code2) == (2, 2), out2  # t/dup twice: the second is an invalid file's
    assert _stripped(serial) == _stripped(parallel)
    assert cases_of(parallel) == ["one", "sub/deep", "t/dup", "three[1]", "two[0]"]
    statuses = [c.status for c in Report.model_validate_json(parallel.read_text()).cases]
    assert statuses == ["passed", "passed", "failed", "passed", "passed"]


def test_a_case_goes_to_a_worker_pickled_with_the_catalogue_ops_or_by_its_file(
    write_case: WriteCase, tmp_path: Path
) -> None:
    import pickle

    from runner.loader import load
    from runner.ops import REGISTRY
    from runner.parallel import pack

    write_case(case("t/plain"), "a.yaml")
    write_case(case("t/rules", wrong=True), "b.yaml")
    plain, ruled = load([str(tmp_path / "cases")]).cases
    packed = pack(plain)
    assert packed is not None and pack(ruled) is None  # a case's rules are closures: by file
    back = pickle.loads(packed)
    assert back.name == plain.name and back.model == plain.model
    ops = [n.op for n in back.graph.nodes]
    assert ops and all(REGISTRY[op.name] is op for op in ops)  # the worker's own catalogue


def test_a_worker_that_dies_makes_its_case_an_error_and_the_run_goes_on(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "crash_rules.py"
    rules.write_text(
        "import os\nimport signal\n\n\ndef mul(grad, out, input, other):\n"
        "    if float(grad.flat[0]) == 7.0:\n        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return {}\n\n"
        "RULES = {'mul': mul}\n"
    )
    write_case(case("t/a"), "a.yaml")
    write_case(case("t/crash").replace("upstream: 3", "upstream: 7"), "b.yaml")
    write_case(case("t/c"), "c.yaml")
    report = tmp_path / "r.json"
    argv = ["run", str(tmp_path / "cases"), "--report", str(report), "-j", "2"]
    code, out = run(capsys, *argv, "--rules", str(rules))
    assert code == 1, out
    result = Report.model_validate_json(report.read_text())
    assert [(c.name, c.status) for c in result.cases] == [
        ("t/a", "passed"),
        ("t/crash", "error"),
        ("t/c", "passed"),
    ]
    assert (
        "worker process running this case died (killed by SIGKILL)" in result.cases[1].messages[0]
    )


def test_jobs_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "-j", "0"])
    assert "'0' is not a positive whole number" in capsys.readouterr().err


# --- --device -------------------------------------------------------------------------------


def test_device_cuda_without_cuda_is_a_clear_error(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    path = write_case(case("t/a"))
    report = tmp_path / "r.json"
    code, out = run(capsys, "run", str(path), "--report", str(report), "--device", "cuda")
    assert code == 2
    assert "--device cuda: CUDA is not available" in out and "use --device cpu" in out
    assert not report.exists()
    code, out = run(capsys, "run", str(path), "--report", str(report), "--device", "tpu9")
    assert code == 2 and "--device tpu9" in out


def test_the_report_names_the_device(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.json"
    run(capsys, "run", str(write_case(case("t/a"))), "--report", str(report), "--device", "cpu")
    env = Report.model_validate_json(report.read_text()).environment
    assert env is not None and env.device == "cpu"


def test_tf32_is_turned_off_for_matmul_and_cudnn() -> None:
    import torch

    from runner.torch_side import tf32_off

    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("medium")
        tf32_off(torch)
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved[0]
        torch.backends.cudnn.allow_tf32 = saved[1]
        torch.set_float32_matmul_precision(saved[2])


def test_the_torch_oracle_on_a_device_turns_tf32_off_in_each_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A -j worker never runs check_device: run_torch itself turns TF32 off off the CPU."""
    import runner.torch_side as side

    calls: list[Any] = []
    monkeypatch.setattr(side, "tf32_off", calls.append)
    monkeypatch.setattr(side, "_run", lambda *args: "ran")
    monkeypatch.setattr(side, "_small", lambda *args: False)  # no graph to size here
    assert side.run_torch(None, {}, None, "cuda") == "ran"  # type: ignore[arg-type]
    assert len(calls) == 1
    side.run_torch(None, {}, None, "cpu")  # type: ignore[arg-type]
    assert len(calls) == 1


# --- progress and colours -------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _result(status: str) -> Any:
    from schemas.report import CaseResult

    return CaseResult(name="t/x", file="f.yaml", line=1, status=status, duration=0.01)  # type: ignore[arg-type]


def test_a_terminal_gets_a_bar_and_colours_plain_output_gets_lines() -> None:
    from runner.progress import Output

    tty = Output(3, stream=Terminal(), environ={})
    assert tty.bar is not None and tty.colour
    tty.case(_result("failed"))
    tty.close()
    for environ in ({"CI": "true"}, {"CI": "1"}):
        assert Output(3, stream=Terminal(), environ=environ).bar is None
    no_colour = Output(3, stream=Terminal(), environ={"NO_COLOR": "1", "CI": "1"})
    assert not no_colour.colour
    plain_stream = io.StringIO()
    plain = Output(3, stream=plain_stream, environ={})
    assert plain.bar is None and not plain.colour
    plain.case(_result("failed"))
    assert plain_stream.getvalue().startswith("FAILED t/x  (f.yaml:1, 10 ms)")
    coloured_stream = Terminal()
    Output(1, stream=coloured_stream, environ={}).case(_result("failed"))
    assert coloured_stream.getvalue().startswith("\033[31mFAILED\033[0m t/x")
