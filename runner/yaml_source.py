"""Safe YAML loading that remembers where every value came from.

PyYAML's SafeLoader already refuses tags that construct Python objects; on top of it this loader
rejects duplicate keys (plain PyYAML keeps the last one silently) and records the mark of every
node by its path (``("graph", "c")``, ``("inputs", "a", 0)``), so later stages (pydantic, the
graph compiler) can point at ``file:line:col`` of the node they reject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner.diagnostics import CaseInvalid, Location, Problem

Path = tuple[str | int, ...]

# Aliases make a document a DAG; expanding one into a tree can blow up exponentially
# ("billion laughs"). Far above any real case.
MAX_VALUES = 1_000_000
# Every walk over a document's data (this builder, pydantic, literal shapes, deep copies) recurses
# once per level; libyaml composes up to 1000 levels, far past Python's recursion limit. A case
# is a few levels of keys over tensor literals of at most `MAX_LITERAL_DIMS` dims.
MAX_DEPTH = 80


# libyaml's parser, where PyYAML was built with it, composes the same nodes (with their marks)
# about ten times faster; constructing values stays with the pure-Python SafeLoader.
class _Composer(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


# YAML 1.1 reads 1e-5 (no dot) as a string; people write tolerances that way, and YAML 1.2 and
# JSON read it as a number, so this loader does too.
_Composer.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
_COMPOSER: Any = _Composer
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


@dataclass
class Document:
    """One YAML document: its data and where each of its nodes is."""

    file: str
    data: Any
    marks: dict[Path, Node] = field(default_factory=dict)
    keys: dict[Path, Node] = field(default_factory=dict)  # the key node of each mapping entry
    lines: list[str] = field(default_factory=list)  # the file's text, to place sub-expressions
    index: int = 0  # its position among the stream's non-empty documents
    count: int = 1  # how many non-empty documents the stream holds

    def where(self, path: Path, offset: int | None = None, at_key: bool = False) -> Location:
        """The location of the deepest node on ``path`` that exists (of its key, with
        ``at_key``); ``offset`` moves the column into a plain or quoted one-line scalar (e.g. to
        a sub-expression)."""
        if at_key and path in self.keys:
            mark = self.keys[path].start_mark
            return Location(self.file, mark.line + 1, mark.column + 1)
        for cut in range(len(path), -1, -1):
            node = self.marks.get(path[:cut])
            if node is not None:
                break
        else:
            return Location(self.file, 1, 1)
        mark = node.start_mark
        col = mark.column + 1
        if cut == len(path) and offset is not None and isinstance(node, ScalarNode) and self.lines:
            found = scalar_position(self.lines, node, offset)
            if found is not None:
                return Location(self.file, found[0] + 1, found[1] + 1)
        if cut == len(path) and offset and isinstance(node, ScalarNode):
            if node.end_mark.line == mark.line and node.style in (None, "", "'", '"'):
                col += offset + (1 if node.style else 0)
        return Location(self.file, mark.line + 1, col)

    def problem(
        self, path: Path, message: str, offset: int | None = None, at_key: bool = False
    ) -> Problem:
        return Problem(self.where(path, offset, at_key), message)


_ESCAPE_WIDTH = {"x": 4, "u": 6, "U": 10}
# Escapes YAML decodes to a blank character (tab, line feed, ..., no-break space).
_WHITE_ESCAPES = frozenset("tnrfvLP_ \t")


def scalar_position(lines: list[str], node: ScalarNode, offset: int) -> tuple[int, int] | None:
    """The 0-based (line, column) in the file of the character at ``offset`` of a scalar's
    value, for any scalar style: plain or quoted over several lines, a literal ``|`` or folded
    ``>`` block, escapes in double quotes. YAML turns line breaks and indentation into spaces or
    newlines but keeps every other character in order, so the character is found by counting
    the non-blank ones. None when it cannot be placed (a blank character, a value YAML built
    otherwise)."""
    value = node.value
    if not isinstance(value, str) or not 0 <= offset < len(value) or value[offset].isspace():
        return None
    target = sum(1 for ch in value[:offset] if not ch.isspace())
    style = node.style or ""
    line, col = node.start_mark.line, node.start_mark.column
    if style in ("'", '"'):
        col += 1
    elif style in ("|", ">"):
        line, col = line + 1, 0  # the content starts below the header line
    end = (node.end_mark.line, node.end_mark.column)
    count = 0
    while (line, col) < end and line < len(lines):
        text = lines[line]
        if col >= len(text):
            line, col = line + 1, 0
            continue
        width, blank = 1, text[col].isspace()
        if style == '"' and text[col] == "\\":
            code = text[col + 1 : col + 2]
            if not code:  # an escaped line break
                line, col = line + 1, 0
                continue
            width = _ESCAPE_WIDTH.get(code, 2)
            blank = code in _WHITE_ESCAPES
            if code in _ESCAPE_WIDTH:
                digits = text[col + 2 : col + width]
                try:
                    blank = chr(int(digits, 16)).isspace()
                except ValueError:
                    return None
        elif style == "'" and text[col : col + 2] == "''":
            width = 2
        if not blank:
            if count == target:
                return line, col
            count += 1
        col += width
    return None


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        # The constructor alone (its reader, scanner and parser are libyaml's, run before).
        self.loader = yaml.constructor.SafeConstructor()
        self.count = 0
        self.open: set[int] = set()  # collections being built: an alias back to one is a cycle
        self.problems: list[Problem] = []

    def at(self, node: Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: Node, path: Path, doc: Document) -> Any:
        if len(path) > MAX_DEPTH:
            raise CaseInvalid(
                [
                    Problem(
                        self.at(node),
                        f"nested more than {MAX_DEPTH} levels deep; a case is a few levels of "
                        "keys over tensor literals",
                    )
                ]
            )
        if id(node) in self.open:
            raise CaseInvalid(
                [Problem(self.at(node), "recursive alias: a mapping or list that contains itself")]
            )
        if isinstance(node, ScalarNode):
            self.count += 1
            doc.marks.setdefault(path, node)
            return self.build_scalar(node)
        self.open.add(id(node))
        try:
            return self.build_collection(node, path, doc)
        finally:
            self.open.discard(id(node))

    def build_collection(self, node: Node, path: Path, doc: Document) -> Any:
        """The dict or list of a mapping or sequence node at ``path``, counted against
        `MAX_VALUES`; a tag that constructs objects is refused."""
        self.count += 1
        if self.count > MAX_VALUES:
            raise CaseInvalid(
                [
                    Problem(
                        self.at(node),
                        "document expands to too many values "
                        f"(more than {MAX_VALUES}); check its aliases",
                    )
                ]
            )
        doc.marks.setdefault(path, node)
        if node.tag not in _PLAIN_TAGS:
            raise CaseInvalid(
                [
                    Problem(
                        self.at(node),
                        f"the tag {node.tag} is not allowed; case "
                        "files may hold only plain data (no tags that construct "
                        "objects)",
                    )
                ]
            )
        if isinstance(node, MappingNode):
            return self.build_mapping(node, path, doc)
        assert isinstance(node, SequenceNode)
        return [self.build(item, (*path, i), doc) for i, item in enumerate(node.value)]

    def build_mapping(self, node: MappingNode, path: Path, doc: Document) -> dict[Any, Any]:
        """The dict of a mapping node, its merge keys applied; a key that is not a plain scalar
        or is written twice is a problem (and left out), each key's node and value's node are
        recorded in ``doc``."""
        # Merge keys (`<<: *base`) put the merged pairs first; a key written in the mapping
        # itself then overrides them, as YAML says. Only keys written twice are duplicates.
        written = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        try:
            self.loader.flatten_mapping(node)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            where = Location(self.file, mark.line + 1, mark.column + 1) if mark else self.at(node)
            raise CaseInvalid([Problem(where, f"invalid merge key: {exc.problem}")]) from None
        out: dict[Any, Any] = {}
        seen_written: set[str] = set()
        for key_node, value_node in node.value:
            key = self.build_scalar(key_node) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, (str, int, float, bool)) or key is None:
                self.problems.append(
                    Problem(self.at(key_node), "mapping keys must be plain scalars")
                )
                continue
            key = str(key) if not isinstance(key, str) else key
            if id(key_node) in written and key in seen_written:
                first = doc.keys[(*path, key)]
                self.problems.append(
                    Problem(
                        self.at(key_node),
                        f"duplicate key '{key}' (first defined at line "
                        f"{first.start_mark.line + 1}); YAML keeps only one of them",
                    )
                )
                continue
            if id(key_node) in written:
                seen_written.add(key)
            doc.keys[(*path, key)] = key_node
            doc.marks[(*path, key)] = value_node
            out[key] = self.build(value_node, (*path, key), doc)
        return out

    def build_scalar(self, node: Node) -> Any:
        # Most scalars are plain strings: PyYAML's constructor returns their text as it is;
        # skipping its bookkeeping (alias cache, recursion guard) saves a third of building.
        if node.tag == _STR_TAG:
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, TypeError, ArithmeticError) as exc:
            # The resolver typed a plain or tagged scalar that cannot be built: a date that
            # does not exist (2024-02-30), `!!int zz`, `0x_`, an integer past Python's digit
            # limit. One message for all of them, at the scalar.
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise CaseInvalid(
                [
                    Problem(
                        self.at(node),
                        f"{_shown(node.value)} cannot be read as a YAML {tag} ({_reason(exc)}); "
                        "quote it to write a string",
                    )
                ]
            ) from None
        except yaml.constructor.ConstructorError as exc:
            raise CaseInvalid(
                [
                    Problem(
                        self.at(node),
                        f"{exc.problem}; case files may hold only "
                        "plain data (no tags that construct objects)",
                    )
                ]
            ) from None


def _shown(value: Any, limit: int = 40) -> str:
    """A scalar's text for a message: repr'd, cut to ``limit`` characters."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _reason(exc: BaseException) -> str:
    text = str(exc).split(";")[0]
    return text if len(text) <= 80 else text[:80] + "..."


