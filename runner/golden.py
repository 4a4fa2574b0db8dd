"""``gradcase golden PATH...``: write each case's computed values and gradients into its
``expect``, where the manual side and torch agree.

A file is written only when every case in it agrees, and then through ruamel.yaml's round-trip
mode, so its comments, key order and flow/block styles stay as they were; only ``expect`` changes.
A disagreement refuses the whole file (nothing written) and names the tensor, since a golden value
copied from a wrong rule would pin the bug in place. The values written are torch's, in the
shortest form that reads back to the same number in the case's dtype (float64: Python's repr,
up to 17 significant digits; float32: numpy's float32 repr); a 0-d tensor is a number.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runner.compile import CompiledCase
from runner.diagnostics import CaseInvalid, Problem
from runner.dtypes import is_floating
from runner.loader import _display, compile_document, default_stem, discover
from runner.rules import RuleSet
from runner.rules.modules import module_ops
from runner.yaml_source import load_stream

EXIT_OK, EXIT_DISAGREE, EXIT_INVALID = 0, 1, 2


def golden(paths: Sequence[str], rule_sets: Sequence[RuleSet] = ()) -> int:
    """Write the goldens of every case file under ``paths``; print what was written or why not.
    Exit status: 0 all written, 1 manual and torch disagree somewhere (that file unwritten),
    2 an invalid file (unwritten). Raises `runner.loader.UsageError` for a missing path."""
    worst = EXIT_OK
    for file, root, resolved in discover(paths):
        status, lines = golden_file(file, root, rule_sets, resolved)
        print("\n".join(lines))
        worst = max(worst, status)
    return worst


def golden_file(
    file: Path, root: Path, rule_sets: Sequence[RuleSet] = (), resolved: Path | None = None
) -> tuple[int, list[str]]:
    """One file: (exit status, lines to print). Written only when every case agrees.
    ``resolved``: ``file`` resolved, when `runner.loader.discover` gave it."""
    shown = _display(file)
    text = file.read_text(encoding="utf-8")
    problems: list[Problem] = []
    cases: list[tuple[int, CompiledCase]] = []
    try:
        docs, problems = load_stream(text, shown)
    except CaseInvalid as exc:
        docs, problems = [], exc.problems
    stem = default_stem(file, root, resolved) if docs else ""
    for doc in docs:
        try:
            default = stem if doc.count == 1 else f"{stem}[{doc.index}]"
            cases.append((doc.index, compile_document(doc, default, module_ops(rule_sets))))
        except CaseInvalid as exc:
            problems += exc.problems
    if problems:
        return EXIT_INVALID, [str(p) for p in problems] + [f"golden: {shown}: not written"]
    found: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    refusals: list[str] = []
    for index, case in cases:
        computed, why = _computed(case, rule_sets)
        if computed is None:
            refusals += why
        else:
            found[index] = computed
    if refusals:
        return EXIT_DISAGREE, refusals + [
            f"golden: {shown}: not written: manual and torch must agree first"
        ]
    file.write_text(_rewrite(text, found), encoding="utf-8")
    counts = [
        f"{len(v)} value{'s' * (len(v) != 1)}, {len(g)} gradient{'s' * (len(g) != 1)}"
        for v, g in found.values()
    ]
    names = [case.name for _, case in cases]
    return EXIT_OK, [
        f"golden: {shown}: wrote {c} of {name}" for name, c in zip(names, counts, strict=True)
    ]


def _computed(
    case: CompiledCase, rule_sets: Sequence[RuleSet]
) -> tuple[tuple[dict[str, Any], dict[str, Any]] | None, list[str]]:
    """The case's checked values and gradients as YAML-ready literals (torch's), or None and
    why not: a case that cannot run, or a tensor where manual and torch disagree."""
    from runner.execute import compare_sources, run_sources
    from runner.oracles import EXPECTED, TORCH
    from runner.report import describe

    try:
        sources = run_sources(case, rule_sets, [TORCH])
    except Exception as exc:
        return None, [f"golden: {case.name} ({case.file}:{case.line}): could not run: {exc}"]
    # The case's current goldens are what is being replaced: compare manual with torch only.
    sources.values[EXPECTED], sources.grads[EXPECTED] = {}, {}
    checks = compare_sources(case, sources, [TORCH])
    bad = [describe(case.name, t, c) for t in checks for c in t.comparisons if not c.ok]
    if bad:
        return None, [f"golden: refused: {m}" for m in bad]
    torch = TORCH.name
    values = {t.tensor: sources.values[torch][t.tensor] for t in checks if t.kind == "value"}
    # A tensor torch gives no gradient (its only use is an integer output: slogdet's sign)
    # has none to write; the comparison has already said both sides agree on that.
    grads = {
        t.tensor: sources.grads[torch][t.tensor]
        for t in checks
        if t.kind == "grad" and t.tensor in sources.grads[torch]
    }
    literal = (
        {k: _literal(v) for k, v in values.items()},
        {k: _literal(v) for k, v in grads.items()},
    )
    return literal, []


def _literal(array: Any) -> Any:
    """A nested list of Python numbers (a number for 0-d) that reads back to ``array``'s exact
    elements in its dtype."""
    a = np.asarray(array)
    if is_floating(a.dtype):
        if a.dtype == np.float64:
            return a.tolist()
        # The shortest decimal that is the same float32, float16 or bfloat16 (0.1, not
        # 0.10000000149011612).
        return np.vectorize(lambda x: float(str(a.dtype.type(x))), otypes=[object])(a).tolist()
    return a.tolist()


def _rewrite(text: str, found: dict[int, tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """``text`` with ``expect`` of each document in ``found`` (by index among the non-empty
    documents) set, everything else as it was."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    # Comment lines at the end of the file belong to no key; ruamel would attach them to the
    # last one and new keys would land below them: they are set aside and put back last.
    body = text.rstrip("\n").split("\n")
    cut = len(body)
    while cut and (not body[cut - 1].strip() or body[cut - 1].lstrip().startswith("#")):
        cut -= 1
    text, trailing = "\n".join(body[:cut]) + "\n", "".join(f"{x}\n" for x in body[cut:])
    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the file's long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    documents = [d for d in yaml.load_all(text) if d is not None]
    for index, (values, grads) in found.items():
        doc = documents[index]
        expect = doc.get("expect")
        if not isinstance(expect, CommentedMap):
            expect = CommentedMap()
            doc["expect"] = expect
        for key, table in (("value", values), ("grad", grads)):
            if not table:
                continue
            section = expect.get(key)
            if not isinstance(section, CommentedMap):
                section = CommentedMap()
                expect[key] = section
            for name, literal in table.items():
                section[name] = _styled(literal)
    out = io.StringIO()
    if len(documents) == 1 and not text.lstrip().startswith("---"):
        yaml.dump(documents[0], out)
    else:
        yaml.explicit_start = True
        yaml.dump_all(documents, out)
    return out.getvalue() + trailing


FLOW_ELEMENTS = 16


def _styled(literal: Any) -> Any:
    """Up to 16 elements in flow style (``[[1.0, 2.0], [3.0, 4.0]]``, as cases are written by
    hand); more, a block list of flow-style rows, one row a line."""
    from ruamel.yaml.comments import CommentedSeq

    if not isinstance(literal, list):
        return literal
    if np.size(np.asarray(literal, dtype=object)) <= FLOW_ELEMENTS or not isinstance(
        literal[0], list
    ):
        return _flow(literal)
    seq = CommentedSeq([_flow(row) for row in literal])
    seq.fa.set_block_style()
    return seq


def _flow(literal: Any) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    if not isinstance(literal, list):
        return literal
    seq = CommentedSeq([_flow(x) for x in literal])
    seq.fa.set_flow_style()
    return seq
