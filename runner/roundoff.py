"""The round-off a computation cannot avoid, per tensor, as an absolute allowance (the ``floor``
of `runner.compare.Tolerance`).

A scale-aware tolerance (relative to the reference's largest element) is strict at every scale,
which is right for a wrong rule and wrong for round-off that does not shrink with the result: a
float32 sum whose terms cancel has an error of about eps times the terms, not times the sum; a
gradient that is zero in exact arithmetic is 4e-16 in torch's float64. The floor covers exactly
that, and is measured rather than assumed:

- measured: in a float32 case the torch oracle runs once more on the same inputs and upstream
  gradient cast to float64, and `MEASURED_FACTOR` times the largest finite difference between
  the two is the reference's own measured error, with room for the manual side's of the same
  kind (another summation order); the catalogue's formulas are measured the same way (float32
  against float64; in a float64 case that difference times eps64/eps32), which covers a result
  that torch happens to compute as exactly 0 where the formulas leave round-off;
- every dtype: at least `EPS_FACTOR` units of the dtype's round-off of the tensor's own
  computation scale (`computation_scales`): the magnitude of the terms it is computed from, per
  tensor, so one tensor's scale never loosens another's, and a gradient that is small because
  its upstream or its Jacobian is small (four tied maxima under 5.7e-05; ``x * 1e-20``) gets a
  floor that small too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from runner.compare import scale_of
from runner.dtypes import EPS as _EPS
from runner.dtypes import is_half
from runner.engine import backward, floating_array, forward
from runner.graph import Graph, Node, Ref
from runner.ops.spec import Array

# Machine epsilon of each case dtype (np.finfo(dtype).eps; bfloat16: ml_dtypes').
EPS: dict[str, float] = _EPS
# Units of round-off of the computation's scale that any comparison allows: a handful of
# operations' worth, far below any error a wrong rule makes (a 1% error at any scale).
EPS_FACTOR = 16.0
# The same in half precision, where 16 units would be 1.6% (float16) or 12.5% (bfloat16) of the
# scale and hide a wrong rule: 2 units (0.2%, 1.6%) of the reference's own scale, not of its
# computation's: torch's half kernels sum in float32 and round once, at the result, so a sum
# whose terms cancel has the result's round-off; what earlier nodes' rounding leaves (the terms
# themselves rounded) is measured (`tensor_floors`).
HALF_EPS_FACTOR = 2.0
# The measured float32 error of the reference, times this: the manual side rounds differently
# (another summation order, another formula), with an error of the same size, not the same sign.
MEASURED_FACTOR = 4.0
# The same in half precision: two roundings at different places (torch's composite formulas
# round every intermediate to half, the manual side only each node's results) differ by about
# the reference's own error; 4x that would hide a 5% wrong rule in bfloat16 (tests/test_half.py).
HALF_MEASURED_FACTOR = 2.0
# In half precision no floor exceeds this many units of the dtype's round-off of the reference's
# largest magnitude (0.4% in float16, 3.1% in bfloat16): where rounding the inputs of a selection
# (a max, a median, a tie) makes torch's half result pick another element than float64 does,
# their measured difference is the whole gradient, and a floor that large lets any rule pass.
HALF_FLOOR_CAP = 8.0
# The same for how far the computation moves when its inputs move by one unit of round-off
# (`_perturbed`, float64 cases): at most this many units of round-off of the tensor's
# computation scale (2.2e-12 of it). A layer_norm of a constant row amplifies round-off by
# 1/sqrt(eps) = 316 and stays far below; a kink that one ulp of an input crosses (sign of 0 or
# of 3e-14) moves the gradient by the whole of it, and is said instead of allowed.
AMPLIFICATION_CAP = 1e4
# The seed of the random signs put on the upstream gradient to find each gradient's scale.
SIGN_SEED = 0
# The relative change of the upstream gradient that tells a gradient from round-off: a gradient
# follows it exactly (linearity), round-off left by cancelling terms does not.
LINEARITY_STEP = 1e-3


def eps_factor(dtype: str) -> float:
    """`EPS_FACTOR`, or `HALF_EPS_FACTOR` for float16 and bfloat16."""
    return HALF_EPS_FACTOR if is_half(dtype) else EPS_FACTOR


def eps_floor(eps: float, arrays: Iterable[Any], factor: float = EPS_FACTOR) -> float:
    """``factor`` units of round-off ``eps`` of the largest finite magnitude among ``arrays``
    (in their units; 0.0 when there is none)."""
    scale = max((scale_of(a) for a in arrays if _floating(a)), default=0.0)
    return factor * eps * scale


def measured_floor(low: Any, high: Any) -> float:
    """`MEASURED_FACTOR` times the largest finite difference between ``low`` (a reference in the
    case's dtype) and ``high`` (the same computed in float64); 0.0 when either is missing or not
    floating. Elements where either is NaN or infinite do not count (an overflow in float32
    says nothing of round-off)."""
    if low is None or high is None or not (_floating(low) and _floating(high)):
        return 0.0
    a, b = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if a.shape != b.shape:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff = diff[np.isfinite(diff)]
    return MEASURED_FACTOR * float(diff.max()) if diff.size else 0.0


Measured = tuple[Mapping[str, Mapping[str, Any]], Mapping[str, Mapping[str, Any]], float]


def floors(
    dtype: str,
    references: Mapping[str, Mapping[str, Any]],
    scales: Mapping[str, Mapping[str, float]],
    measured: Sequence[Measured] = (),
    capped: dict[tuple[str, str], float] | None = None,
    amplified: Sequence[Measured] = (),
) -> dict[tuple[str, str], float]:
    """The floor of every tensor, keyed by (kind, tensor name) with kind "value" or "grad", for
    a case of ``dtype``: the largest of `EPS_FACTOR` units of ``dtype``'s round-off of the
    tensor's computation scale (``scales[kind][name]``, `computation_scales`, or the
    reference's own largest magnitude when larger) and each measurement; in half precision one
    per element (`_half_floor`).

    ``references``: kind -> tensor -> the reference array in the case's dtype; ``measured``:
    (low, high, factor) triples, kind -> tensor -> one computation in a low and a high precision;
    `measured_floor` of the two, times ``factor`` (1 when the low precision is the case's own;
    the ratio of the machine epsilons when it is coarser, to bring its error to the case's).
    ``amplified``: measurements counted up to `AMPLIFICATION_CAP` units of round-off of the
    computation scale: a float64 case's `_perturbed` and those of a coarser precision scaled
    down (float32 garbage from an ill-conditioned matrix, times eps64/eps32, must not open a
    float64 comparison). A tensor whose measurement was past its cap goes into ``capped`` with
    it (the comparison says so when it fails: the tensor is ill-conditioned on that data).
    """
    out: dict[tuple[str, str], float] = {}
    eps = EPS.get(dtype, EPS["float32"])
    for kind, tensors in references.items():
        for name, ref in tensors.items():
            if not _floating(ref):
                continue
            if is_half(dtype):
                out[(kind, name)] = _half_floor(dtype, kind, name, ref, scales, measured, capped)
                continue
            # The reference's largest magnitude, or its computation scale when larger.
            scale = max(scale_of(ref), scales.get(kind, {}).get(name, 0.0))
            floor = max([EPS_FACTOR * eps * scale, *(_measured(m, kind, name) for m in measured)])
            if amplified:
                # A gradient's terms are at least the gradient flowing in (a cancelling one's
                # own scale says nothing of them: layer_norm of a constant row gives 1e-27).
                inflow = scales.get("inflow", {}).get(name, 0.0) if kind == "grad" else 0.0
                most = AMPLIFICATION_CAP * eps * max(scale, inflow)
                moved = max(_measured(m, kind, name) for m in amplified)
                if moved > most and capped is not None:
                    capped[(kind, name)] = moved
                floor = max(floor, min(moved, most))
            out[(kind, name)] = floor
    return out


def _half_floor(
    dtype: str,
    kind: str,
    name: str,
    ref: Any,
    scales: Mapping[str, Mapping[str, float]],
    measured: Sequence[Measured],
    capped: dict[tuple[str, str], float] | None,
) -> Any:
    """A half-precision tensor's floor, one per element (an array at its shape): each
    measurement's difference at that element times `HALF_MEASURED_FACTOR`, at most
    `HALF_FLOOR_CAP` units of the dtype's round-off of the reference's largest magnitude; plus,
    for a gradient that is round-off of cancelling terms, `HALF_EPS_FACTOR` units of their
    scale. A reference's error in half precision is its element's (torch's half kernels round
    each result once): a floor from the tensor's largest element let a sign error on its small
    elements pass (one weight of 10000 beside weights of 1). Measurements past the cap go into
    ``capped`` (their largest)."""
    eps = EPS[dtype]
    r = np.abs(np.asarray(ref, dtype=np.float64))
    per = np.zeros(r.shape)
    for low, high, factor in measured:
        pair = low.get(kind, {}).get(name), high.get(kind, {}).get(name)
        if pair[0] is None or pair[1] is None or np.shape(pair[0]) != r.shape:
            continue
        if not (_floating(pair[0]) and _floating(pair[1])):
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(np.asarray(pair[0], np.float64) - np.asarray(pair[1], np.float64))
        per = np.maximum(per, np.where(np.isfinite(diff), diff, 0.0) * factor)
    per *= HALF_MEASURED_FACTOR
    cancelled = scales.get("cancelled", {}).get(name, 0.0) if kind == "grad" else 0.0
    # The cap is the tensor's (an element's own magnitude says nothing of the terms a sum or
    # a convolution cancelled into it); the allowance, each element's measured error.
    cap = HALF_FLOOR_CAP * eps * max(scale_of(ref), cancelled)
    if capped is not None and np.any(per > cap):
        capped[(kind, name)] = float(np.max(per))
    return np.minimum(per, cap) + eps_factor(dtype) * eps * cancelled


def _measured(measurement: Measured, kind: str, name: str) -> float:
    """`measured_floor` of one tensor in a (low, high, factor) measurement, times factor."""
    low, high, factor = measurement
    return factor * measured_floor(low.get(kind, {}).get(name), high.get(kind, {}).get(name))


def tensor_floors(
    dtype: str,
    graph: Graph,
    inputs: Mapping[str, Array],
    upstream: Array,
    references: Mapping[str, Mapping[str, Any]],
    torch_high: Mapping[str, Mapping[str, Any]] | None = None,
    catalogue64: Mapping[str, Mapping[str, Any]] | None = None,
    torch_low: Mapping[str, Mapping[str, Any]] | None = None,
    capped: dict[tuple[str, str], float] | None = None,
) -> dict[tuple[str, str], float]:
    """Every tensor's floor (see `floors`) for ``graph`` on ``inputs`` under ``upstream``:
    ``references`` (kind -> tensor -> array) are the oracle's, ``torch_high`` the same computed
    by torch in float64 (a float32 or half case), measured against them; ``torch_low``, in a
    float64 case, the same computed by torch in float32, whose difference from the references
    times eps64/eps32 is torch's own float64 round-off where the formulas amplify it (a norm
    over one element divides by sqrt(eps): 1e-14 where the exact gradient is 0); the catalogue's
    formulas are measured in float32 (half: the case's dtype) against float64; scales from
    `computation_scales`. ``catalogue64``: `catalogue_in` in float64 when the caller has it
    already (the manual side of a float64 case that no user rule changed: the same forwards
    and rules on the same arrays), not run again."""
    measured: list[Measured] = []
    amplified: list[Measured] = []
    if torch_high is not None:
        measured.append((references, torch_high, 1.0))
    if torch_low is not None:
        amplified.append((torch_low, references, EPS["float64"] / EPS["float32"]))
    # Half precision: the catalogue rounding as torch does (`runner.engine`), in the case's own
    # dtype; float32 scaled up by eps16/eps32 = 8192 would be far looser than that.
    coarse = dtype if is_half(dtype) else "float32"
    low = catalogue_in(graph, inputs, upstream, coarse)
    high = (
        catalogue64 if catalogue64 is not None else catalogue_in(graph, inputs, upstream, "float64")
    )
    factor = EPS.get(dtype, EPS["float32"]) / EPS[coarse]
    (amplified if dtype == "float64" else measured).append((low, high, factor))
    if dtype == "float64" and high:
        amplified.append((_perturbed(graph, inputs, upstream), high, 1.0))
    values = high.get("value") or {k: _float64(v) for k, v in inputs.items()}
    scales = computation_scales(graph, values, upstream)
    return floors(dtype, references, scales, measured, capped, amplified)


def _perturbed(
    graph: Graph, inputs: Mapping[str, Array], upstream: Array
) -> Mapping[str, Mapping[str, Any]]:
    """The catalogue in float64 on the inputs and upstream gradient each moved by at most one
    unit of float64's round-off, relatively (seeded): how far that moves a value or a gradient
    is the computation's amplification of its own round-off, which neither precision's result
    shows where both come out exact (a constant row's layer_norm is 0 in float32 and in
    float64, while the manual side's mean rounds and 1/sqrt(eps) = 316 multiplies it)."""
    rng = np.random.default_rng(SIGN_SEED)

    def moved(a: Any) -> Any:
        if not floating_array(a):
            return a
        wide = np.asarray(a, dtype=np.float64)
        return wide * (1 + EPS["float64"] * rng.uniform(-1.0, 1.0, wide.shape))

    nudged = {k: moved(v) for k, v in inputs.items()}
    return catalogue_in(graph, nudged, moved(np.asarray(upstream)), "float64")


def computation_scales(
    graph: Graph, values: Mapping[str, Array], upstream: Array
) -> dict[str, dict[str, float]]:
    """The scale of the terms each tensor is computed from, per kind ("value", "grad") and
    tensor name; a tensor's round-off is relative to these, not to its result, which
    cancellation can make arbitrarily small:

    - a value: the largest magnitude among the node's operands and its result (an input: its
      own);
    - a gradient ("inflow": the largest gradient flowing into the nodes that use each tensor):
      its largest magnitude under the upstream gradient with random signs (seeded),
      by the catalogue's rules in float64 (never the rules under test, so a wrong rule cannot
      widen its own tolerance): one that is small because its upstream or its Jacobian is small
      stays small (``x * 1e-15``). Where it vanishes identically and what is left is round-off
      (layer_norm over one element; any gradient of a constant function, such as
      ``sum(softmax(x))``), the largest gradient flowing into the nodes that use the tensor:
      such a gradient is told by not being linear in its upstream gradient (`_linear`), or by
      being exactly zero. Gradients the catalogue cannot compute (a module's own op) keep the
      reference's magnitude.
    """
    value_scales = {name: scale_of(v) for name, v in values.items() if _floating(v)}
    for node in graph.nodes:
        operands = [value_scales.get(ref.name, 0.0) for ref in _operands(node)]
        value_scales[node.name] = max([value_scales.get(node.name, 0.0), *operands])
    signs = np.random.default_rng(SIGN_SEED).choice([-1.0, 1.0], size=np.shape(upstream))
    wide = {k: _float64(v) for k, v in values.items()}
    cotangent = _float64(np.asarray(upstream)) * signs
    try:
        with np.errstate(all="ignore"):
            grads = backward(graph, wide, cotangent).grads
    except Exception:  # an op without a catalogue rule: the references' own scale stands
        return {"value": value_scales, "grad": {}}
    inflow: dict[str, float] = {}
    for node in graph.nodes:
        for ref in _operands(node):
            inflow[ref.name] = max(inflow.get(ref.name, 0.0), scale_of(grads.get(node.name, 0.0)))
    scales = {name: scale_of(g) for name, g in grads.items() if _floating(g)}
    nudged: Mapping[str, Any] = {}
    # The linearity test can only raise a scale to its inflow: the second walk is needed only
    # where the inflow is larger (a zero scale takes the inflow without it).
    if any(0.0 < scales[name] < inflow.get(name, 0.0) for name in scales):
        try:
            with np.errstate(all="ignore"):
                nudged = backward(graph, wide, cotangent * (1 + LINEARITY_STEP)).grads
        except Exception:  # as above (the first walk succeeded, so this one does too)
            return {"value": value_scales, "grad": {}}
    grad_scales, passed, cancelled = _settled(graph, grads, nudged)
    inflow = {k: max(v, passed.get(k, 0.0)) for k, v in inflow.items()}
    return {"value": value_scales, "grad": grad_scales, "inflow": inflow, "cancelled": cancelled}


def _settled(
    graph: Graph, grads: Mapping[str, Any], nudged: Mapping[str, Any]
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(each gradient's final scale, the scale passed into each tensor, the scales of the
    cancelling ones), from the output back: a gradient not linear in its upstream (`_linear`)
    or exactly zero takes the largest final scale of the nodes that use its tensor, so
    round-off of cancelling terms passed on linearly (x * -1.5 after a cosine similarity of one
    element, whose gradient is 1e-16 of terms of size 1) keeps the size of those terms."""
    scales: dict[str, float] = {}
    passed: dict[str, float] = {}
    cancelled: dict[str, float] = {}

    def settle(name: str) -> None:
        grad = grads.get(name)
        if name in scales or not _floating(grad):
            return
        scale = scale_of(grad)
        if scale == 0.0 or not _linear(grad, nudged.get(name)):
            # Not linear in its upstream gradient: what is left is round-off of terms that
            # cancel, of the size of the gradient flowing in.
            scale = max(scale, passed.get(name, 0.0))
            cancelled[name] = scale
        scales[name] = scale

    for node in reversed(graph.nodes):
        settle(node.name)
        for ref in _operands(node):
            passed[ref.name] = max(passed.get(ref.name, 0.0), scales.get(node.name, 0.0))
    for name in grads:
        settle(name)
    return scales, passed, cancelled


def _linear(grad: Any, nudged: Any) -> bool:
    """Whether ``nudged`` (the gradient under the upstream times 1 + `LINEARITY_STEP`) is
    ``grad`` times the same, to 1% of the step: a VJP is linear in its upstream gradient; the
    round-off left where terms cancel is not."""
    if nudged is None:
        return True
    a = np.asarray(grad, dtype=np.float64)
    b = np.asarray(nudged, dtype=np.float64)
    with np.errstate(all="ignore"):
        deviation = np.abs(b - a * (1 + LINEARITY_STEP))
    deviation = deviation[np.isfinite(deviation)]
    worst = float(deviation.max()) if deviation.size else 0.0
    return worst <= 1e-2 * LINEARITY_STEP * scale_of(a)


def catalogue_in(
    graph: Graph, inputs: Mapping[str, Array], upstream: Array, dtype: str
) -> dict[str, dict[str, Any]]:
    """Values and gradients (kind -> tensor -> array) by the catalogue's forwards and rules
    with the floating inputs and the upstream gradient cast to ``dtype``; ``{}`` where the
    catalogue cannot compute the graph (a module's own op). For `measured` floors: the same
    formulas in two precisions show the round-off of the formulas themselves."""
    cast = {k: as_dtype(v, dtype) for k, v in inputs.items()}
    try:
        with np.errstate(all="ignore"):
            values = forward(graph, cast)
            grads = backward(graph, values, as_dtype(np.asarray(upstream), dtype)).grads
    except Exception:
        return {}
    return {"value": values, "grad": grads}


def _operands(node: Node) -> list[Ref]:
    refs = []
    for p in node.op.tensor_params:
        arg = node.args[p.name]
        refs += [a for a in (arg if isinstance(arg, list) else [arg]) if isinstance(a, Ref)]
    return refs


def as_dtype(a: Any, dtype: str) -> Any:
    """``a`` cast to ``dtype`` when it is a floating array; anything else (integer and bool
    operands, numbers) as it is."""
    return a.astype(dtype) if floating_array(a) else a


def _float64(a: Any) -> Any:
    return as_dtype(a, "float64")


def _floating(a: Any) -> bool:
    return a is not None and floating_array(np.asarray(a))


def node_floor(dtype: str, upstream: Any, reference: Any) -> float:
    """The floor of one node judged alone (fault localisation and the probes), where no float64
    measurement is at hand: `EPS_FACTOR` units of ``dtype``'s round-off of the largest magnitude
    of the node's upstream gradient and the reference gradient (in half precision of the
    reference alone: torch's half kernels compute in float32 and round the result once; a node
    judged alone has no per-element measurement, so this floor is the tensor's, looser than the
    case's own per-element one)."""
    arrays = [reference] if is_half(dtype) else [upstream, reference]
    return eps_floor(EPS.get(dtype, EPS["float32"]), arrays, eps_factor(dtype))
