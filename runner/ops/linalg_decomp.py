"""Matrix functions and decompositions (the linalg_decomp family), one row per op: inv, det,
slogdet, logdet, solve, solve_triangular, cholesky, cholesky_solve, matrix_power, matrix_exp.
Each takes leading batch dims as torch does; the forward and the VJP compute in float64 and
return the case's dtype (torch's float32 result is within its own measured round-off of it).
The VJPs are torch's (tools/autograd/derivatives.yaml, FunctionsManual.cpp), in the order that
decides torch's inf and NaN at a singular matrix (`runner.ops.linalg_decomp_rules`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops import linalg_decomp_samples as S
from runner.ops.linalg_decomp_rules import (
    det_lu,
    expm,
    expm_vjp,
    lu_solve_transposed,
    mT,
    power_forward,
    power_tape,
    power_vjp,
    triangular_solve,
)
from runner.ops.spec import Array, Op, Param, Shape, ShapeError

FAMILY = "linalg_decomp"
EPS64 = float(np.finfo(np.float64).eps)


def _f(x: Any) -> Array:
    return np.asarray(x, dtype=np.float64)


def _as(x: Any, like: Any) -> Array:
    """``x`` in the dtype of ``like`` (the operand's: float32 stays float32)."""
    return np.asarray(x).astype(np.asarray(like).dtype)


def _eye_diag(d: Array, n: int) -> Array:
    """Matrices with ``d`` (...,) on the diagonal: torch's diag_embed of ``d`` expanded."""
    return d[..., None, None] * np.eye(n)


def _square(name: str, shape: Shape, what: str = "A") -> int:
    if len(shape) < 2:
        raise ShapeError(f"{name}: {what} must have at least 2 dims, got {len(shape)}-d")
    if shape[-1] != shape[-2]:
        raise ShapeError(f"{name}: {what} must be batches of square matrices, got {tuple(shape)}")
    return shape[-1]


def _batched(name: str, a: Shape, b: Shape) -> Shape:
    try:
        return tuple(np.broadcast_shapes(a[:-2], b[:-2]))
    except ValueError:
        raise ShapeError(f"{name}: batch dims {a[:-2]} and {b[:-2]} do not broadcast") from None


def _one_matrix(name: str) -> Any:
    def shape(A: Shape, **_: Any) -> Shape:
        _square(name, A)
        return tuple(A)

    return shape


def _to_scalar(name: str, key: str = "A") -> Any:
    def shape(**kw: Any) -> Shape:
        _square(name, kw[key], key)
        return tuple(kw[key][:-2])

    return shape


# --- inv, det, slogdet, logdet ---


def _inv(A: Array) -> Array:
    a = _f(A)
    if a.shape[-1] == 0:
        return np.asarray(A).copy()
    return _as(np.linalg.inv(a), A)


def _inv_vjp(g: Array, out: Array, A: Array) -> tuple[Array]:
    # derivatives.yaml linalg_inv_ex: -inverse^H @ (grad @ inverse^H)
    ih = mT(_f(out))
    return (_as(-(ih @ (_f(g) @ ih)), A),)


def _det(A: Array) -> Array:
    return _as(det_lu(_f(A)), A)


def _det_vjp(g: Array, out: Array, A: Array) -> tuple[Array]:
    # linalg_det_backward without create_graph: lu_solve of diag(grad * det) with the forward's
    # LU, a zero on U's diagonal replaced by eps: at a singular matrix det = 0 makes it 0.
    a = _f(A)
    n = a.shape[-1]
    if n == 0:
        return (np.zeros_like(A),)
    if n == 1:  # torch's det of a 1 x 1 matrix is its element: gradient g, even at 0
        return (_as(np.broadcast_to(_f(g)[..., None, None], a.shape), A),)
    d = _eye_diag(_f(g) * _f(out), n)
    eps = float(np.finfo(np.asarray(A).dtype).eps)
    return (_as(lu_solve_transposed(a, d, eps), A),)


def _slogdet(A: Array) -> tuple[Array, Array]:
    d = det_lu(_f(A))
    with np.errstate(divide="ignore"):
        return _as(np.sign(d), A), _as(np.log(np.abs(d)), A)


def _logabsdet_vjp(g: Array, A: Array) -> Array:
    # slogdet_backward (real): lu_solve of diag(grad_logabsdet) with the forward's LU, no eps:
    # a singular matrix divides by its zero pivot (inf, NaN).
    a = _f(A)
    n = a.shape[-1]
    if n == 0:
        return np.zeros_like(A)
    return _as(lu_solve_transposed(a, _eye_diag(_f(g), n)), A)


def _slogdet_vjp(grads: Any, outs: Any, A: Array) -> tuple[Array | None]:
    g = grads[1]  # the sign gets no gradient (torch ignores grad_sign for real A)
    return (None if g is None else _logabsdet_vjp(g, A),)


def _logdet(input: Array) -> Array:
    sign, logabs = _slogdet(input)
    return np.where(sign == -1, np.asarray(np.nan, sign.dtype), logabs)


def _logdet_vjp(g: Array, out: Array, input: Array) -> tuple[Array]:
    # torch.logdet is where(sign == -1, nan, logabsdet): no gradient where det < 0.
    sign, _ = _slogdet(input)
    return (_logabsdet_vjp(np.where(sign == -1, 0.0, _f(g)), input),)


# --- solve, solve_triangular, cholesky_solve ---


def _vector_rhs(A: Shape, B: Shape) -> bool:
    """torch's linalg_solve_is_vector_rhs: B is 1-D, or A's shape without its last dim."""
    return len(B) == 1 or (len(B) == len(A) - 1 and tuple(B) == tuple(A[:-1]))


def _solve_shape(A: Shape, B: Shape, left: bool) -> Shape:
    n = _square("solve", A)
    vector = _vector_rhs(A, B)
    if vector and not left:
        raise ShapeError(
            "solve: a vector B (1-D, or A's shape without its last dim) needs left=True"
        )
    b = (*B, 1) if vector else tuple(B)
    if len(b) < 2 or b[-2 if left else -1] != n:
        side = "AX = B" if left else "XA = B"
        raise ShapeError(f"solve: incompatible shapes of A {tuple(A)} and B {tuple(B)} for {side}")
    batch = _batched("solve", tuple(A), b)
    return (*batch, n) if vector else (*batch, *b[-2:])


def _general_solve(a: Array, b: Array, left: bool) -> Array:
    """``a^-1 b`` (left) or ``b a^-1``; batch dims broadcast."""
    if not left:
        return mT(_general_solve(mT(a), mT(b), True))
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, (*batch, *a.shape[-2:]))
    b = np.broadcast_to(b, (*batch, *b.shape[-2:]))
    if a.shape[-1] == 0 or b.shape[-1] == 0 or 0 in batch:
        return np.zeros((*batch, a.shape[-1], b.shape[-1]))
    return np.asarray(np.linalg.solve(a, b))


