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
from runner.rules.modules import RulesError, find_config
from runner.rules.modules import load as load_modules

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_REPORT = "reports/report.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcase",
        description="Check backward (VJP) rules against torch autograd, case by case.",
        epilog="Exit status: 0 all passed, 1 a case failed, 2 an invalid case or a usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    _select_options(run)
    loud = run.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help=SHOW_HELP)
    loud.add_argument(
        "-q", "--quiet", action="store_true", help="print only failures and the count line"
    )
    run.add_argument(
        "-x", "--exitfirst", action="store_true", help="stop after the first case that fails"
    )
    run.add_argument(
        "-j",
        "--jobs",
        type=_positive,
        default=1,
        metavar="N",
        help="run cases in N worker processes (the report is a serial run's, in its order)",
    )
    run.add_argument(
        "--shard",
        metavar="I/N",
        help="run only shard I of N (1-based; a stable slice of the selected cases, for CI "
        "matrices)",
    )
    run.add_argument(
        "--device",
        default="cpu",
        metavar="DEVICE",
        help="where the torch side runs: cpu (default), cuda, cuda:1 (TF32 off for matmul and "
        "cuDNN)",
    )
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

    listing = sub.add_parser(
        "list", help="list the cases found: name, tags, ops and file:line, one case per line"
    )
    listing.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    _select_options(listing)

    ops = sub.add_parser(
        "ops", help="print the op catalogue, one op per line, or look ops up by name or pattern"
    )
    ops.add_argument(
        "pattern",
        nargs="?",
        metavar="NAME|PATTERN",
        help="an op name, a glob pattern (*pool*) or a part of a name",
    )
    ops.add_argument("--markdown", action="store_true", help="as docs/ops.md (generated)")

    new = sub.add_parser("new", help="write a commented case skeleton to start from")
    new.add_argument(
        "name", metavar="NAME", help="the case name (family/name: cases/family/name.yaml) or a path"
    )

    golden = sub.add_parser(
        "golden",
        help="write the computed values and gradients into each case's expect, where manual "
        "and torch agree",
        epilog="Exit status: 0 written, 1 manual and torch disagree (nothing written to that "
        "file), 2 an invalid case or a usage error.",
    )
    golden.add_argument("paths", nargs="+", metavar="PATH", help="case files or folders")
    _rules_option(golden)

    sub.add_parser("schema", help="print the JSON Schema of a case file")

    mutate = sub.add_parser(
        "mutate",
        help="would the cases catch a wrong rule? run mutants of each op's rule, print the score",
        epilog="Exit status: 0 every non-equivalent mutant was killed, 1 one survived, 2 an "
        "invalid case or a usage error.",
    )
    mutate.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    _select_options(mutate)
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradcase")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _select_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-k",
        dest="select",
        metavar="EXPR",
        help="only cases whose name or tags match EXPR: words (substrings, any case) with and, "
        "or, not and parentheses, e.g. -k 'matmul and not float32'",
    )
    parser.add_argument(
        "--tag",
        dest="tags",
        action="append",
        metavar="T",
        help="only cases tagged T (repeatable: any of them)",
    )


def _rules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        action="append",
        metavar="PATH.py|MODULE",
        help="a module whose RULES dict holds your backward rules (repeatable; asked in order, "
        "after each case's own rules, before the catalogue); replaces [tool.gradcase] rules "
        "of pyproject.toml",
    )


def _oracle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--oracle",
        action="append",
        choices=("torch", "numeric"),
        help="an oracle to compare with (repeatable; default: torch) in the cases that do not "
        "name their own `oracles`; numeric is central differences in float64",
    )


def oracles_for(names: Sequence[str] | None, device: str = "cpu") -> Any:
    """The oracles ``--oracle`` names (default torch), torch on ``device``."""
    from runner.oracles import oracle_named, torch_oracle

    torch = torch_oracle(device)
    chosen = list(dict.fromkeys(names or ["torch"]))
    return [torch if n == "torch" else oracle_named(n) for n in chosen]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "show":
            return _show(args.case, args.paths, args.rules, args.oracle)
        if args.command == "mutate":
            return _mutate(args.paths, args.select, args.tags, args.rules, args.verbose, args.json)
        if args.command == "validate":
            return _validate(args.paths)
        if args.command == "list":
            from runner.listing import list_cases

            return list_cases(load(args.paths), args.select, args.tags)
        if args.command == "ops":
            from runner.catalogue import lines, lookup, markdown

            text = markdown() if args.markdown else "\n".join(lookup(args.pattern) or lines())
            print(text)
            return EXIT_OK
        if args.command == "new":
            from runner.skeleton import write_skeleton

            print(f"wrote {write_skeleton(args.name)}")
            return EXIT_OK
        if args.command == "golden":
            from runner.golden import golden

            return golden(args.paths, rule_sets_for(args.rules))
        if args.command == "schema":
            from schemas.case import Case

            print(json.dumps(Case.model_json_schema(), indent=2))
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


