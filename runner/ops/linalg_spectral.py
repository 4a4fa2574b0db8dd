"""Spectral decompositions and what is built on them (the linalg_spectral family): linalg.eigh,
svdvals, svd, qr, pinv and matrix_norm, batched over leading dims as torch is. Each VJP is
torch's formula from FunctionsManual.cpp: ``linalg_eig_backward`` (is_hermitian), ``svd_backward``,
``linalg_qr_backward`` and ``pinv_backward``.

Eigenvectors and singular vectors are defined up to sign (LAPACK's choice differs between
numpy's and torch's builds), so both sides here fix it the same way: each eigenvector, and each
pair (u_k, v_k), is flipped so that its largest-magnitude entry (the first of equals; for svd,
u_k's) is positive. The gradients of gauge-invariant uses (V diag(f(w)) V^T, V * V,
U diag(S) Vh) do not depend on that choice; the values do. svd with full_matrices=True completes U
and Vh with the orthonormal complement from a complete QR of their first k columns (rows): torch's
backward ignores those columns, as does this one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.linalg_spectral_samples import (
    eigh_samples,
    matrix_norm_samples,
    pinv_samples,
    qr_samples,
    svd_samples,
    svdvals_samples,
)
from runner.ops.reductions_rules import norm_vjp
from runner.ops.spec import Array, Op, Param, Shape, ShapeError, norm_dims

FAMILY = "linalg_spectral"
Grads = tuple[Array | None, ...]


def _mT(x: Array) -> Array:
    return np.swapaxes(x, -1, -2)


def _matrix(name: str, shape: Shape, square: bool = False) -> tuple[int, int]:
    if len(shape) < 2:
        raise ShapeError(f"{name}: expected a matrix or a batch of matrices, got {tuple(shape)}")
    m, n = shape[-2], shape[-1]
    if square and m != n:
        raise ShapeError(f"{name}: expected square matrices, got {m} x {n}")
    return m, n


def gauge_signs(v: Array) -> Array:
    """Per column of ``v`` (vectors along axis -2): +1 or -1 making its largest-magnitude entry
    (the first of equals) positive, shaped to broadcast against ``v``."""
    at = np.argmax(np.abs(v), axis=-2)[..., None, :]
    top = np.take_along_axis(v, at, axis=-2)
    return np.where(top < 0, -1, 1).astype(v.dtype)


def _torch_signs(t: Any, v: Any) -> Any:
    """`gauge_signs` on torch's side, out of autograd (the flip is a constant)."""
    with t.no_grad():
        at = v.abs().argmax(dim=-2, keepdim=True)
        top = v.gather(-2, at)
        return t.where(top < 0, -1.0, 1.0).to(v.dtype)


# --- eigh ---


def _eigh(input: Array, UPLO: str) -> tuple[Array, Array]:
    w, v = np.linalg.eigh(np.asarray(input), UPLO="U" if UPLO == "U" else "L")
    return w, v * gauge_signs(v)


def eigh_vjp(gL: Array | None, gV: Array | None, L: Array, V: Array) -> Array:
    """torch's linalg_eig_backward with is_hermitian: V (skew(V^T gV) / E + diag(gL)) V^T,
    E_ij = L_j - L_i (1 on the diagonal); infinite or NaN at a repeated eigenvalue."""
    if gV is None:
        return np.asarray((V * gL[..., None, :]) @ _mT(V)) if gL is not None else np.zeros_like(V)
    x = _mT(V) @ gV
    x = 0.5 * (x - _mT(x))
    e = L[..., None, :] - L[..., :, None]
    idx = np.arange(L.shape[-1])
    e[..., idx, idx] = 1
    with np.errstate(divide="ignore", invalid="ignore"):
        ga = x / e
    if gL is not None:
        ga[..., idx, idx] = gL
    return np.asarray(V @ ga @ _mT(V))


def _eigh_shape(input: Shape, UPLO: str = "L") -> tuple[Shape, Shape]:
    _matrix("linalg.eigh", input, square=True)
    return tuple(input[:-1]), tuple(input)


def _eigh_torch(t: Any, input: Any, UPLO: str) -> Any:
    w, v = t.linalg.eigh(input, UPLO=UPLO)
    return w, v * _torch_signs(t, v)


# --- svd and svdvals ---


def _complement(u: Array) -> Array:
    """The last m - k columns of a complete QR of ``u`` (m x k, orthonormal columns)."""
    q = np.linalg.qr(u, mode="complete")[0]
    return np.asarray(q[..., u.shape[-1] :])