def _solve(A: Array, B: Array, left: bool) -> Array:
    vector = _vector_rhs(np.shape(A), np.shape(B))
    b = _f(B)[..., None] if vector else _f(B)
    x = _general_solve(_f(A), b, left)
    return _as(x[..., 0] if vector else x, A)


def _solve_vjp(g: Array, out: Array, A: Array, B: Array, left: bool) -> tuple[Array, Array]:
    # linalg_solve_backward: gB = A^-H gX (solved on the same side), gA = -gB X^H (X^H gB).
    vector = _vector_rhs(np.shape(A), np.shape(B))
    gx, x = (_f(g)[..., None], _f(out)[..., None]) if vector else (_f(g), _f(out))
    gb = _general_solve(mT(_f(A)), gx, left)
    ga = -(gb @ mT(x)) if left else -(mT(x) @ gb)
    return _as(ga, A), _as(gb[..., 0] if vector else gb, B)


def _tri_shape(A: Shape, B: Shape, **kw: Any) -> Shape:
    n = _square("solve_triangular", A)
    if len(B) < 2:
        raise ShapeError(f"solve_triangular: B must have at least 2 dims, got {len(B)}-d")
    left = kw.get("left", True)
    if B[-2 if left else -1] != n:
        raise ShapeError(
            f"solve_triangular: incompatible shapes of A {tuple(A)} and B {tuple(B)} "
            f"for {'AX = B' if left else 'XA = B'}"
        )
    return (*_batched("solve_triangular", tuple(A), tuple(B)), *B[-2:])


