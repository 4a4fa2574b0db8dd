"""Matrix products and their relatives. Every product is `matmul` underneath: a 1-D operand is
promoted to a matrix (``(k,)`` as ``(1, k)`` on the left, ``(k, 1)`` on the right), batch dims
broadcast, and the added dim is dropped again; the VJP undoes the promotion and leaves the batch
sums to the engine. einsum lives in `linalg_einsum`."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops import linalg_einsum
from runner.ops.intermediates import matmul_intermediates
from runner.ops.spec import (
    Array,
    Op,
    Param,
    Sample,
    SampleFn,
    Shape,
    ShapeError,
    broadcast_shapes,
)

FAMILY = "linalg"


def matmul_shape(input: Shape, other: Shape) -> Shape:
    return _matmul_shape(input, other, "matmul")


def _matmul_shape(a: Shape, b: Shape, name: str) -> Shape:
    where = f"{name}: {tuple(a)} @ {tuple(b)}"
    if not a or not b:
        raise ShapeError(
            f"{where}: both arguments need at least 1 dim, got {len(a)}-d and {len(b)}-d"
        )
    pa = (1, *a) if len(a) == 1 else tuple(a)
    pb = (*b, 1) if len(b) == 1 else tuple(b)
    if pa[-1] != pb[-2]:
        raise ShapeError(f"{where}: inner dims {pa[-1]} and {pb[-2]} differ")
    try:
        batch = tuple(np.broadcast_shapes(pa[:-2], pb[:-2]))
    except ValueError:
        raise ShapeError(f"{where}: batch dims {pa[:-2]} and {pb[:-2]} do not broadcast") from None
    rows = (pa[-2],) if len(a) > 1 else ()
    cols = (pb[-1],) if len(b) > 1 else ()
    return (*batch, *rows, *cols)


def matmul_vjp(g: Array, out: Array, input: Array, other: Array) -> tuple[Array, Array]:
    """Both gradients at the broadcast batch shape, which `sum_to` reduces: the batch dims are
    leading or size 1 in each operand, and the promoted dim is dropped before returning."""
    a, b = input, other
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g[..., None] if b.ndim == 1 else g
    g2 = g2[..., None, :] if a.ndim == 1 else g2
    ga = g2 @ np.swapaxes(b2, -1, -2)
    gb = np.swapaxes(a2, -1, -2) @ g2
    return (ga[..., 0, :] if a.ndim == 1 else ga), (gb[..., 0] if b.ndim == 1 else gb)


def _ranks(name: str, want: tuple[int, ...], *shapes: Shape) -> None:
    if tuple(len(s) for s in shapes) != want:
        expect = " and ".join(f"{n}-d" for n in want)
        got = " and ".join(f"{len(s)}-d {tuple(s)}" for s in shapes)
        raise ShapeError(f"{name}: expected {expect} operand{'s' * (len(want) > 1)}, got {got}")


def product(name: str, ranks: tuple[int, int], names: tuple[str, str], samples: SampleFn) -> Op:
    """A matmul restricted to fixed ranks (mm, mv, bmm, dot): same forward, VJP and shape rule;
    bmm's batch dim must match exactly, it never broadcasts."""
    pa, pb = names

    def shape(**kw: Shape) -> Shape:
        a, b = kw[pa], kw[pb]
        _ranks(name, ranks, a, b)
        if len(a) == 3 and a[0] != b[0]:
            raise ShapeError(f"{name}: batch sizes {a[0]} and {b[0]} differ")
        return _matmul_shape(a, b, name)

    return Op(
        name=name,
        family=FAMILY,
        params=(Param(pa, "tensor"), Param(pb, "tensor")),
        forward=lambda **kw: np.asarray(np.matmul(kw[pa], kw[pb])),
        vjp=lambda g, out, **kw: matmul_vjp(g, out, kw[pa], kw[pb]),
        torch=lambda t, **kw: getattr(t, name)(kw[pa], kw[pb]),
        shape=shape,
        samples=samples,
        note="no broadcasting: fixed ranks" + (", equal batch sizes" if ranks[0] == 3 else ""),
    )


