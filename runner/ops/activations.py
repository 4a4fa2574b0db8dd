"""Activations of torch.nn.functional beyond relu/elu/gelu (which are elementwise ops): the
piecewise ones with torch's convention at each kink, the smooth ones with torch's formula, and
the three that are not elementwise (glu halves a dim, prelu has a weight, softmin a dim)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from runner.ops.elementwise_unary import KERNEL_PATH_AT_NAN, NAN, unary
from runner.ops.nn import _softmax_vjp
from runner.ops.nn_loss import softmax
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError, norm_dim

FAMILY = "activations"

# torch's selu constants (Klambauer et al.), as in aten/src/ATen/native/Activation.cpp
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# hardsigmoid's backward multiplies by a float constant, 1.0f / 6.0f, in every dtype.
ONE_SIXTH_F32 = float(np.float32(1.0) / np.float32(6.0))


def _nnf(name: str) -> Any:
    return lambda t, input, **kw: getattr(t.nn.functional, name)(input, **kw)


def _sigmoid(x: Array) -> Array:
    with np.errstate(over="ignore"):
        return np.asarray(1 / (1 + np.exp(-x)))


# --- piecewise ------------------------------------------------------------------------------


def _hardsigmoid(x: Array) -> Array:
    return np.asarray(np.minimum(np.maximum(x + 3, 0), 6) / 6)


def _with_vjp(op: Op, rule: Any) -> Op:
    """``op`` with its VJP ``rule(g, x, out, **attrs)`` in full: torch's backward of these
    selects (0, not inf * 0, outside) or composes several nodes, and an infinite upstream shows
    the order of its operations."""

    def vjp(g: Array, out: Array, input: Any, **kw: Any) -> tuple[Array]:
        x = np.asarray(input)
        with np.errstate(invalid="ignore"):
            return (np.asarray(rule(g, x, out, **kw), dtype=out.dtype),)

    return replace(op, vjp=vjp)


def _FULL_VJP(x: Array, out: Array, **_: Any) -> Array:
    raise AssertionError("this op's VJP is given in full (FULL_VJPS)")


def _hardsigmoid_vjp(g: Array, x: Array, out: Array) -> Array:
    return np.where((x > -3) & (x < 3), g * np.asarray(ONE_SIXTH_F32, out.dtype), 0)


def _hardswish_vjp(g: Array, x: Array, out: Array) -> Array:
    # torch: x <= -3 -> 0; x < 3 -> g * (x / 3 + 1/2); else g (so 0 at -3, g at 3)
    return np.where(x <= -3, 0, np.where(x < 3, g * (x / 3 + 0.5), g))


def _softsign_vjp(g: Array, x: Array, out: Array) -> Array:
    # torch composes input / (input.abs() + 1): div's two gradients, the second through abs
    d = np.abs(x) + 1
    sign = (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)
    return np.asarray(g / d + (-g * ((x / d) / d)) * sign)


def _tanhshrink_vjp(g: Array, x: Array, out: Array) -> Array:
    # torch composes input - input.tanh(): g, plus tanh_backward(-g, tanh(x))
    t = np.tanh(x)
    return np.asarray(g + (-g) * (1 - t * t))


def _elu_like(x: Array, alpha: float, scale: float, input_scale: float) -> Array:
    with np.errstate(over="ignore"):
        neg = np.expm1(x * input_scale) * (alpha * scale)
    return np.asarray(np.where(x <= 0, neg, x * scale), dtype=x.dtype)


def _delu_like(x: Array, alpha: float, scale: float, input_scale: float) -> Array:
    with np.errstate(over="ignore"):
        neg = input_scale * (alpha * scale) * np.exp(x * input_scale)
    return np.asarray(np.where(x <= 0, neg, scale), dtype=x.dtype)


def _check_celu(alpha: float) -> None:
    if alpha == 0:
        raise ShapeError("celu: alpha cannot be 0 (torch divides by it)")


def _check_softshrink(lambd: float) -> None:
    if lambd < 0:
        raise ShapeError(f"softshrink: lambd must be >= 0, got {lambd}")


def _inside(x: Array, lambd: float) -> Array:
    return np.asarray((x >= -lambd) & (x <= lambd))


def _softshrink(x: Array, lambd: float) -> Array:
    return np.where(x > lambd, x - lambd, np.where(x < -lambd, x + lambd, x * 0))


def _logsigmoid(x: Array) -> Array:
    with np.errstate(over="ignore"):
        return np.asarray(np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x))))


def _dlogsigmoid(x: Array, out: Array) -> Array:
    # torch's log_sigmoid_backward: max_deriv - sign * z / (1 + z), z = exp(-|x|)
    neg = x < 0
    z = np.exp(-np.abs(x))
    return np.asarray(np.where(neg, 1, 0) - np.where(neg, 1, -1) * (z / (1 + z)), dtype=x.dtype)


def _mish(x: Array) -> Array:
    with np.errstate(over="ignore"):
        return np.asarray(x * np.tanh(np.log1p(np.exp(x))))


def _dmish(x: Array, out: Array) -> Array:
    with np.errstate(over="ignore"):
        tsp = np.tanh(np.log1p(np.exp(x)))
    return np.asarray(tsp + x * _sigmoid(x) * (1 - tsp * tsp))


UNARY: list[Op] = [
    unary(
        "hardsigmoid",
        _hardsigmoid,
        _FULL_VJP,
        _nnf("hardsigmoid"),
        domain=(-4.0, 4.0),
        points=(-3.0, 3.0, 0.0, NAN),
        ints=False,
        note="gradient 0 at -3 and 3 (open interval) and at NaN; inside, torch multiplies by "
        "the float constant 1.0f / 6 in every dtype (0.1666666716... in float64)",
    ),
    unary(
        "hardswish",
        lambda x: np.asarray(x * _hardsigmoid(x)),
        _FULL_VJP,
        _nnf("hardswish"),
        domain=(-4.0, 4.0),
        points=(-3.0, 3.0, 0.0),
        ints=False,
        note="hardswish'(-3) = 0 and hardswish'(3) = 1 (torch: x <= -3 -> 0, x < 3 -> x/3 + 1/2, "
        "else 1); at NaN torch's gradient depends on its vectorized path (1 or NaN): not checked",
        unchecked_at_nan=KERNEL_PATH_AT_NAN,
    ),
    unary(
        "relu6",
        lambda x: np.minimum(np.maximum(x, 0.0), 6.0).astype(x.dtype),
        lambda x, out: np.logical_not((x <= 0) | (x >= 6)),
        _nnf("relu6"),
        domain=(-2.0, 8.0),
        points=(0.0, 6.0, 3.0),
        ints=False,
        note="hardtanh(x, 0, 6): gradient 0 at both 0 and 6; at NaN torch's gradient depends on "
        "its vectorized path (1 or 0): not checked",
        unchecked_at_nan=KERNEL_PATH_AT_NAN,
    ),
    unary(
        "selu",
        lambda x: _elu_like(x, SELU_ALPHA, SELU_SCALE, 1.0),
        lambda x, out: _delu_like(x, SELU_ALPHA, SELU_SCALE, 1.0),
        _nnf("selu"),
        points=(0.0,),
        ints=False,
        note="selu'(0) = scale * alpha (the x <= 0 branch, as elu); at NaN torch's gradient "
        "depends on its vectorized path (scale or NaN): not checked",
        unchecked_at_nan=KERNEL_PATH_AT_NAN,
    ),
    unary(
        "celu",
        lambda x, alpha: _elu_like(x, alpha, 1.0, 1.0 / alpha),
        lambda x, out, alpha: _delu_like(x, alpha, 1.0, 1.0 / alpha),
        _nnf("celu"),
        attrs=(Param("alpha", "float", 1.0),),
        sample_attrs=({}, {"alpha": 0.5}, {"alpha": -0.5}),
        points=(0.0,),
        ints=False,
        check=_check_celu,
        note="continuously differentiable: celu'(0) = 1 from both sides (exp(x / alpha) for "
        "x <= 0); alpha = 0 is refused; at NaN torch's gradient depends on its vectorized path: "
        "not checked",
        unchecked_at_nan=KERNEL_PATH_AT_NAN,
    ),
    unary(
        "softshrink",
        _softshrink,
        lambda x, out, lambd: np.logical_not(_inside(x, lambd)),
        _nnf("softshrink"),
        attrs=(Param("lambd", "float", 0.5),),
        sample_attrs=({}, {"lambd": 1.0}, {"lambd": 0.0}),
        points=(-0.5, 0.5, -1.0, 1.0, 0.0),
        ints=False,
        check=_check_softshrink,
        note="gradient 0 on the closed interval [-lambd, lambd], bounds included; lambd < 0 is "
        "refused; at NaN torch's gradient depends on its vectorized path (1 or 0): not checked",
        unchecked_at_nan=KERNEL_PATH_AT_NAN,
    ),
    unary(
        "hardshrink",
        lambda x, lambd: np.where(_inside(x, lambd), x * 0, x),
        lambda x, out, lambd: np.logical_not(_inside(x, lambd)),
        _nnf("hardshrink"),
        attrs=(Param("lambd", "float", 0.5),),
        sample_attrs=({}, {"lambd": 1.0}, {"lambd": -1.0}),
        points=(-0.5, 0.5, -1.0, 1.0, 0.0),
        ints=False,
        note="gradient 0 on the closed interval [-lambd, lambd], bounds included (the jumps); a "
        "negative lambd selects nothing; at NaN torch's gradient depends on its vectorized path "
        "(1 or 0): not checked",
        unchecked_at_nan=KERNEL_PATH_AT_NAN,
    ),
    unary(
        "threshold",
        lambda x, threshold, value: np.where(x <= threshold, np.asarray(value, x.dtype), x),
        lambda x, out, threshold, value: np.logical_not(x <= threshold),
        _nnf("threshold"),
        attrs=(Param("threshold", "float"), Param("value", "float")),
        sample_attrs=({"threshold": 0.5, "value": -1.0}, {"threshold": 0.0, "value": 0.0}),
        points=(0.5, 0.0, NAN),
        ints=False,
        note="x <= threshold gives value and gradient 0, the threshold itself included; NaN "
        "passes its input and the gradient",
    ),
    # --- smooth ---
    unary(
        "logsigmoid",
        _logsigmoid,
        _dlogsigmoid,
        _nnf("logsigmoid"),
        domain=(-30.0, 30.0),
        points=(0.0, -800.0, 800.0),
        ints=False,
    ),
    unary("mish", _mish, _dmish, _nnf("mish"), domain=(-5.0, 5.0), points=(0.0,), ints=False),
    unary(
        "softsign",
        lambda x: np.asarray(x / (np.abs(x) + 1)),
        _FULL_VJP,
        _nnf("softsign"),
        points=(0.0,),
        ints=False,
        note="softsign'(0) = 1 from both sides (torch composes x / (|x| + 1))",
    ),
    unary(
        "tanhshrink",
        lambda x: np.asarray(x - np.tanh(x)),
        _FULL_VJP,
        _nnf("tanhshrink"),
        points=(0.0,),
        ints=False,
    ),
]

# --- not elementwise ------------------------------------------------------------------------


def _halves(input: Array, dim: int) -> tuple[Array, Array, int]:
    ax = norm_dim(dim, input.ndim)
    a, b = np.split(np.asarray(input), 2, axis=ax)
    return a, b, ax


def _glu_shape(input: Shape, dim: int) -> Shape:
    if not input:
        raise ShapeError("glu: a 0-d input has no dim to halve")
    ax = norm_dim(dim, len(input))
    if input[ax] % 2:
        raise ShapeError(f"glu: dim {dim} has size {input[ax]}, which must be even to halve")
    return tuple(n // 2 if i == ax else n for i, n in enumerate(input))


def _glu(input: Array, dim: int) -> Array:
    a, b, _ = _halves(input, dim)
    return np.asarray(a * _sigmoid(b))


def _glu_vjp(g: Array, out: Array, input: Array, dim: int) -> tuple[Array]:
    a, b, ax = _halves(input, dim)
    s = _sigmoid(b)
    return (np.concatenate([g * s, g * a * s * (1 - s)], axis=ax),)


def _glu_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": rng.normal(size=(2,))}, "1-d, default dim"),
        Sample({"input": rng.normal(size=(3, 4)), "dim": 1}, "rows"),
        Sample({"input": rng.normal(size=(4, 3)), "dim": 0}, "columns"),
        Sample({"input": rng.normal(size=(2, 6, 2)), "dim": -2}, "3-d, negative dim"),
        Sample({"input": np.array([[0.0, 40.0, -40.0, 0.0]])}, "saturated gate"),
    ]


def _prelu_weight(input: Shape, weight: Shape) -> None:
    if len(weight) > 1:
        raise ShapeError(f"prelu: weight must be 0-d or 1-d, got {len(weight)}-d {weight}")
    n = int(np.prod(weight, dtype=np.int64))
    channels = input[1] if len(input) >= 2 else 1
    if n != 1 and n != channels:
        raise ShapeError(
            f"prelu: weight has {n} parameters but the input {input} has {channels} channel(s) "
            "(its dim 1; 1 below 2-d)"
        )


def _prelu_w(input: Array, weight: Array) -> Array:
    """The weight shaped to broadcast over ``input``: one value, or one per channel (dim 1)."""
    w = np.asarray(weight)
    if w.size == 1 or input.ndim < 2:
        return w.reshape(())
    return w.reshape((-1,) + (1,) * (input.ndim - 2))


def _prelu_shape(input: Shape, weight: Shape) -> Shape:
    _prelu_weight(input, weight)
    return input


def _prelu(input: Array, weight: Array) -> Array:
    w = _prelu_w(input, weight)
    return np.asarray(np.where(input > 0, input, w * input), dtype=np.result_type(input, weight))


def _prelu_vjp(g: Array, out: Array, input: Array, weight: Array) -> tuple[Array, Array]:
    w = _prelu_w(input, weight)
    pos = input > 0
    gx = np.where(pos, g, w * g)
    gw_full = np.where(pos, 0, input * g)
    w_arr = np.asarray(weight)
    if w_arr.size == 1 or input.ndim < 2:
        gw = np.sum(gw_full).reshape(w_arr.shape)
    else:
        axes = tuple(i for i in range(input.ndim) if i != 1)
        gw = np.sum(gw_full, axis=axes).reshape(w_arr.shape)
    return (np.asarray(gx, dtype=out.dtype), np.asarray(gw, dtype=out.dtype))


def _prelu_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.normal(size=(2, 3, 4))
    x[0, 0, :2] = 0.0
    return [
        Sample({"input": x, "weight": rng.uniform(0.0, 0.5, size=(3,))}, "per channel"),
        Sample({"input": x, "weight": np.array([0.25])}, "one weight"),
        Sample({"input": x[0], "weight": np.asarray(0.1)}, "2-d, 0-d weight"),
        Sample({"input": np.array([0.0, -1.0, 2.0]), "weight": np.array([-0.5])}, "1-d, at 0"),
        Sample({"input": np.asarray(-1.5), "weight": np.array([0.3])}, "0-d input"),
    ]


def _softmin(input: Array, dim: int) -> Array:
    return softmax(-np.asarray(input), dim)


def _softmin_vjp(g: Array, out: Array, input: Array, dim: int) -> tuple[Array]:
    (gx,) = _softmax_vjp(g, out, input, dim)
    return (-gx,)


def _softmin_shape(input: Shape, dim: int) -> Shape:
    norm_dim(dim, len(input))
    return input


def _softmin_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": np.asarray(rng.normal()), "dim": 0}, "0-d (out = 1)"),
        Sample({"input": rng.normal(size=(2, 3)), "dim": 1}, "rows"),
        Sample({"input": rng.normal(size=(2, 3, 4)), "dim": -3}, "3-d, negative dim"),
        Sample({"input": np.array([[0.5, 0.5, 0.5], [1.0, -2.0, 1.0]]), "dim": 1}, "ties"),
        Sample({"input": np.array([[0.3, np.inf, 1.2]]), "dim": 1}, "+inf entry (out 0)"),
    ]


OTHER: list[Op] = [
    Op(
        name="glu",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim", "int", -1)),
        forward=_glu,
        vjp=_glu_vjp,
        torch=lambda t, input, dim: t.nn.functional.glu(input, dim),
        shape=_glu_shape,
        samples=_glu_samples,
        note="a * sigmoid(b) with a, b the two halves of dim; its size must be even",
    ),
    Op(
        name="prelu",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("weight", "tensor")),
        forward=_prelu,
        vjp=_prelu_vjp,
        torch=lambda t, input, weight: t.nn.functional.prelu(input, weight),
        shape=_prelu_shape,
        samples=_prelu_samples,
        note="one weight or one per channel (dim 1); prelu'(0) = weight (the x <= 0 branch) and "
        "the weight's gradient there is 0",
    ),
    Op(
        name="softmin",
        family=FAMILY,
        params=(Param("input", "tensor"), Param("dim", "int")),
        forward=_softmin,
        vjp=_softmin_vjp,
        torch=lambda t, input, dim: t.nn.functional.softmin(input, dim),
        shape=_softmin_shape,
        samples=_softmin_samples,
        note="softmax(-input, dim); dim is required (torch's implicit choice is deprecated)",
    ),
]

FULL_VJPS = {
    "hardsigmoid": _hardsigmoid_vjp,
    "hardswish": _hardswish_vjp,
    "softsign": _softsign_vjp,
    "tanhshrink": _tanhshrink_vjp,
}
OPS: list[Op] = [
    _with_vjp(op, FULL_VJPS[op.name]) if op.name in FULL_VJPS else op
    for op in (replace(op, family=FAMILY) for op in UNARY)
] + OTHER
