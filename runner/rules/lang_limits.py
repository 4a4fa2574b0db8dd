"""The limits a rule runs under, and the errors that report a rule refused or failed.

Internal to the rule language; `runner.rules.lang` re-exports the limits and the two public errors.
`_Refused` is the refusal the size checks, estimators, operators, builtins and argument binding
raise without knowing where in the rule they are; the interpreter (`runner.rules.lang_eval`) turns
it into a `RuleEvalError` at the column of the step that failed.
"""

from __future__ import annotations

MAX_LENGTH = 10_000
MAX_DEPTH = 100  # tree levels; deeper rules are refused, so evaluating never recurses far
MAX_INT_BITS = 10_000
MAX_SEQUENCE = 10_000  # items in a Python list, tuple or str a rule builds
MAX_EINSUM_OPERANDS = 32
MAX_CREATED = 32  # all the arrays one evaluation makes: at most this many times max_elements
MAX_EINSUM_WORK = 10**10  # multiply-adds of einsum's unoptimised loop, an upper bound on its time
# Multiply-adds of one matrix product or decomposition (about a second here): the element limit
# bounds memory, not the cubic time of matmul, svd or inv on a 3000 x 3000 matrix.
MAX_WORK = 10**10
MAX_SECONDS = 10.0  # one evaluation of a rule, checked after every step


def _too_slow(work: int, what: str) -> _Refused:
    return _Refused(
        f"{what} would take about {work} multiply-adds (at most {MAX_WORK}); rules check small "
        "examples"
    )


class RuleLangError(Exception):
    """A rule refused by `parse_rule`, before anything runs.

    ``col`` is the 0-based column, in characters, in the text as given (counting every line of a
    multi-line text from the first character) of the offending sub-expression; for a refused
    attribute or method, of the attribute's name (``grad.__class__``: 5).
    """

    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.col = col


class RuleEvalError(Exception):
    """A rule failed while `evaluate` ran it: numpy raised, an array would exceed the element
    limit, a Python int would grow too big, the truth value of an array was asked, a name is not
    bound, ... ``col`` as in `RuleLangError`, of the innermost sub-expression that failed."""

    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.col = col


class _Refused(Exception):
    """A resource or type refusal found while evaluating; becomes a RuleEvalError with a col."""


def _too_big(n: int, limit: int) -> _Refused:
    return _Refused(f"would create an array of {n} elements (at most {limit})")
