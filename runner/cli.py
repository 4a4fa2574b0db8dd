"""``gradcase``: run, validate, list cases; print the op catalogue; print the case schema.

torch is imported only by ``run`` (through `runner.execute`), so ``--help``, ``validate``,
``list``, ``ops`` and ``schema`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from runner.loader import UsageError, load

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
DEFAULT_REPORT = "reports/report.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcase",
        description="Check backward (VJP) rules against torch autograd, case by case.",
        epilog="Exit status: 0 all passed, 1 a case failed, 2 an invalid case or a usage error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    paths_help = "case files or folders (default: cases/); folders are searched for *.yaml, *.yml"

    run = sub.add_parser("run", help="run cases and write a report")
    run.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    run.add_argument(
        "--report",
        default=DEFAULT_REPORT,
        metavar="FILE",
        help=f"JSON report path (default: {DEFAULT_REPORT})",
    )
    run.add_argument(
        "-k", dest="select", metavar="TEXT", help="only cases whose name contains TEXT"
    )

    validate = sub.add_parser("validate", help="check case files without running them")
    validate.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)

    listing = sub.add_parser("list", help="list the cases found, one name per line")
    listing.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)

    ops = sub.add_parser("ops", help="print the op catalogue, one op per line")
    ops.add_argument("--markdown", action="store_true", help="as docs/ops.md (generated)")

    sub.add_parser("schema", help="print the JSON Schema of a case file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.paths, Path(args.report), args.select)
        if args.command in ("validate", "list"):
            return _validate(args.paths, listing=args.command == "list")
        if args.command == "ops":
            from runner.catalogue import lines, markdown

            print(markdown() if args.markdown else "\n".join(lines()))
            return EXIT_OK
        if args.command == "schema":
            from schemas.case import Case

            print(json.dumps(Case.model_json_schema(), indent=2))
            return EXIT_OK
    except UsageError as exc:
        print(f"gradcase: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        return EXIT_OK
    raise AssertionError(args.command)


def _validate(paths: Sequence[str], *, listing: bool) -> int:
    loaded = load(paths)
    for case in loaded.cases:
        print(case.name if listing else f"ok {case.name}  ({case.file}:{case.line})")
    for problem in sorted(loaded.problems, key=lambda p: p.where):
        print(problem, file=sys.stderr if listing else sys.stdout)
    if not listing:
        files = len({p.where.file for p in loaded.problems})
        print(f"{len(loaded.cases)} valid, {files} invalid files")
    return EXIT_INVALID if loaded.problems else EXIT_OK


def _run(paths: Sequence[str], report_path: Path, select: str | None) -> int:
    from runner.execute import execute
    from runner.report import build, case_line, count_line, details, write_json

    if report_path.is_dir():
        raise UsageError(f"--report {report_path} is a folder; give a file path")
    loaded = load(paths)
    cases = [c for c in loaded.cases if select is None or select in c.name]
    results = []
    for case in cases:
        result = execute(case)
        results.append(result)
        print(case_line(result), flush=True)
    report = build(results, loaded.problems)
    try:
        write_json(report, report_path)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {report_path}: {exc.strerror}") from None
    # The count line stays the last line.
    print("\n".join([*details(report), f"report: {report_path}", count_line(report.summary)]))
    if loaded.problems:
        return EXIT_INVALID
    return EXIT_FAILED if report.summary.failed or report.summary.errors else EXIT_OK