def normal_samples(names: tuple[str, ...], *shapes: tuple[Shape, ...]) -> SampleFn:
    """Normal operands of each listed shape tuple, then the last tuple again as int64 (no
    gradients: checks the forward keeps torch's integer dtype)."""

    def make(rng: np.random.Generator) -> list[Sample]:
        out = [
            Sample(
                {n: np.asarray(rng.normal(size=s)) for n, s in zip(names, ss, strict=True)},
                note=" with ".join(map(str, ss)),
            )
            for ss in shapes
        ]
        ints = {n: rng.integers(-3, 4, size=s) for n, s in zip(names, shapes[-1], strict=True)}
        return [*out, Sample(ints, note="int64 " + out[-1].note)]

    return make


def _addmm_samples(rng: np.random.Generator) -> list[Sample]:
    def n(*s: int) -> Array:
        return np.asarray(rng.normal(size=s))

    nan_input = n(2, 4)
    nan_input[0, 0] = np.nan
    return [
        Sample({"input": n(2, 4), "mat1": n(2, 3), "mat2": n(3, 4)}, note="defaults"),
        Sample(
            {"input": n(4), "mat1": n(2, 3), "mat2": n(3, 4), "beta": 0.5, "alpha": -2.0},
            note="(4,) input broadcast, beta 0.5, alpha -2",
        ),
        Sample(
            {"input": n(), "mat1": n(2, 3), "mat2": n(3, 4), "alpha": 0.0},
            note="0-d input, alpha 0",
        ),
        Sample({"input": n(2, 1), "mat1": n(2, 3), "mat2": n(3, 4)}, note="(2, 1) input"),
        Sample(
            {"input": nan_input, "mat1": n(2, 3), "mat2": n(3, 4), "beta": 0.0},
            note="beta 0 ignores a NaN in input",
        ),
    ]


def addmm_forward(input: Any, mat1: Array, mat2: Array, beta: float, alpha: float) -> Array:
    prod = alpha * np.matmul(mat1, mat2)
    if alpha == 0:  # torch skips the product then: NaN and inf in it do not propagate
        prod = np.zeros_like(prod)
    if beta == 0:  # torch ignores input then: NaN and inf in it do not propagate
        return np.asarray(np.broadcast_to(prod, np.broadcast_shapes(np.shape(input), prod.shape)))
    return np.asarray(beta * input + prod)


def addmm_shape(input: Shape, mat1: Shape, mat2: Shape, **_: Any) -> Shape:
    _ranks("addmm", (2, 2), mat1, mat2)
    out = _matmul_shape(mat1, mat2, "addmm")
    try:
        fits = len(input) <= 2 and np.broadcast_shapes(input, out) == out
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"addmm: input {tuple(input)} does not broadcast to the product's {out}")
    return out


def inner_vjp(g: Array, out: Array, input: Array, other: Array) -> tuple[Array, Array]:
    a, b = np.asarray(input), np.asarray(other)
    if a.ndim == 0 or b.ndim == 0:
        return g * b, g * a
    na, nb = a.ndim - 1, b.ndim - 1
    ga = np.tensordot(g, b, axes=(list(range(na, na + nb)), list(range(nb))))
    gb = np.tensordot(g, a, axes=(list(range(na)), list(range(na))))
    return ga, gb


def inner_shape(input: Shape, other: Shape) -> Shape:
    if not input or not other:
        return broadcast_shapes(input, other)
    if input[-1] != other[-1]:
        raise ShapeError(
            f"inner: last dims {input[-1]} and {other[-1]} of {tuple(input)} and "
            f"{tuple(other)} differ"
        )
    return (*input[:-1], *other[:-1])


def trace_shape(input: Shape) -> Shape:
    _ranks("trace", (2,), input)
    return ()


def outer_shape(input: Shape, vec2: Shape) -> Shape:
    _ranks("outer", (1, 1), input, vec2)
    return (input[0], vec2[0])


