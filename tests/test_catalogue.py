"""The catalogue: its size, its docs, and what every entry must state."""

from __future__ import annotations

from runner.catalogue import lines, markdown
from runner.ops import REGISTRY, public_ops
from tests.conftest import ROOT


def test_docs_ops_md_is_generated_from_the_registry() -> None:
    committed = (ROOT / "docs" / "ops.md").read_text()
    assert committed == markdown() + "\n", "docs/ops.md is out of date: run `make docs`"


def test_case_schema_json_is_generated_from_the_model() -> None:
    """Editors validate cases against schemas/case.schema.json (each case's first line)."""
    import json

    from schemas.case import Case

    committed = json.loads((ROOT / "schemas" / "case.schema.json").read_text())
    assert committed == Case.model_json_schema(), "out of date: run `make docs`"


def test_catalogue_has_at_least_60_ops_one_line_each() -> None:
    out = lines()
    assert len(out) == len(public_ops()) >= 60
    for op, line in zip(public_ops(), out, strict=True):
        assert line.startswith(op.name + " ")
        assert op.signature() in line


def test_every_op_documents_its_gradients_and_has_samples() -> None:
    import numpy as np

    for op in REGISTRY.values():
        assert op.params, op.name
        assert op.samples(np.random.default_rng(0)), f"{op.name} has no sweep samples"


def test_conventions_at_kinks_and_ties_are_stated() -> None:
    notes = {op.name: op.note for op in public_ops()}
    for name in ("relu", "abs", "max", "amax", "maximum", "prod", "norm", "sign", "clamp"):
        assert notes.get(name), f"{name} states no convention at its non-differentiable points"


def test_every_op_has_a_case_in_its_family_folder_with_a_random_upstream() -> None:
    """An all-ones upstream hides a rule that ignores or transposes it."""
    from runner.loader import load
    from schemas.case import RandomUpstream

    covered: dict[str, set[str]] = {}
    for case in load([str(ROOT / "cases")]).cases:
        if isinstance(case.model.upstream, RandomUpstream):
            family = case.file.replace("\\", "/").split("cases/", 1)[-1].split("/", 1)[0]
            for node in case.graph.nodes:
                covered.setdefault(node.op.name, set()).add(family)
    missing = [op.name for op in public_ops() if op.family not in covered.get(op.name, set())]
    assert not missing, f"ops without a random-upstream case in cases/<family>/: {missing}"
