"""Choosing cases: ``-k EXPR`` (pytest's expression syntax), ``--tag T`` and ``--shard I/N``.

An expression is parsed by a small recursive-descent parser into a tree of tuples and matched
from the tree; nothing is ever evaluated. Grammar (pytest's ``-k``)::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | "(" expr ")" | WORD

A WORD matches a case when it is a substring of the case's name or of one of its tags, ignoring
case (as pytest matches test names and keywords). The empty expression matches every case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from runner.compile import CompiledCase
from runner.diagnostics import UsageError

# pytest's identifier characters: word characters and : + - . [ ] \ /
_TOKEN = re.compile(r"\s*(?:(?P<paren>[()])|(?P<word>[\w:+\-.\[\]\\/]+))")
_KEYWORDS = ("and", "or", "not")

# A parsed expression: ("word", text) | ("not", e) | ("and", l, r) | ("or", l, r) | ("all",)
Tree = tuple[object, ...]


class ExpressionError(UsageError):
    """A ``-k`` expression that does not parse: the column (1-based) and what was expected."""


@dataclass(frozen=True)
class Expression:
    """A parsed ``-k`` expression. ``Expression.parse("matmul and not float32")``."""

    text: str
    tree: Tree

    @classmethod
    def parse(cls, text: str) -> Expression:
        """Raises `ExpressionError` (a `UsageError`: exit status 2) with the column."""
        parser = _Parser(text)
        return cls(text, parser.parse())

    def matches(self, name: str, tags: Sequence[str] = ()) -> bool:
        """Whether the case named ``name`` with ``tags`` is selected."""
        haystack = [name.lower(), *(t.lower() for t in tags)]
        return _match(self.tree, haystack)


def _match(tree: Tree, haystack: list[str]) -> bool:
    kind = tree[0]
    if kind == "word":
        word = str(tree[1]).lower()
        return any(word in h for h in haystack)
    if kind == "not":
        return not _match(tree[1], haystack)  # type: ignore[arg-type]
    if kind == "and":
        return _match(tree[1], haystack) and _match(tree[2], haystack)  # type: ignore[arg-type]
    if kind == "or":
        return _match(tree[1], haystack) or _match(tree[2], haystack)  # type: ignore[arg-type]
    return True  # "all": the empty expression


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, 1-based column)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None:
                column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
                raise ExpressionError(
                    f"-k {text!r}: unexpected character {text[column - 1]!r} at column {column}"
                )
            kind = "paren" if m.group("paren") else "word"
            token, column = m.group(kind), m.start(kind) + 1
            if kind == "word" and token in _KEYWORDS:
                kind = token
            self.tokens.append((kind, token, column))
            pos = m.end()
        self.i = 0

    def parse(self) -> Tree:
        if not self.tokens:
            return ("all",)
        tree = self._or()
        if self.i < len(self.tokens):
            _, token, col = self.tokens[self.i]
            self._fail(f"unexpected {token!r} at column {col}")
        return tree

    def _peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def _fail(self, message: str) -> None:
        raise ExpressionError(f"-k {self.text!r}: {message}")

    def _or(self) -> Tree:
        tree = self._and()
        while self._peek() == "or":
            self.i += 1
            tree = ("or", tree, self._and())
        return tree

    def _and(self) -> Tree:
        tree = self._not()
        while self._peek() == "and":
            self.i += 1
            tree = ("and", tree, self._not())
        return tree

    def _not(self) -> Tree:
        if self.i >= len(self.tokens):
            self._fail(f"expected a word, 'not' or '(' at column {len(self.text) + 1}")
        kind, token, col = self.tokens[self.i]
        self.i += 1
        if kind == "not":
            return ("not", self._not())
        if kind == "word":
            return ("word", token)
        if token == "(":
            tree = self._or()
            if self._peek() != "paren" or self.tokens[self.i][1] != ")":
                where = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text) + 1
                self._fail(f"expected ')' at column {where} to close '(' at column {col}")
            self.i += 1
            return tree
        self._fail(f"expected a word, 'not' or '(' at column {col}, got {token!r}")
        raise AssertionError  # _fail raises


# --- shards ---------------------------------------------------------------------------------

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as (I, N), 1 <= I <= N. Raises `UsageError` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None:
        raise UsageError(f"--shard {text!r}: write I/N, e.g. --shard 1/4 (I from 1 to N)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise UsageError(
            f"--shard {text}: I must be between 1 and N (N >= 1), e.g. --shard 1/{max(count, 1)}"
        )
    return index, count


def shard(items: Sequence[T], names: Sequence[str], index: int, count: int) -> list[T]:
    """Shard ``index`` of ``count`` (1-based) of ``items`` (named ``names``): the cases are dealt
    round-robin in the order of their names, so the shards are disjoint, cover every case, differ
    in size by at most one, and do not depend on the order of the paths given; the chosen ones
    keep their run order."""
    order = sorted(range(len(items)), key=lambda i: names[i])
    chosen = {i for rank, i in enumerate(order) if rank % count == index - 1}
    return [item for i, item in enumerate(items) if i in chosen]


def choose(
    cases: Sequence[CompiledCase],
    select: str | None,
    tags: Sequence[str] | None = None,
    shard_spec: str | None = None,
) -> list[CompiledCase]:
    """The cases that ``-k
    select`` and ``--tag`` (any of ``tags``) choose, then shard ``--shard I/N`` of them.

    Raises `UsageError` for a bad expression or shard, and when cases were found but the
    selection leaves none: the caller must then leave its report alone."""
    expression = Expression.parse(select) if select is not None else None
    index, count = parse_shard(shard_spec) if shard_spec is not None else (1, 1)
    chosen = [
        c
        for c in cases
        if (expression is None or expression.matches(c.name, c.model.tags))
        and (not tags or any(t in c.model.tags for t in tags))
    ]
    what = " ".join(
        ([f"-k {select!r}"] if select is not None else []) + [f"--tag {t}" for t in tags or ()]
    )
    if cases and not chosen:
        raise UsageError(f"{what} matches none of the {len(cases)} cases found")
    if count > 1:
        picked = shard(chosen, [c.name for c in chosen], index, count)
        if chosen and not picked:
            raise UsageError(
                f"--shard {index}/{count} holds none of the {len(chosen)} cases selected: "
                "use fewer shards"
            )
        return picked
    return chosen