MM = ("input", "mat2")
OPS: list[Op] = [
    # --- matmul and its fixed-rank forms ---
    Op(
        name="matmul",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("other", "tensor")),
        forward=lambda input, other: np.asarray(np.matmul(input, other)),
        vjp=matmul_vjp,
        torch=lambda t, input, other: t.matmul(input, other),
        shape=matmul_shape,
        intermediates=matmul_intermediates,
        samples=normal_samples(
            ("input", "other"),
            ((3,), (3,)),
            ((3,), (3, 4)),
            ((2, 3), (3,)),
            ((2, 3), (3, 4)),
            ((1, 1), (1, 4)),
            ((2, 1, 3, 4), (5, 4, 2)),
            ((4,), (5, 4, 2)),
            ((2, 3, 4), (4,)),
            ((3, 4), (2, 4, 5)),
            ((1, 3, 4), (2, 4, 5)),
            ((2, 0), (0, 3)),
            ((2, 3), (3, 2)),
        ),
        note="a 1-D operand is promoted ((k,) as (1, k) on the left, (k, 1) on the right) and the "
        "added dim dropped; a batch dim broadcast from size 1 or absent sums its gradient",
    ),
    product("mm", (2, 2), MM, normal_samples(MM, ((2, 3), (3, 4)), ((1, 1), (1, 4)))),
    product("mv", (2, 1), ("input", "vec"), normal_samples(("input", "vec"), ((2, 3), (3,)))),
    product("bmm", (3, 3), MM, normal_samples(MM, ((2, 2, 3), (2, 3, 4)), ((1, 3, 1), (1, 1, 2)))),
    product("dot", (1, 1), ("input", "tensor"), normal_samples(("input", "tensor"), ((3,), (3,)))),
    # --- other products ---
    Op(
        name="outer",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("vec2", "tensor")),
        forward=lambda input, vec2: np.multiply.outer(input, vec2),
        vjp=lambda g, out, input, vec2: (g @ vec2, input @ g),
        torch=lambda t, input, vec2: t.outer(input, vec2),
        shape=outer_shape,
        samples=normal_samples(("input", "vec2"), ((3,), (4,)), ((1,), (2,))),
        note="no broadcasting: both 1-D, any sizes",
    ),
    Op(
        name="inner",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("other", "tensor")),
        forward=lambda input, other: np.asarray(np.inner(input, other)),
        vjp=inner_vjp,
        torch=lambda t, input, other: t.inner(input, other),
        shape=inner_shape,
        samples=normal_samples(
            ("input", "other"), ((3,), (3,)), ((2, 3), (4, 5, 3)), ((), (2, 3)), ((2, 3), ())
        ),
        note="a 0-d operand makes it a plain (broadcast) product",
    ),
    Op(
        name="addmm",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("mat1", "tensor"),
            Param("mat2", "tensor"),
            Param("beta", "float", 1.0),
            Param("alpha", "float", 1.0),
        ),
        forward=addmm_forward,
        vjp=lambda g, out, input, mat1, mat2, beta, alpha: (
            g * beta,
            alpha * (g @ mat2.T),
            alpha * (mat1.T @ g),
        ),
        torch=lambda t, input, mat1, mat2, beta, alpha: t.addmm(
            input, mat1, mat2, beta=beta, alpha=alpha
        ),
        shape=addmm_shape,
        samples=_addmm_samples,
        note="beta = 0 ignores input and alpha = 0 the product in the forward (NaN and inf "
        "there do not propagate); the gradients are still g * beta and alpha * (g @ mat2.T), "
        "alpha * (mat1.T @ g)",
    ),
    # --- trace ---
    Op(
        name="trace",
        family=FAMILY,
        params=(Param("input", "tensor"),),
        forward=lambda input: np.asarray(np.trace(input)),
        # torch fills the diagonal with grad (trace_backward): 0 off it, even for an inf grad.
        vjp=lambda g, out, input: (np.where(np.eye(*input.shape) != 0, g, 0).astype(g.dtype),),
        torch=lambda t, input: t.trace(input),
        shape=trace_shape,
        samples=normal_samples(("input",), ((3, 3),), ((2, 4),), ((4, 2),), ((1, 1),)),
        note="non-square allowed: the gradient is g times the rectangular identity",
    ),
    *linalg_einsum.OPS,
]
