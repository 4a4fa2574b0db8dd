"""Static validation: every refusal `parse_rule` makes once the text parses, with the column of
the offending part and what is allowed instead; and `_Columns`, which turns ast positions into the
columns errors report.

Internal to the rule language (`runner.rules.lang`). What is allowed is read from the tables
(`runner.rules.lang_tables`); nothing here runs any part of a rule.
"""

from __future__ import annotations

import ast
import difflib
import re
from typing import Any, NoReturn

from runner.rules.lang_limits import MAX_DEPTH, MAX_INT_BITS, RuleLangError
from runner.rules.lang_tables import (
    _ARRAY_ATTRS,
    _BUILTIN_SPECS,
    _CONVERT,
    _LINALG_SPECS,
    _METHOD_SPECS,
    _NP,
    _NP_SPECS,
    _NP_VALUES,
    _REFUSED_METHODS,
    _REFUSED_NP,
    _SCALAR_TYPES,
    ARRAY_ATTRIBUTES,
    ARRAY_METHODS,
    BUILTINS,
    LITERAL_NAMES,
    NP_LINALG_FUNCTIONS,
    TYPE_NAMES,
    _Sig,
)

# --- positions -----------------------------------------------------------------------------------


class _Columns:
    """ast positions (line, UTF-8 byte offset in the stripped text) as character offsets in the
    text as given."""

    def __init__(self, text: str) -> None:
        self.lead = len(text) - len(text.lstrip())
        self.length = len(text)
        body = text.strip()
        self.starts = [0]
        self.lines: list[bytes] = []
        at = 0
        for newline in re.finditer(r"\r\n|\r|\n", body):
            self.lines.append(body[at : newline.start()].encode())
            at = newline.end()
            self.starts.append(at)
        self.lines.append(body[at:].encode())

    def line(self, lineno: int) -> int:
        """The index of 1-based line ``lineno`` in ``lines``, clamped into range."""
        return min(max(lineno - 1, 0), len(self.lines) - 1)

    def at(self, lineno: int, byte_col: int) -> int:
        i = self.line(lineno)
        chars = len(self.lines[i][:byte_col].decode("utf-8", errors="ignore"))
        return self.lead + self.starts[i] + chars

    def of(self, node: ast.AST) -> int:
        return self.at(getattr(node, "lineno", 1), getattr(node, "col_offset", 0))

    def attribute(self, node: ast.Attribute) -> int:
        end = self.at(node.end_lineno or node.lineno, node.end_col_offset or 0)
        return max(end - len(node.attr), 0)

    def syntax(self, exc: SyntaxError) -> int:
        i = self.line(exc.lineno or 1)
        return min(self.lead + self.starts[i] + max((exc.offset or 1) - 1, 0), self.length)


# --- validation ----------------------------------------------------------------------------------

_REFUSED_NODES: dict[type, str] = {
    ast.Lambda: "lambda is not allowed in a rule",
    **dict.fromkeys(
        (ast.ListComp, ast.SetComp, ast.DictComp),
        "comprehensions are not allowed in a rule (there are no loops; use numpy)",
    ),
    ast.GeneratorExp: "generator expressions are not allowed in a rule (use numpy)",
    ast.NamedExpr: "assignment (:=) is not allowed in a rule",
    **dict.fromkeys((ast.JoinedStr, ast.FormattedValue), "f-strings are not allowed in a rule"),
    ast.Await: "await is not allowed in a rule",
    **dict.fromkeys((ast.Yield, ast.YieldFrom), "yield is not allowed in a rule"),
    ast.Dict: "dict literals are not allowed in a rule (lists and tuples are)",
    ast.Set: "set literals are not allowed in a rule (lists and tuples are)",
    ast.Starred: "* unpacking is not allowed in a rule",
}


