"""The builders and hard rules behind the reductions table (`reductions`).

A reduction's forward computes at the kept shape (reduced dims as size 1) and its rule sees the
upstream gradient and the output at that shape, as torch's backward formulas see them after
``unsqueeze_multiple``; the builder reshapes on the way in and out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner.ops.dtypes import operand
from runner.ops.spec import (
    Array,
    Op,
    Param,
    Sample,
    Shape,
    ShapeError,
    norm_dim,
    norm_dims,
    reduced_shape,
)

FAMILY = "reductions"
DIMS = Param("dim", "dims", None)
ONE_D = Param("dim", "int?", None)  # torch's prod, max and min take one int dim


def is_floating(x: Array) -> bool:
    return bool(np.issubdtype(x.dtype, np.floating))


def widened(x: Array) -> Any:
    """torch's sum, prod and scans of an integer or bool tensor give int64."""
    return None if is_floating(x) else np.int64


def floating_only(name: str, x: Array) -> Array:
    if not is_floating(x):
        raise TypeError(f"{name}: torch accepts only floating inputs, got {x.dtype}")
    return x


def count(x: Array, dims: tuple[int, ...]) -> int:
    return int(np.prod([x.shape[d] for d in dims]))


def expand(g: Array, x: Array) -> Array:
    return np.broadcast_to(g, x.shape)


def reduction(
    name: str,
    f: Callable[..., Any],
    df: Callable[..., Any],
    tf: Callable[..., Any],
    *,
    samples: Callable[[np.random.Generator], list[Sample]],
    note: str = "",
    dim: Param = DIMS,
    attrs: Sequence[Param] = (),
    lead: Sequence[Param] = (),
    check: Callable[..., None] | None = None,
) -> Op:
    """``f(x, dims, full, **attrs)`` gives the result at the kept shape; ``df(g, out, x, dims,
    full, **attrs)`` the input's gradient from ``g`` and ``out`` at the kept shape. ``dims`` are
    sorted non-negative (every dim for dim=None); ``full`` is torch's "no dim given, or a 0-d
    input" branch, where some backward formulas differ (max, var). ``check(shape, dim, keepdim,
    **attrs)`` rejects what torch rejects beyond the dims' range. Attributes go after dim, or
    before it (``lead``) as norm's p."""

    def bind(x: Array, d: Any) -> tuple[tuple[int, ...], bool]:
        return norm_dims(d, x.ndim), d is None or x.ndim == 0

    def forward(input: Any, dim: Any = None, keepdim: bool = False, **kw: Any) -> Array:
        x = operand(input)
        dims, full = bind(x, dim)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            kept = np.asarray(f(x, dims, full, **kw))
        return kept.reshape(reduced_shape(x.shape, dims, keepdim))

    def vjp(
        g: Array, out: Array, input: Array, dim: Any = None, keepdim: bool = False, **kw: Any
    ) -> tuple[Any]:
        dims, full = bind(input, dim)
        kept = reduced_shape(input.shape, dims, True)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return (df(g.reshape(kept), out.reshape(kept), input, dims, full, **kw),)

    def shape(input: Shape, dim: Any = None, keepdim: bool = False, **kw: Any) -> Shape:
        dims = norm_dims(dim, len(input))
        if check is not None:
            check(input, dim, keepdim, **kw)
        return reduced_shape(input, dims, keepdim)

    return Op(
        name=name,
        family=FAMILY,
        # torch makes keepdim keyword-only too where an attribute is (var, std).
        params=(
            Param("input", "tensor"),
            *lead,
            dim,
            *attrs,
            Param("keepdim", "bool", False, kw_only=any(a.kw_only for a in attrs)),
        ),
        forward=forward,
        vjp=vjp,
        torch=tf,
        shape=shape,
        samples=samples,
        note=note,
    )


def scan(
    name: str,
    f: Callable[[Array, int], Array],
    df: Callable[[Array, Array, Array, int], Array],
    tf: Callable[..., Any],
    *,
    samples: Callable[[np.random.Generator], list[Sample]],
    note: str = "",
) -> Op:
    """A cumulative op along one dim; a 0-d input is run as shape (1,), as torch treats it."""

    def lifted(x: Array) -> Array:
        return x.reshape(x.shape or (1,))

    def forward(input: Any, dim: int) -> Array:
        x = operand(input)
        return f(lifted(x), norm_dim(dim, x.ndim)).reshape(x.shape)

    def vjp(g: Array, out: Array, input: Array, dim: int) -> tuple[Array]:
        d = norm_dim(dim, input.ndim)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return (df(lifted(g), lifted(out), lifted(input), d).reshape(input.shape),)

    def shape(input: Shape, dim: int) -> Shape:
        norm_dim(dim, len(input))
        return input

    return Op(
        name=name,
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim", "int")),
        forward=forward,
        vjp=vjp,
        torch=tf,
        shape=shape,
        samples=samples,
        note=note,
    )


# --- hard rules -----------------------------------------------------------------------------------