def _svd(input: Array, full_matrices: bool) -> tuple[Array, Array, Array]:
    u, s, vh = np.linalg.svd(np.asarray(input), full_matrices=False)
    signs = gauge_signs(u)
    u, vh = u * signs, vh * _mT(signs)
    if full_matrices:
        u = np.concatenate([u, _complement(u)], axis=-1)
        vh = np.concatenate([vh, _mT(_complement(_mT(vh)))], axis=-2)
    return u, s, vh


def svd_vjp(gU: Array | None, gS: Array | None, gVh: Array | None, U: Array, S: Array,
            Vh: Array) -> Array:  # fmt: skip
    """torch's svd_backward (real case), on the thin factors: U (skew(U^T gU) S / E + S
    skew(Vh gVh^T) / E + diag(gS)) Vh, E_ij = S_j^2 - S_i^2, plus the parts of gU (gVh) outside
    U's (Vh's) span divided by S for a tall (wide) matrix."""
    m, n = U.shape[-2], Vh.shape[-1]
    if gU is None and gVh is None:
        if gS is None:
            return np.zeros((*S.shape[:-1], m, n), S.dtype)
        return np.asarray(U @ (gS[..., :, None] * Vh))
    s2 = S * S
    e = s2[..., None, :] - s2[..., :, None]
    idx = np.arange(S.shape[-1])
    e[..., idx, idx] = 1
    with np.errstate(divide="ignore", invalid="ignore"):
        uhgu = None if gU is None else (lambda x: x - _mT(x))(_mT(U) @ gU)
        vhgv = None if gVh is None else (lambda x: x - _mT(x))(Vh @ _mT(gVh))
        if uhgu is not None and vhgv is not None:
            ga = (uhgu * S[..., None, :] + S[..., :, None] * vhgv) / e
        elif uhgu is not None:
            ga = (uhgu / e) * S[..., None, :]
        else:
            assert vhgv is not None
            ga = S[..., :, None] * (vhgv / e)
        if gS is not None:
            ga = ga + gS[..., :, None] * np.eye(S.shape[-1], dtype=S.dtype)
        if m > n and gU is not None:
            ga = U @ ga
            gusinv = gU / S[..., None, :]
            ga = ga + gusinv - U @ (_mT(U) @ gusinv)
            return np.asarray(ga @ Vh)
        if m < n and gVh is not None:
            ga = ga @ Vh
            sinvgvh = gVh / S[..., :, None]
            ga = ga + sinvgvh - (sinvgvh @ _mT(Vh)) @ Vh
            return np.asarray(U @ ga)
        return np.asarray(U @ ga @ Vh)


def _svd_vjp(grads: Grads, outs: tuple[Array, ...], input: Array, full_matrices: bool,
             **_: Any) -> tuple[Array]:  # fmt: skip
    gU, gS, gVh = grads
    U, S, Vh = outs
    k = S.shape[-1]
    # torch narrows a full factorization's U, Vh (and their gradients) to the first k first.
    U, Vh = U[..., :k], Vh[..., :k, :]
    gU = None if gU is None else gU[..., :k]
    gVh = None if gVh is None else gVh[..., :k, :]
    return (svd_vjp(gU, gS, gVh, U, S, Vh),)


def _svd_shape(input: Shape, full_matrices: bool = True, **_: Any) -> tuple[Shape, ...]:
    m, n = _matrix("linalg.svd", input)
    b, k = tuple(input[:-2]), min(m, n)
    if full_matrices:
        return (*b, m, m), (*b, k), (*b, n, n)
    return (*b, m, k), (*b, k), (*b, k, n)


def _svd_torch(t: Any, input: Any, full_matrices: bool, **_: Any) -> Any:
    u, s, vh = t.linalg.svd(input, full_matrices=False)
    signs = _torch_signs(t, u)
    u, vh = u * signs, vh * signs.mT
    if full_matrices:
        with t.no_grad():
            cu = t.linalg.qr(u, mode="complete")[0][..., u.shape[-1] :]
            cv = t.linalg.qr(vh.mT, mode="complete")[0][..., vh.shape[-2] :].mT
        u, vh = t.cat([u, cu], dim=-1), t.cat([vh, cv], dim=-2)
    return u, s, vh


def _svdvals_vjp(g: Array, out: Array, input: Array, **_: Any) -> tuple[Array]:
    u, _s, vh = np.linalg.svd(np.asarray(input), full_matrices=False)
    return (np.asarray(u @ (g[..., :, None] * vh)),)


# --- qr ---


