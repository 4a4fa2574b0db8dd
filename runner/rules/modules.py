"""RULES modules: a user's engine's backward rules, loaded from Python files or modules named on
the command line (``--rules``), in ``[tool.gradcase]`` of the user's pyproject.toml, or given to
the API as a dict.

A RULES module has a module-level dict ``RULES`` mapping a gradcase op name (torch's) to a callable
``rule(grad, out, **arguments) -> dict[argument name, gradient]`` (see `runner.rules`). It may
also have ``OPS``: ops torch lacks, by name, each with its parameters, numpy forward and
optionally a shape rule (`runner.composed.module_op`); its rule is ``RULES[name]``. A case file
never names Python code: only the person running gradcase chooses which modules are imported.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import tomllib
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.composed import OpSpecError, module_op
from runner.diagnostics import RulesError as RulesError  # public as this module's
from runner.diagnostics import did_you_mean
from runner.ops import REGISTRY
from runner.ops.spec import Op
from runner.rules import RuleFn, RuleSet

CONFIG_KEYS = ("rules",)


def rule_set(rules: Any, source: str, ops: Any = None) -> RuleSet:
    """A `RuleSet` from a RULES mapping (op name -> ``rule(grad, out, **arguments)``) and an
    optional OPS mapping (op name -> spec, see `runner.composed.module_op`).

    Raises `RulesError` when ``rules`` is not a mapping, names an op neither the catalogue nor
    OPS has (with close matches), or holds something that is not callable; when an OPS entry
    is not a usable spec, takes a catalogue op's name, or has no rule in RULES.
    """
    if not isinstance(rules, Mapping):
        raise RulesError(
            f"{source}: RULES must be a dict of op name -> rule, got {type(rules).__name__}"
        )
    own = _module_ops(ops, rules, source)
    wrapped: dict[str, RuleFn] = {}
    where: dict[str, str] = {}
    texts: dict[str, str] = {}
    for op, fn in rules.items():
        if not isinstance(op, str) or (op not in REGISTRY and op not in own):
            known = [name for name, o in REGISTRY.items() if not o.hidden] + list(own)
            raise RulesError(
                f"{source}: RULES names op {op!r}, which gradcase does not have"
                f"{did_you_mean(str(op), known)} (gradcase ops lists them)"
            )
        if not callable(fn):
            raise RulesError(f"{source}: RULES[{op!r}] is {type(fn).__name__}, not a callable")
        refused = _signature_problem(fn, own[op] if op in own else REGISTRY[op])
        if refused:
            at = _where(fn) or source
            raise RulesError(f"{at}: RULES[{op!r}] {refused}")
        wrapped[op] = _keywords(fn)
        where[op] = _where(fn)
        texts[op] = getattr(inspect.unwrap(fn), "__qualname__", "") or repr(fn)
    return RuleSet(source, wrapped, where, texts, own)


def _module_ops(ops: Any, rules: Mapping[str, Any], source: str) -> dict[str, Op]:
    if ops is None:
        return {}
    if not isinstance(ops, Mapping):
        raise RulesError(
            f"{source}: OPS must be a dict of op name -> spec, got {type(ops).__name__}"
        )
    found: dict[str, Op] = {}
    for name, spec in ops.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise RulesError(f"{source}: OPS names {name!r}, which is not an identifier")
        if name in REGISTRY:
            raise RulesError(
                f"{source}: OPS[{name!r}]: '{name}' is a catalogue op; an op of your own needs a "
                "name of its own (its rule goes in RULES under the catalogue's name)"
            )
        if name not in rules:
            raise RulesError(
                f"{source}: OPS[{name!r}] has no rule: RULES[{name!r}] must give its backward "
                "rule (without one there is nothing to test)"
            )
        try:
            found[name] = module_op(name, spec, source)
        except OpSpecError as exc:
            raise RulesError(f"{source}: OPS[{name!r}] {exc}") from None
    return found


def module_ops(rule_sets: Sequence[RuleSet]) -> dict[str, Op]:
    """The ops the rule sets define (their OPS), by name, for the compiler. Raises `RulesError`
    when two of them define the same name."""
    found: dict[str, Op] = {}
    for rs in rule_sets:
        for name, op in rs.ops.items():
            if name in found and found[name] is not op:
                raise RulesError(
                    f"op '{name}' is defined by both {found[name].source} and {rs.source}; keep one"
                )
            found[name] = op
    return found


def _signature_problem(fn: Callable[..., Any], op: Op) -> str:
    """Why ``fn`` cannot be called as a rule of ``op`` (``rule(grad, out, **arguments)`` with
    every parameter of the op by its torch name, and ``grads`` and ``outs`` for an op with
    several outputs); empty when it can, or when Python cannot tell (a builtin)."""
    try:
        signature = inspect.signature(fn, follow_wrapped=False)  # the callable gradcase calls
    except (TypeError, ValueError):
        return ""
    names = [p.name for p in op.params]
    several = [[], ["grads", "outs"]] if op.outputs else [[]]
    problems = []
    for extra in several:
        try:
            signature.bind(None, None, **dict.fromkeys([*names, *extra]))
            return ""
        except TypeError as exc:
            problems.append(str(exc))
    return (
        f"cannot be called as a rule of {op.name}: {problems[0]}; gradcase calls "
        f"rule(grad, out, {', '.join(f'{n}=...' for n in names)}) with {op.name}'s "
        "arguments by their torch names (def rule(grad, out, **args) takes any)"
    )


def _keywords(fn: Callable[..., Any]) -> RuleFn:
    def rule(grad: Any, out: Any, args: dict[str, Any]) -> Any:
        return fn(grad, out, **args)

    return rule


def _where(fn: Callable[..., Any]) -> str:
    """``rules.py:30`` for a Python function; empty when Python cannot tell."""
    target = inspect.unwrap(fn)
    try:
        file = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return ""
    return f"{display_path(Path(file or '?'))}:{line}"


def display_path(path: str | Path) -> str:
    """A module's path as messages show it: relative to the current folder where it can be."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def load(specs: Sequence[str], base: Path) -> list[RuleSet]:
    """One `RuleSet` per spec, in order: a path to a ``.py`` file (relative to ``base``) or a
    dotted module name (importable from ``base`` or the current folder). Source names are
    ``module <spec as given>``. Raises `RulesError` when one cannot be imported or has no
    usable RULES."""
    sets = []
    for spec in _checked(specs):
        module = _import(spec, base)
        _refuse_exit_by_name(module, spec)
        sets.append(rule_set(module.RULES, f"module {spec}", getattr(module, "OPS", None)))
    return sets


