"""The report as JUnit XML (`gradcase run --junit FILE`), the format CI systems read: one
``<testsuite name="gradcase">``, one ``<testcase>`` per case (``classname`` its file, ``name`` the
case's name, ``file`` and ``line`` its YAML, ``time`` in seconds) holding ``<failure>`` (failed,
and xpassed: strict), ``<error>`` (a case that could not run) or ``<skipped>`` (xfailed, with the
reason), and one ``<testcase>`` with an ``<error>`` per invalid file. A failure's text is each
mismatch as the CLI prints it, preceded by the YAML file:line:col it points at."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from runner.formats import write_text, xml_text
from runner.formats.failures import located_failures
from runner.report import count_line
from schemas.report import CaseResult, Report


def junit_xml(report: Report) -> str:
    """The XML text: ``tests`` = cases + invalid files, ``failures`` = failed + xpassed,
    ``errors`` = cases in error + invalid files, ``skipped`` = xfailed."""
    s = report.summary
    invalid = sorted({d.file for d in report.diagnostics})
    suite = ET.Element(
        "testsuite",
        name="gradcase",
        tests=str(len(report.cases) + len(invalid)),
        failures=str(s.failed + s.xpassed),
        errors=str(sum(c.status == "error" for c in report.cases) + len(invalid)),
        skipped=str(s.xfailed),
        time=f"{sum(c.duration for c in report.cases):.3f}",
    )
    env = report.environment
    if env is not None:
        suite.set("timestamp", env.timestamp)
        props = ET.SubElement(suite, "properties")
        for key, value in env.model_dump().items():
            if value is not None and key != "timestamp":
                ET.SubElement(props, "property", name=key, value=str(value))
    for case in report.cases:
        suite.append(_testcase(case))
    for file in invalid:
        problems = [d for d in report.diagnostics if d.file == file]
        first = problems[0]
        element = ET.SubElement(
            suite, "testcase", classname=file, name=file, file=file, line=str(first.line), time="0"
        )
        error = ET.SubElement(
            element,
            "error",
            type="invalid",
            message=f"invalid case file: {len(problems)} problem(s)",
        )
        error.text = "\n".join(f"{d.file}:{d.line}:{d.col}: {d.message}" for d in problems)
    for element in suite.iter():
        element.text = None if element.text is None else xml_text(element.text)
        for key, value in element.attrib.items():
            element.set(key, xml_text(value))
    ET.indent(suite)
    comment = f"<!-- {count_line(s).replace('--', '- -')} -->\n"
    return '<?xml version="1.0" encoding="utf-8"?>\n' + comment + ET.tostring(suite, "unicode")


def _testcase(case: CaseResult) -> ET.Element:
    element = ET.Element(
        "testcase",
        classname=case.file,
        name=case.name,
        file=case.file,
        line=str(case.line),
        time=f"{case.duration:.3f}",
    )
    if case.status == "passed":
        return element
    located = located_failures(case)
    text = "\n".join(f"{f.where}: {f.message}" for f in located)
    first = located[0].message if located else case.status
    if case.status == "xfailed":
        ET.SubElement(element, "skipped", type="xfail", message=f"xfail: {case.xfail}").text = text
    elif case.status == "error":
        ET.SubElement(element, "error", type="error", message=first).text = text
    else:
        kind = "xpass" if case.status == "xpassed" else "mismatch"
        ET.SubElement(element, "failure", type=kind, message=first).text = text
    return element


def write_junit(report: Report, path: Path) -> None:
    write_text(path, junit_xml(report))
