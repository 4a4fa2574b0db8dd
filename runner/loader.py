"""Finding case files and turning each into validated, compiled cases, or into problems.

A file is read, parsed safely, validated against `schemas.case.Case` and compiled; every problem
of a file is reported together, each at its ``file:line:col``. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from runner.compile import CompiledCase, compile_case
from runner.diagnostics import CaseInvalid, Location, Problem, did_you_mean, printable
from runner.diagnostics import UsageError as UsageError  # raised here; public as runner.loader's
from runner.ops.spec import Op
from runner.yaml_source import Document, Path, load_stream
from schemas import case as case_models
from schemas.case import Case

SUFFIXES = (".yaml", ".yml")
DEFAULT_ROOT = "cases"
MAX_FILE_BYTES = 10 * 1024 * 1024


class Found(NamedTuple):
    """A case file as `discover` finds it: the path as given or walked (what messages show),
    the folder its case names are relative to, and the path resolved (once, here)."""

    file: FsPath
    root: FsPath
    resolved: FsPath


@dataclass
class Loaded:
    cases: list[CompiledCase] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Each file a case came from, by the name cases and messages give it (`CompiledCase.file`):
    # enough to load that file alone with the same case names (`runner.parallel`'s workers).
    files: dict[str, Found] = field(default_factory=dict)


def discover(paths: Sequence[str], problems: list[Problem] | None = None) -> list[Found]:
    """The case files under ``paths``, sorted within each argument, each once (by its resolved
    path); a folder is searched recursively.

    A path that exists but cannot be read (a folder without permission, a name too long for
    the file system, a file whose folder cannot be searched) is never skipped silently: it is
    a problem of that path, appended to ``problems`` (raised as `UsageError` without a list),
    and the other paths are still searched. Raises `UsageError` for a path that does not exist.
    """
    found: list[Found] = []
    unreadable: list[Problem] = []
    seen: set[str] = set()
    # Roots by resolved folder: the files of one folder share theirs.
    roots: dict[tuple[str, FsPath], FsPath] = {}

    def add(file: FsPath, fallback: FsPath) -> None:
        resolved = os.path.realpath(file)
        if resolved in seen:
            return
        seen.add(resolved)
        folder = os.path.dirname(resolved)
        root = roots.get((folder, fallback))
        if root is None:
            root = roots[(folder, fallback)] = _root(FsPath(folder), fallback)
        found.append(Found(file, root, FsPath(resolved)))

    for raw in paths or [DEFAULT_ROOT]:
        path = FsPath(raw)
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
            if not (is_dir or is_file):
                os.stat(path)  # not there: FileNotFoundError; else why it cannot be seen
        except FileNotFoundError:
            raise UsageError(f"no such file or folder: {printable(raw)}") from None
        except OSError as exc:
            unreadable.append(Problem(Location(_display(path), 1, 1), _cannot(exc, path)))
            continue
        if is_dir:
            for f in _walk(path, unreadable):
                add(f, path)
        elif is_file:
            add(path, path.parent)
        else:  # a fifo, a socket, a device: nothing a case is
            unreadable.append(Problem(Location(_display(path), 1, 1), "not a regular file"))
    if unreadable and problems is None:
        raise UsageError("; ".join(str(p) for p in unreadable))
    if problems is not None:
        problems += unreadable
    return found


def _cannot(exc: OSError, path: FsPath) -> str:
    what = "folder" if _isdir(path) else "file or folder"
    return f"cannot read this {what}: {exc.strerror or exc}"


def _isdir(path: FsPath) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _walk(folder: FsPath, problems: list[Problem]) -> list[FsPath]:
    """The case files under ``folder``, sorted; each folder or file that cannot be read is a
    problem (`os.walk` would skip it silently)."""
    files: list[FsPath] = []

    def refused(exc: OSError) -> None:
        where = FsPath(exc.filename) if exc.filename else folder
        problems.append(Problem(Location(_display(where), 1, 1), _cannot(exc, where)))

    for base, dirs, names in os.walk(folder, onerror=refused):
        dirs.sort()
        for name in names:
            candidate = FsPath(base) / name
            if candidate.suffix not in SUFFIXES:
                continue
            try:
                if candidate.is_file():
                    files.append(candidate)
            except OSError as exc:
                refused(exc)
    return sorted(files)


def _root(folder: FsPath, fallback: FsPath) -> FsPath:
    """Case names are relative to the nearest ``cases`` folder enclosing a file's resolved
    ``folder`` (itself included), so a case keeps its name however it is selected on the
    command line; else to ``fallback`` resolved."""
    for parent in (folder, *folder.parents):
        if parent.name == DEFAULT_ROOT:
            return parent
    return fallback.resolve()


def _display(file: FsPath) -> str:
    """The path as messages and reports show it: relative to the current folder, bytes that are
    not UTF-8 as ``\\xNN`` (a report must be writable as UTF-8) and control characters escaped
    (a file name must not drive the terminal)."""
    try:
        text = os.path.relpath(file)
    except ValueError:
        text = str(file)
    text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return printable(text)


def load(paths: Sequence[str], ops: Mapping[str, Op] | None = None) -> Loaded:
    """Every case under ``paths``, compiled, and the problems of the others. ``ops``: the ops of
    the RULES modules in force (`runner.rules.modules.module_ops`), which cases may call."""
    result = Loaded()
    names: dict[str, Location] = {}
    for file, root, resolved in discover(paths, result.problems):
        shown = _display(file)
        try:
            cases, problems = load_file(file, root, shown, ops, resolved)
        except CaseInvalid as exc:
            cases, problems = [], exc.problems
        result.problems += problems
        if cases:
            result.files[shown] = Found(file, root, resolved)
        for c in cases:
            where = Location(c.file, c.line, 1)
            if c.name in names:
                result.problems.append(
                    Problem(
                        where,
                        f"case name '{c.name}' is already used by {names[c.name]}; "
                        "names must be unique in a run",
                    )
                )
                continue
            names[c.name] = where
            result.cases.append(c)
    return result


def load_file(
    file: FsPath,
    root: FsPath,
    shown: str,
    ops: Mapping[str, Op] | None = None,
    resolved: FsPath | None = None,
) -> tuple[list[CompiledCase], list[Problem]]:
    """The valid cases of a file and the problems of the others (each YAML document is a case
    of its own); ``resolved``: ``file`` resolved, when the caller has it (`discover`). Raises
    `CaseInvalid` when the file as a whole cannot be read."""
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise CaseInvalid(
                [
                    Problem(
                        Location(shown, 1, 1), f"file is larger than {MAX_FILE_BYTES // 2**20} MiB"
                    )
                ]
            )
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseInvalid([Problem(Location(shown, 1, 1), f"cannot read file: {exc}")]) from None
    docs, problems = load_stream(text, shown)
    if not docs and not problems:
        raise CaseInvalid([Problem(Location(shown, 1, 1), "file holds no case")])
    stem = default_stem(file, root, resolved)
    # A default case name is printable text, whatever bytes the file's name holds.
    stem = printable(os.fsencode(stem).decode("utf-8", "backslashreplace"), lines=False)
    cases = []
    for doc in docs:
        default = stem if doc.count == 1 else f"{stem}[{doc.index}]"
        try:
            cases.append(compile_document(doc, default, ops))
        except CaseInvalid as exc:
            problems += exc.problems
    return cases, problems


def default_stem(file: FsPath, root: FsPath, resolved: FsPath | None = None) -> str:
    """A file's default case name before printable escaping: its resolved path relative to
    ``root`` without the suffix, POSIX-style (its stem when outside ``root``)."""
    # Strings, not pathlib's relative_to (a tenth of loading a tiny case in Python 3.11).
    where = os.fspath(file.resolve() if resolved is None else resolved)
    base = os.fspath(root)
    prefix = base if base.endswith(os.sep) else base + os.sep
    if not where.startswith(prefix):
        return file.stem
    return os.path.splitext(where[len(prefix) :])[0].replace(os.sep, "/")


def compile_document(
    doc: Document, default_name: str, ops: Mapping[str, Op] | None = None
) -> CompiledCase:
    if not isinstance(doc.data, dict):
        raise CaseInvalid([doc.problem((), "a case must be a mapping with inputs and graph")])
    try:
        case = Case.model_validate(doc.data)
    except ValidationError as exc:
        problems = validation_problems(exc, doc)
        raise CaseInvalid(problems + _problems_beyond(exc, doc, ops)) from None
    line = doc.where(()).line
    return compile_case(case, doc, case.name or default_name, line, ops=ops)


def _problems_beyond(
    exc: ValidationError, doc: Document, ops: Mapping[str, Op] | None = None
) -> list[Problem]:
    """The graph's problems in a file whose model did not validate, so one run reports every
    problem of the file: the entries pydantic rejected are left out (and uses of those names
    stay quiet), the rest is compiled."""
    data = copy.deepcopy(doc.data)
    quiet: set[str] = set()
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("<"))]
        if not loc or not isinstance(data, dict) or loc[0] not in data:
            continue
        head, table = loc[0], data[loc[0]]
        if head in ("inputs", "graph", "ops") and len(loc) > 1 and isinstance(table, dict):
            table.pop(loc[1], None)
            quiet.add(str(loc[1]))
        else:
            data.pop(head)
    try:
        case = Case.model_validate(data)
        compile_case(case, doc, "", 1, quiet=frozenset(quiet), ops=ops)
    except (ValidationError, CaseInvalid) as more:
        return more.problems if isinstance(more, CaseInvalid) else []
    return []


# --- pydantic errors as located problems ------------------------------------------------------

FIELD_NAMES = sorted(
    {
        name
        for model in vars(case_models).values()
        if isinstance(model, type) and issubclass(model, BaseModel)
        for name in model.model_fields
    }
)


def validation_problems(exc: ValidationError, doc: Document) -> list[Problem]:
    """One problem per offending node: union alternatives' messages are merged, branch tags
    dropped from the path, pydantic's wording replaced where ours says more."""
    grouped: dict[tuple[Path, bool], list[str]] = {}
    for err in exc.errors():
        if _other_branch(err, doc.data):
            continue
        path, message = _explain(err, doc.data)
        # An unknown key is shown at the key itself, anything else at the offending value.
        at_key = err["type"] == "extra_forbidden"
        if message not in grouped.setdefault((path, at_key), []):
            grouped[(path, at_key)].append(message)
    problems = []
    for (path, at_key), messages in grouped.items():
        at = ".".join(str(p) for p in path) or "case"
        problems.append(doc.problem(path, f"{at}: {' or '.join(messages)}", at_key=at_key))
    return sorted(problems, key=lambda p: (p.where.line, p.where.col))


