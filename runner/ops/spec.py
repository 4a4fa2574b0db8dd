"""What an op is: its signature, numpy forward, manual VJP, torch reference and shape rule.

Every op of the catalogue is one `Op` value built in `runner/ops/<family>.py`. The engine, the
torch side, the static checker, `gradcase ops` and the sweep test all read this one record, so
adding an op touches one place (plus its cases).

Calling conventions (all by keyword, keyed by parameter name), as the Protocols `Forward`,
`Vjp`, `TorchRef` and `ShapeRule` below state them:
- ``forward(**args) -> ndarray`` where tensor parameters hold arrays (or a Python number for a
  literal operand such as the ``2`` in ``x * 2``) and attribute parameters hold plain values.
- ``vjp(g, out, **args) -> tuple`` with one entry per tensor parameter, in signature order
  (a list for a ``tensors`` parameter, ``None`` where there is no gradient). A VJP may return the
  gradient at the broadcast (output-side) shape: the engine sums it to the operand's shape once.
- ``torch(t, **args)`` with ``t`` the torch module, so importing the registry never imports torch.
- ``shape(**args) -> tuple[int, ...]`` with tensor parameters replaced by their shapes; raises
  `ShapeError` with a message that names the numbers.

An op with several outputs (`Op.outputs`, when `Op.several` says this call has them: max with a
dim, sort, var_mean) follows derivatives.yaml's ``grads[i]``: ``forward`` returns a tuple with one
array per output, ``vjp(grads, outs, **args)`` receives a tuple of gradients, one per output,
``None`` for an output nothing used (an integer output never has one), and the forward's tuple;
``torch`` returns torch's tuple; ``shape`` a tuple of shapes. A graph never holds a tuple: each
output used is a node of `Op.output(i)`, a single-output op of the same name built from these.

What generic code must know about an op is data on its `Op` and `Param`s (a Python number as an
operand, an integer operand, probability targets, an overload, several outputs), as PyTorch's
derivatives.yaml flags are; the compiler never names an op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, Protocol

import numpy as np

Shape = tuple[int, ...]
Array = np.ndarray[Any, Any]

ParamKind = Literal[
    "tensor",  # one operand: a node, an input, or a numeric literal
    "tensor?",  # an operand or None (conv bias, layer_norm weight)
    "tensors",  # a list literal of operands, e.g. cat([a, b])
    "tensors*",  # the remaining positional operands, e.g. einsum("ij,jk", a, b)
    "int",
    "int?",
    "float",
    "float?",  # a number or None (clamp's min and max)
    "floats?",  # a number, a list of numbers or None (interpolate's scale_factor)
    "bool",
    "bool?",  # True, False or None (interpolate's align_corners)
    "str",
    "dims",  # None, an int, or a list of ints (reductions)
    "ints",  # an int or a list of ints (shapes, permutations, kernel sizes)
    "ints?",  # the same or None (pooling's stride)
    "sizes",  # an int or a list of ints and Nones, None: keep that dim (adaptive pooling 2d)
    "axes",  # an int or a pair of lists of ints (tensordot's dims)
    "index",  # internal: a subscript, a tuple of int | slice | None | Ellipsis (getitem)
]

TENSOR_KINDS = frozenset({"tensor", "tensor?", "tensors", "tensors*"})


class Forward(Protocol):
    """``forward(**args) -> ndarray``: tensor parameters hold arrays (or a Python number for a
    literal operand), attributes plain values; called by keyword."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


class Vjp(Protocol):
    """``vjp(g, out, **args) -> tuple``: ``g`` the upstream gradient and ``out`` the forward
    value (arrays at the output's shape), the op's arguments by keyword as for `Forward`. One
    entry per tensor parameter in signature order: an array (at the operand's shape or the
    broadcast shape, which the engine sums down), a list for a list parameter, or None. For a
    call with several outputs ``g`` and ``out`` are tuples, one entry per output (``g``'s None
    where nothing used that output)."""

    def __call__(self, g: Any, out: Any, /, *args: Any, **kwargs: Any) -> Sequence[Any]: ...


