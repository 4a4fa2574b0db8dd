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
from typing import Any

from runner.diagnostics import did_you_mean
from runner.loader import UsageError, load
from runner.rules import RuleSet
from runner.rules.modules import RulesError, find_config, module_ops
from runner.rules.modules import load as load_modules

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
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
    run.add_argument("-v", "--verbose", action="store_true", help=SHOW_HELP)
    _report_options(run)
    _rules_option(run)
    _oracle_option(run)

    show = sub.add_parser(
        "show",
        help="run one case and show every checked tensor from each source side by side",
    )
    show.add_argument("case", metavar="CASE", help="a case name, or a case file")
    show.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    _rules_option(show)
    _oracle_option(show)

    validate = sub.add_parser("validate", help="check case files without running them")
    validate.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    _rules_option(validate)

    listing = sub.add_parser("list", help="list the cases found, one name per line")
    listing.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    _rules_option(listing)

    ops = sub.add_parser("ops", help="print the op catalogue, one op per line")
    ops.add_argument("--markdown", action="store_true", help="as docs/ops.md (generated)")

    schema = sub.add_parser("schema", help="print the JSON Schema of a case file")
    schema.add_argument(
        "--report", action="store_true", help="of the JSON report instead (gradcase run --report)"
    )

    mutate = sub.add_parser(
        "mutate",
        help="would the cases catch a wrong rule? run mutants of each op's rule, print the score",
        epilog="Exit status: 0 every non-equivalent mutant was killed, 1 one survived, 2 an "
        "invalid case or a usage error.",
    )
    mutate.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    mutate.add_argument(
        "-k", dest="select", metavar="TEXT", help="only cases whose name contains TEXT"
    )
    mutate.add_argument(
        "-v", "--verbose", action="store_true", help="also list killed and equivalent mutants"
    )
    mutate.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    _rules_option(mutate)
    return parser


SHOW_HELP = (
    "after each case, show every checked tensor from each source side by side, with the "
    "difference and the worst element marked"
)


def _report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write a Markdown summary (appended to $GITHUB_STEP_SUMMARY when set)",
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        help="also write one self-contained HTML page: filter, side-by-side tensors, heatmaps",
    )


def _rules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        action="append",
        metavar="PATH.py|MODULE",
        help="a module whose RULES dict holds your backward rules (repeatable; asked in order, "
        "after each case's own rules, before the catalogue; its OPS are ops cases may call); "
        "replaces [tool.gradcase] rules of pyproject.toml",
    )


def _oracle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--oracle",
        action="append",
        choices=("torch", "numeric"),
        help="an oracle to compare with (repeatable; default: torch) in the cases that do not "
        "name their own `oracles`; numeric is central differences in float64",
    )