def others_product(x: Array, d: int) -> Array:
    """The product of every other entry along ``d``, from exclusive cumprods taken from both ends
    (torch's prod_safe_zeros_backward): no division, so exact with zeros."""
    y = np.moveaxis(x, d, -1)
    ones = np.ones_like(y[..., :1])
    left = np.cumprod(np.concatenate([ones, y[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, y[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return np.moveaxis(left * right, -1, d)


def prod_vjp(g: Array, out: Array, x: Array, dims: tuple[int, ...], full: bool) -> Array:
    """torch divides ``out / x`` unless the input holds a zero anywhere (then inf or NaN inputs give
    what that division gives); with a zero it takes the product of the others."""
    if x.ndim == 0:
        return g
    if not (x == 0).any():
        return g * (out / x)
    if full:
        if (x == 0).sum() > 1:  # torch returns zeros outright, whatever else the input holds
            return np.zeros(x.shape, dtype=np.result_type(g, x))
        return g * others_product(x.reshape(-1), 0).reshape(x.shape)
    return g * others_product(x, dims[0])


def select_vjp(pick: Callable[..., Array]) -> Callable[..., Array]:
    """max/min: with no dim, ties (or NaNs, when the result is NaN) share the gradient evenly; with
    a dim, it all goes to the index torch returns, the first extremum (first NaN) on CPU, which is
    what numpy's argmax/argmin pick too."""

    def vjp(g: Array, out: Array, x: Array, dims: tuple[int, ...], full: bool) -> Array:
        if x.ndim == 0:
            return g
        if full:
            mask = np.isnan(x) if np.isnan(out).any() else x == out
            return np.where(mask, g / int(mask.sum()), 0)
        grad = np.zeros(x.shape, dtype=g.dtype)
        np.put_along_axis(grad, pick(x, axis=dims[0], keepdims=True), g, axis=dims[0])
        return grad

    return vjp


def spread_vjp(g: Array, out: Array, x: Array, dims: tuple[int, ...], full: bool) -> Array:
    """amax/amin (torch's scale_grad_by_count): ``x == out`` is false for NaN, so a slice holding a
    NaN divides by a zero count and its gradient is NaN throughout."""
    mask = x == out
    return np.asarray(g / mask.sum(axis=dims, keepdims=True).astype(g.dtype) * mask)


def logsumexp(x: Array, dims: tuple[int, ...], full: bool) -> Array:
    """torch's shift: infinite maxima are replaced by 0, so all -inf gives -inf, not NaN."""
    x = x if is_floating(x) else x.astype(np.float32)
    m = np.amax(x, axis=dims, keepdims=True, initial=-np.inf)  # an empty slice gives -inf
    m = np.where(np.isinf(m), 0, m)
    return np.asarray(np.log(np.sum(np.exp(x - m), axis=dims, keepdims=True)) + m)


def cumprod_vjp(g: Array, out: Array, x: Array, d: int) -> Array:
    """torch's cumprod_backward: ``reversed_cumsum(out * g) / x`` when the input has no zero at
    all; otherwise, per slice, that formula before the first zero, the exact derivative at the
    first zero (products up to the second zero) and 0 after it."""
    if x.shape[d] == 1:
        return g
    w = out * g
    if not (x == 0).any():
        return rcumsum(w, d) / x
    zeros = np.cumsum(x == 0, axis=d)
    before = zeros == 0
    grad = np.where(before, rcumsum(np.where(before, w, 0), d) / x, 0)
    first = (x == 0) & (zeros == 1)
    between = (zeros == 1) & ~first
    tail = np.cumprod(np.where(between, x, 1), axis=d) * np.where(zeros == 1, g, 0)
    head = np.concatenate([np.ones_like(np.take(out, [0], axis=d)), np.delete(out, -1, d)], d)
    return np.where(first, np.sum(tail, axis=d, keepdims=True) * head, grad)


def rcumsum(w: Array, d: int) -> Array:
    return np.flip(np.cumsum(np.flip(w, d), axis=d), d)


def variance(x: Array, dims: tuple[int, ...], full: bool, correction: float) -> Array:
    """torch divides by max(0, N - correction): inf (NaN for zero spread) when N <= correction."""
    dev = floating_only("var", x) - np.mean(x, axis=dims, keepdims=True)
    total = np.sum(dev * dev, axis=dims, keepdims=True)
    return np.asarray(total / max(0, count(x, dims) - correction))


def var_vjp(
    g: Array, out: Array, x: Array, dims: tuple[int, ...], full: bool, correction: float
) -> Array:
    """torch's var_backward: ``2 / (N - correction) * (x - mean)``. With no dim (or a 0-d input)
    and N <= correction it gives inf, NaN where x equals the mean; with a dim, N - correction is
    not clamped (negative factors, inf or NaN at 0)."""
    mean = np.mean(x, axis=dims, keepdims=True)
    dof = count(x, dims) - correction
    if full and dof <= 0:
        return g * np.where(x == mean, np.nan, np.inf)
    return np.asarray(float(np.divide(2.0, dof)) * g * (x - mean))


def std_vjp(
    g: Array, out: Array, x: Array, dims: tuple[int, ...], full: bool, correction: float
) -> Array:
    """torch's std_backward: var's rule with upstream g / (2 std), masked to 0 where std == 0."""
    return var_vjp(np.where(out == 0, 0, g / (out * 2)), out, x, dims, full, correction)


def vector_norm(x: Array, dims: tuple[int, ...], full: bool, p: float | str) -> Array:
    """torch.norm computes p='fro' over at most 2 dims (see `fro_dims`) as linalg.vector_norm with
    ord 2, so it is p=2 here, forward and backward."""
    p = 2 if p == "fro" else float(p)
    a = np.abs(floating_only("norm", x))
    if p == 0:
        return np.asarray(np.sum(a != 0, axis=dims, keepdims=True)).astype(x.dtype)
    if np.isinf(p):
        return np.asarray((np.amax if p > 0 else np.amin)(a, axis=dims, keepdims=True))
    if p == 1:
        return np.asarray(np.sum(a, axis=dims, keepdims=True))
    if p == 2:
        return np.asarray(np.sqrt(np.sum(a * a, axis=dims, keepdims=True)))
    return np.asarray(np.sum(a**p, axis=dims, keepdims=True) ** (1.0 / p))


def norm_vjp(
    g: Array, out: Array, x: Array, dims: tuple[int, ...], full: bool, p: float | str
) -> Array | None:
    """torch's norm_backward, branch by branch: no gradient for p=0; sign(x) for p=1; a zero norm
    gives 0 for p=2 (and 'fro') and p>1; p=inf splits over the ties of |x|; p<1 gives 0 at zero
    entries."""
    p = 2 if p == "fro" else float(p)
    if p == 0:
        return None
    s = (x > 0).astype(x.dtype) - (x < 0)  # torch's sign: 0 at NaN, where np.sign gives NaN
    if p == 1:
        return s * g
    if p == 2:
        return g * np.where(out == 0, 0, x / out)
    if np.isinf(p):
        mask = (np.abs(x) == out) | np.isnan(x)
        return np.asarray(s * (g / mask.sum(axis=dims, keepdims=True).astype(g.dtype) * mask))
    if p < 1:
        return s * np.where(x == 0, 0, np.abs(x) ** (p - 1)) * g * out ** (1 - p)
    scaled = s * np.abs(x) ** (p - 1) if p < 2 else x * np.abs(x) ** (p - 2)
    return np.asarray(scaled * np.where(out == 0, 0, g / out ** (p - 1)))


# --- checks beyond the dims' range ----------------------------------------------------------------


def no_keepdim_without_dim(name: str) -> Callable[..., None]:
    def check(shape: Shape, dim: Any, keepdim: bool, **_: Any) -> None:
        if dim is None and keepdim:
            raise ShapeError(
                f"dim=None takes no keepdim (torch.{name}(input) has none); pass a dim"
            )
        if name in ("max", "min"):
            no_empty_extremum(name)(shape, dim, keepdim)

    return check


def no_empty_extremum(name: str) -> Callable[..., None]:
    """max, min, amax, amin have no identity: torch refuses to reduce an empty slice."""

    def check(shape: Shape, dim: Any, keepdim: bool, **_: Any) -> None:
        dims = norm_dims(dim, len(shape)) if dim != [] else tuple(range(len(shape)))
        empty = [d for d in dims if shape[d] == 0]
        if empty or (dim is None and 0 in shape):
            raise ShapeError(
                f"cannot reduce an empty slice: dim {empty[0] if empty else None} of {shape} "
                f"has size 0 (torch refuses it: {name} has no identity)"
            )

    return check


def no_empty_dims(shape: Shape, dim: Any, keepdim: bool, **_: Any) -> None:
    """var and std: torch's forward reads dim=[] as every dim, its backward as a count of 1."""
    if dim == [] and shape:
        raise ShapeError(
            "dim=[] reduces every dim in torch 2.13's forward, but its backward counts 1 entry "
            "(the gradient comes out as +-inf); write dim=None"
        )


def fro_dims(shape: Shape, dim: Any, keepdim: bool, p: float | str) -> None:
    """torch.norm sends p='fro' to the 2-norm only for dim=None or at most 2 dims; more go to
    linalg.matrix_norm, which raises (the 2-norm itself takes any number)."""
    if p == "fro" and isinstance(dim, list) and len(dim) > 2:
        raise ShapeError(
            f"p='fro' takes at most 2 dims, got dim={dim} (torch.norm hands more to "
            "linalg.matrix_norm, which refuses them); write dim=None for every dim, or p=2"
        )


def logsumexp_check(shape: Shape, dim: Any, keepdim: bool) -> None:
    if dim is None:
        raise ShapeError("dim is required (torch.logsumexp has no dim=None)")
    if dim == [] and shape:
        raise ShapeError("dim=[] fails in torch for a non-0-d input; list the dims")