def _is_np(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "np"


def _is_linalg(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "linalg" and _is_np(node.value)


def _did_you_mean(word: str, options: Any, form: str, otherwise: str = "") -> str:
    """``form`` with the option closest to ``word`` in its ``{}``; ``otherwise`` when none is."""
    found = difflib.get_close_matches(word, list(options), n=1)
    return form.format(found[0]) if found else otherwise


_CALL_FORMS = (
    f"rules call np.<function>(...), np.linalg.<function>(...), <value>.<method>(...) and "
    f"the builtins {', '.join(BUILTINS)}"
)


class _Check:
    """Every static refusal; collects the free names."""

    def __init__(self, cols: _Columns) -> None:
        self.cols = cols
        self.names: dict[str, int] = {}

    def fail(self, message: str, col: int) -> NoReturn:
        raise RuleLangError(message, col)

    def expr(self, node: ast.expr, depth: int, index: bool = False) -> None:
        col = self.cols.of(node)
        if depth > MAX_DEPTH:
            self.fail(
                f"the rule nests more than {MAX_DEPTH} levels deep; split it into simpler steps",
                col,
            )
        d = depth + 1
        if isinstance(node, ast.Constant):
            self.constant(node, index, col)
        elif isinstance(node, ast.Name):
            self.name(node, col)
        elif isinstance(node, ast.Attribute):
            self.attribute(node, d)
        elif isinstance(node, ast.Call):
            self.call(node, d)
        elif isinstance(node, ast.BinOp):
            self.expr(node.left, d)
            self.expr(node.right, d)
        elif isinstance(node, ast.UnaryOp):
            self.expr(node.operand, d)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self.expr(value, d)
        elif isinstance(node, ast.Compare):
            self.compare(node, d, col)
        elif isinstance(node, ast.IfExp):
            for part in (node.body, node.test, node.orelse):
                self.expr(part, d)
        elif isinstance(node, ast.Subscript):
            self.expr(node.value, d)
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for item in items:
                self.expr(item, d, index=True)
        elif isinstance(node, ast.Slice) and index:
            for bound in (node.lower, node.upper, node.step):
                if bound is not None:
                    self.expr(bound, d)
        elif isinstance(node, ast.List | ast.Tuple):
            for item in node.elts:
                self.expr(item, d)
        else:
            why = _REFUSED_NODES.get(type(node), f"{type(node).__name__} is not allowed in a rule")
            self.fail(why, col)

    def constant(self, node: ast.Constant, index: bool, col: int) -> None:
        value = node.value
        if value is Ellipsis:
            if not index:
                self.fail("... is only allowed inside [ ]", col)
        elif isinstance(value, complex):
            self.fail("complex numbers are not supported in rules", col)
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            self.fail(f"integer literal of {value.bit_length()} bits (at most {MAX_INT_BITS})", col)
        elif not (value is None or isinstance(value, bool | int | float | str)):
            self.fail(f"{type(value).__name__} literals are not allowed in a rule", col)

    def name(self, node: ast.Name, col: int) -> None:
        if node.id.startswith("__") or node.id.endswith("__"):
            self.fail(f"{node.id}: names with __ are not allowed in a rule", col)
        if node.id == "np":
            self.fail("np can only be used as np.<name>, e.g. np.exp(x) or np.float32", col)
        if node.id not in LITERAL_NAMES and node.id not in TYPE_NAMES:
            self.names.setdefault(node.id, col)

    def attribute(self, node: ast.Attribute, depth: int, called: bool = False) -> _Sig | None:
        """Checks ``node`` (the function of a call when ``called``); returns the call's sig."""
        col, attr = self.cols.attribute(node), node.attr
        if attr.startswith("_"):
            self.fail(f".{attr}: attributes starting with _ are not allowed in a rule", col)
        if _is_np(node.value):
            return self.np_member(attr, called, col)
        if _is_linalg(node.value):
            if attr not in _LINALG_SPECS:
                self.fail(
                    f"np.linalg.{attr} is not allowed"
                    + _did_you_mean(attr, _LINALG_SPECS, "; did you mean np.linalg.{}?")
                    + f" (np.linalg: {', '.join(NP_LINALG_FUNCTIONS)})",
                    col,
                )
            if not called:
                self.fail(f"np.linalg.{attr} is a function; call it: np.linalg.{attr}(...)", col)
            return _LINALG_SPECS[attr].sig
        self.expr(node.value, depth)
        if called and attr in _METHOD_SPECS:
            return _METHOD_SPECS[attr].sig
        if not called and attr in ARRAY_ATTRIBUTES:
            return None
        if attr in _REFUSED_METHODS:
            self.fail(f".{attr}() {_REFUSED_METHODS[attr]}", col)
        if attr in _METHOD_SPECS:
            self.fail(f".{attr} is a method; call it: .{attr}(...)", col)
        if attr in ARRAY_ATTRIBUTES:
            self.fail(f".{attr} is an attribute, not a method; drop the ()", col)
        self.fail(
            f".{attr} is not allowed"
            + _did_you_mean(attr, (*ARRAY_ATTRIBUTES, *ARRAY_METHODS), "; did you mean .{}?")
            + f" (attributes: {', '.join(sorted(_ARRAY_ATTRS))};"
            + f" methods: {', '.join(ARRAY_METHODS)})",
            col,
        )

    def np_member(self, attr: str, called: bool, col: int) -> _Sig | None:
        if attr in _REFUSED_NP:
            self.fail(f"np.{attr} {_REFUSED_NP[attr]}", col)
        if attr == "linalg":
            self.fail("np.linalg can only be used as np.linalg.<function>(...)", col)
        if attr in _NP:
            if not called:
                self.fail(f"np.{attr} is a function; call it: np.{attr}(...)", col)
            return _NP_SPECS[attr].sig
        if attr in _SCALAR_TYPES:
            return _CONVERT.sig if called else None
        if attr in _NP_VALUES:
            if called:
                self.fail(f"np.{attr} is a constant, not a function", col)
            return None
        self.fail(
            f"np.{attr} is not allowed in a rule"
            + _did_you_mean(
                attr,
                (*_NP, *_NP_VALUES),
                "; did you mean np.{}?",
                " (see NP_FUNCTIONS in runner.rules.lang)",
            ),
            col,
        )

    def call(self, node: ast.Call, depth: int) -> None:
        func, col = node.func, self.cols.of(node.func)
        sig: _Sig | None
        if isinstance(func, ast.Name):
            if func.id not in _BUILTIN_SPECS:
                self.fail(
                    f"{func.id}() is not allowed; "
                    + _did_you_mean(func.id, _BUILTIN_SPECS, "did you mean {}()? ")
                    + _CALL_FORMS,
                    col,
                )
            sig, label = _BUILTIN_SPECS[func.id][0], func.id
        elif isinstance(func, ast.Attribute):
            sig, label = self.attribute(func, depth, called=True), f".{func.attr}"
            if _is_np(func.value):
                label = f"np.{func.attr}"
            elif _is_linalg(func.value):
                label = f"np.linalg.{func.attr}"
        else:
            # What is called says more than "not a name" when it is refused itself (a lambda).
            self.expr(func, depth)
            self.fail(f"only names can be called; {_CALL_FORMS}", col)
        assert sig is not None  # every call form returns its sig or fails
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail("*args is not allowed in a rule", self.cols.of(arg))
            self.expr(arg, depth)
        if len(node.args) > len(sig.pos) and sig.var is None:
            self.fail(
                f"{label}() takes at most {len(sig.pos)} positional arguments in a rule; "
                "pass the others by keyword",
                self.cols.of(node.args[len(sig.pos)]),
            )
        for kw in node.keywords:
            kcol = self.cols.of(kw)
            if kw.arg is None:
                self.fail("**kwargs is not allowed in a rule", kcol)
            if kw.arg == "out":
                self.fail("out= writes into an existing array; rules may not", kcol)
            if kw.arg not in sig.keywords():
                allowed = ", ".join(sig.keywords()) or "none"
                self.fail(
                    f"{label}() takes no keyword {kw.arg!r} in a rule (keywords: {allowed})", kcol
                )
            self.expr(kw.value, depth)

    def compare(self, node: ast.Compare, depth: int, col: int) -> None:
        self.expr(node.left, depth)
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                self.fail("'in' and 'not in' are not allowed in a rule", col)
            if isinstance(op, ast.Is | ast.IsNot) and not (_is_none(left) or _is_none(right)):
                self.fail("'is' and 'is not' only compare with None; use == or !=", col)
            self.expr(right, depth)
            left = right


def _is_none(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and node.value is None) or (
        isinstance(node, ast.Name) and node.id in ("none", "null")
    )