def qr_vjp(gQ: Array | None, gR: Array | None, Q: Array, R: Array) -> Array:
    """torch's linalg_qr_backward (mode 'reduced', or 'complete' with m <= n)."""
    m, n = Q.shape[-2], R.shape[-1]
    if gQ is None and gR is None:
        return np.zeros((*R.shape[:-2], m, n), R.dtype)
    if gQ is None:
        assert gR is not None
        x = gR @ _mT(R)
    else:
        x = -(_mT(Q) @ gQ) if gR is None else gR @ _mT(R) - _mT(Q) @ gQ
    if m >= n:
        t = np.triu(x)
        sym = t + _mT(t)
        idx = np.arange(n)
        sym[..., idx, idx] *= 0.5
        ga = Q @ sym
        if gQ is not None:
            ga = ga + gQ
        # X R^T = ga, R upper triangular: X = ga R^-T
        return np.asarray(_mT(np.linalg.solve(R, _mT(ga))))
    ga = Q @ np.tril(_mT(x) - x)  # tril(X - X^T) with X = -x
    ga = _mT(np.linalg.solve(R[..., :m], _mT(ga)))
    ga = np.concatenate([ga, np.zeros((*ga.shape[:-1], n - m), ga.dtype)], axis=-1)
    if gR is not None:
        ga = ga + Q @ gR
    return np.asarray(ga)


def _qr_vjp(grads: Grads, outs: tuple[Array, ...], input: Array, mode: str) -> tuple[Array]:
    m, n = input.shape[-2], input.shape[-1]
    if mode == "complete" and m > n:
        raise ValueError(
            "The QR decomposition is not differentiable when mode='complete' and nrows > ncols."
        )
    return (qr_vjp(grads[0], grads[1], outs[0], outs[1]),)


def _qr_shape(input: Shape, mode: str = "reduced") -> tuple[Shape, Shape]:
    m, n = _matrix("linalg.qr", input)
    b, k = tuple(input[:-2]), min(m, n)
    if mode == "complete":
        return (*b, m, m), (*b, m, n)
    return (*b, m, k), (*b, k, n)


# --- pinv ---


def _pinv(input: Array, atol: float | None, rtol: float | None, hermitian: bool) -> Array:
    a = np.asarray(input)
    m, n = a.shape[-2], a.shape[-1]
    if rtol is None:
        rtol = 0.0 if atol is not None and atol > 0 else float(np.finfo(a.dtype).eps) * max(m, n)
    atol = 0.0 if atol is None else atol
    if hermitian:
        w, v = np.linalg.eigh(a)
        tol = np.maximum(atol, rtol * np.max(np.abs(w), axis=-1, keepdims=True))
        with np.errstate(divide="ignore"):
            winv = np.where(np.abs(w) > tol, 1 / w, 0).astype(a.dtype)
        return np.asarray((v * winv[..., None, :]) @ _mT(v))
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    tol = np.maximum(atol, rtol * s[..., :1])
    with np.errstate(divide="ignore"):
        sinv = np.where(s > tol, 1 / s, 0).astype(a.dtype)
    return np.asarray((_mT(vh) * sinv[..., None, :]) @ _mT(u))


def pinv_vjp(g: Array, out: Array, input: Array, **_: Any) -> tuple[Array]:
    """torch's pinv_backward: the derivative of A^+ at constant rank, in the order torch
    multiplies for m <= n and m > n."""
    a, p = input, out
    ph, gh = _mT(p), _mT(g)
    if a.shape[-2] <= a.shape[-1]:
        k = gh @ p
        kph = k @ ph
        return (_mT(p @ k) * -1 + kph - (a @ p) @ kph + (ph @ p) @ (gh - k @ a),)
    k = p @ gh
    phk = ph @ k
    return (-_mT(k @ p) + (gh - a @ k) @ p @ ph + phk - phk @ p @ a,)


# --- matrix_norm ---


def _moved(x: Array, dim: Any) -> tuple[Array, tuple[int, int]]:
    """``x`` with its two matrix dims moved last, and those dims (non-negative)."""
    d0, d1 = norm_dims([dim[0]], x.ndim)[0], norm_dims([dim[1]], x.ndim)[0]
    return np.moveaxis(x, (d0, d1), (-2, -1)), (d0, d1)


def _kept(r: Array, dims: tuple[int, int], keepdim: bool) -> Array:
    return np.expand_dims(r, tuple(sorted(dims))) if keepdim else r


