"""The exported JSON Schema (schemas/case.schema.json, named by every case for yaml-language-server)
under a draft-7 validator: every valid case of cases/ and examples/ validates, and each fault of a
case that the schema can see (a misspelt key, a wrong kind of value) is rejected, as gradcase's
own validation rejects it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.diagnostics import CaseInvalid
from runner.loader import compile_document
from runner.yaml_source import load_documents
from schemas.case import Case
from tests.conftest import ROOT

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_FILE = ROOT / "schemas" / "case.schema.json"
CASE_FILES = sorted(
    [*(ROOT / "cases").rglob("*.yaml"), *(ROOT / "examples").glob("*/cases/*.yaml")]
)


def validator() -> Any:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def documents(path: Path) -> list[Any]:
    # gradcase's own YAML reading (YAML 1.2 numbers such as 2.0e8, as editors read them).
    return [doc.data for doc in load_documents(path.read_text(), str(path))]


def test_the_schema_file_is_the_export() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == Case.model_json_schema(), (
        "regenerate: python -m runner schema > schemas/case.schema.json"
    )


def test_every_valid_case_validates() -> None:
    assert len(CASE_FILES) > 300
    check = validator()
    failures = [
        f"{path.relative_to(ROOT)}: {list(err.absolute_path)}: {err.message[:200]}"
        for path in CASE_FILES
        for data in documents(path)
        for err in check.iter_errors(data)
    ]
    assert not failures, "\n".join(failures[:20])


BASE = "inputs:\n  a: {random: normal, shape: [2, 3]}\ngraph:\n  c: a * 2\n"
# Each a fault the schema can see: (what, the case's YAML).
BAD = [
    ("misspelt top-level key", BASE + "upstrem: 2.0\n"),
    ("misspelt inputs", "inptus: {a: [1.0]}\ngraph: {c: a * 2}\n"),
    ("no inputs", "graph: {c: 2 * 2}\n"),
    ("empty graph", "inputs: {a: [1.0]}\ngraph: {}\n"),
    ("random input, misspelt shape", "inputs:\n  a: {random: normal, shap: [2]}\ngraph: {c: a}\n"),
    (
        "random input, misspelt seed",
        "inputs:\n  a: {random: normal, shape: [2], sed: 1}\ngraph: {c: a}\n",
    ),
    ("random input, unknown law", "inputs:\n  a: {random: gaussian, shape: [2]}\ngraph: {c: a}\n"),
    ("random input, negative dim", "inputs:\n  a: {random: normal, shape: [-2]}\ngraph: {c: a}\n"),
    ("fill input, misspelt fill", "inputs:\n  a: {fil: 2.0, shape: [3, 2]}\ngraph: {c: a}\n"),
    (
        "fill input, misspelt dtype",
        "inputs:\n  a: {fill: 2.0, shape: [3], dtyp: float32}\ngraph: {c: a}\n",
    ),
    ("fill input without shape", "inputs:\n  a: {fill: 2.0}\ngraph: {c: a}\n"),
    (
        "values input, unknown dtype",
        "inputs:\n  a: {values: [1, 2], dtype: int32}\ngraph: {c: a}\n",
    ),
    ("an expression as an input", "inputs:\n  a: [1.0]\n  b: a * 2\ngraph: {c: b}\n"),
    ("a literal of strings", "inputs:\n  a: [x, y]\ngraph: {c: a}\n"),
    ("unknown case dtype", BASE + "dtype: float8\n"),
    ("long-form node, misspelt args", BASE.replace("c: a * 2", "c: {op: mul, arg: [a, 2]}")),
    ("long-form node without op", BASE.replace("c: a * 2", "c: {args: [a, 2]}")),
    ("a number as a node", BASE.replace("c: a * 2", "c: 2")),
    ("random upstream, misspelt seed", BASE + "upstream: {random: normal, sed: 3}\n"),
    ("random upstream, integers", BASE + "upstream: {random: integers}\n"),
    ("misspelt tolerance", BASE + "tolerance: {rtoll: 1.0e-3}\n"),
    ("negative tolerance", BASE + "tolerance: {atol: -1.0}\n"),
    ("misspelt expect", BASE + "expect: {grads: {a: [1.0]}}\n"),
    ("a string as a golden value", BASE + "expect: {grad: {a: big}}\n"),
    ("a rule that is not a string", BASE + "rules: {mul: {input: 2}}\n"),
    ("an empty rule", BASE + "rules: {mul: {input: ''}}\n"),
    ("an unknown oracle", BASE + "oracles: [jax]\n"),
    ("no oracle", BASE + "oracles: []\n"),
    ("an empty xfail", BASE + "xfail: ''\n"),
    ("a name with a newline", BASE + 'name: "a\\nb"\n'),
    ("probe not a boolean", BASE + "probe: sometimes\n"),
    ("check not a list", BASE + "check: c\n"),
]


@pytest.mark.parametrize(("what", "text"), BAD, ids=[what for what, _ in BAD])
def test_the_schema_rejects_what_gradcase_rejects(what: str, text: str) -> None:
    (data,) = documents_of(text)
    errors = list(validator().iter_errors(data))
    assert errors, f"the schema accepts: {what}"
    # The table holds faults, not opinions: gradcase's validation refuses each too.
    with pytest.raises(CaseInvalid):
        compile_document(load_documents(text, "t.yaml")[0], "t")


def test_the_base_of_the_table_is_valid() -> None:
    (data,) = documents_of(BASE)
    assert not list(validator().iter_errors(data))
    compile_document(load_documents(BASE, "t.yaml")[0], "t")


def documents_of(text: str) -> list[Any]:
    return [doc.data for doc in load_documents(text, "t.yaml")]
