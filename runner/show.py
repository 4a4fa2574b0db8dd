"""The side-by-side view of one case (`gradcase show`, `gradcase run -v`): for every checked tensor,
its value or gradient from each source next to each other, the difference, how many elements are
out of tolerance, and the worst element marked; what the notebook's
``print('a_grad:', ...)`` / ``print('a_grad_torch:', ...)`` pairs showed, without the script."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from runner.report import fault_message, rule_use, tolerance_text
from schemas.report import CaseResult, TensorCheck

# Tensors up to this many elements are printed whole; larger ones as their worst elements.
MAX_SHOWN = 64
WORST_ROWS = 8


def render(result: CaseResult, sources: Any) -> list[str]:
    """Lines for ``result`` given its `runner.execute.Sources` (None when the case could not
    compute them: the lines then say why)."""
    lines = [f"=== {result.status.upper()} {result.name} ({result.file}:{result.line})"]
    if result.xfail:
        lines.append(f"xfail: {result.xfail}")
    if sources is None:
        return lines + [f"  {m}" for m in result.messages]
    if result.fault is not None:
        lines.append(f"  {fault_message(result.fault)}")
    if result.fault is not None and sources.probe:
        lines += _probe(sources.probe)
    for check in result.tensors:
        lines += _tensor(check, sources)
    return lines


def tensor_lines(check: TensorCheck, sources: Any) -> list[str]:
    """One checked tensor as `render` shows it: the verdicts, the rules that gave it, each
    source side by side with the difference (the largest differences, over MAX_SHOWN elements).
    ``sources``: the case's `runner.execute.Sources`."""
    return _tensor(check, sources)


def _tensor(check: TensorCheck, sources: Any) -> list[str]:
    table = sources.values if check.kind == "value" else sources.grads
    names = []
    for c in check.comparisons:
        for name in (c.left, c.right):
            if name not in names:
                names.append(name)
    arrays = {n: table[n].get(check.tensor) for n in names}
    first = check.comparisons[0]
    head = f"{check.kind} of '{check.tensor}'"
    manual = arrays.get("manual")
    if isinstance(manual, np.ndarray):
        head += f"  {tuple(manual.shape)} {manual.dtype}"
    verdicts = [_verdict(c) for c in check.comparisons]
    lines = ["", f"{head}: {'; '.join(verdicts)}"]
    if check.rules and any(u.source != "catalogue" for u in check.rules):
        lines.append("  from " + "; ".join(rule_use(u) for u in check.rules))
    shown = {n: a for n, a in arrays.items() if a is not None}
    left, right = arrays.get(first.left), arrays.get(first.right)
    diff = None
    if left is not None and right is not None and np.shape(left) == np.shape(right):
        diff = np.asarray(left, np.float64) - np.asarray(right, np.float64)
        shown[f"{first.left} - {first.right}"] = diff
    if not shown:
        return lines
    marks = _marks(check, np.shape(next(iter(shown.values()))))
    size = int(np.size(next(iter(shown.values()))))
    if size <= MAX_SHOWN and len({np.shape(a) for a in shown.values()}) == 1:
        lines += _side_by_side(shown, marks)
    else:
        lines += _worst_rows(shown, diff)
    return lines


def _probe(found: dict[str, Any]) -> list[str]:
    """The arrays of the probe that found the fault: what it fed the node, and both gradients."""
    lines = ["", f"the probe of node '{found['node']}', under {found['under']}:"]
    fed = {k: v for k, v in found.items() if k.startswith("operand ")}
    fed["upstream"] = found["upstream"]
    if len({np.shape(v) for v in fed.values()}) == 1 and np.size(found["upstream"]) <= MAX_SHOWN:
        lines += _side_by_side(fed, {})
    else:
        lines += [f"  {k}: shape {np.shape(v)}" for k, v in fed.items()]
    mine, theirs = found["manual"], found["oracle"]
    grads = {"manual": mine}
    if theirs is not None:
        grads["torch"] = theirs
        if np.shape(mine) == np.shape(theirs):
            grads["manual - torch"] = np.asarray(mine, np.float64) - np.asarray(theirs, np.float64)
    lines.append(f"gradient for '{found['argument']}':")
    if np.size(mine) <= MAX_SHOWN and len({np.shape(v) for v in grads.values()}) == 1:
        lines += _side_by_side(grads, {})
    else:
        lines += _worst_rows(grads, grads.get("manual - torch"))
    return lines