def _oracles(names: Sequence[str] | None) -> Any:
    from runner.oracles import TORCH, oracle_named

    return [oracle_named(n) for n in dict.fromkeys(names)] if names else [TORCH]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from runner.formats.writer import Reports

            reports = Reports(args.junit, args.markdown, args.html)
            return _run(
                args.paths,
                Path(args.report),
                args.select,
                args.rules,
                args.verbose,
                args.oracle,
                reports,
            )
        if args.command == "show":
            return _show(args.case, args.paths, args.rules, args.oracle)
        if args.command == "mutate":
            return _mutate(args.paths, args.select, args.rules, args.verbose, args.json)
        if args.command in ("validate", "list"):
            return _validate(args.paths, args.rules, listing=args.command == "list")
        if args.command == "ops":
            from runner.catalogue import lines, markdown

            print(markdown() if args.markdown else "\n".join(lines()))
            return EXIT_OK
        if args.command == "schema":
            from schemas.case import Case
            from schemas.report import Report

            model = Report if args.report else Case
            print(json.dumps(model.model_json_schema(), indent=2))
            return EXIT_OK
    except (UsageError, RulesError) as exc:
        print(f"gradcase: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("gradcase: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    raise AssertionError(args.command)


def _validate(paths: Sequence[str], rules: Sequence[str] | None, *, listing: bool) -> int:
    # The RULES modules in force define the ops of their OPS, which cases may call.
    loaded = load(paths, module_ops(_rule_sets(rules)))
    for case in loaded.cases:
        print(case.name if listing else f"ok {case.name}  ({case.file}:{case.line})")
    for problem in sorted(loaded.problems, key=lambda p: p.where):
        print(problem, file=sys.stderr if listing else sys.stdout)
    if not listing:
        files = len({p.where.file for p in loaded.problems})
        print(f"{len(loaded.cases)} valid, {files} invalid files")
    return EXIT_INVALID if loaded.problems else EXIT_OK


def _rule_sets(specs: Sequence[str] | None) -> list[RuleSet]:
    """``--rules`` as given, else ``[tool.gradcase] rules`` of the nearest pyproject.toml."""
    if specs:
        return load_modules(specs, Path.cwd())
    config = find_config(Path.cwd())
    if config is None:
        return []
    return load_modules(*config)


def _run(
    paths: Sequence[str],
    report_path: Path,
    select: str | None,
    rules: Sequence[str] | None,
    verbose: bool,
    oracles: Sequence[str] | None = None,
    reports: Any = None,
) -> int:
    from runner.api import run
    from runner.report import case_line, count_line, details, write_json
    from runner.show import render

    if report_path.is_dir():
        raise UsageError(f"--report {report_path} is a folder; give a file path")
    rule_sets = _rule_sets(rules)
    loaded = load(paths, module_ops(rule_sets))
    if rule_sets:
        print("rules: " + ", ".join(r.source for r in rule_sets), flush=True)

    def on_result(result: Any, sources: Any) -> None:
        print(case_line(result), flush=True)
        if reports is not None:
            reports.add(result, sources)
        if verbose:
            print("\n".join([*render(result, sources), ""]), flush=True)

    report = run(
        loaded,
        rule_sets,
        select=None if select is None else (lambda name: select in name),
        on_result=on_result,
        oracles=_oracles(oracles),
    )
    try:
        write_json(report, report_path)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {report_path}: {exc.strerror}") from None
    extra = reports.write(report) if reports is not None else []
    # The count line stays the last line.
    print(
        "\n".join([*details(report), *extra, f"report: {report_path}", count_line(report.summary)])
    )
    if loaded.problems:
        return EXIT_INVALID
    return EXIT_OK if report.passed else EXIT_FAILED


def _show(
    name: str, paths: Sequence[str], rules: Sequence[str] | None, oracles: Sequence[str] | None
) -> int:
    from runner.execute import run_case
    from runner.show import render

    rule_sets = _rule_sets(rules)
    as_file = Path(name)
    if not paths and as_file.suffix in (".yaml", ".yml"):
        if not as_file.is_file():
            raise UsageError(f"no such case file: {name}")
        loaded = load([name], module_ops(rule_sets))
        chosen = loaded.cases
    else:
        loaded = load(paths, module_ops(rule_sets))
        chosen = [c for c in loaded.cases if c.name == name]
        if not chosen:
            for problem in loaded.problems:
                print(problem, file=sys.stderr)
            names = [c.name for c in loaded.cases]
            raise UsageError(f"no case named '{name}'{did_you_mean(name, names)}")
    for problem in loaded.problems:
        print(problem)
    worst = EXIT_OK
    for case in chosen:
        result, sources = run_case(case, rule_sets, _oracles(oracles))
        print("\n".join(render(result, sources)))
        if result.status in ("failed", "error", "xpassed"):
            worst = EXIT_FAILED
    return EXIT_INVALID if loaded.problems else worst


def _mutate(
    paths: Sequence[str],
    select: str | None,
    rules: Sequence[str] | None,
    verbose: bool,
    json_path: str | None,
) -> int:
    from runner.mutate import mutate, score_lines, write_json

    rule_sets = _rule_sets(rules)
    loaded = load(paths)
    for problem in loaded.problems:
        print(problem)
    cases = [c for c in loaded.cases if select is None or select in c.name]
    report = mutate(cases, rule_sets)
    if json_path is not None:
        try:
            write_json(report, Path(json_path))
        except OSError as exc:
            raise UsageError(f"cannot write {json_path}: {exc.strerror}") from None
    print("\n".join(score_lines(report, verbose=verbose)))
    if loaded.problems:
        return EXIT_INVALID
    return EXIT_FAILED if report.survivors else EXIT_OK
