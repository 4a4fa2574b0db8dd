"""The reports `gradcase run` writes beside the JSON one, as its options ask: ``--junit``,
``--markdown`` (also appended to ``$GITHUB_STEP_SUMMARY`` when set), ``--html``, and the GitHub
annotations printed when ``GITHUB_ACTIONS=true``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.diagnostics import UsageError
from runner.formats import github
from schemas.report import CaseResult, Report


class Reports:
    """Collects what the HTML page needs as cases finish (`add`), then writes every report
    asked for (`write`). ``environ``: the process environment (a test passes its own)."""

    def __init__(
        self,
        junit: str | None = None,
        markdown: str | None = None,
        html: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.junit = None if junit is None else Path(junit)
        self.markdown = None if markdown is None else Path(markdown)
        self.html = None if html is None else Path(html)
        self.environ = os.environ if environ is None else environ
        self.views: dict[str, Any] = {}
        for option, path in (("--junit", junit), ("--markdown", markdown), ("--html", html)):
            if path is not None and Path(path).is_dir():
                raise UsageError(f"{option} {path} is a folder; give a file path")

    def add(self, result: CaseResult, sources: Any, view: Any = None) -> None:
        """Keep what the page shows of one finished case (nothing without ``--html``): ``view``
        when a worker process built it (`runner.parallel`), else built from ``sources``."""
        if self.html is not None:
            from runner.formats.html import case_view

            self.views[result.name] = view if view is not None else case_view(result, sources)

    def write(self, report: Report) -> list[str]:
        """Write the reports; return the lines to print: the annotations, then where each
        report went. Raises `UsageError` when a file cannot be written."""
        lines = github.error_lines(report) if github.enabled(self.environ) else []
        written: list[tuple[str, Path, str]] = []
        if self.junit is not None:
            from runner.formats.junit import junit_xml

            written.append(("junit", self.junit, junit_xml(report)))
        if self.markdown is not None:
            from runner.formats.markdown import markdown_summary

            written.append(("markdown", self.markdown, markdown_summary(report)))
        if self.html is not None:
            from runner.formats.html import html_page

            written.append(("html", self.html, html_page(report, self.views)))
        from runner.formats import write_text

        for kind, path, text in written:
            try:
                write_text(path, text)
            except OSError as exc:
                raise UsageError(
                    f"cannot write the {kind} report to {path}: {exc.strerror}"
                ) from None
            lines.append(f"{kind}: {path}")
            summary = self.environ.get("GITHUB_STEP_SUMMARY")
            if kind == "markdown" and summary:
                try:
                    with open(summary, "a", encoding="utf-8") as f:
                        f.write(text)
                except OSError as exc:
                    raise UsageError(
                        f"cannot append to $GITHUB_STEP_SUMMARY ({summary}): {exc.strerror}"
                    ) from None
        return lines