def _verdict(c: Any) -> str:
    pair = f"{c.left} vs {c.right}"
    if c.problem:
        return f"{pair}: {c.problem}"
    if c.skipped:
        return f"{pair}: skipped ({c.skipped})"
    if c.projection:
        numbers = f"{c.left} {c.left_value:.6g}, {c.right} {c.right_value:.6g}"
        return f"{pair} {'agree' if c.ok else 'differ'} along one direction ({numbers})"
    nan = f" ({c.nan_both} NaN on both sides)" if c.nan_both else ""
    nan += f" ({c.unchecked} unchecked)" if c.unchecked else ""
    if c.ok:
        return f"{pair} agree{nan}"
    return (
        f"{pair}: {c.mismatched} of {c.total} differ, worst at {c.worst_index} "
        f"({tolerance_text(c)})"
    )


def _marks(check: TensorCheck, shape: tuple[int, ...]) -> dict[tuple[int, ...], str]:
    """'*' on the worst element of the first failed comparison."""
    for c in check.comparisons:
        if not c.ok and c.worst_index is not None and len(c.worst_index) == len(shape):
            return {tuple(c.worst_index): "*"}
    return {}


def _cells(a: Any, marks: dict[tuple[int, ...], str]) -> list[list[str]]:
    arr = np.asarray(a)
    shape = arr.shape
    rows = 1 if arr.ndim == 0 else int(np.prod(shape[:-1], dtype=np.int64))
    cols = 1 if arr.ndim == 0 else shape[-1]
    flat = arr.reshape(rows, cols) if arr.size else np.zeros((rows, 0))
    out = []
    for r in range(rows):
        row = []
        for c in range(cols):
            index = np.unravel_index(r * cols + c, shape) if arr.ndim else ()
            key = tuple(int(i) for i in index)
            row.append(marks.get(key, " ") + _fmt(flat[r, c]))
        out.append(row)
    return out


def _fmt(x: Any) -> str:
    if isinstance(x, np.bool_ | bool):
        return str(bool(x))
    return f"{float(x):.6g}"


def _side_by_side(arrays: dict[str, Any], marks: dict[tuple[int, ...], str]) -> list[str]:
    blocks = []
    for name, a in arrays.items():
        cells = _cells(a, marks)
        width = max((len(c) for row in cells for c in row), default=1)
        text = ["[" + " ".join(c.rjust(width) for c in row) + " ]" for row in cells]
        blocks.append([name, *text])
    widths = [max(len(line) for line in block) for block in blocks]
    height = max(len(block) for block in blocks)
    lines = []
    for i in range(height):
        parts = [
            (block[i] if i < len(block) else "").ljust(w)
            for block, w in zip(blocks, widths, strict=True)
        ]
        lines.append("  " + "   ".join(parts).rstrip())
    return lines


def _worst_rows(arrays: dict[str, Any], diff: Any) -> list[str]:
    """Large tensors: the elements with the largest difference, one row each."""
    names: Sequence[str] = list(arrays)
    if diff is None:
        return [
            "  (shapes differ: " + ", ".join(f"{n} {np.shape(a)}" for n, a in arrays.items()) + ")"
        ]
    order = np.argsort(-np.nan_to_num(np.abs(diff), nan=np.inf), axis=None)[:WORST_ROWS]
    rows = [["index", *names]]
    for flat in order:
        index = tuple(int(i) for i in np.unravel_index(int(flat), diff.shape))
        rows.append([str(list(index)), *(_fmt(np.asarray(arrays[n])[index]) for n in names)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"  {diff.size} elements; the {len(order)} largest differences:"]
    lines += ["  " + "   ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines
