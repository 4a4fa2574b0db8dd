"""``gradcase``: runs the verbs `runner.cli_args` parses (run, show, validate, list, ops, new,
golden, schema, mutate); each verb's work lives in its own module.

torch is imported only by the verbs that compute gradients (run, show, golden, mutate), so
``--help``, ``validate``, ``list``, ``ops``, ``new`` and ``schema`` stay fast.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import collector
from runner.cli_args import parser
from runner.diagnostics import RulesError, UsageError, did_you_mean, printable

if TYPE_CHECKING:
    from runner.loader import Loaded
    from runner.rules import RuleSet

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def oracles_for(names: Sequence[str] | None, device: str = "cpu") -> Any:
    """The oracles ``--oracle`` names (default torch), torch on ``device``."""
    from runner.oracles import oracle_named, torch_oracle

    torch = torch_oracle(device)
    chosen = list(dict.fromkeys(names or ["torch"]))
    return [torch if n == "torch" else oracle_named(n) for n in chosen]


class _Guarded:
    """stdout that survives its reader going away (``gradcase run | head -1``): after the first
    broken pipe, output is dropped, and the run goes on to write its report and return its own
    exit status."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return int(self._stream.write(text))
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.broken = True
        # The interpreter flushes stdout once more at exit: point it at nothing.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: cleanup runs (no temporary report file is left), exit 130."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. ``argv`` None: this process is gradcase's (the console script,
    ``python -m runner``), whose collector policy is `runner.collector`'s."""
    if argv is None:
        collector.FREEZE = True
    args = parser().parse_args(argv)
    stdout = sys.stdout
    sys.stdout = _Guarded(stdout)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _main(args)
    finally:
        sys.stdout = stdout
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "show":
            return _show(args.case, args.paths, args.rules, args.oracle)
        if args.command == "mutate":
            return _mutate(args.paths, args.select, args.tags, args.rules, args.verbose, args.json)
        if args.command == "validate":
            return _validate(args.paths, args.rules)
        if args.command == "list":
            from runner.listing import list_cases

            loaded = load(args.paths, module_ops(rule_sets_for(args.rules)))
            return list_cases(loaded, args.select, args.tags)
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
            from schemas.report import Report

            model = Report if args.report else Case
            print(json.dumps(model.model_json_schema(), indent=2))
            return EXIT_OK
    except (UsageError, RulesError) as exc:
        print(f"gradcase: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("gradcase: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    raise AssertionError(args.command)


def _validate(paths: Sequence[str], rules: Sequence[str] | None) -> int:
    from runner.report import plural

    # The RULES modules in force define the ops of their OPS, which cases may call.
    loaded = load(paths, module_ops(rule_sets_for(rules)))
    for case in loaded.cases:
        print(printable(f"ok {case.name}  ({case.file}:{case.line})"))
    for problem in sorted(loaded.problems, key=lambda p: p.where):
        print(problem)
    files = len({p.where.file for p in loaded.problems})
    print(f"{plural(len(loaded.cases), 'valid case')}; {plural(files, 'invalid file')}")
    return EXIT_INVALID if loaded.problems else EXIT_OK


def load(paths: Sequence[str], ops: Any = None) -> Loaded:
    """`runner.loader.load`, imported when a verb needs it (``--help`` stays fast), with the
    garbage collector paused: loading makes many objects and few cycles, and the collections
    it triggered walked every case loaded so far (a fifth of loading 5,000 tiny cases). What
    was loaded then stays for the whole command: in gradcase's own process it is moved out of
    the collector's generations (`runner.collector.freeze`)."""
    from runner.loader import load as load_cases

    was = gc.isenabled()
    gc.disable()
    try:
        loaded = load_cases(paths, ops)
    finally:
        if was:
            gc.enable()
    collector.freeze()
    return loaded


def module_ops(rule_sets: Sequence[RuleSet]) -> Any:
    """`runner.rules.modules.module_ops`, imported when a verb needs it."""
    from runner.rules.modules import module_ops as ops_of

    return ops_of(rule_sets)


def rule_sets_for(specs: Sequence[str] | None) -> list[RuleSet]:
    """``--rules`` as given, else ``[tool.gradcase] rules`` of the nearest pyproject.toml."""
    from runner.rules.modules import find_config
    from runner.rules.modules import load as load_modules

    if specs:
        return load_modules(specs, Path.cwd())
    config = find_config(Path.cwd())
    if config is None:
        return []
    return load_modules(*config)


def _run(args: argparse.Namespace) -> int:
    """``gradcase run``: load and select, run (serially or in ``-j`` workers) streaming the
    report, write the reports, print the details and the count line; the exit status."""
    from runner.formats.writer import Reports
    from runner.progress import Output
    from runner.report import Collector, Keep

    report_path = _report_path(args.report)
    timeout, max_memory = args.timeout or None, args.max_memory or None
    device = _device(args.device)
    rule_sets = rule_sets_for(args.rules)
    pool = _pool(args, timeout, max_memory) if args.jobs > 1 else None
    try:
        loaded, cases = _selected(args, rule_sets)
        reports = Reports(args.junit, args.markdown, args.html)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    if pool is not None and len(cases) <= 1:
        pool.close()
        pool = None
    out = Output(len(cases), quiet=args.quiet)
    # The JSON report's cases stream to a temporary file; memory keeps what the end reads.
    keep: Keep = "failing" if args.junit is None else "slim"
    collector = Collector("all" if args.html is not None else keep, stream=True)
    if rule_sets and not args.quiet:
        out.line("rules: " + ", ".join(r.source for r in rule_sets))
    if device != "cpu" and not args.quiet:
        out.line(f"device: {device}")

    def on_lines(
        result: Any, shown: list[str] | None, view: Any = None, sources: Any = None
    ) -> None:
        out.case(result, shown)
        reports.add(result, sources, view)

    try:
        if pool is not None:
            report = _run_parallel(args, loaded, cases, rule_sets, pool, collector, on_lines)
        else:
            report = _run_serial(args, loaded, cases, rule_sets, collector, on_lines)
    except BaseException:
        collector.close()
        raise
    finally:
        out.close()
    return _finish(args, report, report_path, device, collector, reports, out)


def _report_path(text: str) -> Path:
    """``--report``'s path, refused (`UsageError`) when it is a folder or cannot be used."""
    path = Path(text)
    try:
        if path.is_dir():
            raise UsageError(f"--report {path} is a folder; give a file path")
        path.parent.exists()
    except OSError as exc:  # a name too long for the file system, a folder that cannot be read
        raise UsageError(f"--report {printable(str(path))}: {exc.strerror or exc}") from None
    return path


def _selected(args: argparse.Namespace, rule_sets: Sequence[RuleSet]) -> tuple[Loaded, Any]:
    """The loaded files and the cases ``-k``, ``--tag`` and ``--shard`` select; an empty
    selection is a usage error, raised before the report is touched."""
    from runner.select import choose

    loaded = load(args.paths, module_ops(rule_sets))
    return loaded, choose(loaded.cases, args.select, args.tags, args.shard)


def _run_serial(
    args: argparse.Namespace,
    loaded: Loaded,
    cases: Any,
    rule_sets: Sequence[RuleSet],
    collector: Any,
    on_lines: Any,
) -> Any:
    """The selected cases run in this process (`runner.api.run`), streamed to ``collector``."""
    from runner.api import run
    from runner.loader import Loaded as Selection
    from runner.show import render

    return run(
        Selection(cases, loaded.problems),
        rule_sets,
        on_result=lambda r, s: on_lines(r, render(r, s) if args.verbose else None, sources=s),
        oracles=oracles_for(args.oracle, args.device),
        exitfirst=args.exitfirst,
        timeout=args.timeout or None,
        max_memory=args.max_memory or None,
        interruptible=True,
        collector=collector,
    )


def _run_parallel(
    args: argparse.Namespace,
    loaded: Loaded,
    cases: Any,
    rule_sets: Sequence[RuleSet],
    pool: Any,
    collector: Any,
    on_lines: Any,
) -> Any:
    """The selected cases run in ``-j``'s workers (`runner.parallel`), in the serial order;
    the report names the torch version the workers ran (this process never imported it)."""
    from runner.formats.environment import environment
    from runner.parallel import Interrupted, pack, run_parallel

    def on_parallel(result: Any, shown: list[str] | None, view: Any) -> None:
        collector.add(result)  # as `runner.api.run` does before its on_result
        on_lines(result, shown, view)

    files = {
        shown: (str(f.file), str(f.root), str(f.resolved)) for shown, f in loaded.files.items()
    }
    metas = [(c.name, c.file, c.line, files[c.file], pack(c)) for c in cases]
    started = environment(oracles_for(args.oracle, args.device))
    interrupted = False
    try:
        run_parallel(metas, pool.setup, args.jobs, on_parallel, args.exitfirst, pool)
    except Interrupted:
        interrupted = True
    ran = started.model_copy(update={"torch": _torch_version()})
    report = collector.report(loaded.problems, [r.source for r in rule_sets], ran)
    return report.model_copy(update={"interrupted": interrupted})


def _finish(
    args: argparse.Namespace,
    report: Any,
    report_path: Path,
    device: str,
    collector: Any,
    reports: Any,
    out: Any,
) -> int:
    """Write the JSON report (atomically, from the streamed cases) and the other reports, print
    the details and the count line (last), and return the exit status."""
    from runner.report import details, write_json

    if report.environment is not None:
        named = report.environment.model_copy(update={"device": device})
        report = report.model_copy(update={"environment": named})
    try:
        write_json(report, report_path, streamed=collector)
    except OSError as exc:
        raise UsageError(
            f"cannot write the report to {printable(str(report_path))}: {exc.strerror or exc}"
        ) from None
    finally:
        collector.close()
    extra = reports.write(report)
    shown = report
    if args.quiet:
        failing = [r for r in report.cases if r.status in ("failed", "error", "xpassed")]
        shown = report.model_copy(update={"cases": failing})
    # GitHub's annotations are for the machine, not the terminal: -q keeps them.
    annotations = [line for line in extra if line.startswith("::")]
    ending = annotations if args.quiet else [*extra, f"report: {report_path}"]
    lines = [printable(line) for line in [*details(shown), *ending]]
    out.line("\n".join([*lines, out.count_line(report.summary)]))
    if report.interrupted:
        print(
            f"gradcase: interrupted; the report holds the {report.summary.cases} case(s) finished",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    # A case whose data was refused when it ran (an index out of range) is an error of its
    # file, as one that did not validate.
    if report.diagnostics or any(r.invalid_input for r in report.cases):
        return EXIT_INVALID
    return EXIT_OK if report.passed else EXIT_FAILED


def _pool(args: argparse.Namespace, timeout: float | None, max_memory: int | None) -> Any:
    """``-j``'s worker processes (`runner.parallel.Pool`), started before the cases are loaded
    so that their start-up (torch's import) overlaps the load."""
    from runner.parallel import Pool, Setup

    setup = Setup(
        None if args.rules is None else tuple(args.rules),
        None if args.oracle is None else tuple(args.oracle),
        args.device,
        args.verbose,
        html=args.html is not None,
        timeout=timeout,
        max_memory=max_memory,
    )
    return Pool(setup, args.jobs)


def _torch_version() -> str | None:
    """The installed torch's version, from its metadata (torch is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return None


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
        result, sources = run_case(case, rule_sets, oracles_for(oracles))
        print(printable("\n".join(render(result, sources))))
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
    from runner.mutate import mutate, nothing_mutated, score_lines, write_json

    # As run's --report: a folder is refused before anything runs; missing folders are made.
    if json_path is not None and Path(json_path).is_dir():
        raise UsageError(f"--json {json_path} is a folder; give a file path")
    rule_sets = rule_sets_for(rules)
    loaded = load(paths, module_ops(rule_sets))
    for problem in loaded.problems:
        print(problem)
    if not loaded.cases and not loaded.problems:
        where = ", ".join(paths) if paths else "cases/"
        raise UsageError(f"no cases found in {where}: nothing to mutate")
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
    return EXIT_FAILED if report.survivors or nothing_mutated(report) else EXIT_OK
