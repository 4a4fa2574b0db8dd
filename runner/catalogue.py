"""The op catalogue as text: `gradcase ops` (one line per op) and docs/ops.md (generated; a test
fails when the committed file is out of date)."""

from __future__ import annotations

from runner.ops import FAMILIES, REGISTRY, public_ops
from runner.ops.spec import Op


def differentiable(op: Op) -> str:
    grads = op.differentiable()
    others = [p.name for p in op.tensor_params if not p.grad]
    text = "grad: " + (", ".join(grads) if grads else "none")
    return text + (f"; no grad: {', '.join(others)}" if others else "")


def lines() -> list[str]:
    ops = public_ops()
    width = max(len(op.name) for op in ops)
    return [
        f"{op.name:<{width}}  {op.signature()}  [{differentiable(op)}]"
        + (f"  {op.note}" if op.note else "")
        for op in ops
    ]


def markdown() -> str:
    ops = public_ops()
    out = [
        "# Op catalogue",
        "",
        "Generated from the registry by `gradcase ops --markdown` (`make docs`); "
        "`tests/test_catalogue.py` fails when this file is out of date.",
        "",
        f"{len(ops)} ops. Names and parameters are torch's; every op's manual rule is swept "
        "against torch autograd in float32 and float64, and in float16 and bfloat16 where "
        "torch's CPU has a kernel (`tests/test_sweep.py`; half precision computes each node in "
        "float32 and rounds what it stores, as torch's CPU kernels do). The convention "
        "column states torch's choice at points where the derivative is not defined (ties, "
        "kinks, zeros).",
        "",
    ]
    for name, _ in FAMILIES:
        members = [op for op in ops if op.family == name]
        if not members:
            continue
        out += [f"## {name}", "", "| op | signature | gradient | convention |", "|---|---|---|---|"]
        for op in members:
            note = op.note.replace("|", "\\|") or "-"
            sig = op.signature().replace("|", "\\|")
            out.append(f"| `{op.name}` | `{sig}` | {differentiable(op)} | {note} |")
        out.append("")
    return "\n".join(out)


def lookup(pattern: str | None) -> list[str]:
    """The catalogue lines of the ops ``pattern`` names: an op's exact name, a glob pattern
    (``*pool*``, ``log_?oftmax``) or a part of a name, ignoring case; [] for no pattern.
    Raises `runner.loader.UsageError` when nothing matches, with the close names."""
    if pattern is None:
        return []
    from fnmatch import fnmatchcase

    from runner.diagnostics import did_you_mean
    from runner.loader import UsageError

    ops = public_ops()
    key = pattern.lower()
    hidden = REGISTRY.get(key)
    if hidden is not None and hidden.hidden:
        # An op only an expression makes (getitem, index_tensor, clone): found by its exact
        # name, so a user writing a rule for x[idx] can read its signature.
        return [
            f"{hidden.name}  {hidden.signature()}  [{differentiable(hidden)}]  (made by the "
            f"graph's expressions, not called by name){'  ' + hidden.note if hidden.note else ''}"
        ]
    found = (
        [op for op in ops if op.name == key]
        or [op for op in ops if fnmatchcase(op.name, key)]
        or [op for op in ops if key in op.name]
    )
    if not found:
        names = [op.name for op in ops]
        raise UsageError(f"no op matches '{pattern}'{did_you_mean(pattern, names)}")
    chosen = {op.name for op in found}
    return [line for op, line in zip(ops, lines(), strict=True) if op.name in chosen]
