"""The numerics of the linalg_decomp family, in numpy, as torch's CPU kernels order them where
that decides a result: LAPACK's LU with partial pivoting (getrf) and its substitutions
(getrs/trsm), which give torch's inf and NaN at an exactly singular matrix; a scaled Taylor
series for matrix_exp; matrix_power's binary decomposition, differentiated through the same
products. Everything here works on float64 arrays with leading batch dims (``(..., n, n)``);
`runner.ops.linalg_decomp` casts to the case's dtype. Never imports torch."""

from __future__ import annotations

import numpy as np

from runner.ops.spec import Array


def mT(x: Array) -> Array:
    """The last two dims swapped (torch's ``.mT``; ``.mH`` for real matrices)."""
    return np.swapaxes(x, -1, -2)


def lu(a: Array) -> tuple[Array, Array]:
    """LAPACK getrf of each matrix of ``a`` (..., n, n): ``(lu, perm)`` with L (unit, below the
    diagonal) and U packed in ``lu`` and ``perm`` the row order (``a[perm] = L U``). The pivot is
    the first entry of largest magnitude in its column (idamax); a zero pivot leaves its column
    unscaled, as LAPACK does (info > 0), so U keeps the exact zero."""
    f = np.array(a, dtype=np.float64)
    n = f.shape[-1]
    batch = f.shape[:-2]
    perm = np.broadcast_to(np.arange(n), (*batch, n)).copy()
    rows = np.indices(batch, sparse=False) if batch else ()
    for k in range(n):
        p = k + np.argmax(np.abs(f[..., k:, k]), axis=-1)
        at_k = (*rows, np.full(batch, k))
        at_p = (*rows, p)
        f[at_k], f[at_p] = f[at_p].copy(), f[at_k].copy()
        perm[at_k[:-1] + (k,)], perm[at_p[:-1] + (p,)] = (
            perm[at_p[:-1] + (p,)].copy(),
            perm[at_k[:-1] + (k,)].copy(),
        )
        pivot = f[..., k, k][..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            f[..., k + 1 :, k] = np.where(
                pivot != 0, f[..., k + 1 :, k] / pivot, f[..., k + 1 :, k]
            )
            f[..., k + 1 :, k + 1 :] -= f[..., k + 1 :, k : k + 1] * f[..., k : k + 1, k + 1 :]
    return f, perm


def triangular_solve(t: Array, b: Array, upper: bool, unit: bool = False) -> Array:
    """``t^-1 b`` by substitution (trsm, left side), reading only ``t``'s triangle (its diagonal
    taken as 1 when ``unit``): a zero diagonal entry divides by 0 (inf, or NaN for 0 / 0) as
    torch's does. ``t`` (..., n, n) and ``b`` (..., n, k) broadcast their batch dims."""
    batch = np.broadcast_shapes(t.shape[:-2], b.shape[:-2])
    t = np.broadcast_to(t, (*batch, *t.shape[-2:]))
    x = np.array(np.broadcast_to(b, (*batch, *b.shape[-2:])), dtype=np.float64)
    n = t.shape[-1]
    order = range(n - 1, -1, -1) if upper else range(n)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in order:
            if not unit:
                x[..., k, :] = x[..., k, :] / t[..., k, k][..., None]
            others = slice(0, k) if upper else slice(k + 1, n)
            x[..., others, :] -= t[..., others, k][..., None] * x[..., k : k + 1, :]
    return x


def lu_solve_transposed(a: Array, d: Array, eps: float = 0.0) -> Array:
    """``a^-T d`` through the LU of ``a^T``, as torch's det and slogdet backward solve with the
    LU their forward kept (of ``A^T`` for a contiguous ``A``). ``eps``: a zero on U's diagonal
    is replaced by it first (det's backward; 0 keeps the division by zero of slogdet's)."""
    f, perm = lu(mT(a))
    if eps:
        diag = np.diagonal(f, axis1=-2, axis2=-1)
        f = f + np.where(diag == 0, eps, 0.0)[..., None] * np.eye(f.shape[-1])
    rhs = np.take_along_axis(np.broadcast_to(d, f.shape), perm[..., None], axis=-2)
    y = triangular_solve(f, rhs, upper=False, unit=True)
    return triangular_solve(f, y, upper=True)


def det_lu(a: Array) -> Array:
    """det from getrf's U and the parity of its row swaps (torch's linalg_det)."""
    f, perm = lu(a)
    n = a.shape[-1]
    diag = np.prod(np.diagonal(f, axis1=-2, axis2=-1), axis=-1)
    swaps = _parity(perm.reshape(-1, n)).reshape(perm.shape[:-1]) if n else np.zeros(())
    return np.asarray(np.where(swaps, -diag, diag))


def _parity(perm: Array) -> Array:
    """Whether each permutation (rows of ``perm``) is odd."""
    odd = np.zeros(len(perm), bool)
    for r, p in enumerate(perm):
        seen = np.zeros(len(p), bool)
        for i in range(len(p)):
            length = 0
            j = i
            while not seen[j]:
                seen[j] = True
                j = p[j]
                length += 1
            odd[r] ^= length > 1 and length % 2 == 0
    return odd


def expm(a: Array) -> Array:
    """exp of each matrix of ``a`` (float64): Taylor series of degree 30 on ``a / 2^s`` with
    ``|a| / 2^s <= 1/2``, squared ``s`` times (accurate to round-off, as torch's matrix_exp
    is); a matrix holding inf or NaN gives NaN, as torch's does."""
    a = np.asarray(a, np.float64)
    out = np.full(a.shape, np.nan)
    n = a.shape[-1]
    flat, res = a.reshape(-1, n, n), out.reshape(-1, n, n)
    eye = np.eye(n)
    for i, m in enumerate(flat):
        if not np.all(np.isfinite(m)):
            continue
        norm = float(np.abs(m).sum(axis=0).max()) if n else 0.0
        s = max(0, int(np.ceil(np.log2(norm / 0.5)))) if norm > 0.5 else 0
        x = m / 2.0**s
        term, total = eye, eye.copy()
        for k in range(1, 31):
            term = term @ x / k
            total = total + term
        for _ in range(s):
            total = total @ total
        res[i] = total
    return out


def expm_vjp(g: Array, a: Array) -> Array:
    """torch's linalg_matrix_exp_differential with adjoint: the upper-right n x n block of the
    exp of ``[[A^T, G], [0, A^T]]``."""
    n = a.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-2], g.shape[:-2])
    big = np.zeros((*batch, 2 * n, 2 * n))
    big[..., :n, :n] = mT(a)
    big[..., n:, n:] = mT(a)
    big[..., :n, n:] = g
    return expm(big)[..., :n, n:]


