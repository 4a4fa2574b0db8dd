"""Attention (the attention family): F.scaled_dot_product_attention, as torch's math reference
computes it:

    P = softmax(Q K^T * scale + mask),  out = P V,

with ``scale = 1 / sqrt(E)`` unless given, a bool mask meaning "True takes part" (False adds
-inf), a float mask added (and differentiated), is_causal the lower-triangular mask of
``ones(L, S)`` (top-left aligned: query i sees keys 0..i), and enable_gqa repeating each key and
value head for ``Hq / Hkv`` query heads (repeat_interleave on dim -3). Batch dims broadcast.
A row with no key taking part (all -inf) gives 0, not NaN, in the output and in every gradient:
torch 2.13's CPU kernels (the math path's ``_safe_softmax`` and the flash kernel alike) do so.

The backward is the usual one: dV = P^T g, dP = g V^T, dS = P * (dP - rowsum(dP * P)),
dQ = dS K * scale, dK = dS^T Q * scale, d mask = dS; gradients of repeated heads are summed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, broadcast_shapes

FAMILY = "attention"
OP = "scaled_dot_product_attention"


def _groups(query: Shape, key: Shape, enable_gqa: bool) -> int:
    """How many query heads share one key/value head (1 without enable_gqa)."""
    if not enable_gqa:
        return 1
    if len(query) < 3 or len(key) < 3:
        raise ShapeError(f"{OP}: enable_gqa needs a head dim (-3) in query and key")
    hq, hk = query[-3], key[-3]
    if hk == 0 or hq % hk:
        raise ShapeError(
            f"{OP}: enable_gqa: the query's {hq} heads must be a multiple of the key's {hk}"
        )
    return hq // hk


def _repeat(x: Shape, groups: int) -> Shape:
    return (*x[:-3], x[-3] * groups, *x[-2:]) if groups > 1 else tuple(x)


def sdpa_shape(
    query: Shape,
    key: Shape,
    value: Shape,
    attn_mask: Shape | None,
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> Shape:
    if dropout_p != 0:
        raise ShapeError(
            f"{OP}: dropout_p={dropout_p} drops at random, which no oracle can check; the "
            "catalogue takes dropout_p=0.0 only (multiply by a fixed mask input instead)"
        )
    if min(len(query), len(key), len(value)) < 2:
        raise ShapeError(
            f"{OP}: query, key and value must be at least 2-d, got {tuple(query)}, "
            f"{tuple(key)} and {tuple(value)}"
        )
    if query[-1] != key[-1]:
        raise ShapeError(
            f"{OP}: query {tuple(query)} and key {tuple(key)} differ in their last dim (E)"
        )
    if key[-2] != value[-2]:
        raise ShapeError(
            f"{OP}: key {tuple(key)} and value {tuple(value)} differ in length (dim -2, S)"
        )
    if is_causal and attn_mask is not None:
        raise ShapeError(f"{OP}: give attn_mask or is_causal=True, not both (as torch)")
    groups = _groups(query, key, enable_gqa)
    if enable_gqa and value[-3] != key[-3]:
        raise ShapeError(f"{OP}: enable_gqa: key and value must have the same number of heads")
    k, v = _repeat(key, groups), _repeat(value, groups)
    batch = broadcast_shapes(query[:-2], k[:-2], v[:-2])
    scores = (*batch, query[-2], key[-2])
    if attn_mask is not None and broadcast_shapes(tuple(attn_mask), scores) != scores:
        raise ShapeError(
            f"{OP}: attn_mask {tuple(attn_mask)} does not broadcast to the scores' shape {scores}"
        )
    return (*batch, query[-2], value[-1])


def _parts(
    query: Array,
    key: Array,
    value: Array,
    attn_mask: Array | None,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> tuple[Array, Array, Array, Any, int]:
    """The repeated key and value, the attention weights P, the scale and the group count."""
    dt = query.dtype.type
    groups = _groups(query.shape, key.shape, enable_gqa)
    k = np.repeat(key, groups, axis=-3) if groups > 1 else key
    v = np.repeat(value, groups, axis=-3) if groups > 1 else value
    s = dt(1.0 / math.sqrt(query.shape[-1])) if scale is None else dt(scale)
    scores = (query @ np.swapaxes(k, -1, -2)) * s
    L, S = query.shape[-2], key.shape[-2]
    if is_causal:
        scores = np.where(np.tril(np.ones((L, S), dtype=bool)), scores, dt(-np.inf))
    if attn_mask is not None:
        if attn_mask.dtype == np.bool_:
            scores = np.where(attn_mask, scores, dt(-np.inf))
        else:
            scores = scores + attn_mask
    top = scores.max(axis=-1, keepdims=True, initial=-np.inf)
    with np.errstate(invalid="ignore"):
        e = np.exp(scores - np.where(np.isneginf(top), dt(0), top))
        total = e.sum(axis=-1, keepdims=True)
        # _safe_softmax: a row with every score -inf attends to nothing (0, not 0/0).
        p = np.where(np.isneginf(top), dt(0), e / np.where(total == 0, dt(1), total))
    return k, v, p.astype(query.dtype), s, groups


def sdpa_forward(
    query: Array,
    key: Array,
    value: Array,
    attn_mask: Array | None,
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> Array:
    """F.scaled_dot_product_attention (dropout_p 0): softmax(Q K^T * scale + mask) V."""
    _, v, p, _, _ = _parts(query, key, value, attn_mask, is_causal, scale, enable_gqa)
    out: Array = p @ v
    return out.astype(query.dtype)


def _unrepeat(g: Array, groups: int) -> Array:
    """The gradient of repeat_interleave on dim -3: each group of repeated heads summed."""
    if groups == 1:
        return g
    h = g.shape[-3] // groups
    out: Array = g.reshape(*g.shape[:-3], h, groups, *g.shape[-2:]).sum(axis=-3)
    return out


def sdpa_vjp(
    g: Array,
    out: Array,
    query: Array,
    key: Array,
    value: Array,
    attn_mask: Array | None,
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> tuple[Array, Array, Array, Array | None]:
    """Gradients at the broadcast batch shape (the engine sums them to each operand's)."""
    k, v, p, s, groups = _parts(query, key, value, attn_mask, is_causal, scale, enable_gqa)
    gv = np.swapaxes(p, -1, -2) @ g
    gp = g @ np.swapaxes(v, -1, -2)
    gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))
    gq = (gs @ k) * s
    gk = (np.swapaxes(gs, -1, -2) @ query) * s
    gmask = None if attn_mask is None or attn_mask.dtype == np.bool_ else gs
    return gq, _unrepeat(gk, groups), _unrepeat(gv, groups), gmask


