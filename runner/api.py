"""The Python API, for a user's own test suite::

    import runner
    from my_engine import RULES

    def test_my_rules():
        report = runner.check("cases/", rules=RULES)
        assert report.passed, runner.summary_text(report)

Nothing here imports torch until cases run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runner.loader import Loaded, load
from runner.rules import RuleSet
from runner.rules.modules import RulesError, module_ops, rule_set
from runner.rules.modules import load as load_modules
from schemas.report import CaseResult, Report

if TYPE_CHECKING:
    from runner.report import Collector

# The statuses that fail a run: `-x` stops after the first of them.
STOPPING = ("failed", "error", "xpassed")

RuleSource = RuleSet | Mapping[str, Any] | str | ModuleType
RulesArg = RuleSource | Sequence[RuleSource] | None


def rule_sets(rules: RulesArg, base: Path | None = None) -> list[RuleSet]:
    """The rule sets ``rules`` names, in order: a RULES dict (source ``api <its module>``), an
    imported module with a RULES dict, a `RuleSet`, a path to a .py file or a module name
    (source ``module <spec>``), or a list of those. Raises `runner.rules.modules.RulesError`
    for one that cannot be used."""
    if rules is None:
        return []
    if isinstance(rules, RuleSet | Mapping | str | ModuleType):
        items: list[Any] = [rules]
    elif isinstance(rules, list | tuple):
        items = list(rules)
    else:
        raise RulesError(
            f"rules must be a RULES dict, a path to a .py file, a module name, or a list of "
            f"those; got {type(rules).__name__}"
        )
    found: list[RuleSet] = []
    for item in items:
        if isinstance(item, RuleSet):
            found.append(item)
        elif isinstance(item, str):
            found += load_modules([item], base or Path.cwd())
        elif isinstance(item, Mapping):
            found.append(rule_set(item, _api_source(item)))
        elif isinstance(item, ModuleType):
            found.append(
                rule_set(
                    getattr(item, "RULES", None),
                    f"module {item.__name__}",
                    getattr(item, "OPS", None),
                )
            )
        else:
            raise RulesError(
                f"rules[...] must be a RULES dict, a path or a module name, got {item!r}"
            )
    return found


def _api_source(rules: Any) -> str:
    modules = {getattr(fn, "__module__", None) for fn in getattr(rules, "values", list)()}
    modules.discard(None)
    return f"api {modules.pop()}" if len(modules) == 1 else "api"


def run(
    loaded: Loaded,
    rules: Sequence[RuleSet],
    *,
    select: Callable[[str], bool] | None = None,
    on_result: Callable[[CaseResult, Any], None] | None = None,
    oracles: Sequence[Any] | None = None,
    exitfirst: bool = False,
    timeout: float | None = None,
    max_memory: int | None = None,
    interruptible: bool = False,
    collector: Collector | None = None,
) -> Report:
    """Execute every loaded case (those whose name ``select`` accepts) with ``rules``, calling
    ``on_result(result, sources)`` after each, and build the report. ``oracles``
    (`runner.oracles.Oracle`s, default torch) apply to the cases that name none. ``exitfirst``:
    stop after the first case that fails the run (failed, error or xpassed). ``timeout`` (s)
    and ``max_memory`` (bytes) limit each case (`runner.execute.run_case`). ``interruptible``:
    Ctrl-C ends the run with a report of the cases finished, marked ``interrupted`` (else
    `KeyboardInterrupt` goes on). ``collector``: where the results go (`runner.report.Collector`;
    by default one that keeps them all); the report's ``cases`` are the ones it keeps, its
    summary counts them all."""
    from runner.execute import run_case
    from runner.formats.environment import environment
    from runner.oracles import TORCH
    from runner.report import Collector

    started = environment(oracles or (TORCH,))
    results = Collector() if collector is None else collector
    interrupted = False
    try:
        for case in loaded.cases:
            if select is not None and not select(case.name):
                continue
            result, sources = run_case(
                case, rules, oracles or (TORCH,), timeout=timeout, max_memory=max_memory
            )
            results.add(result)
            if on_result is not None:
                on_result(result, sources)
            if exitfirst and result.status in STOPPING:
                break
    except KeyboardInterrupt:
        if not interruptible:
            raise
        interrupted = True
    # torch's version is known only now, when a case has imported it.
    ran = started.model_copy(update={"torch": environment(()).torch})
    report = results.report(loaded.problems, [r.source for r in rules], ran)
    return report.model_copy(update={"interrupted": True}) if interrupted else report


def check(
    paths: str | Path | Sequence[str | Path] = "cases",
    *,
    rules: RulesArg = None,
    select: str | None = None,
) -> Report:
    """Validate and run the cases under ``paths`` (files or folders) with the user's ``rules``
    (see `rule_sets`; the case files' own rules come first) against torch, and return the report
    model: ``report.passed`` is True when nothing failed, errored or xpassed and every file is
    valid; invalid files are in ``report.diagnostics``. ``select``: only cases whose name
    contains it. Raises `runner.loader.UsageError` for a path that does not exist and
    `runner.rules.modules.RulesError` for rules that cannot be used."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    sets = rule_sets(rules)
    loaded = load([str(p) for p in items], module_ops(sets))
    return run(loaded, sets, select=None if select is None else (lambda name: select in name))


def summary_text(report: Report) -> str:
    """The report as the CLI prints it after the case lines: failures, then the count line."""
    from runner.report import count_line, details

    return "\n".join([*details(report), count_line(report.summary)])
