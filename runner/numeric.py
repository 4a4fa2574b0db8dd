"""The finite-difference oracle, "numeric": gradients from central differences of the catalogue's
numpy forwards (`runner.engine.forward`'s ops), computed in float64 whatever the case's dtype.
An oracle independent of torch and of every VJP rule; it never imports torch.

For each tensor ``x`` a gradient reaches (every input that requires grad and every named node up
to the output; anonymous nodes are judged alone only, when a fault is localised), with ``v`` the
upstream gradient the other sources were given and ``L(x) = <f(x), v>`` (``f``: the graph's
output with ``x`` moved and everything else fixed; for a node, its value is replaced and only the
nodes downstream of it run again):

- the output itself: ``v``, exactly;
- ``x`` of at most `JACOBIAN_MAX` elements whose elements times the nodes downstream are at most
  `WHOLE_COST`: the whole gradient, ``dL/dx_i`` by a central difference per element, compared
  elementwise with the other sources;
- otherwise (a large tensor, or one far back in a long graph: a whole gradient would cost 4
  runs of the rest of the graph per element, quadratic in a chain's length): one random
  projection (`Projection`), ``u`` standard normal seeded by the tensor's name, ``<u, dL/dx>``
  compared with ``<u, g>`` of each other source's gradient ``g``.

Gradients flow only through differentiable parameters: an operand torch does not differentiate
(a class weight, an index) keeps its value when ``x`` moves.

**Step and truncation.** ``h_i = STEP * max(1, |x_i|)`` per element (a projection: ``STEP *
max(1, max|x|)``) with ``STEP = 1e-6`` for both dtypes (the differences are float64's); the step
an element really took (``x + h`` is rounded) divides the difference. Each difference is taken at
``h`` and ``h/2`` and combined by Richardson, ``(4 D(h/2) - D(h)) / 3`` (error O(h^4));
``|D(h) - D(h/2)|`` is its truncation estimate (an overestimate) and ``2 eps sum|f v| / h``,
times 3, its round-off estimate. Where the truncation estimate exceeds a quarter of what the
tolerance allows there (``atol * max|gradient| + rtol |gradient|``), the element is differenced
again with the step / 64 (at most `RETRIES` times, while the round-off stays far below): sin at
3e4 or 1e7 is checked, not declined. An element still over a quarter, by truncation or
round-off, is declined.

**Tolerance** (`TOLERANCE`, per case dtype, of the gradient under test against this reference):
float64 ``rtol 1e-6, atol 1e-6`` of the largest element, scale-aware as every default tolerance
(`runner.compare`; the reference's own error is far below; looser than torch's 1e-7 because a
float64 rule's rounding adds up over long sums); float32 ``rtol 1e-4, atol 1e-4``
(a float32 gradient against an exact one: float32's eps 1.2e-7 grown by sums and cancellation;
torch's 1.3e-6 is for two float32 computations of one formula); float16 ``rtol 5e-3, atol
5e-3`` and bfloat16 ``rtol 4e-2, atol 4e-2`` (5 eps of the dtype: a gradient rounded to half at
every node, against the exact one of the same stored half inputs). A projection allows what the
elementwise tolerance allows summed: ``(atol * max|g| + floor) * sum|u| + rtol * sum|u * g|``
(``g``: the other side's gradient, whose scale stands for the reference's). A case's own
``tolerance`` replaces these, as for every comparison.

**Declined, said in the report.** Per element of a whole gradient (``Result.unchecked``: those
elements neither pass nor fail, and the reason says which and why), per tensor for a projection
(``skipped``): where the element is not finite in the case's data; where the output is not
finite at the case's own data at an element that depends on it (which output elements depend on
which is carried back with the catalogue's VJPs, `_taint`: structure only, never a value; output
elements that do not depend on it are left out of ``L``, so one NaN elsewhere hides nothing);
where the forward is not finite with it moved; where a node the perturbation moves has an
operand that moved within the distance it moved (times `MARGIN`) of a non-differentiable point:
``Op.kinks`` (`runner.ops.kinks`), asked only about the elements that moved, e.g. ``node 'm'
(max): 1 slice(s) with tied max along dims 1``; and past the time budget, `BUDGET` seconds per
case (the inputs first, then the named nodes from the output back; the rest skipped, saying
so). Where this oracle is a gradient's only reference and checked none of it, the case is an
error (`runner.execute`), never a silent pass.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.compare import Tolerance
from runner.engine import Result, floating_array, forward
from runner.engine import node_vjp as engine_vjp
from runner.graph import Graph, Node, Ref
from runner.ops.spec import Array
from runner.oracles import Oracle
from runner.unchecked import Unchecked
from schemas.report import Comparison

STEP = 1e-6  # the same for both dtypes: the differences are float64's
TOLERANCE = {
    "float64": Tolerance(rtol=1e-6, atol=1e-6),
    "float32": Tolerance(rtol=1e-4, atol=1e-4),
    # Half precision: the differences are still float64's, of the half inputs as stored; the
    # gradient under test is rounded at every node (5 eps of the dtype).
    "float16": Tolerance(rtol=5e-3, atol=5e-3),
    "bfloat16": Tolerance(rtol=4e-2, atol=4e-2),
}
# Tensors up to this size get their whole gradient (2 forwards per element); larger ones one
# projection (2 forwards). A node judged alone (fault localisation) is differenced up to
# NODE_JACOBIAN_MAX elements per operand.
JACOBIAN_MAX = 64
# A tensor gets its whole gradient while its elements times the nodes downstream of it are at
# most this (64 elements through 32 nodes); beyond, the quadratic cost buys little: one
# projection checks every rule on the path, and localising a fault differences nodes alone.
WHOLE_COST = 2048
# An element whose truncation estimate is too large is differenced again with the step / 64, at
# most this many times (while the round-off stays far below the tolerance).
RETRIES = 3
# Seconds of differencing per case; what is left then is skipped, saying so.
BUDGET = 20.0
NODE_JACOBIAN_MAX = 1024
PROJECTION_SEED = 0
# A kink counts when it lies within MARGIN times the distance an operand moved.
MARGIN = 2.0
EPS = float(np.finfo(np.float64).eps)


class NumericRefused(Exception):
    """The oracle cannot difference here (a kink, a forward that is not finite, too large)."""


@dataclass(frozen=True)
class Projection:
    """The numeric gradient of one tensor along ``u``: ``derivative`` = ``<u, dL/dx>`` by a
    central difference of step ``step`` (``u``: float64, the tensor's shape, standard normal
    drawn with ``seed``)."""

    u: Array
    derivative: float
    seed: tuple[int, int]
    step: float

    def compare(
        self, grad: Any, sources: tuple[str, str], tol: Tolerance, mine_left: bool
    ) -> Comparison:
        """``grad`` (another source's whole gradient) projected on ``u`` against
        ``derivative``; ``mine_left``: this projection is the comparison's left side."""
        other = sources[0] if mine_left else sources[1]

        def result(ok: bool, **found: Any) -> Comparison:
            return Comparison(
                left=sources[0], right=sources[1], ok=ok, rtol=tol.rtol, atol=atol, **found
            )

        if grad is None:
            return result(False, problem=f"no gradient from {other}")
        g = np.asarray(grad, dtype=np.float64)
        if g.shape != self.u.shape:
            return result(False, problem=f"shape {g.shape} vs {self.u.shape}")
        with np.errstate(all="ignore"):
            terms = self.u * g
            theirs = float(np.sum(terms))
            finite = np.abs(g[np.isfinite(g)])
            scale = float(finite.max()) if finite.size else 0.0
            atol = (tol.atol if tol.absolute else tol.atol * scale) + tol.floor
            bound = atol * float(np.sum(np.abs(self.u))) + tol.rtol * float(np.sum(np.abs(terms)))
        left, right = (self.derivative, theirs) if mine_left else (theirs, self.derivative)
        err = abs(left - right)
        ok = bool(err <= bound)  # NaN on either side fails
        text = (
            f"<u, gradient> along one direction u (standard normal, seed {list(self.seed)}) "
            f"against the central difference (L(x + h u) - L(x - h u)) / 2h, h = {self.step:.2g}; "
            f"allowed {bound:.3g} = (atol * max|gradient| + round-off) * sum|u| + rtol * "
            "sum|u * gradient|"
        )
        return result(
            ok,
            projection=text,
            left_value=left,
            right_value=right,
            abs_err=err,
            rel_err=err / abs(right) if right else (0.0 if err == 0 else float("inf")),
            mismatched=0 if ok else 1,
            total=1,
        )


def _as64(value: Any) -> Any:
    if floating_array(value):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, list):
        return [_as64(v) for v in value]
    return value