def _tri(a: Array, b: Array, upper: bool, left: bool, unit: bool) -> Array:
    """``a^-1 b`` (left) or ``b a^-1`` reading only ``a``'s triangle, by substitution."""
    if left:
        return triangular_solve(a, b, upper, unit)
    return mT(triangular_solve(mT(a), mT(b), not upper, unit))


def _solve_triangular(A: Array, B: Array, upper: bool, left: bool, unitriangular: bool) -> Array:
    return _as(_tri(_f(A), _f(B), upper, left, unitriangular), A)


def _solve_triangular_vjp(
    g: Array, out: Array, A: Array, B: Array, upper: bool, left: bool, unitriangular: bool
) -> tuple[Array, Array]:
    # linalg_solve_triangular_backward: gB = solve_triangular(A^H, gX, not upper), gA = -gB X^H
    # (X^H gB) kept on A's triangle (without its diagonal when unitriangular).
    gb = _tri(mT(_f(A)), _f(g), not upper, left, unitriangular)
    x = _f(out)
    ga = -(gb @ mT(x)) if left else -(mT(x) @ gb)
    ga = np.triu(ga, int(unitriangular)) if upper else np.tril(ga, -int(unitriangular))
    return _as(ga, A), _as(gb, B)


def _chol_solve_shape(input: Shape, input2: Shape, upper: bool) -> Shape:
    n = _square("cholesky_solve", input2, "input2")
    if len(input) < 2:
        raise ShapeError(f"cholesky_solve: input must have at least 2 dims, got {len(input)}-d")
    if input[-2] != n:
        raise ShapeError(
            f"cholesky_solve: input {tuple(input)} has {input[-2]} rows, input2 is {n} x {n}"
        )
    return (*_batched("cholesky_solve", tuple(input), tuple(input2)), *input[-2:])


def _chol_solve(b: Array, c: Array, upper: bool) -> Array:
    """(C^H C)^-1 b for upper, (C C^H)^-1 b for lower, reading C's triangle (potrs)."""
    if upper:
        return triangular_solve(c, triangular_solve(mT(c), b, False), True)
    return triangular_solve(mT(c), triangular_solve(c, b, False), True)


def _cholesky_solve(input: Array, input2: Array, upper: bool) -> Array:
    return _as(_chol_solve(_f(input), _f(input2), upper), input)


def _cholesky_solve_vjp(
    g: Array, out: Array, input: Array, input2: Array, upper: bool
) -> tuple[Array, Array]:
    # cholesky_solve_backward: gB = cholesky_solve(gX, L); common = gB X^H + (gB X^H)^H;
    # gL = -common L (lower) or -L common (upper), with the whole of input2, not its triangle.
    c = _f(input2)
    gb = _chol_solve(_f(g), c, upper)
    common = gb @ mT(_f(out))
    common = common + mT(common)
    gl = -(c @ common) if upper else -(common @ c)
    return _as(gb, input), _as(gl, input2)


# --- cholesky ---


def _cholesky(A: Array, upper: bool) -> Array:
    a = _f(A)
    # potrf reads one triangle: the lower for upper=False, the upper for upper=True.
    tri = np.triu(a) if upper else np.tril(a)
    sym = tri + mT(np.triu(a, 1) if upper else np.tril(a, -1))
    low = np.linalg.cholesky(sym) if a.shape[-1] else sym
    return _as(mT(low) if upper else low, A)


def _cholesky_vjp(g: Array, out: Array, A: Array, upper: bool) -> tuple[Array]:
    # cholesky_backward: gA = L^-H phi(L^H gL) L^-1 with phi(P) = 0.5 (tril(P) + tril(P, -1)^H):
    # a symmetric gradient, the derivative along symmetric perturbations of A.
    low, gl = (mT(_f(out)), mT(_f(g))) if upper else (_f(out), _f(g))
    p = np.tril(mT(low) @ gl)
    p = 0.5 * (p + mT(np.tril(p, -1)))
    x = triangular_solve(mT(low), p, upper=True)
    x = mT(triangular_solve(mT(low), mT(x), upper=True))  # x L^-1 = (L^-H x^H)^H
    return (_as(x, A),)


