"""Where an op's gradient is not its derivative, as data: one predicate per op, read by the
finite-difference oracle (`runner.numeric`), which must not difference across such a point.

``KINKS[op](h, moved=None, **args) -> str | None`` takes the op's bound arguments by torch's
parameter names (arrays, Python numbers for literal operands, plain attribute values), a distance
``h`` (the most any operand moves under the oracle's perturbation) and ``moved``, a bool mask at
the differentiable operands' broadcast shape of the elements the perturbation moved (None: any may
have), and returns a reason when some element that moved lies within ``h`` of a point where the op
is not differentiable, or where torch's gradient is a convention rather than the derivative (a
reduction: a slice holding a moved element; an op whose operands do not broadcast together, such
as embedding or addmm, looks at every element):

- kinks and jumps of elementwise ops: ``abs``/``relu``/``sign`` at 0, clamp's and hardtanh's
  bounds, the integers of ``floor``/``ceil`` (half-integers for ``round``), ...;
- ties: two operands of ``maximum`` within ``2h`` (each may move by ``h``), or a runner-up within
  ``2h`` of the extremum of a ``max``/``amax``/``max_pool`` window;
- zeros of a norm or of a spread (``std``), where the derivative is singular;
- torch's deliberate departures: ``embedding``'s ``padding_idx`` row, ``max_norm`` (rescaled in
  the forward only) and ``scale_grad_by_freq``; ``binary_cross_entropy`` where its eps clamps.

`SMOOTH` names the ops that need no predicate (differentiable wherever their forward is finite:
a domain's edge, a pole or NaN shows as a forward that is not finite, which the oracle skips by
itself). Every op of the catalogue is in exactly one of the two (tests/test_numeric.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runner.ops.kinks_spectral import SPECTRAL_KINKS
from runner.ops.linalg_decomp_kinks import LINALG_DECOMP_KINKS
from runner.ops.spec import Array, norm_dims

Kinks = Callable[..., str | None]


def _f(x: Any) -> Array:
    return np.asarray(x, dtype=np.float64)


def _count(mask: Array, what: str) -> str | None:
    n = int(np.count_nonzero(mask))
    return f"{n} element(s) {what}" if n else None


def _near(x: Any, points: Any, h: float, name: str, what: str) -> str | None:
    with np.errstate(invalid="ignore"):
        return _count(np.abs(_f(x) - _f(points)) <= h, f"of '{name}' within {h:.2g} of {what}")


def _near_zero(h: float, input: Any, **_: Any) -> str | None:
    return _near(input, 0.0, h, "input", "0")


def _elementwise(kinks: Kinks) -> Kinks:
    """``kinks`` of an elementwise op, asked only about the elements that moved: every array
    operand is broadcast together with ``moved`` and reduced to those elements."""

    def local(h: float, moved: Any = None, **args: Any) -> str | None:
        if moved is None:
            return kinks(h, **args)
        arrays = {k: v for k, v in args.items() if isinstance(v, np.ndarray)}
        try:
            shape = np.broadcast_shapes(np.shape(moved), *(v.shape for v in arrays.values()))
        except ValueError:
            return kinks(h, **args)
        where = np.broadcast_to(moved, shape)
        if not where.any():
            return None
        picked = {k: np.broadcast_to(v, shape)[where] for k, v in arrays.items()}
        return kinks(h, **(args | picked))

    return local


def _in_slices(moved: Any, a: Any, axes: tuple[int, ...]) -> Any:
    """``moved`` laid out as `_ties` lays out ``a`` (None stays None)."""
    if moved is None:
        return None
    m = np.moveaxis(np.broadcast_to(moved, np.shape(a)), axes, tuple(range(-len(axes), 0)))
    return m.reshape(*m.shape[: np.ndim(a) - len(axes)], -1)


def _ties(x: Any, axes: tuple[int, ...], h: float, what: str, moved: Any = None) -> str | None:
    """Slices (over ``axes``) whose extremum has a runner-up within ``2h``: moving both by ``h``
    may swap them. ``what`` names the extremum (max of x, min: pass -x). ``moved`` (x's shape):
    only slices where a moved element is among the close ones count."""
    a = _f(x)
    if a.size == 0 or not axes:
        return None
    laid = np.moveaxis(a, axes, tuple(range(-len(axes), 0)))
    flat = laid.reshape(*laid.shape[: a.ndim - len(axes)], -1)
    with np.errstate(invalid="ignore"):
        top = np.nanmax(np.where(np.isnan(flat), -np.inf, flat), axis=-1, keepdims=True)
        near = top - flat <= 2 * h
        close = np.count_nonzero(near, axis=-1)
    if moved is not None:
        close = np.where(np.any(near & _in_slices(moved, a, axes), axis=-1), close, 0)
    n = int(np.count_nonzero(close >= 2))
    return f"{n} slice(s) with tied {what} (within {2 * h:.2g})" if n else None


def _extremum(sign: float, name: str) -> Kinks:
    def kinks(h: float, input: Any, dim: Any = None, moved: Any = None, **_: Any) -> str | None:
        x = _f(input)
        return _ties(sign * x, norm_dims(dim, x.ndim), h, f"{name} along dims {dim}", moved)

    return kinks


def _both_extrema(name: str) -> Kinks:
    """aminmax: ties of its min or of its max."""

    def kinks(h: float, **args: Any) -> str | None:
        return _extremum(-1.0, name)(h, **args) or _extremum(1.0, name)(h, **args)

    return kinks


def _any_ties(h: float, input: Any, dim: int = -1, **_: Any) -> str | None:
    """sort, cummax, cummin: two elements of a slice within ``2h`` may swap places (or take over
    a running extremum), and the gradient goes where the index goes."""
    x = _f(input)
    if x.ndim == 0 or x.size == 0:
        return None
    ordered = np.sort(np.moveaxis(x, dim, -1), axis=-1)
    with np.errstate(invalid="ignore"):
        close = np.diff(ordered, axis=-1) <= 2 * h
    return _count(np.any(close, axis=-1), f"slice(s) with two values within {2 * h:.2g}")


def _ranked(h: float, input: Any, dim: Any = None, **_: Any) -> str | None:
    """topk, kthvalue, median, nanmedian, msort, argsort: two elements of a slice within ``2h``
    may swap ranks, and the gradient goes where the index goes (dim None: the flattened input,
    whose tied elements split the full median's gradient); argsort's indices jump there."""
    x = _f(input)
    return _any_ties(h, x.reshape(-1) if dim is None else x, -1 if dim is None else dim)


def _scatter_extremum(h: float, input: Any, dim: int, index: Any, src: Any, reduce: str,
                      **_: Any) -> str | None:  # fmt: skip
    """scatter_reduce amax/amin: a place whose result has a runner-up within ``2h`` among its
    src elements and input's (counted even with include_self=False: torch splits with it)."""
    if reduce not in ("amax", "amin"):
        return None
    from runner.ops.indexing import _1d, _scatter_at, _source

    sign = 1.0 if reduce == "amax" else -1.0
    x, s = sign * _f(_1d(input)), sign * _f(_source(src, index))
    try:
        at = _scatter_at(input, dim, index, "scatter_reduce")[0]
    except ValueError:
        return None
    flat = np.ravel_multi_index(np.broadcast_arrays(*at), x.shape).reshape(-1)
    tied = 0
    for place in np.unique(flat):
        group = np.sort(np.concatenate([x.reshape(-1)[[place]], s.reshape(-1)[flat == place]]))
        tied += bool(group.size > 1 and group[-1] - group[-2] <= 2 * h)
    return f"{tied} place(s) with a tied {reduce} (within {2 * h:.2g})" if tied else None


def _pair_ties(h: float, input: Any, other: Any, **_: Any) -> str | None:
    return _count(np.abs(_f(input) - _f(other)) <= 2 * h, f"tied within {2 * h:.2g}")


def _bounds(lo: Any, hi: Any, h: float, input: Any) -> str | None:
    if lo is not None and hi is not None and lo > hi:
        return None  # constant: min > max gives max everywhere
    found = [_near(input, b, h, "input", f"the bound {b}") for b in (lo, hi) if b is not None]
    return "; ".join(f for f in found if f) or None


def _slope_change(h: float, input: Any, slope: float) -> str | None:
    return None if slope == 1 else _near(input, 0.0, h, "input", "0")


def _jumps(step: float, *, at_zero: bool) -> Kinks:
    """A piecewise-constant op (or frac) jumps at multiples of 1 shifted by ``step``; trunc and
    frac are continuous at 0."""

    def kinks(h: float, input: Any, **_: Any) -> str | None:
        x = _f(input) - step
        with np.errstate(invalid="ignore"):
            near = np.abs(x - np.round(x)) <= h
            if not at_zero:
                near &= np.abs(_f(input)) > h
        return _count(near, f"of 'input' within {h:.2g} of a jump")

    return kinks


def _atan2(h: float, input: Any, other: Any, **_: Any) -> str | None:
    # The origin, and the branch cut along the negative x-axis (y = 0, x < 0).
    y, x = np.broadcast_arrays(_f(input), _f(other))
    return _count((np.abs(y) <= h) & (x <= h), f"within {h:.2g} of the origin or the branch cut")


def _pow(h: float, input: Any, exponent: Any, **_: Any) -> str | None:
    if isinstance(exponent, int | float) and (
        exponent == 0 or (exponent >= 1 and exponent % 1 == 0)
    ):
        return None
    return _near(input, 0.0, h, "input", "0 (x ** y is not differentiable there)")


def _touched(moved: Any, x: Array, dims: tuple[int, ...]) -> Any:
    """Per slice of ``x`` over ``dims``: whether it holds a moved element (True without
    ``moved``)."""
    if moved is None:
        return True
    return np.any(np.broadcast_to(moved, x.shape), axis=dims) if x.ndim else np.asarray(moved)


def _norm(
    h: float, input: Any, p: Any = "fro", dim: Any = None, moved: Any = None, **_: Any
) -> str | None:
    x = _f(input)
    p = 2.0 if p == "fro" else float(p)
    dims = norm_dims(dim, x.ndim)
    zero = _elementwise(lambda h, input: _near(input, 0.0, h, "input", "0"))
    if np.isinf(p):
        a = np.abs(x) * (1 if p > 0 else -1)
        return _ties(a, dims, h, "|input|", moved) or zero(h, moved=moved, input=x)
    if p <= 1:
        return zero(h, moved=moved, input=x)
    n = max(int(np.prod([x.shape[d] for d in dims])), 1)
    norm = np.sqrt(np.sum(x * x, axis=dims)) if x.ndim else np.abs(x)
    return _count(
        (norm <= h * np.sqrt(n)) & _touched(moved, x, dims),
        f"of the norm within {h * np.sqrt(n):.2g} of 0",
    )


def _std(h: float, input: Any, dim: Any = None, moved: Any = None, **_: Any) -> str | None:
    x = _f(input)
    dims = norm_dims(dim, x.ndim)
    spread = np.max(np.abs(x - np.mean(x, axis=dims, keepdims=True)), axis=dims) if x.size else 0
    return _count(
        (np.asarray(spread) <= 2 * h) & _touched(moved, x, dims),
        f"slice(s) with zero spread (within {2 * h:.2g})",
    )


def _max_pool(nd: int) -> Kinks:
    def kinks(h: float, input: Any, moved: Any = None, **kw: Any) -> str | None:
        from runner.ops.nn_pool import _pool_taps, _pool_window
        from runner.ops.nn_windows import batched

        x = _f(input)
        w = _pool_window(f"max_pool{nd}d", nd, x.shape, **kw)
        flat, real, _ = _pool_taps(batched(x, nd), w)
        taps = np.where(real, flat, -np.inf)
        if moved is not None:
            m, _, _ = _pool_taps(batched(np.broadcast_to(moved, x.shape).astype(float), nd), w)
            moved = (m != 0) & real
        return _ties(taps, (taps.ndim - 1,), h, "window maxima", moved)

    return kinks


def _adaptive_max(nd: int) -> Kinks:
    def kinks(h: float, input: Any, output_size: Any, moved: Any = None, **_: Any) -> str | None:
        from runner.ops.nn_adaptive import adaptive_taps
        from runner.ops.nn_windows import batched

        x = _f(input)
        flat, real = adaptive_taps(batched(x, nd), output_size, nd)
        taps = np.where(real, flat, -np.inf)
        if moved is not None:
            m = adaptive_taps(
                batched(np.broadcast_to(moved, x.shape).astype(float), nd), output_size, nd
            )[0]
            moved = (m != 0) & real
        return _ties(taps, (taps.ndim - 1,), h, "window maxima", moved)

    return kinks


def _embedding(
    h: float,
    input: Any,
    weight: Any,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    scale_grad_by_freq: bool = False,
    **_: Any,
) -> str | None:
    index = np.asarray(input).reshape(-1)
    rows = _f(weight).shape[0]
    if padding_idx is not None and np.any(index % rows == padding_idx % rows):
        return "the padding_idx row is looked up, but torch gives it no gradient"
    if max_norm is not None:
        return "max_norm rescales rows in the forward only; torch's gradient is the plain scatter"
    if scale_grad_by_freq and len(np.unique(index)) < len(index):
        return "scale_grad_by_freq divides by the index's count, which is not the derivative"
    return None


def _addmm(
    h: float, input: Any, mat1: Any, mat2: Any, beta: float = 1.0, alpha: float = 1.0, **_: Any
) -> str | None:
    # alpha = 0 drops the product in the forward, but torch's gradients still multiply through
    # it: alpha * (g @ mat2.T) is NaN where mat2 holds inf or NaN (beta = 0 is harmless: g * 0).
    if alpha == 0 and any(not np.all(np.isfinite(_f(m))) for m in (mat1, mat2)):
        return "alpha = 0 drops a product holding inf or NaN, which torch's gradient multiplies"
    return None


def _bce(h: float, input: Any, **_: Any) -> str | None:
    x = _f(input)
    with np.errstate(invalid="ignore"):
        clamped = np.abs(x * (1 - x)) <= 1e-12 + h
    return _count(clamped, "of 'input' where torch clamps x(1 - x) at eps or log at -100")


def _margin_ranking(
    h: float, input1: Any, input2: Any, target: Any, margin: float = 0.0, **_: Any
) -> str | None:
    t, d = _f(target), _f(input1) - _f(input2)
    z = -t * d + margin
    return _count(np.abs(z) <= h * (2 * np.abs(t) + np.abs(d) + 1), "at max(0, .)'s kink")


def _hinge_embedding(
    h: float, input: Any, target: Any, margin: float = 1.0, **_: Any
) -> str | None:
    x, t = np.broadcast_arrays(_f(input), _f(target))
    with np.errstate(invalid="ignore"):
        return _count((t != 1) & (np.abs(margin - x) <= h), "of 'input' within h of the margin")


def _cosine_embedding(
    h: float, input1: Any, input2: Any, target: Any, margin: float = 0.0, **_: Any
) -> str | None:
    a, b = _f(input1), _f(input2)
    na, nb = np.sqrt(np.sum(a * a, axis=-1)), np.sqrt(np.sum(b * b, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.sum(a * b, axis=-1) / (na * nb)
        moved = 2 * h * np.sqrt(a.shape[-1]) * (1 / na + 1 / nb)
        near = (_f(target) == -1) & ~(np.abs(cos - margin) > moved)
    return _count(near, "pair(s) with target -1 and cos at the margin")


def _multi_margin(h: float, input: Any, target: Any, margin: float = 1.0, **_: Any) -> str | None:
    x = np.atleast_2d(_f(input)) if np.ndim(input) else _f(input).reshape(1, 1)
    y = np.asarray(target, dtype=np.int64).reshape(-1)
    z = margin - np.take_along_axis(x, y[:, None], 1) + x
    others = np.arange(x.shape[1])[None, :] != y[:, None]
    return _count(others & (np.abs(z) <= 2 * h), "margin term(s) at 0")


def _poisson_nll(
    h: float, input: Any, target: Any, log_input: bool = True, full: bool = False, **_: Any
) -> str | None:
    if not full:
        return None
    t = _f(target)
    return _count(
        (np.abs(t - 1) <= h) | (t <= h), "of 'target' at 1 (the Stirling term's mask) or <= 0"
    )


def _gaussian_nll(h: float, var: Any, eps: float = 1e-6, **_: Any) -> str | None:
    return _count(_f(var) <= eps + h, f"of 'var' at or below eps {eps} (clamped, under no_grad)")


def _cosine_similarity(
    h: float, x1: Any, x2: Any, dim: int = 1, eps: float = 1e-8, **_: Any
) -> str | None:
    a, b = np.broadcast_arrays(_f(x1), _f(x2))
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    ax = norm_dims(dim, max(np.ndim(x1), np.ndim(x2)))[:1] or (0,)
    slack = eps + h * np.sqrt(a.shape[ax[0]])
    short = [np.sqrt(np.sum(v * v, axis=ax)) <= slack for v in (a, b)]
    return _count(short[0] | short[1], "vector(s) whose norm is at most eps (clamped)")


def _overwritten(h: float, moved: Any = None, **args: Any) -> str | None:
    """scatter and index_copy at a duplicated index: the forward keeps one element, but torch
    gives every element written there the place's gradient (the derivative is 0 for the rest)."""
    from runner.ops.indexing import written

    places = written(**args)
    if places is None or len(np.unique(places)) == len(places):
        return None
    return "a duplicated index: torch gives the overwritten source elements a gradient"


def _vector_norm(
    h: float, input: Any, ord: Any = 2, dim: Any = None, moved: Any = None, **_: Any
) -> str | None:
    return _norm(h, input, ord, dim, moved)


def _dist(h: float, input: Any, other: Any, p: Any = 2, moved: Any = None, **_: Any) -> str | None:
    # the difference moves by up to 2h when both operands do
    return _norm(2 * h, np.subtract(_f(input), _f(other)), p, None, moved)


def _pairwise_distance(
    h: float, x1: Any, x2: Any, p: Any = 2.0, eps: float = 1e-6, moved: Any = None, **_: Any
) -> str | None:
    d = np.subtract(_f(x1), _f(x2)) + eps
    return _norm(2 * h, d, p, -1 if d.ndim else None, moved)


def _normalize(
    h: float, input: Any, p: Any = 2.0, dim: int = 1, eps: float = 1e-12, moved: Any = None,
    **_: Any,
) -> str | None:  # fmt: skip
    x = _f(input)
    dims = norm_dims(dim, x.ndim)
    n = np.sqrt(max(int(np.prod([x.shape[d] for d in dims])), 1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        norm = np.sum(np.abs(x) ** float(p), axis=dims) ** (1 / float(p)) if x.ndim else np.abs(x)
    at_eps = _count(
        (np.abs(norm - eps) <= h * n) & _touched(moved, x, dims),
        f"slice(s) whose norm is within {h * n:.2g} of eps (clamp_min's kink)",
    )
    return _norm(h, x, p, dim, moved) or at_eps


def _clamp_tensor(h: float, input: Any, min: Any = None, max: Any = None, **_: Any) -> str | None:
    """x at a bound (each may move by h: within 2h), or the bounds crossing."""
    found = [_pair_ties(h, input, b) for b in (min, max) if b is not None]
    if min is not None and max is not None:
        found.append(_pair_ties(h, min, max))
    return "; ".join(f for f in found if f) or None


def _resampling(name: str) -> Kinks:
    """A predicate of runner/ops/resampling.py, imported when asked."""

    def kinks(h: float, **args: Any) -> str | None:
        from runner.ops.resampling import KINKS as RESAMPLING

        return RESAMPLING[name](h, **args)

    return kinks


def _pair_kinks(d: Array, p: Any, h: float) -> str | None:
    """Pairs of rows whose differences ``d`` (pairs, coordinates; each moves by up to 2h) lie
    near a point of torch's pair gradient: a zero coordinate (p <= 1), a zero distance, a tie
    of the largest |d| (p = inf)."""
    p = float(p)
    if d.size == 0:
        return None
    a = np.abs(d.reshape(-1, d.shape[-1]))
    zero_coord = np.any(a <= 2 * h, axis=-1)
    if p <= 1:
        return _count(zero_coord, f"pair(s) with a coordinate difference within {2 * h:.2g} of 0")
    if np.isinf(p):
        return _ties(a, (1,), 2 * h, "|difference| of a pair") or _count(
            np.all(a <= 2 * h, axis=-1), "coincident pair(s)"
        )
    near = np.sqrt(np.sum(a * a, axis=-1)) <= 2 * h * np.sqrt(a.shape[-1])
    return _count(near, "pair(s) at zero distance (coincident points)")


def _cdist(h: float, x1: Any, x2: Any, p: Any = 2.0, **_: Any) -> str | None:
    a, b = _f(x1), _f(x2)
    return _pair_kinks(a[..., :, None, :] - b[..., None, :, :], p, h)


def _pdist(h: float, input: Any, p: Any = 2.0, **_: Any) -> str | None:
    x = _f(input)
    i, j = np.triu_indices(x.shape[0], 1)
    return _pair_kinks(x[i] - x[j], p, h)


def _triplet(
    h: float, anchor: Any, positive: Any, negative: Any, margin: float = 1.0, p: Any = 2.0,
    eps: float = 1e-6, swap: bool = False, **_: Any,
) -> str | None:  # fmt: skip
    from runner.ops.losses_triplet import distances

    a, pos, neg = (_f(v) for v in (anchor, positive, negative))
    dp, dn, ds = distances(a, pos, neg, float(p), eps)
    # each distance moves by at most 2h per coordinate, summed: a generous slack
    slack = 4 * h * max(a.shape[-1] if a.ndim else 1, 1)
    dmin = np.minimum(dn, ds) if swap else dn
    found = [
        _count(np.abs(margin + dp - dmin) <= 2 * slack, "triplet(s) at the hinge's kink (0)"),
        _count(np.abs(dn - ds) <= 2 * slack, "triplet(s) with swap's min tied") if swap else None,
        _pairwise_distance(h, a, pos, p, eps),
        _pairwise_distance(h, a, neg, p, eps),
        _pairwise_distance(h, pos, neg, p, eps) if swap else None,
    ]
    return "; ".join(f for f in found if f) or None


# --- elementwise: asked only about the elements that moved ---
_ELEMENTWISE: dict[str, Kinks] = {
    "abs": _near_zero,
    "relu": _near_zero,
    "sign": _near_zero,
    "leaky_relu": lambda h, input, negative_slope=0.01, **_: _slope_change(
        h, input, negative_slope
    ),
    "elu": lambda h, input, alpha=1.0, **_: _slope_change(h, input, alpha),
    "softplus": lambda h, input, beta=1.0, threshold=20.0, **_: _near(
        _f(input) * beta, threshold, abs(beta) * h, "beta * input", "the threshold"
    ),
    "hardtanh": lambda h, input, min_val=-1.0, max_val=1.0, **_: _bounds(
        min_val, max_val, h, input
    ),
    "clamp": lambda h, input, min=None, max=None, **_: _bounds(min, max, h, input),
    "clamp.Tensor": _clamp_tensor,
    "floor": _jumps(0.0, at_zero=True),
    "ceil": _jumps(0.0, at_zero=True),
    "round": _jumps(0.5, at_zero=True),
    "trunc": _jumps(0.0, at_zero=False),
    "frac": _jumps(0.0, at_zero=False),
    "maximum": _pair_ties,
    # A comparison flips where its operands are within 2h: the mask it makes jumps there.
    **{name: _pair_ties for name in ("eq", "ne", "lt", "le", "gt", "ge")},
    "minimum": _pair_ties,
    "atan2": _atan2,
    "pow": _pow,
}
KINKS: dict[str, Kinks] = {
    **{name: _elementwise(kinks) for name, kinks in _ELEMENTWISE.items()},
    # --- reductions ---
    "max": _extremum(1.0, "max"),
    "min": _extremum(-1.0, "min"),
    "amax": _extremum(1.0, "amax"),
    "amin": _extremum(-1.0, "amin"),
    "aminmax": _both_extrema("aminmax"),
    "sort": _any_ties,
    "cummax": _any_ties,
    "cummin": _any_ties,
    "norm": _norm,
    "std": _std,
    "std_mean": _std,
    # --- nn ---
    "max_pool1d": _max_pool(1),
    "max_pool2d": _max_pool(2),
    "max_pool3d": _max_pool(3),
    "adaptive_max_pool1d": _adaptive_max(1),
    "adaptive_max_pool2d": _adaptive_max(2),
    "l1_loss": _elementwise(lambda h, input, target, **_: _pair_ties(h, input, target)),
    "smooth_l1_loss": _elementwise(
        lambda h, input, target, beta=1.0, **_: _pair_ties(h, input, target) if beta == 0 else None
    ),
    "addmm": _addmm,
    "embedding": _embedding,
    "binary_cross_entropy": _elementwise(_bce),
    # --- activations (elementwise: asked only about the elements that moved) ---
    "hardsigmoid": _elementwise(lambda h, input, **_: _bounds(-3.0, 3.0, h, input)),
    "hardswish": _elementwise(lambda h, input, **_: _bounds(-3.0, 3.0, h, input)),
    "relu6": _elementwise(lambda h, input, **_: _bounds(0.0, 6.0, h, input)),
    "selu": _elementwise(_near_zero),
    "softshrink": _elementwise(lambda h, input, lambd=0.5, **_: _bounds(-lambd, lambd, h, input)),
    "hardshrink": _elementwise(lambda h, input, lambd=0.5, **_: _bounds(-lambd, lambd, h, input)),
    "threshold": _elementwise(
        lambda h, input, threshold, **_: _near(input, threshold, h, "input", "threshold")
    ),
    "prelu": _near_zero,  # weight broadcasts along dim 1 only: every element is asked
    # --- losses (reductions: every element is asked) ---
    "margin_ranking_loss": _margin_ranking,
    "hinge_embedding_loss": _hinge_embedding,
    "cosine_embedding_loss": _cosine_embedding,
    "multi_margin_loss": _multi_margin,
    "poisson_nll_loss": _poisson_nll,
    "gaussian_nll_loss": _gaussian_nll,
    # --- norms ---
    "cosine_similarity": _cosine_similarity,
    # --- indexing ---
    "vector_norm": _vector_norm,
    "dist": _dist,
    "pairwise_distance": _pairwise_distance,
    "normalize": _normalize,
    "cdist": _cdist,
    "pdist": _pdist,
    "triplet_margin_loss": _triplet,
    # torch's gradient adds exp(log_probs) * grad to the derivative (right only through
    # log_softmax): a finite difference of the loss is not torch's gradient anywhere
    "ctc_loss": lambda h, **_: "torch's ctc_loss gradient is not the derivative (see its note)",
    "scatter": _overwritten,
    "index_copy": _overwritten,
    **LINALG_DECOMP_KINKS,
    # --- resampling ---
    "interpolate": _resampling("interpolate"),
    "grid_sample": _resampling("grid_sample"),
    **SPECTRAL_KINKS,
    # --- sorting ---
    **{n: _ranked for n in "topk kthvalue median nanmedian argsort".split()},
    "msort": lambda h, input, **_: _ranked(h, input, 0),
    "scatter_reduce": _scatter_extremum,
}

# Differentiable wherever the forward is finite (linear, bilinear, polynomial or analytic), or
# continuously differentiable across a branch change (huber_loss, smooth_l1_loss with beta > 0).
SMOOTH = frozenset(
    """
    acos acosh add asin asinh atan atanh cos cosh div erf erfc exp exp2 expm1 gelu log log10
    log1p log2 mul neg reciprocal rsqrt sigmoid silu sin sinh sqrt square sub tan tanh where
    bitwise_and bitwise_or bitwise_xor bitwise_not logical_and logical_or logical_xor logical_not
    t
    cumprod cumsum logsumexp mean nanmean nansum prod sum var var_mean
    bmm dot einsum inner matmul mm mv outer trace
    cat diagonal expand flatten flip gather index_select movedim narrow pad permute repeat reshape
    roll select squeeze stack transpose tril triu unsqueeze getitem clone index_tensor
    avg_pool1d avg_pool2d binary_cross_entropy_with_logits conv1d conv2d cross_entropy
    huber_loss kl_div layer_norm linear log_softmax mse_loss nll_loss softmax
    celu glu logsigmoid mish softmin softsign tanhshrink
    multilabel_soft_margin_loss soft_margin_loss
    masked_fill scatter_add index_add index_fill take take_along_dim
    rms_norm
    matrix_exp
    scaled_dot_product_attention
    conv3d conv_transpose1d conv_transpose2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d
    pixel_shuffle pixel_unshuffle unfold fold
    rms_norm batch_norm group_norm instance_norm local_response_norm
    kron cross tensordot diag diag_embed
    """.split()
)
