"""The command line of ``gradcase``: its verbs, options and help (`runner.cli` runs them)."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_REPORT = "reports/report.json"


PATHS_HELP = "case files or folders (default: cases/); folders are searched for *.yaml, *.yml"

_Verbs = argparse._SubParsersAction  # the type `add_subparsers` returns


def parser() -> argparse.ArgumentParser:
    """The parser of ``gradcase``: its global options, then one sub-parser per verb, in the
    order ``--help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="gradcase",
        description="Check backward (VJP) rules against torch autograd, case by case.",
        epilog="Exit status: 0 all passed, 1 a case failed, 2 an invalid case or a usage error.",
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show program's version number and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_verb(sub)
    _show_verb(sub)
    _validate_verb(sub)
    _list_verb(sub)
    _ops_verb(sub)
    _new_verb(sub)
    _golden_verb(sub)
    _schema_verb(sub)
    _mutate_verb(sub)
    return parser


def _run_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase run``: the cases to run, the report files, and how to run them."""
    run = sub.add_parser("run", help="run cases and write a report")
    run.add_argument("paths", nargs="*", metavar="PATH", help=PATHS_HELP)
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
    _execution_options(run)
    _rules_option(run)
    _oracle_option(run)
    _report_options(run)


def _execution_options(run: argparse.ArgumentParser) -> None:
    """Where and how ``gradcase run`` runs its cases: workers, shard, device and limits."""
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
    run.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"stop a case that runs longer and report it as an error (default "
        f"{DEFAULT_TIMEOUT:g}; 0: no limit)",
    )
    run.add_argument(
        "--max-memory",
        type=_memory,
        default=DEFAULT_MAX_MEMORY,
        metavar="BYTES",
        help="refuse (as an error) a case whose estimated peak memory is over BYTES, e.g. 4G, "
        "512M (default 4G; 0: no limit)",
    )


def _show_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase show CASE``: one case, every checked tensor side by side."""
    show = sub.add_parser(
        "show",
        help="run one case and show every checked tensor from each source side by side",
    )
    show.add_argument("case", metavar="CASE", help="a case name, or a case file")
    show.add_argument("paths", nargs="*", metavar="PATH", help=PATHS_HELP)
    _rules_option(show)
    _oracle_option(show)


def _validate_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase validate``: check case files without running them."""
    validate = sub.add_parser("validate", help="check case files without running them")
    validate.add_argument("paths", nargs="*", metavar="PATH", help=PATHS_HELP)
    _rules_option(validate)


def _list_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase list``: the cases found, one per line."""
    listing = sub.add_parser(
        "list", help="list the cases found: name, tags, ops and file:line, one case per line"
    )
    listing.add_argument("paths", nargs="*", metavar="PATH", help=PATHS_HELP)
    _select_options(listing)
    _rules_option(listing)


def _ops_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase ops [PATTERN]``: the op catalogue, or the ops a name or pattern finds."""
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


def _new_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase new NAME``: write a case skeleton."""
    new = sub.add_parser("new", help="write a commented case skeleton to start from")
    new.add_argument(
        "name", metavar="NAME", help="the case name (family/name: cases/family/name.yaml) or a path"
    )


def _golden_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase golden PATH...``: write agreed values into each case's expect."""
    golden = sub.add_parser(
        "golden",
        help="write the computed values and gradients into each case's expect, where manual "
        "and torch agree",
        epilog="Exit status: 0 written, 1 manual and torch disagree (nothing written to that "
        "file), 2 an invalid case or a usage error.",
    )
    golden.add_argument("paths", nargs="+", metavar="PATH", help="case files or folders")
    _rules_option(golden)


def _schema_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase schema``: the JSON Schema of a case file or of the report."""
    schema = sub.add_parser("schema", help="print the JSON Schema of a case file")
    schema.add_argument(
        "--report", action="store_true", help="of the JSON report instead (gradcase run --report)"
    )


def _mutate_verb(sub: _Verbs[argparse.ArgumentParser]) -> None:
    """``gradcase mutate``: run mutants of each op's rule and print the score."""
    mutate = sub.add_parser(
        "mutate",
        help="would the cases catch a wrong rule? run mutants of each op's rule, print the score",
        epilog="Exit status: 0 every non-equivalent mutant was killed, 1 one survived or "
        "nothing was mutated (every case skipped, or no mutant applied), 2 an invalid case or a "
        "usage error (no cases found, a selection that matches none).",
    )
    mutate.add_argument("paths", nargs="*", metavar="PATH", help=PATHS_HELP)
    _select_options(mutate)
    mutate.add_argument(
        "-v", "--verbose", action="store_true", help="also list killed and equivalent mutants"
    )
    mutate.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    _rules_option(mutate)


SHOW_HELP = (
    "after each case, show every checked tensor from each source side by side, with the "
    "difference and the worst element marked"
)


class _Version(argparse.Action):
    """``--version``, read from the installed package's metadata only when asked: importing
    importlib.metadata costs 15 to 25 ms, a third of ``--help``'s start-up (issue 11)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"{parser.prog} {_version()}")  # stdout, as argparse's own version action
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradcase")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_MEMORY = 4 * 2**30


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _memory(text: str) -> int:
    if text.strip() == "0":
        return 0
    from runner.memory import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an amount of memory such as 4G or 512M, got {text!r}"
        ) from None


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
        "after each case's own rules, before the catalogue; its OPS are ops cases may call); "
        "replaces [tool.gradcase] rules of pyproject.toml",
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


def _oracle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--oracle",
        action="append",
        choices=("torch", "numeric"),
        help="an oracle to compare with (repeatable; default: torch) in the cases that do not "
        "name their own `oracles`; numeric is central differences in float64",
    )