# --- matrix_power, matrix_exp ---


def _power_args(A: Array, n: int) -> tuple[Array, list[tuple[int, int]]]:
    a = _f(A)
    return (np.linalg.inv(a) if n < 0 and a.shape[-1] else a), power_tape(abs(n))


def _matrix_power(A: Array, n: int) -> Array:
    if n == 0:
        return _as(np.broadcast_to(np.eye(np.shape(A)[-1]), np.shape(A)), A)
    base, tape = _power_args(A, n)
    return _as(power_forward(base, tape)[-1], A)


def _matrix_power_vjp(g: Array, out: Array, A: Array, n: int) -> tuple[Array]:
    # Composite in torch (linalg_matrix_power): autograd through its products, and through
    # linalg_inv for n < 0; n = 0 copies the identity into a clone of A: a zero gradient.
    if n == 0:
        return (np.zeros_like(A),)
    base, tape = _power_args(A, n)
    gb = power_vjp(_f(g), power_forward(base, tape), tape)
    if n < 0:
        ih = mT(base)
        gb = -(ih @ (gb @ ih))
    return (_as(gb, A),)


def _matrix_power_shape(A: Shape, n: int) -> Shape:
    _square("matrix_power", A)
    return tuple(A)


A = Param("A", "tensor")
OPS: list[Op] = [
    Op(
        name="inv",
        family=FAMILY,
        params=(A,),
        forward=_inv,
        vjp=_inv_vjp,
        torch=lambda t, A: t.linalg.inv(A),
        shape=_one_matrix("inv"),
        samples=S.inv_samples,
        note="torch.linalg.inv (torch.inverse): -A^-T g A^-T; torch raises at a singular matrix",
    ),
    Op(
        name="det",
        family=FAMILY,
        params=(A,),
        forward=_det,
        vjp=_det_vjp,
        torch=lambda t, A: t.linalg.det(A),
        shape=_to_scalar("det"),
        samples=S.det_samples,
        note="torch.linalg.det and torch.det: g det(A) A^-T, solved with the LU of the forward; "
        "at a singular matrix (a zero pivot, det exactly 0) torch's gradient is 0, not the "
        "adjugate (its SVD formula runs only under create_graph), except 1 x 1 (g); "
        "0 x 0: det 1, empty gradient",
    ),
    Op(
        name="slogdet",
        family=FAMILY,
        params=(A,),
        forward=_slogdet,
        vjp=_slogdet_vjp,
        torch=lambda t, A: t.linalg.slogdet(A),
        shape=lambda A: (_to_scalar("slogdet")(A=A),) * 2,
        samples=S.slogdet_samples,
        outputs=("sign", "logabsdet"),
        note="torch.linalg.slogdet: (sign, log|det|); sign gets no gradient, logabsdet g A^-T; "
        "at a singular matrix sign 0, logabsdet -inf and torch's gradient divides by the zero "
        "pivot (inf and NaN), which gradcase reproduces",
    ),
    Op(
        name="logdet",
        family=FAMILY,
        params=(Param("input", "tensor"),),
        forward=_logdet,
        vjp=_logdet_vjp,
        torch=lambda t, input: t.logdet(input),
        shape=_to_scalar("logdet", "input"),
        samples=S.logdet_samples,
        note="torch.logdet: where(sign == -1, nan, logabsdet): NaN and a zero gradient where "
        "det < 0; det 0 gives -inf and slogdet's gradient (inf and NaN); else g A^-T",
    ),
    Op(
        name="solve",
        family=FAMILY,
        params=(A, Param("B", "tensor"), Param("left", "bool", True, kw_only=True)),
        forward=_solve,
        vjp=_solve_vjp,
        torch=lambda t, A, B, left: t.linalg.solve(A, B, left=left),
        shape=_solve_shape,
        samples=S.solve_samples,
        note="torch.linalg.solve: X = A^-1 B (left) or B A^-1; B is a vector when 1-D or shaped "
        "as A without its last dim (then left=True only); batch dims broadcast; gB = A^-T gX "
        "(gX A^-T), gA = -gB X^T (-X^T gB); torch raises at a singular A",
    ),
    Op(
        name="solve_triangular",
        family=FAMILY,
        params=(
            A,
            Param("B", "tensor"),
            Param("upper", "bool", kw_only=True),
            Param("left", "bool", True, kw_only=True),
            Param("unitriangular", "bool", False, kw_only=True),
        ),
        forward=_solve_triangular,
        vjp=_solve_triangular_vjp,
        torch=lambda t, A, B, upper, left, unitriangular: t.linalg.solve_triangular(
            A, B, upper=upper, left=left, unitriangular=unitriangular
        ),
        shape=_tri_shape,
        samples=S.solve_triangular_samples,
        note="torch.linalg.solve_triangular: reads only A's triangle (its diagonal taken as 1 "
        "when unitriangular); gA is -gB X^T on that triangle, 0 elsewhere and on a unit "
        "diagonal; a zero diagonal divides by 0 (inf, NaN) in value and gradient",
    ),
    Op(
        name="cholesky",
        family=FAMILY,
        params=(A, Param("upper", "bool", False, kw_only=True)),
        forward=_cholesky,
        vjp=_cholesky_vjp,
        torch=lambda t, A, upper: t.linalg.cholesky(A, upper=upper),
        shape=_one_matrix("cholesky"),
        samples=S.cholesky_samples,
        note="torch.linalg.cholesky: reads only A's lower triangle (upper: the upper one), but "
        "torch's gradient is symmetrised, L^-T phi(L^T gL) L^-1 with phi(P) = (tril(P) + "
        "tril(P, -1)^T) / 2: it is the derivative along symmetric perturbations, the whole "
        "of A's gradient (both triangles, each off-diagonal pair holding half the derivative "
        "in the read triangle); gL's other triangle is ignored; torch raises unless positive "
        "definite",
    ),
    Op(
        name="cholesky_solve",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("input2", "tensor"), Param("upper", "bool", False)),
        forward=_cholesky_solve,
        vjp=_cholesky_solve_vjp,
        torch=lambda t, input, input2, upper: t.cholesky_solve(input, input2, upper),
        shape=_chol_solve_shape,
        samples=S.cholesky_solve_samples,
        note="torch.cholesky_solve(B, L): (L L^T)^-1 B (upper: (U^T U)^-1 B), reading only L's "
        "triangle; gB = cholesky_solve(gX, L), gL = -(gB X^T + X gB^T) L (upper: -U (...)), a "
        "full matrix: the other triangle's gradient is not a derivative (torch's convention)",
    ),
    Op(
        name="matrix_power",
        family=FAMILY,
        params=(A, Param("n", "int")),
        forward=_matrix_power,
        vjp=_matrix_power_vjp,
        torch=lambda t, A, n: t.linalg.matrix_power(A, n),
        shape=_matrix_power_shape,
        samples=S.matrix_power_samples,
        note="torch.linalg.matrix_power: n = 0 the identity (zero gradient), n < 0 powers of "
        "inv(A) (torch raises at a singular A); the gradient is autograd's through torch's "
        "products (binary decomposition beyond n = 3)",
    ),
    Op(
        name="matrix_exp",
        family=FAMILY,
        params=(A,),
        forward=lambda A: _as(expm(_f(A)), A),
        vjp=lambda g, out, A: (_as(expm_vjp(_f(g), _f(A)), A),),
        torch=lambda t, A: t.linalg.matrix_exp(A),
        shape=_one_matrix("matrix_exp"),
        samples=S.matrix_exp_samples,
        note="torch.linalg.matrix_exp: the gradient is the upper-right block of "
        "matrix_exp([[A^T, g], [0, A^T]]); a matrix holding inf or NaN gives NaN. Not in "
        "float16 or bfloat16: torch's CPU kernel is wrong there (see wrong_in_half)",
        wrong_in_half="torch 2.13's CPU matrix_exp is wrong in half precision: "
        "matrix_exp([[0.1, 0.2], [0.3, -0.1]]) has -2.1e4 (float16) and -1.3e30 (bfloat16) on "
        "its diagonal, not 1.1; check it in float32",
    ),
]
