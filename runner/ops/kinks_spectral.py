"""Where the linalg_spectral ops are not differentiable, or where their gradient is a convention
(`runner.ops.kinks` reads `SPECTRAL_KINKS`): repeated eigenvalues and singular values (the
eigenvectors' gradient divides by their differences), zero singular values, a rank change of
pinv at its cut-off, ties of matrix_norm's extremum, and the sign convention of eigenvectors and
singular vectors (flipping where two entries of largest magnitude trade places).

A perturbation of size ``h`` per element moves the spectrum by up to ``h`` times the matrix's
size (``sqrt(m n)`` bounds its Frobenius norm), so "within" means within that distance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.spec import Array

Kinks = Callable[..., str | None]


def _f(x: Any) -> Array:
    return np.asarray(x, dtype=np.float64)


def _reach(a: Array, h: float) -> float:
    return 2 * h * float(np.sqrt(a.shape[-2] * a.shape[-1]))


def _gaps(values: Array, reach: float, what: str) -> str | None:
    """Two of ``values`` (sorted along the last axis) within ``reach``."""
    if values.shape[-1] < 2:
        return None
    close = np.abs(np.diff(np.sort(values, axis=-1), axis=-1)) <= reach
    n = int(np.count_nonzero(np.any(close, axis=-1)))
    return f"{n} matrix(es) with repeated {what} (within {reach:.2g})" if n else None


def _zero(values: Array, reach: float, what: str) -> str | None:
    n = int(np.count_nonzero(np.any(np.abs(values) <= reach, axis=-1)))
    return f"{n} matrix(es) with a {what} within {reach:.2g} of 0" if n else None


def _gauge(v: Array, values: Array, reach: float) -> str | None:
    """A vector (column of ``v``) whose two largest |entries| may trade places: the sign
    convention then flips it. A vector moves by about reach / (its value's gap)."""
    if v.shape[-2] < 2:
        return None
    s = np.sort(values, axis=-1)
    gap = np.min(np.diff(s, axis=-1), axis=-1, keepdims=True) if s.shape[-1] > 1 else 1.0
    top = np.sort(np.abs(v), axis=-2)
    with np.errstate(divide="ignore"):
        near = (top[..., -1, :] - top[..., -2, :]) <= 4 * reach / np.maximum(gap, 1e-300)
    n = int(np.count_nonzero(near))
    return f"{n} vector(s) whose sign convention may flip" if n else None


def _eigh(h: float, input: Any, UPLO: str = "L", moved: Any = None, **_: Any) -> str | None:
    a = _f(input)
    if moved is None or not np.array_equal(moved, np.swapaxes(moved, -1, -2)):
        return (
            "an element moved without its mirror: torch's eigh gradient is the symmetric one, "
            "while its forward reads one triangle"
        )
    w, v = np.linalg.eigh(a, UPLO="U" if UPLO == "U" else "L")
    reach = _reach(a, h)
    return _gaps(w, reach, "eigenvalues") or _gauge(v, w, reach)


def _svdvals(h: float, A: Any, **_: Any) -> str | None:
    a = _f(A)
    s = np.linalg.svd(a, compute_uv=False)
    reach = _reach(a, h)
    return _gaps(s, reach, "singular values") or _zero(s, reach, "singular value")


def _svd(h: float, A: Any, **_: Any) -> str | None:
    a = _f(A)
    u, s, _vh = np.linalg.svd(a, full_matrices=False)
    reach = _reach(a, h)
    return _svdvals(h, A) or _gauge(u, s, reach)


def _qr(h: float, A: Any, **_: Any) -> str | None:
    a = _f(A)
    r: Array = np.asarray(np.linalg.qr(a, mode="r"))
    k = min(a.shape[-2], a.shape[-1])
    diag = np.diagonal(r[..., :k, :k], axis1=-2, axis2=-1)
    return _zero(diag, _reach(a, h), "diagonal entry of R (rank-deficient)")


def _pinv(
    h: float, input: Any, atol: Any = None, rtol: Any = None, hermitian: bool = False, **_: Any
) -> str | None:
    a = _f(input)
    s = np.abs(np.linalg.eigvalsh(a)) if hermitian else np.linalg.svd(a, compute_uv=False)
    reach = _reach(a, h)
    if rtol is None:
        rtol = 0.0 if atol is not None and atol > 0 else float(np.finfo(np.float64).eps)
    cut = np.maximum(0.0 if atol is None else atol, rtol * np.max(s, axis=-1, keepdims=True))
    near = np.abs(s - cut) <= reach
    n = int(np.count_nonzero(near | (s <= reach)))
    return (
        f"{n} singular value(s) within {reach:.2g} of the cut-off or 0: the rank may change"
        if n
        else None
    )  # noqa: E501


def _matrix_norm(
    h: float, A: Any, ord: Any = "fro", dim: Any = (-2, -1), moved: Any = None, **_: Any
) -> str | None:
    x = _f(A)
    a = np.moveaxis(x, tuple(dim), (-2, -1))
    reach = _reach(a, h)
    if ord == "fro":
        return _zero(np.sqrt(np.sum(a * a, axis=(-2, -1)))[..., None], reach, "norm")
    if ord == "nuc" or abs(ord) == 2:
        s = np.linalg.svd(a, compute_uv=False)
        if ord == "nuc":
            return _zero(s, reach, "singular value")
        ext = s[..., :1] if ord > 0 else s[..., -1:]
        ties = np.count_nonzero(np.abs(s - ext) <= reach, axis=-1) > 1
        found = int(np.count_nonzero(ties)) + (0 if ord > 0 else int(np.sum(ext <= reach)))
        return f"{found} matrix(es) with a tied or zero extreme singular value" if found else None
    sums = np.sum(np.abs(a), axis=-2 if abs(ord) == 1 else -1)
    ext = np.max(sums, -1, keepdims=True) if ord > 0 else np.min(sums, -1, keepdims=True)
    ties = int(np.count_nonzero(np.count_nonzero(np.abs(sums - ext) <= reach, axis=-1) > 1))
    zeros = int(np.count_nonzero(np.abs(a) <= 2 * h))
    if ties or zeros:
        return f"{ties} tied extreme absolute sum(s), {zeros} entries at 0"
    return None


SPECTRAL_KINKS: dict[str, Kinks] = {
    "eigh": _eigh,
    "svdvals": _svdvals,
    "svd": _svd,
    "qr": _qr,
    "pinv": _pinv,
    "matrix_norm": _matrix_norm,
}
