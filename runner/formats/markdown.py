"""The report as a Markdown summary (`gradcase run --markdown FILE`; appended to the file
``$GITHUB_STEP_SUMMARY`` names, when set, so a GitHub Actions job shows it on its page): the
counts in one table, then one row per case that did not pass with its YAML location and its
first message."""

from __future__ import annotations

from runner.formats.failures import located_failures
from runner.report import count_line
from schemas.report import Report

# Rows of the case table; the rest are counted.
MAX_ROWS = 200
_ORDER = {"failed": 0, "error": 1, "xpassed": 2, "xfailed": 3}


def _cell(text: str, limit: int = 300) -> str:
    """One table cell: pipes escaped, on one line, at most ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def markdown_summary(report: Report) -> str:
    s = report.summary
    lines = [
        "## gradcase",
        "",
        "| cases | passed | failed | errors | xfailed | xpassed | invalid files |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s.cases} | {s.passed} | {s.failed} | {s.errors} | {s.xfailed} | {s.xpassed} "
        f"| {s.invalid_files} |",
        "",
        f"**{_cell(count_line(s))}**",
    ]
    env = report.environment
    if env is not None:
        torch = f", torch {env.torch}" if env.torch else ""
        lines += [
            "",
            f"numpy {env.numpy}{torch}, device {env.device}, python {env.python}, {env.timestamp}",
        ]
    bad = sorted((c for c in report.cases if c.status != "passed"), key=lambda c: _ORDER[c.status])
    if bad or report.diagnostics:
        lines += ["", "| status | case | where | what |", "|---|---|---|---|"]
    for d in report.diagnostics[:MAX_ROWS]:
        where = f"{d.file}:{d.line}:{d.col}"
        lines.append(f"| INVALID | `{_cell(d.file)}` | `{_cell(where)}` | {_cell(d.message)} |")
    for case in bad[:MAX_ROWS]:
        found = located_failures(case)
        where = found[0].where if found else f"{case.file}:{case.line}"
        what = found[0].message if found else ""
        lines.append(
            f"| {case.status.upper()} | `{_cell(case.name)}` | `{_cell(where)}` | {_cell(what)} |"
        )
    hidden = max(0, len(bad) - MAX_ROWS) + max(0, len(report.diagnostics) - MAX_ROWS)
    if hidden:
        lines += ["", f"... and {hidden} more (see the JSON report)"]
    return "\n".join(lines) + "\n"
