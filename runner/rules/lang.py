"""Rule expressions: the numpy a user writes for a backward rule in a case file, run in a sandbox.

A case file comes from a stranger, so its rules (``input: grad @ other.T``) are parsed with
``ast.parse(text, mode="eval")``, checked against whitelists by `parse_rule`, and interpreted by
walking the tree (`evaluate`). Nothing here calls eval, exec or compile, imports torch, or reaches
anything the tables (`runner.rules.lang_tables`) do not name:

- literals: int, float, str, True/False/None (and true/false/none/null unless bound), tuples and
  lists; ``...`` inside ``[ ]``. No complex, bytes, dict or set literals;
- every binary and unary operator, comparisons (``is`` only against None, never ``in``),
  ``and``/``or``/``not``, ``a if c else b``, any subscript numpy takes;
- names bound by the caller (``grad``, ``out``, the op's arguments); ``np.<name>`` from
  `NP_FUNCTIONS` and `NP_CONSTANTS`, ``np.linalg.<name>`` from `NP_LINALG_FUNCTIONS`,
  ``<value>.<attribute>`` from `ARRAY_ATTRIBUTES`, ``<value>.<method>(...)`` from
  `ARRAY_METHODS` and the builtins `BUILTINS`. Each callable takes only the positional and
  keyword arguments its table row names: never ``out=``, nothing that writes in place.

Resources: before a call or operator that could build a big array runs, its result size is
estimated from its arguments and refused over ``max_elements``; Python ints stay under
`MAX_INT_BITS` bits and Python sequences under `MAX_SEQUENCE` items. A function with neither an
estimate nor a result bounded by its arguments is not on the lists.

This module is the language's public face; the work is done by internal modules, each importing
only those listed before it:

- `runner.rules.lang_limits`: the limits above, the errors, and the internal refusal `_Refused`;
- `runner.rules.lang_shapes`: counts and shapes of values, measured before numpy makes them;
- `runner.rules.lang_sizes`: the estimators, the elements a numpy call would create;
- `runner.rules.lang_python`: Python's operators and builtins, each bounded;
- `runner.rules.lang_tables`: the whitelists, one row per callable, and the public lists;
- `runner.rules.lang_check`: the static checks behind `parse_rule`;
- `runner.rules.lang_eval`: the interpreter behind `evaluate`.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.rules.lang_check import _Check, _Columns
from runner.rules.lang_eval import _Eval
from runner.rules.lang_limits import (
    MAX_CREATED,
    MAX_DEPTH,
    MAX_EINSUM_OPERANDS,
    MAX_EINSUM_WORK,
    MAX_INT_BITS,
    MAX_LENGTH,
    MAX_SECONDS,
    MAX_SEQUENCE,
    MAX_WORK,
    RuleEvalError,
    RuleLangError,
)
from runner.rules.lang_sizes import Bound, Estimator
from runner.rules.lang_tables import (
    ARRAY_ATTRIBUTES,
    ARRAY_METHODS,
    BUILTINS,
    LITERAL_NAMES,
    NP_CONSTANTS,
    NP_FUNCTIONS,
    NP_LINALG_FUNCTIONS,
    REFUSED_EXAMPLES,
    TYPE_NAMES,
)

__all__ = [
    "ARRAY_ATTRIBUTES",
    "ARRAY_METHODS",
    "BUILTINS",
    "LITERAL_NAMES",
    "MAX_CREATED",
    "MAX_DEPTH",
    "MAX_EINSUM_OPERANDS",
    "MAX_EINSUM_WORK",
    "MAX_SECONDS",
    "MAX_WORK",
    "MAX_INT_BITS",
    "MAX_LENGTH",
    "MAX_SEQUENCE",
    "NP_CONSTANTS",
    "NP_FUNCTIONS",
    "NP_LINALG_FUNCTIONS",
    "REFUSED_EXAMPLES",
    "TYPE_NAMES",
    "Bound",
    "Estimator",
    "RuleEvalError",
    "RuleExpr",
    "RuleLangError",
    "evaluate",
    "parse_rule",
]


@dataclass(frozen=True)
class RuleExpr:
    """A validated rule: ``names`` are the free names it uses (not np, not the literal names),
    each with the column of its first use, in order of appearance."""

    text: str
    tree: ast.Expression
    names: tuple[tuple[str, int], ...]


def parse_rule(text: str) -> RuleExpr:
    """Parse and validate one rule expression; every refusal happens here, before anything runs.

    Raises:
        RuleLangError: the text is not a string, is empty or longer than `MAX_LENGTH`
            characters, is not a Python expression, nests deeper than `MAX_DEPTH`, or uses
            anything outside the language in this module's docstring (with the column of the
            offending part and what is allowed instead).
    """
    if not isinstance(text, str):
        raise RuleLangError(f"a rule must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise RuleLangError(f"rule is {len(text)} characters long (at most {MAX_LENGTH})")
    if not text.strip():
        raise RuleLangError("empty rule")
    cols = _Columns(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise RuleLangError(f"invalid rule: {exc.msg}", cols.syntax(exc)) from None
    except (RecursionError, MemoryError):  # absurd nesting: Python's parser gives up
        raise RuleLangError(
            f"the rule nests more than {MAX_DEPTH} levels deep; split it into simpler steps"
        ) from None
    except ValueError as exc:  # NUL bytes
        raise RuleLangError(f"invalid rule: {exc}") from None
    check = _Check(cols)
    try:
        check.expr(tree.body, 0)
    except RecursionError:
        raise RuleLangError(
            f"the rule nests more than {MAX_DEPTH} levels deep; split it into simpler steps"
        ) from None
    names = tuple(sorted(check.names.items(), key=lambda item: item[1]))
    return RuleExpr(text, tree, names)


def evaluate(rule: RuleExpr, env: Mapping[str, Any], *, max_elements: int) -> Any:
    """Run ``rule`` with the names in ``env`` bound (``grad``, ``out``, the op's arguments);
    ``np`` is always the sandboxed namespace. Floating-point warnings are silenced (inf and NaN
    are values like any other). Returns what the rule computes: usually an array, a list of
    arrays for a list parameter.

    ``max_elements`` bounds every array the rule creates (checked before the step that would
    create it, and on its result).

    Raises:
        RuleEvalError: and nothing else: a name not bound, numpy raised, a result would exceed
            ``max_elements`` elements, `MAX_INT_BITS` bits or `MAX_SEQUENCE` items, the truth
            value of an array was asked, a dtype that is not numeric or bool, ...
    """
    try:
        if not isinstance(max_elements, int) or max_elements < 0:
            raise RuleEvalError(f"max_elements must be an int >= 0, not {max_elements!r}")
        with np.errstate(all="ignore"):
            return _Eval(_Columns(rule.text), env, max_elements).expr(rule.tree.body)
    except RuleEvalError:
        raise
    except RecursionError:
        raise RuleEvalError("the rule nests too deeply; split it up") from None
    except Exception as exc:  # a last resort: nothing but RuleEvalError leaves evaluate
        raise RuleEvalError(f"{type(exc).__name__}: {exc}") from None