def _samples(rng: np.random.Generator) -> list[Sample]:
    def n(*shape: int) -> Array:
        return rng.normal(size=shape)

    partial = np.array([[True, False, True, True, False]] * 3)
    dead_row = partial.copy()
    dead_row[1] = False
    float_mask = n(3, 5)
    float_mask[2, [0, 3]] = -np.inf
    dead_float = float_mask.copy()
    dead_float[0] = -np.inf
    rows: list[tuple[dict[str, Any], str]] = [
        ({"query": n(2, 3, 4), "key": n(2, 5, 4), "value": n(2, 5, 6)}, "plain"),
        ({"query": n(3, 4), "key": n(5, 4), "value": n(5, 2)}, "2-d"),
        ({"query": n(2, 1, 3, 4), "key": n(1, 2, 5, 4), "value": n(2, 2, 5, 3)}, "broadcast"),
        (
            {"query": n(2, 3, 4), "key": n(2, 5, 4), "value": n(2, 5, 6), "attn_mask": partial},
            "bool mask",
        ),  # fmt: skip
        (
            {"query": n(2, 3, 4), "key": n(2, 5, 4), "value": n(2, 5, 6), "attn_mask": dead_row},
            "bool mask with a row of False: 0 out, 0 gradients",
        ),  # fmt: skip
        (
            {"query": n(2, 3, 4), "key": n(2, 5, 4), "value": n(2, 5, 6), "attn_mask": float_mask},
            "float mask with -inf",
        ),  # fmt: skip
        (
            {"query": n(1, 3, 4), "key": n(1, 5, 4), "value": n(1, 5, 2), "attn_mask": dead_float},
            "float mask with a row of -inf",
        ),  # fmt: skip
        (
            {"query": n(2, 1, 5), "key": n(2, 3, 5), "value": n(2, 3, 2), "attn_mask": n(2, 1, 3)},
            "float mask (2, 1, S) broadcast over batch",
        ),  # fmt: skip
        (
            {"query": n(2, 4, 3), "key": n(2, 4, 3), "value": n(2, 4, 3), "is_causal": True},
            "causal",
        ),  # fmt: skip
        (
            {"query": n(1, 5, 3), "key": n(1, 3, 3), "value": n(1, 3, 2), "is_causal": True},
            "causal, L > S",
        ),  # fmt: skip
        (
            {"query": n(1, 2, 3), "key": n(1, 4, 3), "value": n(1, 4, 2), "is_causal": True},
            "causal, L < S",
        ),  # fmt: skip
        ({"query": n(2, 3, 4), "key": n(2, 5, 4), "value": n(2, 5, 6), "scale": 0.3}, "scale"),
        (
            {
                "query": n(1, 4, 3, 2),
                "key": n(1, 2, 5, 2),
                "value": n(1, 2, 5, 3),
                "enable_gqa": True,
            },
            "gqa: 4 query heads on 2",
        ),  # fmt: skip
    ]
    return [Sample(args, note=note) for args, note in rows]


SDPA = Op(
    name=OP,
    family=FAMILY,
    params=(
        Param("query", "tensor"),
        Param("key", "tensor"),
        Param("value", "tensor"),
        Param("attn_mask", "tensor?", None),
        Param("dropout_p", "float", 0.0),
        Param("is_causal", "bool", False),
        Param("scale", "float?", None, kw_only=True),
        Param("enable_gqa", "bool", False, kw_only=True),
    ),
    forward=sdpa_forward,
    vjp=sdpa_vjp,
    torch=lambda t, **kw: t.nn.functional.scaled_dot_product_attention(**kw),
    shape=sdpa_shape,
    samples=_samples,
    note=(
        "torch's math path: softmax(Q K^T * scale + mask) V with scale 1/sqrt(E) by default; a "
        "bool attn_mask's True takes part, a float one is added and gets a gradient; is_causal "
        "is tril(ones(L, S)), top-left aligned; a row where no key takes part (all -inf) gives "
        "0 output and 0 gradients, as torch 2.13's CPU kernels do (not NaN); dropout_p other "
        "than 0 is refused (random)"
    ),
)

OPS: list[Op] = [SDPA]
