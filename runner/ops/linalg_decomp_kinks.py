"""Where the linalg_decomp family's gradients are not derivatives (`runner.ops.kinks` reads this
table): matrices within reach of singular (inv, solve, slogdet, logdet, negative matrix powers:
a pole, or logdet's sign change), det at an exactly singular matrix (torch's gradient is 0
there, not the adjugate), a zero diagonal of a triangular solve, and the conventions of
cholesky and cholesky_solve, whose forwards read one triangle while torch's gradients fill
both. A matrix operand moves as a whole under the oracle's projections: every element is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.linalg_decomp_rules import det_lu

Kinks = Callable[..., str | None]


def _smallest_singular(a: Any) -> Any:
    m = np.asarray(a, np.float64)
    if m.size == 0:
        return np.zeros(0)
    with np.errstate(all="ignore"):
        return np.linalg.svd(np.nan_to_num(m), compute_uv=False)[..., -1]


def _near_singular(name: str) -> Kinks:
    """A matrix whose smallest singular value is within n h of 0: moving each element by h
    moves it by at most n h (the Frobenius bound)."""

    def kinks(h: float, **args: Any) -> str | None:
        a = np.asarray(args[name])
        if a.ndim < 2 or a.size == 0:
            return None
        near = np.count_nonzero(_smallest_singular(a) <= a.shape[-1] * h)
        return f"{near} matrix(es) of '{name}' within {h:.2g} of singular" if near else None

    return kinks


def _det(h: float, A: Any, **_: Any) -> str | None:
    a = np.asarray(A, np.float64)
    if a.size == 0:
        return None
    with np.errstate(all="ignore"):
        n = int(np.count_nonzero(det_lu(a) == 0))
    return f"{n} singular matrix(es): torch's gradient is 0 there, not the adjugate" if n else None


def _off_diagonal(a: Any, moved: Any) -> bool:
    shape = np.shape(a)
    if len(shape) < 2 or shape[-1] < 2:
        return False
    off = ~np.eye(shape[-1], dtype=bool)
    if moved is None or np.shape(moved) != shape:
        return True
    return bool(np.any(np.asarray(moved) & off))


def _cholesky(h: float, A: Any, moved: Any = None, **_: Any) -> str | None:
    # torch's gradient is the derivative along symmetric perturbations: a movement whose
    # elements are symmetric (A = M M^T + c I moved through M) is one; one element moved, or
    # every element (a random projection, unequal amounts), is not.
    shape = np.shape(A)
    if len(shape) < 2 or shape[-1] < 2:
        return None
    if moved is not None and np.shape(moved) == shape:
        m = np.asarray(moved, bool)
        if not m.all() and np.array_equal(m, np.swapaxes(m, -1, -2)):
            return None
    return "'A' moved off its diagonal unsymmetrically: torch's cholesky gradient is symmetrised"


def _cholesky_solve(
    h: float, input: Any, input2: Any, upper: bool = False, moved: Any = None, **_: Any
) -> str | None:
    # torch's gL multiplies by the whole of input2: a nonzero unread triangle makes every
    # element's gradient a convention. input and input2 broadcast together only by chance: a
    # mask at input2's shape may mix in input's elements, so any off-diagonal movement counts.
    c = np.asarray(input2, np.float64)
    unread = np.tril(c, -1) if upper else np.triu(c, 1)
    if np.any(unread != 0):
        return "'input2' is not triangular: torch's gradient multiplies by its unread triangle"
    if _off_diagonal(input2, moved):
        return "'input2' may have moved off its diagonal: torch's gradient fills both triangles"
    return _diagonal_zero(h, input2, "input2")


def _diagonal_zero(h: float, a: Any, name: str) -> str | None:
    d = np.abs(np.diagonal(np.asarray(a, np.float64), axis1=-2, axis2=-1))
    n = int(np.count_nonzero(d <= h))
    return f"{n} diagonal element(s) of '{name}' within {h:.2g} of 0" if n else None


def _solve_triangular(h: float, A: Any, unitriangular: bool = False, **_: Any) -> str | None:
    return None if unitriangular else _diagonal_zero(h, A, "A")


def _matrix_power(h: float, A: Any, n: int = 1, **_: Any) -> str | None:
    return _near_singular("A")(h, A=A) if n < 0 else None


LINALG_DECOMP_KINKS: dict[str, Kinks] = {
    "inv": _near_singular("A"),
    "det": _det,
    "slogdet": _near_singular("A"),
    "logdet": _near_singular("input"),
    "solve": _near_singular("A"),
    "solve_triangular": _solve_triangular,
    "cholesky": _cholesky,
    "cholesky_solve": _cholesky_solve,
    "matrix_power": _matrix_power,
}
