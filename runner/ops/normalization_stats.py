"""Normalisation by statistics over the batch, a group or an instance (rows of the normalization
family): batch_norm, group_norm, instance_norm. Computed in float64 and cast to the input's
dtype, as layer_norm (nn_norm.py). Each normalises ``x`` to ``xhat = (x - mean) * rstd`` with
``rstd = 1/sqrt(var + eps)``, the biased variance, then applies a per-channel weight and bias;
with the input's own statistics the gradient is torch's native_batch_norm_backward
``rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))``, with running statistics (given
constants) it is ``dxhat * rstd``."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError

FAMILY = "normalization"
Stats = tuple[Array, Array]  # xhat, rstd (float64, rstd broadcastable against xhat)


def _f(x: Any) -> Array:
    return np.asarray(x, dtype=np.float64)


def _per_channel(v: Any, ndim: int) -> Any:
    """A (C,) vector laid along dim 1 of an ndim-d input (None stays None)."""
    return None if v is None else _f(v).reshape((1, -1) + (1,) * (ndim - 2))


def _own_stats(x: Array, axes: tuple[int, ...], eps: float) -> Stats:
    centered = x - x.mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + eps)
    return centered * rstd, rstd


def _running(x: Array, mean: Any, var: Any, eps: float) -> Stats:
    rstd = 1.0 / np.sqrt(_per_channel(var, x.ndim) + eps)
    return (x - _per_channel(mean, x.ndim)) * rstd, rstd


def _affine(xhat: Array, weight: Any, bias: Any, dtype: Any) -> Array:
    y = xhat * (1.0 if weight is None else _per_channel(weight, xhat.ndim))
    y = y + (0.0 if bias is None else _per_channel(bias, xhat.ndim))
    return np.asarray(y.astype(dtype))


def _backward(
    g: Array, stats: Stats, axes: tuple[int, ...] | None, weight: Any, bias: Any
) -> tuple[Array, Array | None, Array | None]:
    """(input, weight, bias) gradients; ``axes`` None: the statistics were constants."""
    xhat, rstd = stats
    g = _f(g)
    dxhat = g * (1.0 if weight is None else _per_channel(weight, g.ndim))
    if axes is None:
        gx = dxhat * rstd
    else:
        mean_d = dxhat.mean(axis=axes, keepdims=True)
        mean_dx = (dxhat * xhat).mean(axis=axes, keepdims=True)
        gx = rstd * (dxhat - mean_d - xhat * mean_dx)
    return (gx, *_affine_grads(g, xhat, weight, bias))


def _affine_grads(g: Array, xhat: Array, weight: Any, bias: Any) -> tuple[Any, Any]:
    """weight's and bias's gradients, summed over every dim but the channels (dim 1)."""
    channel_axes = (0, *range(2, np.ndim(g)))
    gw = None if weight is None else (_f(g) * xhat).sum(axis=channel_axes)
    gb = None if bias is None else _f(g).sum(axis=channel_axes)
    return gw, gb


def _check_channels(name: str, input: Shape, **vectors: Shape | None) -> int:
    if len(input) < 2:
        raise ShapeError(f"{name}: input {tuple(input)} needs at least 2 dims (N, C, ...)")
    c = input[1]
    for what, s in vectors.items():
        if s is not None and tuple(s) != (c,):
            raise ShapeError(f"{name}: {what} {tuple(s)} must hold one value per channel: ({c},)")
    return c


def _spatial(input: Shape) -> int:
    return int(np.prod(input[2:], dtype=np.int64))


# --- batch_norm -------------------------------------------------------------------------------


def _batch_axes(x: Array) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _bn_stats(input: Any, running_mean: Any, running_var: Any, training: bool, eps: float
              ) -> tuple[Stats, tuple[int, ...] | None]:  # fmt: skip
    x = _f(input)
    if training:
        return _own_stats(x, _batch_axes(x), eps), _batch_axes(x)
    return _running(x, running_mean, running_var, eps), None


def _batch_norm(input: Array, running_mean: Any = None, running_var: Any = None,
                weight: Any = None, bias: Any = None, training: bool = False,
                momentum: float = 0.1, eps: float = 1e-5) -> Array:  # fmt: skip
    (xhat, _), _ = _bn_stats(input, running_mean, running_var, training, eps)
    return _affine(xhat, weight, bias, np.asarray(input).dtype)


def _batch_norm_vjp(g: Array, out: Array, input: Array, running_mean: Any = None,
                    running_var: Any = None, weight: Any = None, bias: Any = None,
                    training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
                    ) -> tuple[Any, ...]:  # fmt: skip
    stats, axes = _bn_stats(input, running_mean, running_var, training, eps)
    gx, gw, gb = _backward(g, stats, axes, weight, bias)
    return gx, None, None, gw, gb


def _batch_norm_shape(input: Shape, running_mean: Shape | None, running_var: Shape | None,
                      weight: Shape | None, bias: Shape | None, training: bool, momentum: float,
                      eps: float) -> Shape:  # fmt: skip
    _check_channels("batch_norm", input, running_mean=running_mean, running_var=running_var,
                    weight=weight, bias=bias)  # fmt: skip
    if (running_mean is None) != (running_var is None):
        raise ShapeError("batch_norm: running_mean and running_var must both be given or neither")
    if not training and running_mean is None:
        raise ShapeError("batch_norm: training=False normalises with running_mean and "
                         "running_var: give both (or training=True)")  # fmt: skip
    if training and input[0] * _spatial(input) == 1:
        raise ShapeError(f"batch_norm: training needs more than 1 value per channel, got input "
                         f"{tuple(input)}")  # fmt: skip
    if eps < 0 or (training and eps == 0):
        raise ShapeError(f"batch_norm: eps must be {'positive' if training else '>= 0'}, got {eps}")
    return tuple(input)


def _torch_batch_norm(t: Any, input: Any, running_mean: Any, running_var: Any, **kw: Any) -> Any:
    # Training updates the running statistics in place, a side effect no gradient sees: torch
    # gets copies, so the graph's tensors keep their values.
    def copy(v: Any) -> Any:
        return None if v is None else v.clone()

    return t.nn.functional.batch_norm(input, copy(running_mean), copy(running_var), **kw)


def _bn_samples(rng: np.random.Generator) -> list[Sample]:
    def s(shape: Shape, note: str, affine: str = "wb", stats: bool = False, **kw: Any) -> Sample:
        c = shape[1]
        args: dict[str, Any] = {"input": rng.normal(size=shape), **kw}
        if stats:
            args |= {"running_mean": rng.normal(size=c), "running_var": rng.uniform(0.5, 2, c)}
        if "w" in affine:
            args["weight"] = rng.normal(size=c)
        if "b" in affine:
            args["bias"] = rng.normal(size=c)
        return Sample(args, note)

    const = np.array([[0.7, 1.0], [0.7, -2.0], [0.7, 0.5]])
    return [
        s((4, 3), "training, (N, C)", training=True),
        s((3, 2, 4), "training, (N, C, L)", "w", training=True),
        s((2, 3, 2, 2), "training, 4-d, no affine", "", training=True, eps=1e-3),
        s(
            (3, 2, 3),
            "training with running stats (updated, not differentiated)",
            stats=True,
            training=True,
            momentum=0.3,
        ),  # fmt: skip
        s((4, 3), "eval: running stats as constants", stats=True),
        s((2, 3, 2), "eval, bias only", "b", stats=True, eps=0.0),
        s((1, 2), "eval, one sample", "w", stats=True),
        Sample({"input": const, "training": True, "eps": 0.1}, "a constant channel: var 0"),
    ]


# --- group_norm -------------------------------------------------------------------------------


def _grouped(x: Array, num_groups: int) -> Array:
    return x.reshape(x.shape[0], num_groups, -1)


def _gn_stats(input: Any, num_groups: int, eps: float) -> Stats:
    x = _f(input)
    xhat, rstd = _own_stats(_grouped(x, num_groups), (2,), eps)
    return xhat.reshape(x.shape), rstd


def _group_norm(input: Array, num_groups: int, weight: Any = None, bias: Any = None,
                eps: float = 1e-5) -> Array:  # fmt: skip
    xhat, _ = _gn_stats(input, num_groups, eps)
    return _affine(xhat, weight, bias, np.asarray(input).dtype)


def _group_norm_vjp(g: Array, out: Array, input: Array, num_groups: int, weight: Any = None,
                    bias: Any = None, eps: float = 1e-5) -> tuple[Any, ...]:  # fmt: skip
    """torch's GroupNormKernel backward, in its arrangement (an infinite upstream meets the same
    cancellations): per group, with ds = sum(gamma dy x) and db = sum(gamma dy),
    dx = rstd gamma dy + b x + c, b = (db mean - ds) rstd^3 / n, c = -b mean - db rstd / n."""
    x = np.asarray(input, np.float64)
    dy = np.asarray(g, np.float64)
    n, c = x.shape[:2]
    gamma = np.ones(c) if weight is None else _f(weight)
    spatial = tuple(range(2, x.ndim))
    ds = (gamma * (dy * x).sum(axis=spatial)).reshape(n, num_groups, -1).sum(-1)
    db = (gamma * dy.sum(axis=spatial)).reshape(n, num_groups, -1).sum(-1)
    grouped = _grouped(x, num_groups)
    mean = grouped.mean(axis=2)
    rstd = 1.0 / np.sqrt(((grouped - mean[..., None]) ** 2).mean(axis=2) + eps)
    size = grouped.shape[2]
    b = (db * mean - ds) * rstd * rstd * rstd / size
    cc = -b * mean - db * rstd / size

    def per_channel(v: Array) -> Array:  # (N, G) -> (N, C, 1, ...)
        return np.repeat(v, c // num_groups, axis=1).reshape((n, c) + (1,) * len(spatial))

    gx = per_channel(rstd) * _per_channel(gamma, x.ndim) * dy + per_channel(b) * x
    gx = gx + per_channel(cc)
    # dgamma = sum over N of (ds - db mean) rstd per channel, as torch (not sum(dy xhat))
    ds_c, db_c = (dy * x).sum(axis=spatial), dy.sum(axis=spatial)
    gw = (ds_c - db_c * per_channel(mean).reshape(n, c)) * per_channel(rstd).reshape(n, c)
    return gx, None if weight is None else gw.sum(0), None if bias is None else db_c.sum(0)


def _group_norm_shape(input: Shape, num_groups: int, weight: Shape | None, bias: Shape | None,
                      eps: float) -> Shape:  # fmt: skip
    c = _check_channels("group_norm", input, weight=weight, bias=bias)
    if num_groups <= 0 or c % num_groups:
        raise ShapeError(f"group_norm: the {c} channels of input {tuple(input)} must divide into "
                         f"num_groups={num_groups} groups")  # fmt: skip
    if input[0] * c // num_groups * _spatial(input) == 1:
        # torch's _verify_batch_size on [N * C / G, G, *spatial]
        raise ShapeError(
            f"group_norm: torch refuses input {tuple(input)} with {num_groups} groups: "
            "'more than 1 value per channel' (N * C / G * spatial = 1)"
        )
    return tuple(input)


def _gn_samples(rng: np.random.Generator) -> list[Sample]:
    def s(shape: Shape, groups: int, note: str, affine: bool = True, **kw: Any) -> Sample:
        args: dict[str, Any] = {"input": rng.normal(size=shape), "num_groups": groups, **kw}
        if affine:
            args |= {"weight": rng.normal(size=shape[1]), "bias": rng.normal(size=shape[1])}
        return Sample(args, note)

    const = np.array([[[0.5, 0.5], [0.5, 0.5], [1.0, -1.0], [2.0, 0.0]]])
    return [
        s((2, 4, 3), 2, "2 groups of 2 channels"),
        s((2, 6), 3, "(N, C), no spatial dims"),
        s((1, 4, 2, 2), 1, "one group: layer norm over (C, H, W)", affine=False),
        s((2, 3, 2), 3, "a group per channel: instance norm", eps=1e-3),
        Sample({"input": const, "num_groups": 2, "eps": 0.1}, "a constant group: var 0"),
    ]


# --- instance_norm ----------------------------------------------------------------------------


def _in_stats(input: Any, running_mean: Any, running_var: Any, use_input_stats: bool,
              eps: float) -> tuple[Stats, tuple[int, ...] | None]:  # fmt: skip
    x = _f(input)
    if use_input_stats:
        axes = tuple(range(2, x.ndim))
        return _own_stats(x, axes, eps), axes
    return _running(x, running_mean, running_var, eps), None


def _instance_norm(input: Array, running_mean: Any = None, running_var: Any = None,
                   weight: Any = None, bias: Any = None, use_input_stats: bool = True,
                   momentum: float = 0.1, eps: float = 1e-5) -> Array:  # fmt: skip
    (xhat, _), _ = _in_stats(input, running_mean, running_var, use_input_stats, eps)
    return _affine(xhat, weight, bias, np.asarray(input).dtype)


def _instance_norm_vjp(g: Array, out: Array, input: Array, running_mean: Any = None,
                       running_var: Any = None, weight: Any = None, bias: Any = None,
                       use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5,
                       ) -> tuple[Any, ...]:  # fmt: skip
    stats, axes = _in_stats(input, running_mean, running_var, use_input_stats, eps)
    gx, gw, gb = _backward(g, stats, axes, weight, bias)
    return gx, None, None, gw, gb


def _instance_norm_shape(input: Shape, running_mean: Shape | None, running_var: Shape | None,
                         weight: Shape | None, bias: Shape | None, use_input_stats: bool,
                         momentum: float, eps: float) -> Shape:  # fmt: skip
    _check_channels("instance_norm", input, running_mean=running_mean, running_var=running_var,
                    weight=weight, bias=bias)  # fmt: skip
    if (running_mean is None) != (running_var is None):
        raise ShapeError("instance_norm: running_mean and running_var must both be given or "
                         "neither")  # fmt: skip
    if use_input_stats and _spatial(input) == 1:
        raise ShapeError(f"instance_norm: the input's own statistics need more than 1 spatial "
                         f"element, got input {tuple(input)}")  # fmt: skip
    if not use_input_stats and running_mean is None:
        raise ShapeError("instance_norm: use_input_stats=False normalises with running_mean and "
                         "running_var: give both")  # fmt: skip
    return tuple(input)


def _torch_instance_norm(t: Any, input: Any, running_mean: Any, running_var: Any,
                         **kw: Any) -> Any:  # fmt: skip
    def copy(v: Any) -> Any:  # updated in place with the input's statistics: see batch_norm
        return None if v is None else v.clone()

    return t.nn.functional.instance_norm(input, copy(running_mean), copy(running_var), **kw)


def _in_samples(rng: np.random.Generator) -> list[Sample]:
    def s(shape: Shape, note: str, affine: bool = True, stats: bool = False, **kw: Any) -> Sample:
        c = shape[1]
        args: dict[str, Any] = {"input": rng.normal(size=shape), **kw}
        if stats:
            args |= {"running_mean": rng.normal(size=c), "running_var": rng.uniform(0.5, 2, c)}
        if affine:
            args |= {"weight": rng.normal(size=c), "bias": rng.normal(size=c)}
        return Sample(args, note)

    const = np.array([[[0.5, 0.5, 0.5], [1.0, -1.0, 3.0]]])
    return [
        s((2, 3, 4), "(N, C, L)"),
        s((2, 2, 2, 3), "(N, C, H, W), no affine", affine=False),
        s((2, 3, 3), "input stats with running stats (updated, not differentiated)", stats=True),
        s((2, 3, 2), "running stats as constants", stats=True, use_input_stats=False),
        s((3, 2), "running stats, (N, C)", stats=True, use_input_stats=False),
        Sample({"input": const, "eps": 0.1}, "a constant instance: var 0"),
    ]


_STATS_NOTE = (
    "the running statistics are constants (torch refuses running_mean or running_var that "
    "require grad); with the input's own statistics torch also updates them in place "
    "(momentum, unbiased variance), a side effect no gradient sees: gradcase's torch side "
    "passes copies, so a graph's running_mean keeps its value"
)


def _stats_params(flag: str, default: bool) -> tuple[Param, ...]:
    return (
        Param("input", "tensor"),
        Param("running_mean", "tensor?", None, grad=False),
        Param("running_var", "tensor?", None, grad=False),
        Param("weight", "tensor?", None),
        Param("bias", "tensor?", None),
        Param(flag, "bool", default),
        Param("momentum", "float", 0.1),
        Param("eps", "float", 1e-5),
    )


OPS: list[Op] = [
    Op(
        name="batch_norm",
        family=FAMILY,
        params=_stats_params("training", False),
        forward=_batch_norm,
        vjp=_batch_norm_vjp,
        torch=_torch_batch_norm,
        shape=_batch_norm_shape,
        samples=_bn_samples,
        note="input (N, C, *); training=True normalises each channel over N and * with the "
        "batch's mean and biased variance (rstd = 1/sqrt(var + eps); a constant channel "
        "normalises to 0, gradient rstd * (dxhat - mean(dxhat))); training=False (the default) "
        "uses running_mean and running_var: input's gradient dxhat / sqrt(running_var + eps). "
        + _STATS_NOTE,
    ),
    Op(
        name="group_norm",
        family=FAMILY,
        params=(
            Param("input", "tensor"),
            Param("num_groups", "int"),
            Param("weight", "tensor?", None),
            Param("bias", "tensor?", None),
            Param("eps", "float", 1e-5),
        ),
        forward=_group_norm,
        vjp=_group_norm_vjp,
        torch=lambda t, **kw: t.nn.functional.group_norm(**kw),
        shape=_group_norm_shape,
        samples=_gn_samples,
        note="input (N, C, *) split into num_groups groups of C / num_groups consecutive "
        "channels, each normalised over its channels and * with its own mean and biased "
        "variance; weight and bias per channel. A constant group normalises to 0 (gradient "
        "rstd * (dxhat - mean(dxhat)))",
    ),
    Op(
        name="instance_norm",
        family=FAMILY,
        params=_stats_params("use_input_stats", True),
        forward=_instance_norm,
        vjp=_instance_norm_vjp,
        torch=_torch_instance_norm,
        shape=_instance_norm_shape,
        samples=_in_samples,
        note="input (N, C, *): each (sample, channel) normalised over * with its own mean and "
        "biased variance (use_input_stats=True, the default; a constant instance normalises to "
        "0), or with running_mean and running_var per channel (use_input_stats=False). "
        + _STATS_NOTE,
    ),
]