class TorchRef(Protocol):
    """``torch(t, **args)``: the torch function mirrored, ``t`` the torch module (so importing
    the registry never imports torch), tensor parameters as tensors."""

    def __call__(self, t: Any, /, *args: Any, **kwargs: Any) -> Any: ...


class ShapeRule(Protocol):
    """``shape(**args) -> Shape``: tensor parameters replaced by their shapes (a list of shapes
    for a list parameter, ``()`` for a literal operand); raises `ShapeError` naming the
    numbers. A call with several outputs gives a tuple of shapes, one per output."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class ShapeError(ValueError):
    """An op's static shape rule rejected its operands or attributes."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind
    default: Any = REQUIRED
    # False for operands that never get a gradient (indices, targets, masks).
    grad: bool = True
    # With grad=False: torch also takes an operand that requires grad here and simply gives it
    # no gradient (comparisons); without it, torch refuses one (cross_entropy's weight).
    accepts_grad: bool = False
    # For "str": the values allowed. For other kinds: named values allowed besides the kind's
    # own (conv's padding="same", norm's p="fro").
    choices: tuple[str, ...] = ()
    # Keyword-only in torch (var's correction): a positional argument there is refused rather
    # than silently bound, since torch would read it as another parameter.
    kw_only: bool = False
    # This operand may be a Python number (torch's Scalar overload: masked_fill's value,
    # scatter's src), where the op's other operands must be tensors (see Op.literal_operands).
    number: bool = False
    # An integer operand (indices, class targets): a plain literal written with integers only,
    # used only in such positions, is int64 rather than the case's float dtype.
    integer: bool = False
    # With integer=True: an operand shaped like the operand of the parameter named here holds
    # probabilities, not integers (cross_entropy's target shaped like its input).
    probabilities_if_shaped_like: str = ""
    # With integer=True: what validation says of a tensor known to be bool (an input of dtype
    # bool, a comparison's node) or floating (a float input) here, which
    # torch refuses; empty: "<op>: '<param>' takes an integer tensor".
    mask_refused: str = ""
    float_refused: str = ""

    @property
    def is_tensor(self) -> bool:
        return self.kind in TENSOR_KINDS

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Sample:
    """One set of arguments for the registry-driven sweep test (arrays are float64 here; the sweep
    casts floating arrays to each dtype it tests)."""

    args: dict[str, Any]
    note: str = ""


SampleFn = Callable[[np.random.Generator], list[Sample]]