def _matrix_norm(A: Array, ord: Any, dim: Any, keepdim: bool) -> Array:
    x = np.asarray(A)
    a, dims = _moved(x, dim)
    if ord == "fro":
        r = np.sqrt(np.sum(a * a, axis=(-2, -1)))
    elif ord == "nuc":
        r = np.sum(np.linalg.svd(a, compute_uv=False), axis=-1)
    elif abs(ord) == 2:
        s = np.linalg.svd(a, compute_uv=False)
        r = s.max(axis=-1) if ord > 0 else s.min(axis=-1)
    else:
        sums = np.sum(np.abs(a), axis=-2 if abs(ord) == 1 else -1)
        r = sums.max(axis=-1) if ord > 0 else sums.min(axis=-1)
    return np.asarray(_kept(np.asarray(r), dims, keepdim), dtype=x.dtype)


def _matrix_norm_vjp(g: Array, out: Array, A: Array, ord: Any, dim: Any,
                     keepdim: bool) -> tuple[Array]:  # fmt: skip
    x = np.asarray(A)
    a, dims = _moved(x, dim)
    gk = np.asarray(g).reshape(a.shape[:-2])[..., None, None]
    r = np.asarray(out).reshape(a.shape[:-2])[..., None, None]
    if ord == "fro":
        ga = norm_vjp(gk, r, a, (a.ndim - 2, a.ndim - 1), False, 2.0)
    elif ord == "nuc" or abs(ord) == 2:
        u, s, vh = np.linalg.svd(a, full_matrices=False)
        if ord == "nuc":
            gs = np.broadcast_to(gk[..., 0], s.shape)
        else:
            top = s.max(axis=-1, keepdims=True) if ord > 0 else s.min(axis=-1, keepdims=True)
            hit = s == top  # amax/amin: ties split the gradient evenly
            gs = gk[..., 0] * hit / hit.sum(axis=-1, keepdims=True)
        ga = u @ (gs[..., :, None] * vh)
    else:
        ax = -2 if abs(ord) == 1 else -1
        sums = np.sum(np.abs(a), axis=ax, keepdims=True)
        hit = sums == r
        gsum = gk * hit / hit.sum(axis=(-2, -1), keepdims=True)
        ga = np.sign(a) * gsum
    assert ga is not None
    return (np.moveaxis(np.asarray(ga, dtype=x.dtype), (-2, -1), dims),)


def _matrix_norm_shape(A: Shape, ord: Any = "fro", dim: Any = (-2, -1),
                       keepdim: bool = False) -> Shape:  # fmt: skip
    if not isinstance(dim, list | tuple) or len(dim) != 2:
        raise ShapeError(f"linalg.matrix_norm: dim must be two dims, got {dim!r}")
    if isinstance(ord, str) and ord not in ("fro", "nuc"):
        raise ShapeError(f"linalg.matrix_norm: ord must be 'fro', 'nuc' or a number, got {ord!r}")
    if not isinstance(ord, str) and ord not in (1, -1, 2, -2, np.inf, -np.inf):
        raise ShapeError(f"linalg.matrix_norm: ord must be +-1, +-2 or +-inf, got {ord!r}")
    d = norm_dims(list(dim), len(A))
    if len(d) != 2:
        raise ShapeError(f"linalg.matrix_norm: dims {dim} name the same dim twice")
    if ord != "fro" and any(A[i] == 0 for i in d):
        raise ShapeError(f"linalg.matrix_norm: ord {ord!r} needs non-empty dims {tuple(A)}")
    return tuple(1 if i in d else s for i, s in enumerate(A) if keepdim or i not in d)


