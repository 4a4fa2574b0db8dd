"""Graph expressions: Python expression syntax, parsed with `ast` and never evaluated.

`parse` turns one expression into a small tree of `Call`s whose leaves are `Name`s, numbers and
attribute literals. Only the forms listed in the README are accepted; anything else (attribute
access, lambdas, comprehensions, comparisons) is rejected with the column of the offending part.
"""

from __future__ import annotations

import ast
from collections.abc import Container
from dataclasses import dataclass, replace
from typing import Any

from runner.ops import REGISTRY
from runner.ops.indexing_subscript import MASK_REFUSED, TENSOR_SLOT
from runner.ops.meaning import (
    METHOD_ALIASES,
    NAMESPACE_ALIASES,
    NAMESPACES,
    RENAMED,
    TENSOR_METHODS,
    TORCH_ALIASES,
)

BINOPS: dict[type[ast.operator], str] = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.Pow: "pow",
    ast.MatMult: "matmul",
    ast.BitAnd: "bitwise_and",
    ast.BitOr: "bitwise_or",
    ast.BitXor: "bitwise_xor",
}
COMPARE_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "eq",
    ast.NotEq: "ne",
    ast.Lt: "lt",
    ast.LtE: "le",
    ast.Gt: "gt",
    ast.GtE: "ge",
}
# Lowercase spellings YAML users reach for; a graph name of the same spelling wins.
LITERAL_NAMES: dict[str, Any] = {
    "True": True,
    "False": False,
    "None": None,
    "true": True,
    "false": False,
    "none": None,
    "null": None,
}
# Python's and torch's spellings of infinity, literals here (the parsed tree is read, never run).
INFINITY_NAMES = frozenset({"math.inf", "torch.inf"})
INFINITY_TEXTS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
MAX_LENGTH = 10_000
# The names of the outputs of ops with several (torch's named tuples: .values, .indices).
OUTPUT_NAMES = frozenset(n for op in REGISTRY.values() if op.output_fields for n in op.outputs)


class ExprError(Exception):
    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.col = col  # 0-based column inside the expression


@dataclass(frozen=True)
class Name:
    id: str
    col: int


@dataclass(frozen=True)
class Const:
    """A literal: number, string, bool, None, or a (nested) list of those."""

    value: Any
    col: int


@dataclass(frozen=True)
class ListOf:
    """A list literal that holds at least one name or call (an operand list, e.g. cat([a, b]))."""

    items: tuple[Expr, ...]
    col: int


@dataclass(frozen=True)
class Call:
    op: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr, int], ...]  # name, value, column of the name
    col: int
    # For binary operators and subscripts: the source text shown in messages.
    via: str = ""
    # The call's own text in the expression (names anonymous nodes in reports).
    text: str = ""


Expr = Name | Const | ListOf | Call


