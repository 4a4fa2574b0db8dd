"""``gradcase new NAME``: a commented case file to start from, valid and passing as written
(a matmul checked against the catalogue), every key explained where it stands."""

from __future__ import annotations

import os
from pathlib import Path

from runner.loader import DEFAULT_ROOT, SUFFIXES, UsageError

SKELETON = """\
# yaml-language-server: $schema={schema}
# A gradcase case (README.md, "The case format"). Run it: gradcase run {path}
# The name defaults to the file's path under cases/ without suffix ({name}); set it to rename.
# name: {name}
description: what this case checks, in a sentence
tags: []                   # gradcase run --tag T, -k 'word and not other' select by these
# dtype: float32           # default float64
inputs:
  # numbers, nested lists, {{random: normal|uniform|integers, shape: [...], seed: N}},
  # {{fill: 0.5, shape: [...]}} or {{values: [...], dtype: int64}}
  a: {{random: normal, shape: [2, 3], seed: 1}}
  b: {{random: normal, shape: [3, 4], seed: 2}}
graph:
  # one node per line, in order, with torch's names (gradcase ops lists the catalogue)
  c: a @ b
# The upstream gradient of the last node: a number (default 1.0) or {{random: normal, seed: N}}.
upstream: {{random: normal, seed: 3}}
# The rule under test, per op and argument, as numpy (README.md, "Your own rules"); without it
# the catalogue's rule is checked.
rules:
  matmul:
    input: grad @ other.T
    other: input.T @ grad
# check: [a, b]            # default: every input that requires grad and every named node
# tolerance: {{rtol: 1e-6}}  # default: scale-aware, per dtype
# xfail: why this rule is known to be wrong
# Golden values: `gradcase golden {path}` writes them where manual and torch agree.
# expect:
#   grad:
#     a: [[...]]
"""


def target(name: str, root: Path = Path(DEFAULT_ROOT)) -> tuple[Path, str]:
    """The file ``new NAME`` writes and the case's default name: ``NAME`` ending in .yaml/.yml
    is a path; otherwise ``root/NAME.yaml``."""
    path = Path(name) if Path(name).suffix in SUFFIXES else root / f"{name}.yaml"
    parts = path.resolve().parts
    under = len(parts) - 1 - parts[::-1].index(DEFAULT_ROOT) if DEFAULT_ROOT in parts[:-1] else None
    default = (
        Path(*parts[under + 1 :]).with_suffix("").as_posix() if under is not None else path.stem
    )
    return path, default


def write_skeleton(name: str) -> Path:
    """Write the skeleton for case ``name`` (see `target`) and return its path. Raises
    `UsageError` when the file exists (never overwritten) or cannot be written."""
    if not name.strip():
        raise UsageError("new: give a case name, such as nn/my-op")
    if ".." in Path(name).parts:
        raise UsageError(f"new: {name}: a case name cannot climb out of its folder with '..'")
    path, default = target(name)
    if path.exists():
        raise UsageError(f"new: {path} already exists; choose another name")
    here = Path(__file__).resolve().parent.parent / "schemas" / "case.schema.json"
    # Relative inside this checkout (it travels with the repository), absolute elsewhere.
    inside = path.resolve().is_relative_to(here.parent.parent)
    schema = Path(os.path.relpath(here, path.resolve().parent)).as_posix() if inside else here

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as f:
            f.write(SKELETON.format(schema=schema, path=path.as_posix(), name=default))
    except OSError as exc:
        raise UsageError(f"new: cannot write {path}: {exc.strerror}") from None
    return path