def _operands(node: Node, *, grad_only: bool) -> list[str]:
    """The names of ``node``'s operands (those in differentiable parameters only, if asked)."""
    names = []
    for p in node.op.tensor_params:
        if grad_only and not p.grad:
            continue
        arg = node.args[p.name]
        names += [a.name for a in (arg if isinstance(arg, list) else [arg]) if isinstance(a, Ref)]
    return names


def _downstream(nodes: tuple[Node, ...], name: str) -> list[Node]:
    """The nodes whose value depends on ``name`` through differentiable parameters, in order."""
    moved, found = {name}, []
    operands = {n.name: _operands(n, grad_only=True) for n in nodes}
    for node in nodes:
        if node.name != name and any(a in moved for a in operands[node.name]):
            found.append(node)
            moved.add(node.name)
    return found


def _bind(node: Node, env: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """``node``'s arguments from ``env``, except non-differentiable ones, which keep ``base``'s
    (torch does not differentiate through them)."""
    args = node.bind(env)
    for p in node.op.tensor_params:
        if not p.grad:
            args[p.name] = node.bind(base)[p.name]
    return args


class _Case:
    """One graph at its float64 values: evaluates the terms ``f v`` of ``L`` with one tensor
    replaced. ``blind``: the output elements whose term is not finite at the case's own data;
    ``L`` sums the others (the perturbations that reach a blind element are declined:
    ``taint``)."""

    def __init__(self, graph: Graph, base: dict[str, Any], v: Array) -> None:
        self.graph, self.base, self.v = graph, base, v
        self.nodes = graph.nodes[: graph.index(graph.output) + 1]
        with np.errstate(all="ignore"):
            self.terms = np.asarray(base[graph.output], dtype=np.float64) * v
        self.blind = ~np.isfinite(self.terms)
        self.taint = _taint(graph, base, self.blind) if self.blind.any() else {}
        self._downstream: dict[str, list[Node]] = {}

    def downstream(self, name: str) -> list[Node]:
        """`_downstream` of ``name`` (computed once)."""
        if name not in self._downstream:
            self._downstream[name] = _downstream(self.nodes, name)
        return self._downstream[name]

    def evaluate(self, name: str, x: Array, nodes: list[Node]) -> tuple[Array, dict[str, Any]]:
        """The terms ``f v`` with ``name`` set to ``x``, and every value (``nodes``, those
        downstream of ``name``, run again)."""
        env = dict(self.base)
        env[name] = np.asarray(x)  # a 0-d result of arithmetic is a numpy scalar, not an array
        with np.errstate(all="ignore"):
            for node in nodes:
                try:
                    env[node.name] = np.asarray(node.op.forward(**_bind(node, env, self.base)))
                except Exception as exc:  # a domain check of the forward (bce's [0, 1])
                    raise NumericRefused(
                        f"the forward of node '{node.name}' ({node.op.name}) raised with "
                        f"'{name}' moved: {type(exc).__name__}: {exc}"
                    ) from exc
            return np.asarray(env[self.graph.output], dtype=np.float64) * self.v, env

    def loss(self, terms: Array) -> tuple[float, float, str | None]:
        """``L`` and ``sum |f v|`` (for the round-off estimate) over the output elements that
        are finite at the case's data, or the reason they cannot be used: a term that is not
        finite, or a blind element that moved."""
        seen = ~self.blind
        with np.errstate(all="ignore"):
            total, size = float(np.sum(terms[seen])), float(np.sum(np.abs(terms[seen])))
        if not np.isfinite(total):
            return total, size, "not finite"
        moved = terms[self.blind] != self.terms[self.blind]
        moved &= ~(np.isnan(terms[self.blind]) & np.isnan(self.terms[self.blind]))
        if moved.any():
            return total, size, "not finite"
        return total, size, None

    def kink(self, nodes: list[Node], envs: list[dict[str, Any]]) -> str | None:
        """The first node (of ``nodes``, the kinked ones downstream) whose operands, moved as
        in ``envs``, come within MARGIN times the distance they moved of a non-differentiable
        point, said as the report says it. Only the elements that moved are tested where the
        operands broadcast together (`runner.ops.kinks`, ``moved``)."""
        for node in nodes:
            assert node.op.kinks is not None
            h, mask = _movement(node, envs, self.base)
            if not h > 0:
                continue
            try:
                with np.errstate(all="ignore"):
                    reason = node.op.kinks(MARGIN * h, moved=mask, **node.bind(self.base))
            except Exception as exc:  # a kink test must not lose the case
                reason = f"its kink test raised {type(exc).__name__}: {exc}"
            if reason:
                label = f"'{node.name}'" if node.named else f"`{node.text}`"
                return (
                    f"node {label} ({node.op.name}): {reason} (not differentiable there, or "
                    "torch's gradient is a convention)"
                )
        return None


def _movement(
    node: Node, envs: list[dict[str, Any]], base: Mapping[str, Any]
) -> tuple[float, Array | None]:
    """How far ``node``'s differentiable operands moved (the most, over ``envs``) and which
    elements moved, at the operands' broadcast shape (None where they do not broadcast
    together: the kink test then looks at every element)."""
    h, masks = 0.0, []
    with np.errstate(all="ignore"):
        for a in dict.fromkeys(_operands(node, grad_only=True)):
            b = np.asarray(base[a], np.float64)
            moved = np.zeros(b.shape, bool)
            for env in envs:
                if env[a] is base[a]:
                    continue
                d = np.abs(np.asarray(env[a], np.float64) - b)
                moved |= (d != 0) & ~(np.isnan(d) & np.isnan(b))
                finite = d[np.isfinite(d)]
                h = max(h, float(finite.max()) if finite.size else 0.0)
            masks.append(moved)
    try:
        shape = np.broadcast_shapes(*(m.shape for m in masks))
    except ValueError:
        return h, None
    mask = np.zeros(shape, bool)
    for m in masks:
        mask = mask | m
    return h, mask


def _taint(graph: Graph, base: Mapping[str, Any], blind: Array) -> dict[str, Array]:
    """Per tensor, the elements on which an output element that is not finite at the case's
    data depends: the catalogue's VJPs carry a random cotangent on those output elements back
    (nonzero or NaN where it reaches, with probability one). Only which elements, never a
    value, is taken from the VJPs; an element whose VJP fails is taken as tainted everywhere."""
    rng = np.random.default_rng(0)
    out = graph.output
    taint: dict[str, Array] = {
        out: np.where(blind, np.abs(rng.standard_normal(blind.shape)) + 1, 0)
    }
    everything: set[str] = set()
    with np.errstate(all="ignore"):
        for node in reversed(graph.nodes[: graph.index(out) + 1]):
            g = taint.get(node.name)
            if g is None:
                continue
            refs = _operands(node, grad_only=True)
            if node.name in everything:
                everything.update(refs)
                continue
            try:
                given, _ = engine_vjp(node, g, base[node.name], node.bind(base), ())
            except Exception:
                everything.update(refs)
                continue
            for pname, grad in given.items():
                arg = node.args[pname]
                items = arg if isinstance(arg, list) else [arg]
                grads = grad if isinstance(grad, list) else [grad] * len(items)
                for ref, gi in zip(items, grads, strict=False):
                    if isinstance(ref, Ref) and gi is not None:
                        reached = np.abs(np.asarray(gi, np.float64))
                        reached = np.where(np.isnan(reached), 1.0, reached)
                        taint[ref.name] = taint.get(ref.name, 0) + reached
    found = {n: np.asarray(t != 0) for n, t in taint.items()}
    for n in everything:
        found[n] = np.ones(np.shape(base[n]), bool)
    return found


def _steps(x: Array) -> Array:
    """Per element ``STEP * max(1, |x_i|)`` (1 where x_i is not finite)."""
    a = np.abs(x)
    return STEP * np.where(np.isfinite(a) & (a > 1), a, 1.0)


@dataclass
class _Difference:
    """One central difference along a direction: the Richardson value, its truncation
    estimate ``|D(h) - D(h/2)|``, its round-off estimate, or why it cannot be used."""

    value: float = 0.0
    truncation: float = 0.0
    roundoff: float = 0.0
    declined: str | None = None


def _difference(
    case: _Case,
    name: str,
    x0: Array,
    direction: Array,
    h: float,
    nodes: list[Node],
    kinked: list[Node],
) -> _Difference:
    """``D(h)`` and ``D(h/2)`` of ``L`` along ``direction`` from ``x0``, combined by Richardson
    (``(4 D(h/2) - D(h)) / 3``, error O(h^4)); the steps are the ones the float64 arguments
    really took."""
    found, envs = [], []
    one_hot = np.count_nonzero(direction) == 1
    for step in (h, h / 2):
        plus, minus = x0 + step * direction, x0 - step * direction
        # One element moved: the step its float64 value really took (x + h is rounded);
        # along a projection, rounding is relatively eps |x| / h, far below the tolerance.
        taken = step
        if one_hot:
            sel = direction != 0
            with np.errstate(all="ignore"):
                taken = float(np.sum((plus - minus)[sel] / direction[sel])) / 2
        tp, envp = case.evaluate(name, plus, nodes)
        tm, envm = case.evaluate(name, minus, nodes)
        lp, sp, bad_p = case.loss(tp)
        lm, sm, bad_m = case.loss(tm)
        if bad_p or bad_m:
            return _Difference(declined=f"the forward is not finite with it moved by {step:.2g}")
        if step == h:
            envs = [envp, envm]
        found.append(((lp - lm) / (2 * taken), 2 * EPS * max(sp, sm) / taken))
    reason = case.kink(kinked, envs)
    if reason:
        return _Difference(declined=reason)
    (d1, r1), (d2, r2) = found
    return _Difference((4 * d2 - d1) / 3, abs(d1 - d2), (4 * r2 + r1) / 3)


def _allowed(tol: Tolerance, grad: Array, scale: float) -> Array:
    return tol.atol * scale + tol.rtol * np.abs(grad)


def _budget_note() -> str:
    return f"the numeric oracle's time budget ({BUDGET:g} s per case) ran out"


def _jacobian(
    case: _Case, name: str, tol: Tolerance, deadline: float
) -> tuple[Array, dict[str, Array]]:
    """The whole numeric gradient of ``name`` and, per reason, the elements it could not
    compute (their value is 0)."""
    x0 = np.asarray(case.base[name], dtype=np.float64)
    steps = _steps(x0)
    found = _element_differences(case, name, x0, steps, deadline)
    grad = np.asarray([0.0 if d.declined else d.value for d in found]).reshape(x0.shape)
    ok = np.asarray([d.declined is None for d in found]).reshape(x0.shape)
    scale = float(np.max(np.abs(grad[ok]))) if ok.any() else 0.0
    allowed = _allowed(tol, grad, scale).reshape(-1)
    _refine(case, name, x0, steps, found, grad, allowed)
    return grad, _declined(found, grad)


def _element_differences(
    case: _Case, name: str, x0: Array, steps: Array, deadline: float
) -> list[_Difference]:
    """One central difference per element of ``x0`` (in order, at its step of ``steps``), or
    why it was not taken: a non-finite element, a non-finite output it reaches, or the time
    budget spent (past ``deadline``, every element left)."""
    nodes = case.downstream(name)
    kinked = [n for n in nodes if n.op.kinks is not None]
    taint = case.taint.get(name)
    found = [_Difference() for _ in range(x0.size)]
    for i in range(x0.size):
        if time.monotonic() > deadline:
            for rest in found[i:]:
                rest.declined = _budget_note()
            break
        if not np.isfinite(x0.flat[i]):
            found[i].declined = "the element is not finite in the case's data"
        elif taint is not None and taint.flat[i]:
            found[
                i
            ].declined = "the output is not finite at the case's own data where it depends on it"
        else:
            e = np.zeros(x0.shape)
            e.flat[i] = 1.0
            found[i] = _difference(case, name, x0, e, float(steps.flat[i]), nodes, kinked)
    return found


def _refine(
    case: _Case,
    name: str,
    x0: Array,
    steps: Array,
    found: list[_Difference],
    grad: Array,
    allowed: Array,
) -> None:
    """Retakes, at steps 64 times smaller, each difference whose truncation error is over a
    quarter of its ``allowed`` error (while round-off allows), updating ``found`` and ``grad``;
    then declines each difference whose round-off or truncation is still over a quarter."""
    nodes = case.downstream(name)
    kinked = [n for n in nodes if n.op.kinks is not None]
    for i, d in enumerate(found):
        h = float(steps.flat[i])
        # A curved function at a large |x| (sin at 3e4): smaller steps, while round-off allows.
        for _ in range(RETRIES):
            if d.declined or d.truncation <= 0.25 * allowed[i] or d.roundoff > allowed[i] / 64:
                break
            e = np.zeros(x0.shape)
            e.flat[i] = 1.0
            h /= 64
            d = found[i] = _difference(case, name, x0, e, h, nodes, kinked)
            if d.declined is None:
                grad.flat[i] = d.value
        if d.declined:
            continue
        if d.roundoff > 0.25 * allowed[i]:
            d.declined = (
                f"the round-off of the difference (about {d.roundoff:.2g}) is over a quarter of "
                f"the tolerance there ({allowed[i]:.2g})"
            )
        elif d.truncation > 0.25 * allowed[i]:
            d.declined = (
                f"the truncation error of the difference (about {d.truncation:.2g}, from steps "
                f"h and h/2, h = {h:.2g}) is over a quarter of the tolerance there "
                f"({allowed[i]:.2g})"
            )


def _declined(found: list[_Difference], grad: Array) -> dict[str, Array]:
    """Per reason, the mask of the elements declined for it; their value in ``grad`` is set to
    0."""
    reasons: dict[str, Array] = {}
    for i, d in enumerate(found):
        if d.declined:
            grad.flat[i] = 0.0
            mask = reasons.setdefault(d.declined, np.zeros(grad.shape, bool))
            mask.flat[i] = True
    return reasons


def _projection(case: _Case, name: str, tol: Tolerance) -> Projection:
    """``<u, dL/dx>`` along one seeded direction; raises `NumericRefused` with the reason."""
    nodes = case.downstream(name)
    kinked = [n for n in nodes if n.op.kinks is not None]
    x0 = np.asarray(case.base[name], dtype=np.float64)
    if not np.all(np.isfinite(x0)):
        raise NumericRefused(f"'{name}' is not finite in the case's data")
    if name in case.taint and case.taint[name].any():
        raise NumericRefused(
            f"the output is not finite at the case's own data where it depends on '{name}'"
        )
    h = float(np.max(_steps(x0)))
    seed = (PROJECTION_SEED, zlib.crc32(name.encode()))
    u = np.random.default_rng(list(seed)).standard_normal(x0.shape)
    d, allowed = _Difference(), 0.0
    for attempt in range(RETRIES + 1):
        if attempt:
            # Too coarse a step (truncation) or too fine (round-off): try another.
            h = h / 64 if d.truncation > 0.25 * allowed else h * 16
        d = _difference(case, name, x0, u, h, nodes, kinked)
        if d.declined:
            raise NumericRefused(d.declined.replace("with it moved", f"with '{name}' moved"))
        # <u, g> is about |g|_2 and |u|_2 about sqrt(n): their ratio stands for g's scale.
        scale = abs(d.value) / max(float(np.linalg.norm(u)), 1e-300)
        allowed = tol.atol * scale * float(np.sum(np.abs(u))) + tol.rtol * abs(d.value)
        if max(d.roundoff, d.truncation) <= 0.25 * allowed:
            break
    for what, size in (("round-off", d.roundoff), ("truncation error", d.truncation)):
        if size > 0.25 * allowed:
            raise NumericRefused(
                f"the {what} of the difference for '{name}' (about {size:.2g}) is over a "
                f"quarter of the tolerance there ({allowed:.2g}): the reference would be too "
                "imprecise"
            )
    return Projection(u, d.value, seed, h)


def _whole(case: _Case, name: str) -> bool:
    """Whether ``name`` gets its whole gradient: at most `JACOBIAN_MAX` elements, each of which
    runs the nodes downstream 4 times, at most `WHOLE_COST` node runs per forward direction in
    all; otherwise (a long rest of the graph after it) one projection checks it for 4 runs."""
    size = int(np.size(case.base[name]))
    return size <= JACOBIAN_MAX and size * len(case.downstream(name)) <= WHOLE_COST


def _order(graph: Graph, inputs: Mapping[str, Any], nodes: tuple[Node, ...]) -> list[str]:
    """The tensors to difference, most verification per forward first: the inputs (every rule
    on their path), then the named nodes from the output back (the cheapest first)."""
    named = [n.name for n in reversed(nodes) if n.named and n.name != graph.output]
    return [*inputs, *named]


def run_numeric(graph: Graph, inputs: Mapping[str, Array], upstream: Array) -> Result:
    """Every gradient of ``graph``'s inputs and named nodes under ``upstream`` by central
    differences (float64, cast back to each tensor's dtype), or a `Projection` (see `_whole`);
    the output's gradient is ``upstream`` itself. No values of its own (they would be the
    manual forward's). A tensor it declines is in ``skipped``, elements of a whole gradient it
    declines in ``unchecked``, with the reasons; it stops differencing after `BUDGET` seconds
    (the rest is skipped, saying so); it never raises for a case's data."""
    dtype = str(np.asarray(upstream).dtype)
    tol = TOLERANCE.get(dtype, TOLERANCE["float64"])
    deadline = time.monotonic() + BUDGET
    # The case's own dtypes (to cast back to) and the float64 values to difference.
    typed = forward(graph, inputs)
    try:
        base = forward(graph, {k: _as64(v) for k, v in inputs.items()})
    except Exception as exc:
        names = [n for n in typed if graph.requires_grad.get(n)]
        return Result({}, {}, skipped={n: f"the float64 forward raised: {exc}" for n in names})
    case = _Case(graph, base, np.asarray(upstream, dtype=np.float64))
    reach = {graph.output}
    for node in reversed(case.nodes):
        if node.name in reach:
            reach.update(_operands(node, grad_only=True))
    result = Result({}, {})
    if graph.requires_grad.get(graph.output, False):
        # L = <output, v>: the output's own gradient is v, exactly.
        result.grads[graph.output] = np.asarray(upstream).astype(typed[graph.output].dtype)
    for name in _order(graph, inputs, case.nodes):
        if name not in reach or not graph.requires_grad.get(name, False):
            continue
        if time.monotonic() > deadline:
            result.skipped[name] = _budget_note()
            continue
        try:
            if _whole(case, name):
                grad, reasons = _jacobian(case, name, tol, deadline)
                result.grads[name] = grad.astype(typed[name].dtype)
                if reasons:
                    result.unchecked[name] = _unchecked(name, reasons)
            else:
                result.projections[name] = _projection(case, name, tol)
        except NumericRefused as exc:
            result.skipped[name] = str(exc)
    return result


def _unchecked(name: str, reasons: dict[str, Array]) -> Unchecked:
    """The elements of ``name``'s gradient the oracle declined, with each reason and where."""
    mask = np.zeros(next(iter(reasons.values())).shape, bool)
    parts = []
    for reason, where in reasons.items():
        mask |= where
        index = [[int(j) for j in np.unravel_index(i, where.shape)] for i in np.flatnonzero(where)]
        at = ", ".join(f"{i}" for i in index[:4]) + (", ..." if len(index) > 4 else "")
        parts.append(f"at {at}: {reason}" if where.ndim else reason)
    return Unchecked(mask, "the numeric oracle declined " + "; ".join(parts))


def node_vjp(node: Node, args: Mapping[str, Any], grad: Array) -> dict[str, Any]:
    """``node``'s gradients alone, per tensor parameter, by central differences of its forward
    against ``grad`` (float64, cast to each operand's dtype; None for parameters torch does not
    differentiate, lists for list parameters). Raises `NumericRefused` at a kink, where the
    forward is not finite, or for an operand over `NODE_JACOBIAN_MAX` elements."""
    base = {k: _as64(v) for k, v in args.items()}
    v = np.asarray(grad, dtype=np.float64)
    result: dict[str, Any] = {}
    for p in node.op.tensor_params:
        value = args[p.name]
        items = list(value) if isinstance(value, list) else [value]
        grads: list[Any] = []
        for i, item in enumerate(items):
            if not p.grad or not floating_array(item):
                grads.append(None)
                continue
            grads.append(_node_grad(node, base, p.name, i, isinstance(value, list), v))
            grads[-1] = grads[-1].astype(item.dtype)
        result[p.name] = grads if isinstance(value, list) else grads[0]
    return result


def _node_grad(
    node: Node, base: dict[str, Any], pname: str, i: int, listed: bool, v: Array
) -> Array:
    x0 = np.asarray(base[pname][i] if listed else base[pname], dtype=np.float64)
    if x0.size > NODE_JACOBIAN_MAX:
        raise NumericRefused(f"'{pname}' has {x0.size} elements (over {NODE_JACOBIAN_MAX})")
    steps = _steps(x0)
    h = float(np.max(steps)) if steps.size else STEP
    if node.op.kinks is not None:
        reason = node.op.kinks(MARGIN * h, **base)
        if reason:
            raise NumericRefused(reason)

    def loss(x: Array) -> float:
        args = dict(base)
        x = np.asarray(x)
        args[pname] = [x if j == i else a for j, a in enumerate(base[pname])] if listed else x
        try:
            with np.errstate(all="ignore"):
                return float(np.sum(np.asarray(node.op.forward(**args), np.float64) * v))
        except Exception as exc:
            raise NumericRefused(f"the forward raised with '{pname}' moved: {exc}") from exc

    out = np.zeros(x0.shape)
    for k in range(x0.size):
        e = np.zeros(x0.shape)
        e.flat[k] = hk = float(steps.flat[k])
        lp, lm = loss(x0 + e), loss(x0 - e)
        if not (np.isfinite(lp) and np.isfinite(lm)):
            raise NumericRefused(f"the forward is not finite with '{pname}' moved by {hk:.2g}")
        out.flat[k] = (lp - lm) / (2 * hk)
    return out


def numeric_oracle() -> Oracle:
    """The finite-difference oracle (see the module's docstring)."""
    return Oracle("numeric", run_numeric, node_vjp, values=False, tolerance=TOLERANCE)


NUMERIC = numeric_oracle()
