"""Unary elementwise ops, one row each (numpy forward, derivative, torch reference). The binary
half is in `runner.ops.elementwise`, whose `OPS` holds these rows too."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner.ops.dtypes import float_dtype, operand, result_type
from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError

FAMILY = "elementwise"
UNARY_SHAPES: tuple[Shape, ...] = ((), (5,), (2, 3))
NAN = float("nan")


def zero_derivative(x: Array, out: Array) -> Array:
    """The derivative of a piecewise-constant op (sign, rounding): nothing selected, so the
    gradient is 0 everywhere, an infinite upstream included (torch: ``zeros_like(grad)``)."""
    return np.zeros(x.shape, bool)


# --- the builder ---------------------------------------------------------------------------


def _unary_samples(
    domain: tuple[float, float],
    points: Sequence[float],
    attrs: Sequence[dict[str, Any]],
    ints: bool,
) -> Callable[[np.random.Generator], list[Sample]]:
    """Random values in ``domain``, with the op's special ``points`` (kinks, ties) planted, a 0-d
    input at the first point, and an int64 input (forward only) when the op takes one."""

    def make(rng: np.random.Generator) -> list[Sample]:
        out = []
        for kw in attrs or [{}]:
            label = f" {kw}" if kw else ""
            for shape in UNARY_SHAPES:
                x = np.asarray(rng.uniform(*domain, size=shape))
                if points and x.size > 1:
                    flat = x.reshape(-1)
                    flat[: len(points)] = points[: flat.size]
                out.append(Sample({"input": x, **kw}, note=f"shape {shape}{label}"))
            if points:
                x0 = np.asarray(points[0])
                out.append(Sample({"input": x0, **kw}, note=f"0-d at {points[0]}{label}"))
        low, high = math.ceil(domain[0]), math.floor(domain[1])
        if ints and low <= high:
            k = rng.integers(low, high + 1, size=(2, 3))
            out.append(Sample({"input": k, **(attrs or [{}])[0]}, note="int64 input"))
        return out

    return make


def unary(
    name: str,
    f: Callable[..., Any],
    df: Callable[..., Any],
    tf: Callable[..., Any] | None = None,
    *,
    floating: bool = True,
    note: str = "",
    domain: tuple[float, float] = (-2.0, 2.0),
    points: Sequence[float] = (),
    attrs: Sequence[Param] = (),
    sample_attrs: Sequence[dict[str, Any]] = (),
    ints: bool = True,
    check: Callable[..., None] | None = None,
    unchecked_at_nan: str = "",
    tensor_overload: str = "",
    overload_params: tuple[str, ...] = (),
) -> Op:
    """``df(x, out, **attrs)`` is the local derivative; the VJP is ``g * df``, or, where ``df``
    is a bool mask, ``where(df, g, 0)``: torch's backward of relu, hardtanh, clamp and the
    piecewise-constant ops selects rather than multiplies, so an infinite upstream gradient gives
    0 outside the mask, not inf * 0 = NaN. ``floating``: an int or bool input gives a float32
    result, as torch's floating ops do. ``tf`` defaults to ``torch.<name>``; ``check(**attrs)``
    validates the attributes in the shape rule; ``unchecked_at_nan``: see `Op`."""

    def vjp(g: Array, out: Array, input: Any, **kw: Any) -> tuple[Array]:
        d = np.asarray(df(cast(input), out, **kw))
        if d.dtype == bool:
            return (np.where(d, g, np.zeros((), g.dtype)),)
        return (g * d,)

    def cast(input: Any) -> Array:
        x = operand(input)
        return x.astype(float_dtype(x.dtype), copy=False) if floating else x

    def shape(input: Shape, **kw: Any) -> Shape:
        if check is not None:
            check(**kw)
        return input

    return Op(
        name=name,
        family=FAMILY,
        literal_operands=True,
        params=(Param("input", "tensor"), *attrs),
        forward=lambda input, **kw: f(cast(input), **kw),
        vjp=vjp,
        torch=tf or (lambda t, input, **kw: getattr(t, name)(input, **kw)),
        shape=shape,
        samples=_unary_samples(domain, points, sample_attrs, ints),
        note=note,
        unchecked_at_nan=unchecked_at_nan,
        tensor_overload=tensor_overload,
        overload_params=overload_params,
    )


# torch 2.x on CPU: a vectorised loop handles the first multiple of the vector width, a scalar
# loop the rest, and the two disagree at NaN (hardtanh: 0 vs 1; elu: NaN vs 1).
KERNEL_PATH_AT_NAN = (
    "torch's gradient at NaN depends on its kernel path (vectorised or scalar, by the tensor's "
    "length and the CPU)"
)


def _nnf(name: str) -> Callable[..., Any]:
    return lambda t, input, **kw: getattr(t.nn.functional, name)(input, **kw)


# --- rules that need more than a line ------------------------------------------------------

SQRT_2 = math.sqrt(2.0)
GELU_K = math.sqrt(2.0 / math.pi)  # torch's kBeta for the tanh approximation
_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def sign(x: Array) -> Array:
    """torch's sign (and sgn, abs's derivative): 0 at 0 and at NaN, where numpy gives NaN."""
    if x.dtype == bool:
        return x.copy()
    return np.asarray((x > 0).astype(x.dtype) - (x < 0).astype(x.dtype))


def _rounding(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    # numpy turns an int64 floor into float64; torch keeps integers as they are.
    return lambda x: fn(x) if x.dtype.kind == "f" else x.copy()


def _sigmoid(x: Array) -> Array:
    with np.errstate(over="ignore"):
        return np.asarray(1 / (1 + np.exp(-x)))


def _gelu(x: Array, approximate: str) -> Array:
    if approximate == "tanh":
        return np.asarray(0.5 * x * (1 + np.tanh(GELU_K * (x + 0.044715 * x**3))))
    return np.asarray(0.5 * x * (1 + _erf(x / SQRT_2)), dtype=x.dtype)


def _dgelu(x: Array, out: Array, approximate: str) -> Array:
    if approximate == "tanh":
        th = np.tanh(GELU_K * (x + 0.044715 * x**3))
        inner = GELU_K * (1 + 3 * 0.044715 * x * x)
        return np.asarray(0.5 * (1 + th) + 0.5 * x * (1 - th * th) * inner)
    cdf = (0.5 * (1 + _erf(x / SQRT_2))).astype(x.dtype)
    return np.asarray(cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))


def _softplus(x: Array, beta: float, threshold: float) -> Array:
    with np.errstate(over="ignore"):
        return np.where(x * beta > threshold, x, np.log1p(np.exp(x * beta)) / beta)


def _dsoftplus(x: Array, out: Array, beta: float, threshold: float) -> Array:
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.exp(x * beta)
        return np.where(x * beta > threshold, 1, z / (z + 1))


def _clamp(x: Array, min: float | None, max: float | None) -> Array:
    # torch promotes with the bounds (an int64 input clamped at 0.5 is float32) and applies
    # max after min, so min > max gives max everywhere.
    x = x.astype(result_type(x, min, max), copy=False)
    x = x if min is None else np.maximum(x, min)
    return x if max is None else np.minimum(x, max)


def _dclamp(x: Array, out: Array, min: float | None, max: float | None) -> Array:
    inside = np.ones(x.shape, dtype=bool)
    if min is not None:
        inside &= x >= min
    if max is not None:
        inside &= x <= max
    return inside


def _check_clamp(min: float | None, max: float | None) -> None:
    if min is None and max is None:
        raise ShapeError("needs at least one of min and max (both are None)")


def _check_hardtanh(min_val: float, max_val: float) -> None:
    if min_val > max_val:
        raise ShapeError(f"min_val {min_val} is greater than max_val {max_val}")


def _dhardtanh(x: Array, out: Array, min_val: float, max_val: float) -> Array:
    # Open interval (unlike clamp) and written as torch does, so a NaN passes the gradient.
    return np.logical_not((x <= min_val) | (x >= max_val))


POSITIVE = (0.1, 4.0)
UNIT = (-0.9, 0.9)

UNARY_OPS: list[Op] = [
    # --- arithmetic ---
    unary(
        "neg", np.negative, lambda x, out: -np.ones_like(x), lambda t, input: -input, floating=False
    ),
    unary(
        "abs",
        np.abs,
        lambda x, out: sign(x),
        floating=False,
        points=(0.0, NAN),
        note="abs'(0) = 0 (torch's derivative is sgn(x)); abs'(NaN) = 0",
    ),
    unary(
        "sign",
        sign,
        zero_derivative,
        floating=False,
        points=(0.0, NAN),
        note="sign' = 0 everywhere; sign(0) = sign(NaN) = 0",
    ),
    unary("square", np.square, lambda x, out: 2 * x, floating=False),
    unary("reciprocal", np.reciprocal, lambda x, out: -out * out, domain=(0.25, 2.0)),
    unary(
        "sqrt",
        np.sqrt,
        lambda x, out: 0.5 / out,
        domain=POSITIVE,
        note="sqrt'(0) = inf (torch's grad / (2 * out))",
    ),
    unary("rsqrt", lambda x: 1 / np.sqrt(x), lambda x, out: -0.5 * out**3, domain=POSITIVE),
    # --- exponentials and logarithms ---
    unary("exp", np.exp, lambda x, out: out),
    unary("exp2", np.exp2, lambda x, out: out * math.log(2.0)),
    unary("expm1", np.expm1, lambda x, out: out + 1),
    unary("log", np.log, lambda x, out: 1 / x, domain=POSITIVE),
    unary("log2", np.log2, lambda x, out: 1 / (x * math.log(2.0)), domain=POSITIVE),
    unary("log10", np.log10, lambda x, out: 1 / (x * math.log(10.0)), domain=POSITIVE),
    unary("log1p", np.log1p, lambda x, out: 1 / (x + 1), domain=(-0.9, 3.0)),
    # --- trigonometric and hyperbolic ---
    unary("sin", np.sin, lambda x, out: np.cos(x)),
    unary("cos", np.cos, lambda x, out: -np.sin(x)),
    unary("tan", np.tan, lambda x, out: 1 + out * out, domain=(-1.2, 1.2)),
    unary("asin", np.arcsin, lambda x, out: 1 / np.sqrt(1 - x * x), domain=UNIT),
    unary("acos", np.arccos, lambda x, out: -1 / np.sqrt(1 - x * x), domain=UNIT),
    unary("atan", np.arctan, lambda x, out: 1 / (x * x + 1)),
    unary("sinh", np.sinh, lambda x, out: np.cosh(x)),
    unary("cosh", np.cosh, lambda x, out: np.sinh(x)),
    unary("tanh", np.tanh, lambda x, out: 1 - out * out),
    unary("asinh", np.arcsinh, lambda x, out: 1 / np.sqrt(x * x + 1)),
    unary("acosh", np.arccosh, lambda x, out: 1 / np.sqrt(x * x - 1), domain=(1.1, 3.0)),
    unary("atanh", np.arctanh, lambda x, out: 1 / (1 - x * x), domain=UNIT),
    # --- special functions (numpy has no erf: math.erf, vectorized, in float64) ---
    unary(
        "erf",
        lambda x: _erf(x).astype(x.dtype),
        lambda x, out: (2 / math.sqrt(math.pi)) * np.exp(-x * x),
    ),
    unary(
        "erfc",
        lambda x: _erfc(x).astype(x.dtype),
        lambda x, out: (-2 / math.sqrt(math.pi)) * np.exp(-x * x),
    ),
    unary("sigmoid", _sigmoid, lambda x, out: (1 - out) * out, domain=(-4.0, 4.0)),
    # --- activations ---
    unary(
        "relu",
        lambda x: np.maximum(x, 0),
        lambda x, out: np.logical_not(out <= 0),
        floating=False,
        points=(0.0, NAN),
        note="relu'(0) = 0; torch zeroes where out <= 0, so relu'(NaN) = 1",
    ),
    unary(
        "leaky_relu",
        lambda x, negative_slope: np.where(x > 0, x, x * negative_slope),
        lambda x, out, negative_slope: np.where(x > 0, 1, negative_slope).astype(out.dtype),
        _nnf("leaky_relu"),
        attrs=(Param("negative_slope", "float", 0.01),),
        sample_attrs=({}, {"negative_slope": 0.2}),
        points=(0.0, NAN),
        ints=False,
        note="leaky_relu'(0) = negative_slope (the slope for x > 0 applies only above 0)",
    ),
    unary(
        "elu",
        lambda x, alpha: np.where(x <= 0, alpha * np.expm1(x), x),
        lambda x, out, alpha: np.where(x <= 0, alpha * np.exp(x), 1).astype(out.dtype),
        _nnf("elu"),
        attrs=(Param("alpha", "float", 1.0),),
        sample_attrs=({}, {"alpha": 0.5}),
        points=(0.0,),
        ints=False,
        note="elu'(0) = alpha (the x <= 0 branch); at NaN torch's gradient depends on its "
        "vectorized path (1 or NaN by tensor length and CPU): not checked",
        unchecked_at_nan=KERNEL_PATH_AT_NAN,
    ),
    unary(
        "gelu",
        _gelu,
        _dgelu,
        _nnf("gelu"),
        attrs=(Param("approximate", "str", "none", choices=("none", "tanh"), kw_only=True),),
        sample_attrs=({}, {"approximate": "tanh"}),
        points=(0.0,),
        ints=False,
    ),
    unary(
        "silu",
        lambda x: x * _sigmoid(x),
        lambda x, out: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
        _nnf("silu"),
        domain=(-4.0, 4.0),
        ints=False,
    ),
    unary(
        "softplus",
        _softplus,
        _dsoftplus,
        _nnf("softplus"),
        attrs=(Param("beta", "float", 1.0), Param("threshold", "float", 20.0)),
        sample_attrs=({}, {"beta": 2.0, "threshold": 2.0}),
        points=(1.0, 1.5, 0.0),
        ints=False,
        note="linear (derivative 1) only where beta * x > threshold; at equality the smooth "
        "branch, sigmoid(beta * x)",
    ),
    unary(
        "hardtanh",
        lambda x, min_val, max_val: np.minimum(np.maximum(x, min_val), max_val),
        _dhardtanh,
        _nnf("hardtanh"),
        attrs=(Param("min_val", "float", -1.0), Param("max_val", "float", 1.0)),
        sample_attrs=({}, {"min_val": -0.5, "max_val": 1.5}),
        points=(-1.0, 1.0, -0.5, 1.5),
        ints=False,
        check=_check_hardtanh,
        note="gradient 0 at both bounds (open interval, unlike clamp); at NaN torch's gradient "
        "depends on its vectorized path (1 or 0 by tensor length and CPU): not checked",
        unchecked_at_nan=KERNEL_PATH_AT_NAN,
    ),
    # --- clamping and rounding ---
    unary(
        "clamp",
        _clamp,
        _dclamp,
        floating=False,
        attrs=(Param("min", "float?", None), Param("max", "float?", None)),
        sample_attrs=(
            {"min": -1.0, "max": 1.0},
            {"min": -0.5},
            {"max": 0.5},
            {"min": 1.0, "max": -1.0},
        ),
        points=(-1.0, 1.0, -0.5, 0.5, NAN),
        check=_check_clamp,
        note="gradient 1 at both bounds (min <= x <= max, inclusive, unlike hardtanh); 0 at NaN "
        "and everywhere when min > max; a tensor bound makes it clamp.Tensor (the bounds get "
        "gradients too)",
        tensor_overload="clamp.Tensor",
        overload_params=("min", "max"),
    ),
    unary(
        "floor",
        _rounding(np.floor),
        zero_derivative,
        floating=False,
        points=(1.0, -1.0),
        note="floor' = 0 everywhere, integers included",
    ),
    unary(
        "ceil",
        _rounding(np.ceil),
        zero_derivative,
        floating=False,
        points=(1.0, -1.0),
        note="ceil' = 0 everywhere, integers included",
    ),
    unary(
        "round",
        _rounding(np.round),
        zero_derivative,
        floating=False,
        points=(0.5, 1.5, 2.5, -0.5),
        note="round' = 0 everywhere; halves round to even, as torch",
    ),
    unary(
        "trunc",
        _rounding(np.trunc),
        zero_derivative,
        floating=False,
        points=(1.0, -1.0),
        note="trunc' = 0 everywhere",
    ),
    unary(
        "frac",
        lambda x: x - np.trunc(x),
        lambda x, out: np.ones(x.shape, out.dtype),
        ints=False,
        points=(1.0, -1.0),
        note="frac' = 1 everywhere, integers included",
    ),
]