def _refuse_exit_by_name(module: Any, spec: str) -> None:
    """A module that holds ``os._exit`` or ``os.abort`` under a name of its own (``from os
    import _exit``): called from a rule it would end a serial run with no report, exit status
    0 for ``_exit(0)``, where gradcase makes ``os._exit`` raise while a rule runs. Raises
    `RulesError`."""
    for name, value in vars(module).items():
        if value is os._exit or value is os.abort:
            raise RulesError(
                f"rules module {spec}: '{name}' is os.{value.__name__}, imported by name: "
                "called from a rule it would end the run without a report; a rule that must "
                "fail raises an exception"
            )


def _checked(specs: Sequence[str]) -> Sequence[str]:
    for spec in specs:
        if not spec.strip():
            raise RulesError("--rules needs a path to a .py file or a module name")
    return specs


def _import(spec: str, base: Path) -> Any:
    is_file = spec.endswith(".py") or "/" in spec or os.sep in spec
    try:
        if is_file:
            path = (base / spec).resolve()
            if not path.is_file():
                raise RulesError(f"rules module {spec}: no such file ({path})")
            module = _import_file(path)
        else:
            for folder in (str(base.resolve()), os.getcwd()):
                if folder not in sys.path:
                    sys.path.insert(0, folder)
            module = importlib.import_module(spec)
    except RulesError:
        raise
    except BaseException as exc:  # the user's module may raise anything while importing
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise RulesError(f"rules module {spec}: importing it raised {_summary(exc)}") from None
    if not hasattr(module, "RULES"):
        raise RulesError(
            f"rules module {spec} has no module-level RULES dict (op name -> "
            "rule(grad, out, **arguments))"
        )
    return module


def _import_file(path: Path) -> Any:
    # A name of its own per file, so two engines' rules.py do not replace each other.
    name = "gradcase_rules_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RulesError(f"rules module {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # The module's folder is importable, so rules.py can import its engine beside it.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _summary(exc: BaseException) -> str:
    line = user_line(exc)
    at = f" at {line}" if line else ""
    if isinstance(exc, SyntaxError) and exc.filename:
        at = f" at {display_path(Path(exc.filename))}:{exc.lineno}"
    return f"{type(exc).__name__}: {exc}{at}"


_OWN = Path(__file__).resolve().parent.parent  # gradcase's runner/: never the user's fault


def user_line(exc: BaseException) -> str:
    """``rules.py:6``: the innermost line of the user's own code ``exc`` passed through (not
    gradcase's, not importlib's, not an installed library's), as messages show a path; empty
    when there is none (a case rule, interpreted)."""
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.startswith("<") or "importlib" in name or "site-packages" in name:
            continue
        if not Path(name).resolve().is_relative_to(_OWN):
            found = f"{display_path(Path(name))}:{frame.lineno}"
    return found


def find_config(start: Path) -> tuple[list[str], Path] | None:
    """``[tool.gradcase] rules`` of the nearest pyproject.toml, from ``start`` up, that has a
    ``[tool.gradcase]`` table, and that file's folder (paths are relative to it); None when
    there is none. Raises `RulesError` for a malformed file or setting."""
    for folder in [start.resolve(), *start.resolve().parents]:
        path = folder / "pyproject.toml"
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RulesError(f"{display_path(path)}: cannot read it: {exc}") from None
        table = data.get("tool", {}).get("gradcase")
        if table is None:
            continue
        return _config_rules(table, path), folder
    return None


def _config_rules(table: Any, path: Path) -> list[str]:
    shown = display_path(path)
    if not isinstance(table, dict):
        raise RulesError(f"{shown}: [tool.gradcase] must be a table")
    for key in table:
        if key not in CONFIG_KEYS:
            raise RulesError(
                f"{shown}: [tool.gradcase] has no setting '{key}'{did_you_mean(key, CONFIG_KEYS)}"
            )
    rules = table.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, str) and r for r in rules):
        raise RulesError(
            f"{shown}: [tool.gradcase] rules must be a list of paths to .py files or module "
            'names, e.g. rules = ["engine/rules.py"]'
        )
    return rules
