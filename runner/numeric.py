"""The finite-difference oracle, "numeric": gradients from central differences of the catalogue's
numpy forwards (`runner.engine.forward`'s ops), computed in float64 whatever the case's dtype.
An oracle independent of torch and of every VJP rule; it never imports torch.

For each tensor ``x`` a gradient reaches (every input that requires grad and every node up to
the output), with ``v`` the upstream gradient the other sources were given and
``L(x) = <f(x), v>`` (``f``: the graph's output with ``x`` moved and everything else fixed; for a
node, its value is replaced and only the nodes downstream of it run again):

- ``x`` of at most `JACOBIAN_MAX` elements: the whole gradient,
  ``dL/dx_i = (L(x + h e_i) - L(x - h e_i)) / 2h`` (two forwards per element: the full Jacobian
  contracted with ``v``), compared elementwise with the other sources;
- a larger ``x``: one random projection (`Projection`), ``u`` standard normal seeded by the
  tensor's name, ``d = (L(x + h u) - L(x - h u)) / 2h`` (two forwards), compared with ``<u, g>``
  of each other source's gradient ``g``.

Gradients flow only through differentiable parameters: an operand torch does not differentiate
(a class weight, an index) keeps its value when ``x`` moves.

**Step.** ``h_i = STEP * max(1, |x_i|)`` per element (a projection: ``STEP * max(1, max|x|)``)
with ``STEP = 1e-6`` for both dtypes: the differences are taken in float64 either way, so the
step is float64's (truncation error ``h^2 |f'''| / 6``, about 1e-13 relative for moderate
curvature; round-off ``eps |L| / h``, about 2e-10 relative). Where the round-off estimate
``2 eps sum|f v| / h`` of a difference exceeds a quarter of what the tolerance allows there
(``atol * max|gradient| + rtol |gradient|``), the tensor is skipped: the reference would be too
imprecise.

**Tolerance** (`TOLERANCE`, per case dtype, of the gradient under test against this reference):
float64 ``rtol 1e-6, atol 1e-6`` of the largest element, scale-aware as every default tolerance
(`runner.compare`; the reference's own error is far below; looser than torch's 1e-7 because a
float64 rule's rounding adds up over long sums); float32 ``rtol 1e-4, atol 1e-4``
(a float32 gradient against an exact one: float32's eps 1.2e-7 grown by sums and cancellation;
torch's 1.3e-6 is for two float32 computations of one formula). A projection allows what the
elementwise tolerance allows summed: ``(atol * max|g| + floor) * sum|u| + rtol * sum|u * g|``
(``g``: the other side's gradient, whose scale stands for the reference's). A case's own
``tolerance`` replaces these, as for every comparison.

**Skips, said in the report.** The oracle declines a tensor, with the reason, where a forward is
not finite (a domain's edge, a pole, NaN), or where a node the perturbation moves has an operand
within the distance it moved (times `MARGIN`) of a non-differentiable point: ``Op.kinks``
(`runner.ops.kinks`), e.g. ``node 'm' (max): 1 slice(s) with tied max along dims 1``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.compare import Tolerance
from runner.engine import Result, floating_array, forward
from runner.graph import Graph, Node, Ref
from runner.ops.spec import Array
from runner.oracles import Oracle
from schemas.report import Comparison

STEP = 1e-6  # the same for both dtypes: the differences are float64's
TOLERANCE = {"float64": Tolerance(rtol=1e-6, atol=1e-6), "float32": Tolerance(rtol=1e-4, atol=1e-4)}
# Tensors up to this size get their whole gradient (2 forwards per element); larger ones one
# projection (2 forwards). A node judged alone (fault localisation) is differenced up to
# NODE_JACOBIAN_MAX elements per operand.
JACOBIAN_MAX = 64
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
    for node in nodes:
        if node.name != name and any(a in moved for a in _operands(node, grad_only=True)):
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
    """One graph at its float64 values: evaluates ``L`` with one tensor replaced."""

    def __init__(self, graph: Graph, base: dict[str, Any], v: Array) -> None:
        self.graph, self.base, self.v = graph, base, v
        self.nodes = graph.nodes[: graph.index(graph.output) + 1]

    def evaluate(
        self, name: str, x: Array, nodes: list[Node]
    ) -> tuple[float, float, dict[str, Any]]:
        """``L`` and ``sum |f v|`` (for the round-off estimate) with ``name`` set to ``x``, and
        the values of ``nodes`` (downstream of ``name``)."""
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
            terms = np.asarray(env[self.graph.output], dtype=np.float64) * self.v
            return float(np.sum(terms)), float(np.sum(np.abs(terms))), env

    def kink(self, nodes: list[Node], moved: dict[str, float]) -> str | None:
        """The first node (of ``nodes``) with an operand within MARGIN times the distance it
        moved of a non-differentiable point, said as the report says it."""
        for node in nodes:
            if node.op.kinks is None:
                continue
            h = max((moved.get(a, 0.0) for a in _operands(node, grad_only=True)), default=0.0)
            if not h > 0:
                continue
            try:
                with np.errstate(all="ignore"):
                    reason = node.op.kinks(MARGIN * h, **node.bind(self.base))
            except Exception as exc:  # a kink test must not lose the case
                reason = f"its kink test raised {type(exc).__name__}: {exc}"
            if reason:
                label = f"'{node.name}'" if node.named else f"`{node.text}`"
                return (
                    f"node {label} ({node.op.name}): {reason} (not differentiable there, or "
                    "torch's gradient is a convention)"
                )
        return None


def _moved(
    env: Mapping[str, Any], base: Mapping[str, Any], names: list[str], into: dict[str, float]
) -> None:
    with np.errstate(all="ignore"):
        for n in names:
            d = np.abs(np.asarray(env[n], np.float64) - np.asarray(base[n], np.float64))
            top = float(np.nanmax(d)) if d.size and not np.all(np.isnan(d)) else 0.0
            into[n] = max(into.get(n, 0.0), top)


def _steps(x: Array) -> Array:
    """Per element ``STEP * max(1, |x_i|)`` (1 where x_i is not finite)."""
    a = np.abs(x)
    return STEP * np.where(np.isfinite(a) & (a > 1), a, 1.0)


def _gradient(case: _Case, name: str, tol: Tolerance) -> Array | Projection:
    """The numeric gradient of ``L`` for ``name`` (see the module's docstring); raises
    `NumericRefused` with the reason."""
    nodes = _downstream(case.nodes, name)
    x0 = np.asarray(case.base[name], dtype=np.float64)
    moved: dict[str, float] = {}
    downstream = [n.name for n in nodes]
    # Per difference taken: the round-off estimate 2 eps max(sum|f v|) / h.
    roundoff: list[float] = []

    def difference(direction: Array, where: str, h: float) -> float:
        lp, sp, envp = case.evaluate(name, x0 + h * direction, nodes)
        lm, sm, envm = case.evaluate(name, x0 - h * direction, nodes)
        if not (np.isfinite(lp) and np.isfinite(lm)):
            raise NumericRefused(f"the forward is not finite with '{name}'{where} moved by {h:.2g}")
        _moved(envp, case.base, downstream, moved)
        _moved(envm, case.base, downstream, moved)
        roundoff.append(2 * EPS * max(sp, sm) / h)
        return (lp - lm) / (2 * h)

    if x0.size <= JACOBIAN_MAX:
        grad = np.zeros(x0.shape)
        steps = _steps(x0)
        for i in range(x0.size):
            e = np.zeros(x0.shape)
            e.flat[i] = 1.0
            index = [int(j) for j in np.unravel_index(i, x0.shape)] if x0.ndim else []
            grad.flat[i] = difference(e, f"{index}" if index else "", float(steps.flat[i]))
        moved[name] = float(np.max(steps)) if steps.size else 0.0
        result: Array | Projection = grad
        flat = np.abs(grad.reshape(-1))
        allowed = tol.atol * (float(flat.max()) if flat.size else 0.0) + tol.rtol * flat
    else:
        h = float(np.max(_steps(x0)))
        seed = (PROJECTION_SEED, zlib.crc32(name.encode()))
        u = np.random.default_rng(list(seed)).standard_normal(x0.shape)
        result = Projection(u, difference(u, "", h), seed, h)
        moved[name] = h * float(np.max(np.abs(u)))
        # <u, g> is about |g|_2 and |u|_2 about sqrt(n): their ratio stands for g's scale.
        scale = abs(result.derivative) / max(float(np.linalg.norm(u)), 1e-300)
        allowed = np.asarray(
            [tol.atol * scale * np.sum(np.abs(u)) + tol.rtol * abs(result.derivative)]
        )
    reason = case.kink(nodes, moved)
    if reason:
        raise NumericRefused(reason)
    excess = np.asarray(roundoff) / np.maximum(allowed, 1e-300)
    if excess.size and excess.max() > 0.25:
        worst = int(np.argmax(excess))
        raise NumericRefused(
            f"the round-off of the difference for '{name}' (about {roundoff[worst]:.2g}) is over "
            f"a quarter of the tolerance there ({allowed[worst]:.2g}): the reference would be "
            "too imprecise"
        )
    return result


def run_numeric(graph: Graph, inputs: Mapping[str, Array], upstream: Array) -> Result:
    """Every gradient of ``graph`` under ``upstream`` by central differences (float64, cast back
    to each tensor's dtype), or a `Projection` for tensors over `JACOBIAN_MAX` elements. No
    values of its own (they would be the manual forward's). A tensor it declines is in
    ``skipped`` with the reason; it never raises for a case's data."""
    dtype = str(np.asarray(upstream).dtype)
    tol = TOLERANCE.get(dtype, TOLERANCE["float64"])
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
    grads: dict[str, Array] = {}
    projections: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in [*inputs, *(n.name for n in case.nodes)]:
        if name not in reach or not graph.requires_grad.get(name, False):
            continue
        try:
            found = _gradient(case, name, tol)
        except NumericRefused as exc:
            skipped[name] = str(exc)
            continue
        if isinstance(found, Projection):
            projections[name] = found
        else:
            grads[name] = found.astype(typed[name].dtype)
    return Result({}, grads, projections, skipped)


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