def _dotted(node: ast.expr) -> str | None:
    """``torch.nn.functional`` for that chain of names; None for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _linalg_norm_advice(args: tuple[Expr, ...], kwargs: tuple[tuple[str, Expr, int], ...]) -> str:
    """What to write for torch.linalg.norm(A, ord, dim): torch's own dispatch, a vector norm for
    an int dim (or a 1-D A without dim), a matrix norm for a pair of dims (or a 2-D A without dim,
    or ord 'fro' / 'nuc')."""
    given = dict(zip(("A", "ord", "dim"), args, strict=False))
    given.update((k, v) for k, v, _ in kwargs)
    ord_, dim = given.get("ord"), given.get("dim")
    vector = "torch.linalg.vector_norm(x, ord, dim)"
    matrix = "torch.linalg.matrix_norm(x, ord, dim)"
    head = "torch.linalg.norm with ord is not taken here: write "
    if isinstance(ord_, Const) and isinstance(ord_.value, str):
        return f"{head}{matrix} (ord {ord_.value!r} is a matrix norm)"
    if isinstance(dim, Const) and isinstance(dim.value, int):
        return f"{head}{vector} (an int dim is a vector norm)"
    if isinstance(dim, Const) and isinstance(dim.value, list) and len(dim.value) == 2:
        return f"{head}{matrix} (a pair of dims is a matrix norm)"
    return (
        f"{head}{vector} for a 1-D x or an int dim, {matrix} for a 2-D x or a pair of dims "
        "(torch's choice)"
    )


def _namespace_call(
    space: str,
    spelled: str,
    name: str,
    args: tuple[Expr, ...],
    kwargs: tuple[tuple[str, Expr, int], ...],
    col: int,
) -> Call:
    """The catalogue op that ``name`` in torch's namespace ``space`` (as `NAMESPACES` lists
    them) names, with its keywords renamed where torch's differ (torch.linalg.vector_norm's ord
    is norm's p); ``spelled``: the call as written, for messages. Raises `ExprError` for a name
    the namespace does not hold here, and for torch.linalg.norm with ord (a matrix norm)."""
    if name not in NAMESPACES[space]:
        raise ExprError(
            f"{spelled} is not in gradcase's catalogue under that name "
            "(`gradcase ops` lists the ops; nn ops are spelled F.<name>)",
            col,
        )
    op, renames = RENAMED.get((space, name), (name, {}))
    if (space, name) == ("torch.linalg", "norm") and (
        len(args) > 1 or any(k == "ord" for k, _, _ in kwargs)
    ):
        routed = _linalg_norm(args, kwargs, col, spelled)
        if routed is None:
            raise ExprError(_linalg_norm_advice(args, kwargs), col)
        return routed
    kwargs = tuple((renames.get(k, k), v, c) for k, v, c in kwargs)
    return Call(op, args, kwargs, col, via=spelled)


def _linalg_norm(
    args: tuple[Expr, ...], kwargs: tuple[tuple[str, Expr, int], ...], col: int, spelled: str
) -> Call | None:
    """torch.linalg.norm(A, ord, dim, keepdim) with ord, as torch dispatches it where the call
    itself says which: a string ord ('fro', 'nuc') or a pair of dims is matrix_norm, an int dim
    vector_norm. None where it depends on A's number of dims (a numeric ord without dim: the
    vector norm of a 1-D A, the matrix norm of a 2-D one), which the caller advises on."""
    if len(args) > 4:
        return None
    given = {
        k: (v, getattr(v, "col", col))
        for k, v in zip(("A", "ord", "dim", "keepdim"), args, strict=False)
    }
    given.update((k, (v, c)) for k, v, c in kwargs)
    ord_ = given.get("ord", (None, col))[0]
    dim = given.get("dim", (None, col))[0]
    pair = isinstance(dim, Const) and isinstance(dim.value, list) and len(dim.value) == 2
    if (isinstance(ord_, Const) and isinstance(ord_.value, str)) or pair:
        op, first = "matrix_norm", "A"
    elif isinstance(dim, Const) and isinstance(dim.value, int) and not isinstance(dim.value, bool):
        op, first = "vector_norm", "input"
    else:
        return None
    if "A" not in given:
        return None
    keywords = tuple(
        (first if k == "A" else k, v, c)
        for k, (v, c) in given.items()
        if not (k == "ord" and isinstance(v, Const) and v.value is None)
    )
    return Call(op, (), keywords, col, via=spelled)


def parse(text: str, names: Container[str] = frozenset()) -> Expr:
    """``names`` are the inputs and nodes in scope (so ``true`` can still name a tensor); any
    container (a dict's keys view), so a graph of n nodes is parsed in time linear in n."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression is {len(text)} characters long (at most {MAX_LENGTH})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        hint = ""
        if "never closed" in str(exc.msg):
            hint = (
                " (if the graph is a flow mapping {...}, YAML ended the expression at a comma: "
                "quote it or use block style)"
            )
        offset = max((exc.offset or 1) - 1, 0)
        raise ExprError(f"invalid expression: {exc.msg}{hint}", offset) from None
    except (RecursionError, MemoryError, ValueError) as exc:  # absurd nesting, NUL bytes
        raise ExprError(f"invalid expression: {type(exc).__name__}") from None
    lead = len(text) - len(text.lstrip())
    try:
        return _Lower(names, lead, text.strip()).expr(tree.body)
    except RecursionError:
        raise ExprError("expression nests too deeply; split it into named nodes") from None


class _Lower:
    def __init__(self, names: Container[str], lead: int, text: str) -> None:
        self.names = names
        self.lead = lead
        self.encoded = text.encode()
        self.text = text

    def col(self, node: ast.AST) -> int:
        # ast counts UTF-8 bytes; messages count characters.
        offset = getattr(node, "col_offset", 0)
        return self.lead + len(self.encoded[:offset].decode("utf-8", errors="ignore"))

    def expr(self, node: ast.expr) -> Expr:
        lowered = self.lower(node)
        if isinstance(lowered, Call) and not lowered.text:
            text = ast.get_source_segment(self.text, node) or ""
            return replace(lowered, text=" ".join(text.split()))
        return lowered

    def lower(self, node: ast.expr) -> Expr:
        col = self.col(node)
        if isinstance(node, ast.Name):
            if node.id not in self.names and node.id in LITERAL_NAMES:
                return Const(LITERAL_NAMES[node.id], col)
            return Name(node.id, col)
        if isinstance(node, ast.Constant):
            return self.constant(node, col)
        if isinstance(node, ast.UnaryOp | ast.BoolOp):
            return self.unary(node, col)
        if isinstance(node, ast.BinOp):
            return self.binary(node, col)
        if isinstance(node, ast.Call):
            return self.call(node, col)
        if isinstance(node, ast.List | ast.Tuple):
            items = tuple(self.expr(e) for e in node.elts)
            if all(isinstance(i, Const) for i in items):
                return Const([i.value for i in items if isinstance(i, Const)], col)
            return ListOf(items, col)
        if isinstance(node, ast.Attribute):
            return self.attribute(node, col)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, col)
        if isinstance(node, ast.Compare):
            return self.compare(node, col)
        raise ExprError(f"{type(node).__name__} is not allowed in a graph expression", col)

    def constant(self, node: ast.Constant, col: int) -> Const:
        if isinstance(node.value, int) and not -(2**63) <= node.value < 2**63:
            raise ExprError(f"integer literal {node.value} does not fit in int64", col)
        if isinstance(node.value, bool | int | float | str) or node.value is None:
            return Const(node.value, col)
        raise ExprError(f"unsupported literal {node.value!r}", col)

    def infinity(self, args: tuple[Expr, ...], kwargs: list[Any], col: int) -> Const:
        """``float("inf")``, ``float("-inf")`` (any case, ``infinity`` too): the literal, as
        Python reads it; any other float(...) is refused."""
        text = args[0].value if len(args) == 1 and isinstance(args[0], Const) else None
        if kwargs or not isinstance(text, str) or text.strip().lower() not in INFINITY_TEXTS:
            raise ExprError(
                'float(...) in a graph is only infinity: float("inf"), float("-inf") (or '
                "math.inf, -math.inf); write other numbers as literals",
                col,
            )
        return Const(float(text), col)

    def unary(self, node: ast.UnaryOp | ast.BoolOp, col: int) -> Expr:
        """``~x``, ``-x`` and ``+x``; Python's ``not``, ``and`` and ``or`` are refused."""
        if isinstance(node, ast.BoolOp):
            symbol = "&" if isinstance(node.op, ast.And) else "|"
            raise ExprError(
                f"`and`/`or` are Python's; for bool tensors write a {symbol} b (with "
                "parentheses around comparisons: (x > 0) & (x < 1))",
                col,
            )
        if isinstance(node.op, ast.Invert):
            return Call("bitwise_not", (self.expr(node.operand),), (), col, via="operator ~")
        if isinstance(node.op, ast.Not):
            raise ExprError("`not` is Python's; for a bool tensor write ~mask", col)
        inner = self.expr(node.operand)
        if isinstance(node.op, ast.UAdd):
            return inner
        if (
            isinstance(inner, Const)
            and isinstance(inner.value, int | float)
            and not isinstance(inner.value, bool)
        ):
            return Const(-inner.value, col)
        return Call("neg", (inner,), (), col, via="unary -")

    def binary(self, node: ast.BinOp, col: int) -> Call:
        op = BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(
                f"operator {type(node.op).__name__} is not supported (use + - * / ** @ & | ^ ~)",
                col,
            )
        return Call(
            op,
            (self.expr(node.left), self.expr(node.right)),
            (),
            col,
            via=f"operator {_SYMBOL[op]}",
        )

    def call(self, node: ast.Call, col: int) -> Call | Const:
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ExprError("*args is not supported", col)
        kwargs = []
        for kw in node.keywords:
            if kw.arg is None:
                raise ExprError("**kwargs is not supported", self.col(kw.value))
            kwargs.append((kw.arg, self.expr(kw.value), self.col(kw)))
        args = tuple(self.expr(a) for a in node.args)
        if (
            isinstance(node.func, ast.Name)
            and node.func.id == "float"
            and "float" not in self.names
        ):
            return self.infinity(args, kwargs, col)
        if isinstance(node.func, ast.Name):
            name = node.func.id
            if name in TORCH_ALIASES and name not in self.names:
                return Call(TORCH_ALIASES[name], args, tuple(kwargs), col, via=name)
            return Call(name, args, tuple(kwargs), col)
        if isinstance(node.func, ast.Attribute):
            return self.spelled_call(node.func, args, tuple(kwargs), col)
        raise ExprError(
            "only ops can be called: by name (sum(x, dim=0)), as a method (x.sum(0)) or "
            "through torch, F or torch.nn.functional",
            col,
        )

    def compare(self, node: ast.Compare, col: int) -> Call:
        if len(node.ops) > 1:
            raise ExprError(
                "a chained comparison is Python's, not torch's: write (a < b) & (b < c)", col
            )
        kind = COMPARE_OPS.get(type(node.ops[0]))
        if kind is None:
            raise ExprError(
                f"{type(node.ops[0]).__name__} is not a tensor comparison (use == != < <= > >=)",
                col,
            )
        return Call(
            kind,
            (self.expr(node.left), self.expr(node.comparators[0])),
            (),
            col,
            via=f"operator {_SYMBOL[kind]}",
        )

    def spelled_call(
        self,
        func: ast.Attribute,
        args: tuple[Expr, ...],
        kwargs: tuple[tuple[str, Expr, int], ...],
        col: int,
    ) -> Call:
        """torch's other spellings of a call: ``torch.relu(a)``, ``F.softmax(x, dim=1)``,
        ``torch.nn.functional.gelu(x)``, ``torch.linalg.vector_norm(x, 3)`` name the catalogue
        op of the same meaning; ``x.sum(dim=0)`` is the method form, ``sum(x, dim=0)``."""
        prefix = _dotted(func.value)
        name = TORCH_ALIASES.get(func.attr, func.attr)
        if prefix is not None and prefix.split(".")[0] in ("np", "numpy"):
            raise ExprError(
                f"{prefix}.{name}: the graph speaks torch (numpy is for rules): write "
                f"{name}(...) or torch.{name}(...)",
                col,
            )
        # A tensor named like a namespace (an input called F) is a tensor: its method is meant.
        tensor = prefix is not None and prefix.split(".")[0] in self.names
        space = None if tensor else NAMESPACE_ALIASES.get(prefix or "", prefix)
        if space in NAMESPACES:
            return _namespace_call(space, f"{prefix}.{name}", name, args, kwargs, col)
        via = f"method .{name}()"
        if name in METHOD_ALIASES:
            name = METHOD_ALIASES[name]
        elif name not in TENSOR_METHODS:
            raise ExprError(
                f".{name}() is not a tensor method gradcase knows; the methods are torch's "
                "for the catalogue's ops (`gradcase ops`), e.g. x.sum(dim=0), x.softmax(-1)",
                self.col(func) + len(ast.get_source_segment(self.text, func.value) or ""),
            )
        return Call(name, (self.expr(func.value), *args), kwargs, col, via=via)

    def attribute(self, node: ast.Attribute, col: int) -> Expr:
        """``x.T`` (a 0-D to 2-D tensor transposed; torch.t) and ``x.mT`` (the last two dims
        swapped); any other attribute is refused with what to write."""
        dotted = _dotted(node)
        if dotted in INFINITY_NAMES and dotted.split(".")[0] not in self.names:
            return Const(float("inf"), col)
        if node.attr == "T":
            return Call("t", (self.expr(node.value),), (), col, via="attribute .T")
        if node.attr == "mT":
            return Call(
                "transpose",
                (self.expr(node.value), Const(-2, col), Const(-1, col)),
                (),
                col,
                via="attribute .mT",
            )
        if node.attr in OUTPUT_NAMES:
            # One output of a call with several (max(x, 1).indices); the lowering knows which
            # names are such calls, and refuses it on a tensor.
            return Call(
                "getitem",
                (self.expr(node.value),),
                (("output", Const(node.attr, col), col),),
                col,
                via=f"attribute .{node.attr}",
            )
        raise ExprError(
            f"attribute .{node.attr} is not allowed in a graph: the attributes are .T and .mT "
            "(and the outputs of ops with several, such as .values and .indices of max(x, dim)); "
            "methods are called, e.g. x.sum(dim=0)",
            col,
        )

    def subscript(self, node: ast.Subscript, col: int) -> Call:
        """``x[1:, None]`` is a getitem; with integer tensors among the items (``x[idx]``,
        ``x[:, i, j]``) it is the op `index_tensor` (torch's advanced indexing), the tensors its
        ``indices`` and the rest a template with `TENSOR_SLOT` where each tensor stands."""
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        tensors = [i for i in items if self.is_tensor_item(i)]
        at = self.col(node.slice)
        if not tensors:
            template = tuple(self.index_item(i) for i in items)
            return Call(
                "getitem", (self.expr(node.value),), (("index", Const(template, at), col),), col,
                via="subscript",
            )  # fmt: skip
        for item in tensors:
            if _is_mask(item):
                raise ExprError(MASK_REFUSED, self.col(item))
        template = tuple(TENSOR_SLOT if i in tensors else self.index_item(i) for i in items)
        return Call(
            "index_tensor",
            (self.expr(node.value), ListOf(tuple(self.expr(i) for i in tensors), at)),
            (("index", Const(template, at), col),),
            col,
            via="subscript",
        )

    def is_tensor_item(self, node: ast.expr) -> bool:
        """A subscript item that is an index tensor: anything but a slice, None, ..., or an
        int (or float / bool literal, refused by `int_literal`)."""
        if isinstance(node, ast.Slice):
            return False
        if isinstance(node, ast.Constant) and (node.value is Ellipsis or node.value is None):
            return False
        value = self.expr(node)
        return not (isinstance(value, Const) and not isinstance(value.value, list))

    def index_item(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Slice):
            parts = [
                None if p is None else self.int_literal(p)
                for p in (node.lower, node.upper, node.step)
            ]
            return slice(*parts)
        if isinstance(node, ast.Constant) and (node.value is Ellipsis or node.value is None):
            return node.value
        return self.int_literal(node)

    def int_literal(self, node: ast.expr) -> int:
        value = self.expr(node)
        if (
            isinstance(value, Const)
            and isinstance(value.value, int)
            and not isinstance(value.value, bool)
        ):
            return value.value
        raise ExprError(
            "a subscript item is an integer, a slice, ..., None or an integer tensor",
            self.col(node),
        )


MASK_OPS = frozenset(
    "eq ne lt le gt ge logical_and logical_or logical_not logical_xor isnan isinf".split()
)


def _is_mask(node: ast.expr) -> bool:
    """A subscript item that is surely a bool tensor: a comparison, ~, &, |, ^ or a logical
    call (an input of dtype bool is refused when the forward meets it)."""
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd | ast.BitOr | ast.BitXor):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in MASK_OPS
    )


_SYMBOL = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "div": "/",
    "pow": "**",
    "matmul": "@",
    "bitwise_and": "&",
    "bitwise_or": "|",
    "bitwise_xor": "^",
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
}
