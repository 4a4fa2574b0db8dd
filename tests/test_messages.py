"""Messages a new user met that did not say what to write instead (issue 8): each located at
file:line:col and saying the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runner.cli import main

WriteCase = Callable[..., Path]


def invalid(write_case: WriteCase, capsys: pytest.CaptureFixture[str], text: str) -> list[str]:
    path = write_case(text)
    code = main(["run", str(path), "--report", str(path.parent / "r.json")])
    out = capsys.readouterr()
    assert code == 2, out
    lines = [line for line in (out.out + out.err).splitlines() if line.startswith("INVALID")]
    return [line.split("case.yaml:", 1)[1] for line in lines]


def test_a_tab_in_indentation_says_tab(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    found = invalid(write_case, capsys, "name: t\ninputs:\n\ta: [1.0]\ngraph: {y: a * 2}\n")
    assert found == [
        "3:1: invalid YAML: a tab character: YAML indents with spaces only; replace the tab "
        "with spaces"
    ]


def test_a_flow_mapping_cut_at_a_comma_says_to_quote_it(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    found = invalid(
        write_case,
        capsys,
        "name: t\ninputs: {x: [1.0, 2.0]}\ngraph: {y: gelu(x, approximate='tanh')}\n",
    )
    assert found[0].startswith(
        "3:39: graph.approximate='tanh'): 'approximate='tanh')' is the end of an expression "
        "that YAML cut at a comma"
    )
    assert """quote the expression (y: "gelu(x, approximate='tanh')")""" in found[0]
    assert found[1].startswith("3:16: invalid expression: '(' was never closed (if the graph")


def test_a_node_under_inputs_says_it_belongs_under_graph(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str]
) -> None:
    found = invalid(
        write_case, capsys, "name: t\ninputs:\n  a: [1.0, 2.0]\n  b: a * 2\ngraph:\n  y: b * 2\n"
    )
    assert found == [
        "4:6: inputs.b: input 'b' is 'a * 2', which looks like an expression: nodes go under "
        "graph:, inputs are numbers, nested lists of numbers or {random: ...}"
    ]


@pytest.mark.parametrize(
    ("op", "said"),
    [
        ("eig", "'eig' is an op with several outputs, not in the catalogue yet"),
        ("dropout", "'dropout' is random, so not checkable against torch"),
        ("swish", "'swish' is 'silu' here: write silu(...)"),
        ("matmull", "did you mean 'matmul'?"),
        ("frobnicate", "(`gradcase ops` lists the ops)"),
    ],
)
def test_unknown_ops_are_answered_by_meaning_before_spelling(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str], op: str, said: str
) -> None:
    (found,) = invalid(
        write_case, capsys, f"name: t\ninputs: {{x: [1.0, 2.0]}}\ngraph:\n  y: {op}(x)\n"
    )
    assert found.startswith(f"4:6: unknown op '{op}'")
    assert said in found
    for misleading in ("'sqrt'", "'layer_norm'?", "'transpose'", "'flip'"):
        assert misleading not in found


@pytest.mark.parametrize(
    ("typed", "spelled"), [("nan", ".nan"), ("-inf", "-.inf"), ("inf", ".inf")]
)
def test_an_unquoted_nan_or_inf_says_yamls_spelling(
    write_case: WriteCase, capsys: pytest.CaptureFixture[str], typed: str, spelled: str
) -> None:
    (found,) = invalid(
        write_case, capsys, f"name: t\ninputs:\n  x: [1.0, {typed}]\ngraph: {{y: x * 2}}\n"
    )
    assert found.startswith("3:6: inputs.x: expected a number, got the string")
    assert f"(write {spelled})" in found


def test_new_refuses_a_name_that_climbs_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "../../escape"]) == 2
    assert "cannot climb out" in capsys.readouterr().err
    assert not (tmp_path.parent.parent / "escape.yaml").exists()