_UPLO = Param("UPLO", "str", "L", choices=("L", "U"))
OPS: list[Op] = [
    Op(
        name="eigh",
        family=FAMILY,
        params=(Param("input", "tensor"), _UPLO),
        forward=_eigh,
        vjp=lambda grads, outs, input, UPLO: (eigh_vjp(grads[0], grads[1], *outs),),
        torch=_eigh_torch,
        shape=_eigh_shape,
        samples=eigh_samples,
        outputs=("eigenvalues", "eigenvectors"),
        note="torch.linalg.eigh: ascending eigenvalues; only the UPLO triangle is read, but the "
        "gradient is torch's symmetric V (skew(V^T gV) / E + diag(gL)) V^T, not 0 on the other "
        "triangle. Eigenvectors are defined up to sign: both sides flip each to make its "
        "largest-magnitude entry positive (torch's own signs are LAPACK's and may differ), and "
        "only gauge-invariant uses (V diag(f(w)) V^T, V * V) have a meaningful gradient. At a "
        "repeated eigenvalue E has zeros: an eigenvectors' gradient is inf/NaN there, as torch's",
    ),
    Op(
        name="svdvals",
        family=FAMILY,
        params=(Param("A", "tensor"),),
        forward=lambda A: np.asarray(np.linalg.svd(np.asarray(A), compute_uv=False)),
        vjp=lambda g, out, A: _svdvals_vjp(g, out, A),
        torch=lambda t, A: t.linalg.svdvals(A),
        shape=lambda A: (*A[:-2], min(_matrix("linalg.svdvals", A))),
        samples=svdvals_samples,
        note="descending singular values; the gradient U diag(g) Vh. At a repeated singular "
        "value (or a zero one of a non-square matrix) the singular vectors are not unique and "
        "torch's gradient depends on LAPACK's choice; a zero singular value is a kink",
    ),
    Op(
        name="svd",
        family=FAMILY,
        params=(Param("A", "tensor"), Param("full_matrices", "bool", True)),
        forward=lambda A, full_matrices: _svd(A, full_matrices),
        vjp=lambda grads, outs, A, full_matrices: _svd_vjp(grads, outs, A, full_matrices),
        torch=lambda t, A, full_matrices: _svd_torch(t, A, full_matrices),
        shape=lambda A, full_matrices: _svd_shape(A, full_matrices),
        samples=svd_samples,
        outputs=("U", "S", "Vh"),
        note="torch.linalg.svd (gesdd), torch's svd_backward. Each pair (u_k, v_k) is flipped "
        "on both sides to make u_k's largest-magnitude entry positive; only gauge-invariant "
        "uses (U diag(S) Vh, U * U) have a meaningful gradient. full_matrices=True: the extra "
        "columns of U and rows of Vh are a complete QR's complement here, not LAPACK's, and "
        "get no gradient (torch narrows them away). Repeated singular values make E zero: "
        "U's and Vh's gradients are inf/NaN there, as torch's; a zero singular value of a "
        "non-square matrix divides by 0",
    ),
    Op(
        name="qr",
        family=FAMILY,
        params=(
            Param("A", "tensor"),
            Param("mode", "str", "reduced", choices=("reduced", "complete")),
        ),
        forward=lambda A, mode: tuple(np.linalg.qr(np.asarray(A), mode=mode)),
        vjp=lambda grads, outs, A, mode: _qr_vjp(grads, outs, A, mode),
        torch=lambda t, A, mode: t.linalg.qr(A, mode=mode),
        shape=lambda A, mode: _qr_shape(A, mode),
        samples=qr_samples,
        outputs=("Q", "R"),
        note="Householder QR (LAPACK's signs: R's diagonal may be negative, on both sides); "
        "torch's linalg_qr_backward, for mode 'reduced' and for 'complete' with m <= n (torch "
        "raises for 'complete' with m > n). A rank-deficient A (a zero on R's diagonal) "
        "gives inf/NaN, as torch's",
    ),
    Op(
        name="pinv",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("atol", "float?", None, kw_only=True),
            Param("rtol", "float?", None, kw_only=True),
            Param("hermitian", "bool", False, kw_only=True),
        ),
        forward=_pinv,
        vjp=pinv_vjp,
        torch=lambda t, input, **kw: t.linalg.pinv(input, **kw),
        shape=lambda input, **_: (*input[:-2], input[-1], _matrix("linalg.pinv", input)[0]),
        samples=pinv_samples,
        note="singular values at most max(atol, rtol * s_max) are dropped (rtol defaults to "
        "eps * max(m, n), or 0 when atol > 0); the gradient is torch's pinv_backward, the "
        "derivative at constant rank, also for a rank-deficient A; hermitian=True reads the "
        "lower triangle but the gradient uses the whole input, as torch's",
    ),
    Op(
        name="matrix_norm",
        family=FAMILY,
        params=(
            Param("A", "tensor"),
            Param("ord", "float", "fro", choices=("fro", "nuc")),
            Param("dim", "ints", [-2, -1]),
            Param("keepdim", "bool", False),
        ),
        forward=lambda A, ord, dim, keepdim: _matrix_norm(A, ord, dim, keepdim),
        vjp=_matrix_norm_vjp,
        torch=lambda t, A, ord, dim, keepdim: t.linalg.matrix_norm(A, ord, tuple(dim), keepdim),
        shape=_matrix_norm_shape,
        samples=matrix_norm_samples,
        note="'fro': vector_norm's (0 at a zero matrix); 'nuc': U Vh (a rank-deficient A is a "
        "kink, torch's gradient then depends on LAPACK's null-space basis unless it is one "
        "dimension); 2 / -2: u_k v_k^T of the largest / smallest singular value, ties split "
        "evenly (amax/amin); 1 / inf (-1 / -inf): sign(A) on the column / row of the largest "
        "(smallest) absolute sum, ties of the sums split evenly, 0 at zero entries",
    ),
]