@dataclass(frozen=True)
class Op:
    name: str
    family: str
    params: tuple[Param, ...]
    forward: Forward
    vjp: Vjp
    torch: TorchRef
    shape: ShapeRule
    samples: SampleFn
    # The convention at non-differentiable points (ties, kinks, zeros), as torch has it.
    note: str = ""
    # Where torch itself is inconsistent: at elements where ``input`` is NaN, torch's gradient
    # for ``input`` depends on its kernel path (vectorised or scalar remainder, so on the tensor's
    # length and the CPU). The reason, said in the report; those elements are not checked.
    unchecked_at_nan: str = ""
    # Not listed by `gradcase ops`: ops that expressions create (getitem, clone).
    hidden: bool = False
    # False for an op only a spelling makes (getitem: a subscript), never called by its name.
    by_name: bool = True
    # Elementwise ops take a Python number as an operand (the ``2`` of ``x * 2``), as torch's
    # do; elsewhere the numpy and torch sides would not even agree on its dtype.
    literal_operands: bool = False
    # Called with a tensor as its second positional argument it is this op instead:
    # torch.max(input, other) is maximum. `overload_params`: instead, called with a tensor for
    # any of these parameters, positional or keyword (clamp's min and max: clamp.Tensor).
    tensor_overload: str = ""
    overload_params: tuple[str, ...] = ()
    # Several outputs, by torch's names (max with a dim: values, indices; sort; var_mean), in
    # torch's order; `output_dtypes` says which are integer (never a gradient). `outputs_with`:
    # only a call that gives this parameter has them (max(x) is one tensor, max(x, 1) two).
    # `output_fields`: torch's result is a named tuple (``.values``), not a plain tuple (var_mean).
    outputs: tuple[str, ...] = ()
    outputs_with: str = ""
    output_fields: bool = True
    integer_outputs: tuple[str, ...] = ()
    # For `Op.output(i)`: which output of the op this node is (None: the op's only value), and
    # the op with all of them.
    selected: int | None = None
    whole: Op | None = field(default=None, compare=False, repr=False)
    # ``kinks(h, **args) -> reason | None``: some element lies within ``h`` of a point where the
    # op is not differentiable or torch's gradient is a convention (see runner/ops/kinks.py,
    # whose table the registry attaches); None: differentiable wherever the forward is finite.
    kinks: Callable[..., str | None] | None = None
    # Why torch cannot compute the op (a RULES module's op, or a case's op built on one); empty
    # when torch is its reference.
    no_torch: str = ""
    # In half precision a catalogue VJP gets ``out`` as torch's backward does: the stored half
    # value (softmax's ``out * (g - sum(g * out))`` on outputs that do not sum to 1 exactly). True
    # for a VJP that instead recomputes part of the forward from its float32 operands and
    # compares it with ``out`` (the ties of a p=inf norm of a difference): it gets the forward
    # recomputed in float32, so both sides of the comparison are in one precision.
    recomputes_out: bool = False
    # Where torch's own kernel in float16 and bfloat16 is wrong (a torch bug, found by the
    # sweep), so there is nothing to check a half-precision case against: what is wrong, said
    # when a case asks for it.
    wrong_in_half: str = ""
    # Where the op comes from, for messages: "" for the catalogue, "module rules.py" for a
    # RULES module's.
    source: str = ""
    # ``intermediates(**args) -> bytes`` with tensor parameters replaced by their shapes and
    # ``itemsize`` the case's float size: the largest temporary the numpy forward or VJP (or
    # torch's) makes beyond its operands and result (conv's materialised windows, a broadcast
    # matmul's product), for the memory estimate (`runner.memory`); None: nothing beyond them.
    intermediates: Callable[..., int] | None = None

    def __post_init__(self) -> None:
        # Every shape rule's result is checked against what numpy and torch accept, here, once
        # for every op (an op's own rule need not repeat it).
        if not getattr(self.shape, "_limited", False):
            object.__setattr__(self, "shape", _limited(self.name, self.params, self.shape))

    @cached_property  # asked once per node per walk: thousands of times in a run
    def tensor_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.is_tensor)

    def signature(self) -> str:
        parts = []
        star = False
        for p in self.params:
            if p.kw_only and not star and not any(q.kind == "tensors*" for q in self.params):
                parts.append("*")
                star = True
            prefix = "*" if p.kind == "tensors*" else ""
            text = f"{prefix}{p.name}"
            if not p.required:
                text += f"={p.default!r}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)})"

    def differentiable(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.tensor_params if p.grad)

    def several(self, args: Mapping[str, Any]) -> bool:
        """Whether a call with these bound ``args`` returns several outputs (a tuple)."""
        if not self.outputs or self.selected is not None:
            return False
        return not self.outputs_with or args.get(self.outputs_with) is not None

    @property
    def output_name(self) -> str:
        """How a node of `output` is spelled after its call: ``.values``, or ``[1]`` where torch
        returns a plain tuple; empty for an op of one output."""
        if self.selected is None:
            return ""
        return f".{self.outputs[self.selected]}" if self.output_fields else f"[{self.selected}]"

    def gradients_per_output(
        self, g: Array, out: Array, args: Mapping[str, Any]
    ) -> dict[str, tuple[Any, ...]]:
        """What a user's rule of an op with several outputs gets besides ``grad`` and ``out``:
        ``grads`` (one per output, None for those this node does not use) and ``outs`` (every
        output's value). Empty for a node that is an op's only output (max(x), not max(x, 1))."""
        if self.selected is None or self.whole is None:
            return {}
        outs = tuple(np.asarray(o) for o in self.whole.forward(**args))
        return {
            "grads": tuple(g if j == self.selected else None for j in range(len(outs))),
            "outs": outs,
        }

    def output(self, i: int) -> Op:
        """The single-output op that is output ``i`` of a call with several: its forward and
        torch select output ``i``, its VJP hands this output's gradient to `vjp` with ``None``
        for the others, and its shape is that output's. An integer output has no gradient:
        every parameter is then non-differentiable (torch's indices do not require grad)."""
        base = self
        integer = self.outputs[i] in self.integer_outputs

        def forward(**args: Any) -> Any:
            return base.forward(**args)[i]

        def vjp(g: Array, out: Array, **args: Any) -> Sequence[Any]:
            outs = tuple(np.asarray(o) for o in base.forward(**args))
            grads = tuple(g if j == i else None for j in range(len(outs)))
            return base.vjp(grads, outs, **args)

        def torch(t: Any, **args: Any) -> Any:
            return base.torch(t, **args)[i]

        def shape(**args: Any) -> Shape:
            shapes: tuple[Shape, ...] = base.shape(**args)
            return tuple(shapes[i])

        params = self.params
        if integer:
            params = tuple(replace(p, grad=False, accepts_grad=True) for p in params)
        return replace(
            self,
            params=params,
            forward=forward,
            vjp=vjp,
            torch=torch,
            shape=shape,
            selected=i,
            whole=self,
            tensor_overload="",
        )


