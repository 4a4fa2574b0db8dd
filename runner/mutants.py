"""Mutants of a backward rule: the rule of one op, wrong in one of the ways rules go wrong, for
one differentiable argument. `runner.mutate` runs a suite's cases with each mutant in force and
counts those the cases catch.

A mutant wraps the *base* rule of its op (the user's RULES module rule where one is in force,
else the catalogue's VJP) and transforms what it gives for its argument, at the operand's shape
and dtype:

- ``scaled``: times 1.001 (a constant factor just over float32's tolerance);
- ``negated``: times -1;
- ``zeroed``: zeros;
- ``upstream-dropped``: the base rule called with ``ones_like(grad)`` for ``grad``: a rule that
  ignores its upstream gradient;
- ``transposed``: the last two axes swapped; only where they are equal (a square gradient), since
  only then can a transposed gradient pass the engine's shape check;
- ``ties-one-hot``: (max, min, amax, amin, median, nanmedian, maximum, minimum only) the
  whole gradient of each group of tied elements given to the first one in row-major order (the
  first argument for maximum/minimum), where torch splits it evenly: for reductions the tie
  groups are the elements of a reduced slice equal to its result; for maximum/minimum, the
  positions where both operands are equal, whose upstream gradient goes wholly to ``input``
  (the rule is linear in its upstream, so the rest of the gradient is the base rule's under the
  upstream zeroed at ties);
- ``wrong-axis``: the gradient summed over an axis the op does not reduce and divided by its
  length (its mean there), broadcast back: a rule that reduces over the wrong axis where the shapes
  let it pass. Applies to ops with a ``dim`` (reductions, softmax, cumulative and indexing ops)
  whose node names one, over the operand's last axis of length > 1 outside ``dim``, and to an
  operand an elementwise op broadcasts, over its last axis of length > 1 (one it is not broadcast
  along). It is a mean so that only the variation of the gradient along that axis tells it apart
  from the right rule (a sum would also be a constant factor).

Where a mutant does not apply to a node (a gradient that is not square, an op without ties, no
axis to reduce wrongly), its rule answers nothing there and the base rule stands; a mutant no node
of a case takes is not counted for that case. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.engine import apply_vjp
from runner.ops import REGISTRY
from runner.ops.spec import Array, Op, ShapeError, norm_dims, reduced_shape, sum_to
from runner.rules import RuleFn, RuleSet

KINDS = (
    "scaled",
    "negated",
    "zeroed",
    "upstream-dropped",
    "transposed",
    "ties-one-hot",
    "wrong-axis",
)
SCALE = 1.001
# Ops whose gradient at ties torch splits (or sends to one index): reductions over slices, and
# elementwise extrema of two operands.
TIE_REDUCTIONS = frozenset({"max", "min", "amax", "amin", "median", "nanmedian"})
TIE_PAIRS = frozenset({"maximum", "minimum"})
TIE_OPS = TIE_REDUCTIONS | TIE_PAIRS


@dataclass(frozen=True)
class Mutant:
    """The rule of ``op`` wrong as ``kind`` says (one of `KINDS`) for its ``argument``."""

    op: str
    kind: str
    argument: str

    @property
    def source(self) -> str:
        """The rule source name the engine records for what this mutant gave."""
        return f"mutant {self.op}:{self.kind}:{self.argument}"

    def __str__(self) -> str:
        return f"{self.op}:{self.kind} '{self.argument}'"


def mutants_of(op: Op) -> list[Mutant]:
    """Every mutant that may apply to ``op``: each kind for each differentiable argument
    (``ties-one-hot`` only for the ops in `TIE_REDUCTIONS` and `TIE_PAIRS`)."""
    kinds = [k for k in KINDS if k != "ties-one-hot" or op.name in TIE_REDUCTIONS | TIE_PAIRS]
    return [Mutant(op.name, kind, arg) for arg in op.differentiable() for kind in kinds]


def base_grads(
    op: Op, rule_sets: Sequence[RuleSet], g: Array, out: Array, args: Mapping[str, Any]
) -> dict[str, Any]:
    """The gradient of each differentiable argument under the base rules: the first of
    ``rule_sets`` (the user's RULES modules) that answers it, else the catalogue's VJP (summed to
    the operand's shape and cast to its dtype). Raises what the rules raise."""
    given: dict[str, Any] = {}
    for rule_set in rule_sets:
        fn = rule_set.rules.get(op.name)
        if fn is None:
            continue
        answer = fn(g, out, dict(args) | op.gradients_per_output(g, out, args)) or {}
        for key, value in answer.items():
            if key not in given and value is not None:
                given[key] = value
    missing = [name for name in op.differentiable() if name not in given]
    if missing:
        catalogue = apply_vjp(op, op.vjp, g, out, args, where=f"the base rule of {op.name}")
        given.update({name: catalogue[name] for name in missing})
    return given


def mutant_rule(mutant: Mutant, rule_sets: Sequence[RuleSet]) -> RuleFn:
    """``rule(grad, out, args) -> {argument: gradient}`` for ``mutant`` over the base rules
    ``rule_sets`` (see `base_grads`); ``{}`` where the mutant does not apply."""
    whole = REGISTRY[mutant.op]

    def rule(grad: Any, out: Any, args: dict[str, Any]) -> dict[str, Any]:
        op, args = this_output(whole, args)
        if mutant.kind == "upstream-dropped":
            base = base_grads(op, rule_sets, np.ones_like(grad), out, args)
        elif mutant.kind == "ties-one-hot" and op.name in TIE_PAIRS:
            return _pair_ties(op, mutant.argument, rule_sets, grad, out, args)
        else:
            base = base_grads(op, rule_sets, grad, out, args)
        value = base.get(mutant.argument)
        if value is None:
            return {}
        if isinstance(value, list | tuple):
            changed = [
                None
                if v is None
                else transform(mutant.kind, np.asarray(v), out, args, op, mutant.argument)
                for v in value
            ]
            if all(c is None for c, v in zip(changed, value, strict=True) if v is not None):
                return {}
            mixed = [c if c is not None else v for c, v in zip(changed, value, strict=True)]
            return {mutant.argument: mixed}
        found = transform(mutant.kind, np.asarray(value), out, args, op, mutant.argument)
        return {} if found is None else {mutant.argument: found}

    return rule


def this_output(op: Op, args: Mapping[str, Any]) -> tuple[Op, dict[str, Any]]:
    """The op of the node a rule was called for, and its arguments without ``grads``/``outs``:
    for an op with several outputs, the output whose gradient came (`Op.output`)."""
    rest = {k: v for k, v in args.items() if k not in ("grads", "outs")}
    grads = args.get("grads")
    if not grads or len(grads) < 2:
        return op, rest
    return op.output(next(i for i, g in enumerate(grads) if g is not None)), rest


def mutant_set(mutant: Mutant, rule_sets: Sequence[RuleSet]) -> RuleSet:
    """``mutant`` as a rule set, to ask before the base rules."""
    return RuleSet(mutant.source, {mutant.op: mutant_rule(mutant, rule_sets)})


def transform(
    kind: str, grad: Array, out: Any, args: Mapping[str, Any], op: Op, argument: str = ""
) -> Array | None:
    """The base rule's gradient ``grad`` for ``argument`` (the operand's shape and dtype) made
    wrong as ``kind`` says; None where that kind does not apply."""
    dtype = grad.dtype
    if kind == "scaled":
        return np.asarray(grad * np.asarray(SCALE, dtype=dtype), dtype=dtype)
    if kind == "negated":
        return np.negative(grad)
    if kind == "zeroed":
        return np.zeros_like(grad)
    if kind == "upstream-dropped":
        return grad
    if kind == "transposed":
        if grad.ndim < 2 or grad.shape[-1] != grad.shape[-2] or grad.shape[-1] < 2:
            return None
        return np.ascontiguousarray(np.swapaxes(grad, -1, -2))
    if kind == "ties-one-hot":
        return _reduction_ties(grad, args["input"], out, args.get("dim"), args.get("keepdim"))
    if kind == "wrong-axis":
        axis = wrong_axis(op, grad.shape, np.shape(out), args, argument)
        if axis is None:
            return None
        mean = grad.mean(axis=axis, keepdims=True)
        return np.broadcast_to(mean, grad.shape).astype(dtype)
    raise ValueError(f"unknown mutant kind {kind!r}")


def wrong_axis(
    op: Op,
    shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    args: Mapping[str, Any],
    argument: str,
) -> int | None:
    """The axis `wrong-axis` reduces over for an operand of ``shape`` (see the module's
    docstring), or None."""
    reduced: set[int]
    if any(p.name == "dim" for p in op.params) and args.get("dim") is not None:
        try:
            reduced = set(norm_dims(args["dim"], len(shape)))
        except (ShapeError, TypeError):
            return None
    elif op.family == "elementwise" and argument and tuple(shape) != tuple(out_shape):
        lead = len(out_shape) - len(shape)
        reduced = {i for i, n in enumerate(shape) if n == 1 and out_shape[lead + i] != 1}
    else:
        return None
    axes = [i for i, n in enumerate(shape) if n > 1 and i not in reduced]
    return axes[-1] if axes else None


def tie_groups(x: Array, out: Any, dim: Any, keepdim: Any) -> tuple[Array, tuple[int, ...]]:
    """For a max/min/amax/amin reduction of ``x`` to ``out``: the mask of the elements equal to
    their slice's result, and the reduced dims."""
    dims = tuple(range(x.ndim)) if dim is None else norm_dims(dim, x.ndim)
    result = np.asarray(out).reshape(reduced_shape(x.shape, dims, True))
    return x == result, dims


def _reduction_ties(grad: Array, x: Any, out: Any, dim: Any, keepdim: Any) -> Array:
    x = np.asarray(x)
    if x.ndim == 0:
        return grad
    tied, dims = tie_groups(x, out, dim, keepdim)
    k = len(dims)
    moved = np.moveaxis(tied, dims, tuple(range(x.ndim - k, x.ndim)))
    flat = moved.reshape(moved.shape[: x.ndim - k] + (-1,))
    first_flat = np.zeros_like(flat)
    np.put_along_axis(first_flat, flat.argmax(axis=-1)[..., None], True, axis=-1)
    first_flat &= flat
    first = np.moveaxis(first_flat.reshape(moved.shape), tuple(range(x.ndim - k, x.ndim)), dims)
    total = np.where(tied, grad, 0).sum(axis=dims, keepdims=True)
    return np.where(tied, np.where(first, total, 0), grad).astype(grad.dtype)


def _pair_ties(
    op: Op,
    argument: str,
    rule_sets: Sequence[RuleSet],
    grad: Array,
    out: Any,
    args: Mapping[str, Any],
) -> dict[str, Any]:
    """maximum/minimum with the upstream gradient at ties given wholly to ``input``."""
    tied = np.broadcast_to(pair_ties(args), np.shape(grad))
    base = base_grads(op, rule_sets, np.where(tied, 0, grad).astype(grad.dtype), out, args)
    value = base.get(argument)
    if value is None:
        return {}
    value = np.asarray(value)
    if argument == "input":
        whole = sum_to(np.where(tied, grad, 0), value.shape)
        value = (value + whole).astype(value.dtype)
    return {argument: value}


def pair_ties(args: Mapping[str, Any]) -> Array:
    """Where maximum's or minimum's operands are equal (at their broadcast shape)."""
    return np.asarray(np.asarray(args["input"]) == np.asarray(args["other"]))


def with_ties(op_name: str, args: Mapping[str, Any], free: Collection[str]) -> dict[str, Any]:
    """``args`` of a tie op (`TIE_OPS`) changed so that its data tie wherever they can, for the
    equivalence check of ``ties-one-hot``: data drawn at random almost never tie, and integers
    tie at the extremum only by chance. Only the tensor arguments named in ``free`` (those
    drawn anew) change, at their shape and dtype.

    - max/min/amax/amin: in every reduced slice of more than one element, the extremum (the
      largest for max/amax) is copied onto a second element (the slice's last, or its first when
      the extremum is last), so each slice holds a tie at its result and stays otherwise as drawn;
    - maximum/minimum: ``input`` (else ``other``) takes the other operand's value at every second
      element in row-major order (the first included), where the operand is broadcast, the
      other's value at index 0 of the broadcast axes.

    Other ops, and arguments not in ``free``, are returned as given. Raises `ShapeError` for a
    ``dim`` the input does not have."""
    fresh = dict(args)
    if op_name in TIE_REDUCTIONS and "input" in free:
        largest = op_name in ("max", "amax")
        fresh["input"] = _tied_slices(np.asarray(args["input"]), args.get("dim"), largest)
    elif op_name in TIE_PAIRS and {"input", "other"} & set(free):
        target, source = ("input", "other") if "input" in free else ("other", "input")
        fresh[target] = _tied_pair(np.asarray(args[target]), np.asarray(args[source]))
    return fresh


def _tied_slices(x: Array, dim: Any, largest: bool) -> Array:
    if x.ndim == 0 or x.size == 0:
        return x
    dims = norm_dims(dim, x.ndim)
    k = len(dims)
    last = tuple(range(x.ndim - k, x.ndim))
    moved = np.moveaxis(x, dims, last)
    flat = moved.reshape(moved.shape[: x.ndim - k] + (-1,)).copy()
    n = flat.shape[-1]
    if n < 2:
        return x
    at = (flat.argmax if largest else flat.argmin)(axis=-1)[..., None]
    second = np.where(at == n - 1, 0, n - 1)
    np.put_along_axis(flat, second, np.take_along_axis(flat, at, axis=-1), axis=-1)
    back = np.moveaxis(flat.reshape(moved.shape), last, dims)
    return np.ascontiguousarray(back, dtype=x.dtype)


def _tied_pair(target: Array, source: Array) -> Array:
    shape = np.broadcast_shapes(target.shape, source.shape)
    lead = len(shape) - target.ndim
    index = (0,) * lead + tuple(
        slice(None) if n == shape[lead + i] else slice(0, 1) for i, n in enumerate(target.shape)
    )
    picked = np.broadcast_to(source, shape)[index].reshape(target.shape)
    every_second = (np.arange(target.size) % 2 == 0).reshape(target.shape)
    return np.where(every_second, picked, target).astype(target.dtype)