def load_documents(text: str, file: str) -> list[Document]:
    """Every document of a YAML stream, or `CaseInvalid` with every problem found (see
    `load_stream` to keep the valid documents of a stream with invalid ones)."""
    docs, problems = load_stream(text, file)
    if problems:
        raise CaseInvalid(problems)
    return docs


def _tab_at(text: str, line: int, column: int) -> bool:
    """Whether the 0-based ``line`` of ``text`` has a tab at or just before ``column``."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return False
    return "\t" in lines[line][max(column - 1, 0) : column + 1]


def _located(exc: yaml.YAMLError, text: str, file: str, offset: int) -> Problem:
    """A parser's error as a problem at its mark (``offset``: lines cut off above the text)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem(Location(file, offset + 1, 1), f"invalid YAML: {exc}")
    line, col = (mark.line + 1, mark.column + 1) if mark else (offset + 1, 1)
    message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
    if mark is not None and _tab_at(text, mark.line, mark.column):
        message = "a tab character: YAML indents with spaces only; replace the tab with spaces"
    return Problem(Location(file, line, col), f"invalid YAML: {message}")


_DOC_START = re.compile(r"^---(?:[ \t]|$)", re.MULTILINE)


def _compose(text: str, file: str) -> list[Node | Problem]:
    """The stream's documents as nodes, in order; a document that does not parse is a
    `Problem` in its place and parsing resumes at the next ``---`` line, so one broken document
    does not take the others with it."""
    out: list[Node | Problem] = []
    offset = 0  # lines of the text already consumed; blank lines keep marks where they were
    while True:
        loader = _COMPOSER("\n" * offset + text[_line_start(text, offset) :])
        try:
            while loader.check_node():
                out.append(loader.get_node())
            return out
        except yaml.YAMLError as exc:
            problem = _located(exc, text, file, offset)
            out.append(problem)
            # The error may be found at the next document's own `---`: resume there, but
            # always past where this attempt began.
            start = max(_line_start(text, problem.where.line - 1), _line_start(text, offset) + 1)
            resume = _DOC_START.search(text, start)
            if resume is None:
                return out
            offset = text.count("\n", 0, resume.start())
        finally:
            loader.dispose()