def _other_branch(err: Any, data: Any) -> bool:
    """An error of the string form of a graph node whose value is a long-form mapping: the
    mapping's own errors say what is wrong."""
    loc = err["loc"]
    return (
        len(loc) >= 3
        and loc[0] == "graph"
        and loc[2] == "str"
        and isinstance(data.get("graph"), dict)
        and isinstance(data["graph"].get(loc[1]), dict)
    )


def _rejoined(graph: dict[Any, Any], tail: str) -> str:
    """The entry YAML's flow mapping cut at a comma, put back together and quoted: the last
    node before ``tail`` whose expression leaves a parenthesis open."""
    keys = list(graph)
    for key in reversed(keys[: keys.index(tail)] if tail in keys else keys):
        value = graph[key]
        if isinstance(value, str) and value.count("(") > value.count(")"):
            return f'{key}: "{value}, {tail}"'
    return f'y: "f(x, {tail}"'


def _explain(err: Any, data: Any) -> tuple[Path, str]:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("<"))]
    kind = err["type"]
    if len(loc) >= 2 and loc[0] == "inputs" and isinstance(data.get("inputs"), dict):
        value = data["inputs"].get(loc[1])
        if isinstance(value, str):
            return ("inputs", loc[1]), (
                f"input '{loc[1]}' is {value!r}, which looks like an expression: nodes go under "
                "graph:, inputs are numbers, nested lists of numbers or {random: ...}"
            )
    if len(loc) >= 2 and loc[0] == "graph" and isinstance(data.get("graph"), dict):
        node = data["graph"].get(loc[1])
        if node is None and not str(loc[1]).isidentifier():
            return ("graph", loc[1]), (
                f"'{loc[1]}' is the end of an expression that YAML cut at a comma: in a flow "
                f"mapping {{...}} a comma ends the entry; quote the expression "
                f"({_rejoined(data['graph'], str(loc[1]))}) or write graph: in block style, one "
                "node per line"
            )
        if not isinstance(node, str | dict):
            return ("graph", loc[1]), (
                f"node '{loc[1]}' must be an expression string (such as 'a @ b') or "
                f"{{op, args, kwargs}}, got {node!r}; constants go under inputs"
            )
    if len(loc) >= 3 and loc[0] == "rules" and kind in ("string_type", "list_type"):
        return tuple(loc[:3]), (
            "a rule is a numpy expression written as a string (e.g. "
            "'np.zeros_like(input)' or '0 * grad'); a list parameter may take a list of them"
        )
    if kind == "string_pattern_mismatch" and loc == ["name"]:
        return ("name",), "a case name is one line of printable text"
    if kind == "too_short" and loc in (["inputs"], ["graph"]):
        what = "input" if loc == ["inputs"] else "node"
        return (loc[0],), f"needs at least one {what}"
    if "<mapping>" in err["loc"]:
        return _data_path(loc, data)[0], (
            "an input given as a mapping needs one of the keys random, fill or values"
        )
    if kind in ("extra_forbidden", "missing") and loc and isinstance(loc[-1], str):
        path, _ = _data_path(loc[:-1], data)
        key = loc[-1]
        if kind == "missing":
            return path, f"missing required key '{key}'"
        return (*path, key), f"unknown key '{key}'{did_you_mean(key, FIELD_NAMES)}"
    path, node = _data_path(loc, data)
    msg = err["msg"].removeprefix("Value error, ")
    msg = f"{msg[0].lower()}{msg[1:]}" if msg else kind
    if kind == "literal_error":
        msg += f", got {node!r}"
    return path, msg


def _data_path(loc: list[Any], data: Any) -> tuple[Path, Any]:
    """The longest prefix of ``loc`` that exists in the data (union branch names such as
    'float' or 'LongFormNode' are not in the data and are dropped), and the value there."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (
            isinstance(node, dict)
            and part in node
            or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        ):
            node = node[part]
            path.append(part)
    return tuple(path), node