# --- shared shape helpers -------------------------------------------------------------------


def broadcast_shapes(*shapes: Shape) -> Shape:
    """numpy/torch broadcasting of shapes, with a message that names both shapes."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise ShapeError(f"shapes {listed} do not broadcast") from None


def norm_dim(dim: int, ndim: int) -> int:
    """A possibly negative dim as a non-negative index; torch treats a 0-d tensor as having one
    addressable dim (-1 or 0)."""
    size = max(ndim, 1)
    if not -size <= dim < size:
        raise ShapeError(
            f"dim {dim} is out of range for a {ndim}-d tensor (expected {-size} to {size - 1})"
        )
    return dim % size


def norm_dims(dims: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """Reduction dims as sorted non-negative indices; None (or []) means every dim."""
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    if len(dims) == 0:
        return tuple(range(ndim))
    out = [norm_dim(d, ndim) for d in dims]
    if len(set(out)) != len(out):
        raise ShapeError(f"dim {list(dims)} names the same dim twice")
    return tuple(sorted(out)) if ndim else ()


def reduced_shape(shape: Shape, dims: tuple[int, ...], keepdim: bool) -> Shape:
    if keepdim:
        return tuple(1 if i in dims else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in dims)


def as_ints(value: int | Sequence[int]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def sum_to(grad: Array, shape: Shape) -> Array:
    """Sum a gradient at a broadcast shape back down to ``shape`` (torch's ``sum_to``); the
    engine applies it after every rule. ValueError when ``grad`` cannot reduce to ``shape``."""
    grad = np.asarray(grad)
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    if lead < 0 or any(g != s and s != 1 for g, s in zip(grad.shape[lead:], shape, strict=True)):
        raise ValueError(f"shape {grad.shape} does not reduce to {tuple(shape)}")
    if lead:
        grad = grad.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def _limited(name: str, params: tuple[Param, ...], rule: Callable[..., Any]) -> Callable[..., Any]:
    """``rule`` refusing (`ShapeError`) integer attributes torch cannot take and results numpy
    or torch cannot make (`runner.limits`)."""
    from runner.limits import attribute_problem, shape_problem

    attributes = [
        p.name for p in params if p.kind in ("int", "int?", "ints", "ints?", "sizes", "dims")
    ]

    def checked(**args: Any) -> Any:
        for attr in attributes:
            problem = attribute_problem(args.get(attr))
            if problem is not None:
                raise ShapeError(f"{name}: {attr}: {problem}")
        shape: Any = rule(**args)
        several = bool(shape) and isinstance(shape[0], tuple | list)
        for one in shape if several else [shape]:
            problem = shape_problem(one)
            if problem is not None:
                raise ShapeError(f"{name}: the result would have shape {tuple(one)}, {problem}")
        return shape

    checked._limited = True  # type: ignore[attr-defined]
    checked.__doc__ = rule.__doc__
    return checked