def _line_start(text: str, line: int) -> int:
    """The index in ``text`` where its 0-based ``line`` starts (the end when past it)."""
    index = 0
    for _ in range(line):
        found = text.find("\n", index)
        if found < 0:
            return len(text)
        index = found + 1
    return index


def load_stream(text: str, file: str) -> tuple[list[Document], list[Problem]]:
    """The valid documents of a YAML stream and the problems of the others: a duplicate key, a
    refused tag or a syntax error in one document does not stop the rest (after a syntax error,
    reading resumes at the next ``---``). Each document has its own budget of values."""
    docs: list[Document] = []
    problems: list[Problem] = []
    lines = text.split("\n")
    # Empty documents (e.g. after a trailing ---) are not cases.
    nodes = [
        n
        for n in _compose(text, file)
        if not (isinstance(n, ScalarNode) and n.tag.endswith(":null"))
    ]
    for index, node in enumerate(nodes):
        if isinstance(node, Problem):
            problems.append(node)
            continue
        builder = _Builder(file)
        doc = Document(file, None, lines=lines, index=index, count=len(nodes))
        try:
            doc.data = builder.build(node, (), doc)
        except CaseInvalid as exc:
            builder.problems += exc.problems
        if builder.problems:
            problems += builder.problems
        else:
            docs.append(doc)
    return docs, problems