def power_tape(n: int) -> list[tuple[int, int]]:
    """torch's linalg_matrix_power for ``n >= 1`` (of ``a`` or, for ``n < 0``, of its inverse)
    as a list of products: entry ``i`` is value ``i + 1`` = value ``l`` @ value ``r``, value 0
    the matrix; the last value is the power. 1: a clone; 2: a @ a; 3: (a @ a) @ a; more: binary
    decomposition, squaring z and multiplying it into the result at each set bit."""
    if n == 1:
        return []
    if n == 2:
        return [(0, 0)]
    if n == 3:
        return [(0, 0), (1, 0)]
    tape: list[tuple[int, int]] = []
    z: int | None = None
    result: int | None = None
    while n > 0:
        bit, n = n % 2, n // 2
        if z is None:
            z = 0
        else:
            tape.append((z, z))
            z = len(tape)
        if bit:
            if result is None:
                result = z
            else:
                tape.append((result, z))
                result = len(tape)
    return tape


def power_forward(a: Array, tape: list[tuple[int, int]]) -> list[Array]:
    values = [a]
    for left, right in tape:
        values.append(values[left] @ values[right])
    return values


def power_vjp(g: Array, values: list[Array], tape: list[tuple[int, int]]) -> Array:
    """The gradient of value 0 through the products of ``tape``, in reverse (autograd's)."""
    grads: list[Array | None] = [None] * len(values)
    grads[-1] = g
    for i in range(len(tape) - 1, -1, -1):
        gi = grads[i + 1]
        if gi is None:
            continue
        left, right = tape[i]
        gl = gi @ mT(values[right])
        gr = mT(values[left]) @ gi
        grads[left] = gl if grads[left] is None else grads[left] + gl
        grads[right] = gr if grads[right] is None else grads[right] + gr
    return grads[0] if grads[0] is not None else np.zeros_like(values[0])