def _validate(paths: Sequence[str]) -> int:
    from runner.report import plural

    loaded = load(paths)
    for case in loaded.cases:
        print(f"ok {case.name}  ({case.file}:{case.line})")
    for problem in sorted(loaded.problems, key=lambda p: p.where):
        print(problem)
    files = len({p.where.file for p in loaded.problems})
    print(f"{plural(len(loaded.cases), 'valid case')}; {plural(files, 'invalid file')}")
    return EXIT_INVALID if loaded.problems else EXIT_OK


def rule_sets_for(specs: Sequence[str] | None) -> list[RuleSet]:
    """``--rules`` as given, else ``[tool.gradcase] rules`` of the nearest pyproject.toml."""
    if specs:
        return load_modules(specs, Path.cwd())
    config = find_config(Path.cwd())
    if config is None:
        return []
    return load_modules(*config)


def _run(args: argparse.Namespace) -> int:
    from runner.api import run
    from runner.progress import Output
    from runner.report import build, details, write_json
    from runner.select import choose

    report_path = Path(args.report)
    if report_path.is_dir():
        raise UsageError(f"--report {report_path} is a folder; give a file path")
    device = _device(args.device)
    rule_sets = rule_sets_for(args.rules)
    loaded = load(args.paths)
    # An empty selection is a usage error, raised before the report is touched.
    cases = choose(loaded.cases, args.select, args.tags, args.shard)
    out = Output(len(cases), quiet=args.quiet)
    if rule_sets and not args.quiet:
        out.line("rules: " + ", ".join(r.source for r in rule_sets))
    if device != "cpu" and not args.quiet:
        out.line(f"device: {device}")

    def on_lines(result: Any, shown: list[str] | None) -> None:
        out.case(result, shown)

    try:
        if args.jobs > 1 and len(cases) > 1:
            from runner.parallel import Setup, run_parallel

            setup = Setup(
                tuple(args.paths),
                None if args.rules is None else tuple(args.rules),
                None if args.oracle is None else tuple(args.oracle),
                args.device,
                args.verbose,
            )
            metas = [(c.name, c.file, c.line) for c in cases]
            results = run_parallel(metas, setup, args.jobs, on_lines, args.exitfirst)
            report = build(results, loaded.problems, [r.source for r in rule_sets])
        else:
            from runner.loader import Loaded
            from runner.show import render

            report = run(
                Loaded(cases, loaded.problems),
                rule_sets,
                on_result=lambda r, s: on_lines(r, render(r, s) if args.verbose else None),
                oracles=oracles_for(args.oracle, args.device),
                exitfirst=args.exitfirst,
            )
    finally:
        out.close()
    report = report.model_copy(update={"device": device})
    try:
        write_json(report, report_path)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {report_path}: {exc.strerror}") from None
    # The count line stays the last line.
    shown = report
    if args.quiet:
        failing = [r for r in report.cases if r.status in ("failed", "error", "xpassed")]
        shown = report.model_copy(update={"cases": failing})
    ending = [] if args.quiet else [f"report: {report_path}"]
    out.line("\n".join([*details(shown), *ending, out.count_line(report.summary)]))
    if loaded.problems:
        return EXIT_INVALID
    return EXIT_OK if report.passed else EXIT_FAILED


def _device(device: str) -> str:
    """``--device`` checked (torch is imported only for a device other than the CPU) and named
    as the report names it."""
    if device == "cpu":
        return device
    from runner.torch_side import DeviceError, check_device

    try:
        return check_device(device)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None


def _show(
    name: str, paths: Sequence[str], rules: Sequence[str] | None, oracles: Sequence[str] | None
) -> int:
    from runner.execute import run_case
    from runner.show import render

    rule_sets = rule_sets_for(rules)
    as_file = Path(name)
    if not paths and as_file.suffix in (".yaml", ".yml"):
        if not as_file.is_file():
            raise UsageError(f"no such case file: {name}")
        loaded = load([name])
        chosen = loaded.cases
    else:
        loaded = load(paths)
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
        result, sources = run_case(case, rule_sets, oracles_for(oracles))
        print("\n".join(render(result, sources)))
        if result.status in ("failed", "error", "xpassed"):
            worst = EXIT_FAILED
    return EXIT_INVALID if loaded.problems else worst


def _mutate(
    paths: Sequence[str],
    select: str | None,
    tags: Sequence[str] | None,
    rules: Sequence[str] | None,
    verbose: bool,
    json_path: str | None,
) -> int:
    from runner.mutate import mutate, score_lines, write_json

    rule_sets = rule_sets_for(rules)
    loaded = load(paths)
    for problem in loaded.problems:
        print(problem)
    from runner.select import choose

    cases = choose(loaded.cases, select, tags)
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
