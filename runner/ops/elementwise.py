"""Elementwise ops. A unary op needs only its derivative; a binary op one rule per operand at the
broadcast shape (the engine sums it back to each operand's shape)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner.ops.spec import Array, Op, Param, Sample, Shape, broadcast_shapes

FAMILY = "elementwise"
UNARY_SHAPES: tuple[Shape, ...] = ((), (5,), (2, 3))
BINARY_SHAPES: tuple[tuple[Shape, Shape], ...] = (
    ((2, 3), (2, 3)),
    ((2, 3), (3,)),
    ((3, 1), (1, 4)),
    ((), (2, 2)),
    ((2, 1, 3), (4, 1)),
)


def _unary_samples(
    domain: tuple[float, float], points: Sequence[float], attrs: Sequence[dict[str, Any]]
) -> Callable[[np.random.Generator], list[Sample]]:
    """Random values in ``domain``, with the op's special ``points`` (kinks, ties) planted."""

    def make(rng: np.random.Generator) -> list[Sample]:
        out = []
        for kw in attrs or [{}]:
            for shape in UNARY_SHAPES:
                x = np.asarray(rng.uniform(*domain, size=shape))
                if points and x.size > 1:
                    flat = x.reshape(-1)
                    flat[: len(points)] = points[: flat.size]
                out.append(Sample({"input": x, **kw}, note=f"shape {shape} {kw or ''}".strip()))
        return out

    return make


def unary(
    name: str,
    f: Callable[..., Any],
    df: Callable[..., Any],
    tf: Callable[..., Any],
    *,
    note: str = "",
    domain: tuple[float, float] = (-2.0, 2.0),
    points: Sequence[float] = (),
    attrs: Sequence[Param] = (),
    sample_attrs: Sequence[dict[str, Any]] = (),
) -> Op:
    """``df(x, out, **attrs)`` is the local derivative; the VJP is ``g * df``."""
    return Op(
        name=name,
        family=FAMILY,
        params=(Param("input", "tensor"), *attrs),
        forward=lambda input, **kw: f(input, **kw),
        vjp=lambda g, out, input, **kw: (g * df(input, out, **kw),),
        torch=lambda t, input, **kw: tf(t, input, **kw),
        shape=lambda input, **_: input,
        samples=_unary_samples(domain, points, sample_attrs),
        note=note,
    )


def _binary_samples(positive_a: bool = False, tie: bool = False) -> Callable[..., list[Sample]]:
    def make(rng: np.random.Generator) -> list[Sample]:
        out = []
        for sa, sb in BINARY_SHAPES:
            a = np.asarray(rng.uniform(0.5, 2.0, size=sa) if positive_a else rng.uniform(-2, 2, size=sa))
            b = np.asarray(rng.uniform(0.5, 2.0, size=sb) * rng.choice([-1.0, 1.0], size=sb))
            if tie and a.size > 1 and a.shape == b.shape:
                a.reshape(-1)[0] = b.reshape(-1)[0]
            out.append(Sample({"input": a, "other": b}, note=f"{sa} with {sb}"))
        return out

    return make


def binary(
    name: str,
    f: Callable[[Any, Any], Any],
    da: Callable[[Array, Array, Any, Any], Any],
    db: Callable[[Array, Array, Any, Any], Any],
    tf: Callable[..., Any],
    *,
    note: str = "",
    positive_a: bool = False,
    tie: bool = False,
    names: tuple[str, str] = ("input", "other"),
) -> Op:
    """``da``/``db`` take ``(g, out, a, b)`` and return the gradient at the broadcast shape."""
    pa, pb = names
    return Op(
        name=name,
        family=FAMILY,
        params=(Param(pa, "tensor"), Param(pb, "tensor")),
        forward=lambda **kw: f(kw[pa], kw[pb]),
        vjp=lambda g, out, **kw: (da(g, out, kw[pa], kw[pb]), db(g, out, kw[pa], kw[pb])),
        torch=lambda t, **kw: tf(t, kw[pa], kw[pb]),
        shape=lambda **kw: broadcast_shapes(kw[pa], kw[pb]),
        samples=_binary_samples(positive_a, tie),
        note=note,
    )


OPS: list[Op] = [
    # --- unary ---
    unary("neg", np.negative, lambda x, out: -np.ones_like(x), lambda t, input: -input),
    unary("exp", np.exp, lambda x, out: out, lambda t, input: t.exp(input)),
    unary(
        "relu",
        lambda input: np.maximum(input, 0).astype(np.result_type(input)),
        lambda x, out: (x > 0).astype(np.result_type(x)),
        lambda t, input: t.relu(input),
        note="relu'(0) = 0",
        points=(0.0,),
    ),
    # --- binary ---
    binary("add", np.add, lambda g, o, a, b: g, lambda g, o, a, b: g, lambda t, a, b: a + b),
    binary("sub", np.subtract, lambda g, o, a, b: g, lambda g, o, a, b: -g, lambda t, a, b: a - b),
    binary(
        "mul", np.multiply, lambda g, o, a, b: g * b, lambda g, o, a, b: g * a, lambda t, a, b: a * b
    ),
    binary(
        "div",
        np.divide,
        lambda g, o, a, b: g / b,
        lambda g, o, a, b: -g * a / (b * b),
        lambda t, a, b: a / b,
    ),
]
