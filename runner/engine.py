"""The manual side: numpy forward values and VJP rules, run in reverse over the graph.

The rule for each node's arguments comes from the first `RuleSet` that answers (the case's rules,
then the user's RULES modules) or else from the catalogue. Catalogue rules may return the gradient
at the broadcast shape: broadcasting is undone here, once (`sum_to`), as torch's engine does after
every formula. A user's rule is held to what it claims to compute: the gradient at the operand's
exact shape and dtype, so a rule that forgets to undo broadcasting, or computes in another
precision, fails its case instead of being silently repaired.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from runner.dtypes import BFLOAT16, is_half, opmath
from runner.graph import Graph, Node, Ref
from runner.ops.spec import Array, Op, Param, Shape
from runner.ops.spec import sum_to as reduce_to
from runner.rules import CATALOGUE, RuleSet
from runner.rules.budget import CaseTimeout, OverBudget, time_limit

VJP = Callable[..., Sequence[Any]]


class RuleError(Exception):
    """A rule failed at ``node``: it raised, or returned something that is not the gradient of
    its operand (wrong shape, dtype, count, or not an array).

    ``user`` is True when the rule is the user's (a case rule or a RULES module): the rule under
    test is wrong, so its case fails; a catalogue rule or forward failing is an error of the run.
    ``where`` is the location of the user's rule, ``argument`` the parameter concerned.
    """

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        user: bool = False,
        where: str = "",
        argument: str | None = None,
        source: str = "",
        text: str = "",
    ) -> None:
        super().__init__(message)
        self.node = node
        self.source = source
        self.text = text  # the user's rule: its expression, or its function's name
        self.user = user
        self.where = where
        self.argument = argument


def sum_to(grad: Array, shape: Shape, *, what: str) -> Array:
    """`spec.sum_to`, with a failure blamed on the rule that returned ``grad``."""
    try:
        return reduce_to(grad, shape)
    except ValueError:
        raise RuleError(
            f"{what}: the rule returned a gradient of shape {np.shape(grad)}, which does not "
            f"reduce to the operand's shape {tuple(shape)}"
        ) from None


def _operands(arg: Any) -> list[Any]:
    return list(arg) if isinstance(arg, list) else [arg]


def floating_array(value: Any) -> bool:
    """A floating-point array: the operands that get a gradient."""
    # dtype.kind "f" is np.issubdtype(dtype, np.floating), at a twentieth of its cost;
    # ml_dtypes' bfloat16 is kind "V".
    return isinstance(value, np.ndarray) and (value.dtype.kind == "f" or value.dtype == BFLOAT16)


def half_dtype(args: Mapping[str, Any], op: Op) -> np.dtype[Any] | None:
    """The half-precision dtype (float16 or bfloat16) a node's floating result has when its
    floating tensor operands promote to one (torch's promotion: half with half; with float32 or
    the other half type it is float32), else None. Such a node is computed in float32 from its
    operands' stored values and its results are rounded to this dtype, as torch's CPU kernels
    do (their ``opmath_type``)."""
    found: np.dtype[Any] | None = None
    for p in op.tensor_params:
        for v in _operands(args[p.name]):
            if floating_array(v):
                if found is not None and v.dtype != found:
                    return None
                found = v.dtype
    return found if found is not None and is_half(found) else None


def _rounded(value: Any, dtype: np.dtype[Any] | None) -> Any:
    """A floating result stored in the half dtype ``dtype`` (None: as it is)."""
    return value.astype(dtype) if dtype is not None and floating_array(value) else value


def apply_vjp(
    op: Op, vjp: VJP, g: Array, out: Array, args: Mapping[str, Any], *, where: str
) -> dict[str, Any]:
    """Run one catalogue rule and return, per tensor parameter, its gradient summed to the
    operand's shape and cast to its dtype (a list for list parameters, None where none)."""
    try:
        raw = tuple(vjp(g, out, **args))
    except Exception as exc:  # one case must not stop a run
        # The catalogue's rules raise ValueError where torch's backward refuses too (qr with
        # mode='complete' and more rows than columns): a gradient not defined, not a bug.
        refuses = isinstance(exc, ValueError) and not op.source
        who = "the catalogue's rule" if not op.source else f"the rule of {op.source}"
        said = "refuses:" if refuses else f"raised {type(exc).__name__}:"
        raise RuleError(f"{where}: {who} for {op.name} {said} {exc}") from exc
    params = op.tensor_params
    if len(raw) != len(params):
        raise RuleError(
            f"{where}: the rule for {op.name} returned {len(raw)} gradients, expected "
            f"{len(params)} (one per operand: {', '.join(p.name for p in params)})"
        )
    result: dict[str, Any] = {}
    for p, grad in zip(params, raw, strict=True):
        value = args[p.name]
        if isinstance(value, list):
            grads = list(grad) if grad is not None else [None] * len(value)
            result[p.name] = [
                _fit(gi, vi, what=f"{where}: gradient of {op.name} for {p.name}[{i}]")
                if p.grad
                else None
                for i, (gi, vi) in enumerate(zip(grads, value, strict=True))
            ]
        else:
            what = f"{where}: gradient of {op.name} for {p.name}"
            result[p.name] = _fit(grad, value, what=what) if p.grad else None
    return result


def _fit(grad: Any, operand: Any, *, what: str) -> Array | None:
    if grad is None or not floating_array(operand):
        return None
    return sum_to(np.asarray(grad), operand.shape, what=what).astype(operand.dtype, copy=False)


def check_user_grad(
    grad: Any, operand: Array, *, what: str, out_shape: Shape = (), stored: Any = None
) -> Array:
    """A user's gradient for ``operand``, as an array of exactly its shape and dtype.

    Raises `RuleError` (``user=True``) naming both shapes or dtypes, and the likely mistake: a
    gradient at the broadcast shape that was not summed back, one that was not broadcast back
    (a reduction's), or the transpose. Source: torch's engine requires the same of a custom
    ``autograd.Function`` (``validate_outputs``), except that it sums a broadcast shape itself.
    ``stored``: the operand as the case stores it, when the rule saw it in float32 (half
    precision): the message names both dtypes.
    """
    try:
        arr = np.asarray(grad)
    except (KeyboardInterrupt, CaseTimeout):
        raise
    except BaseException as exc:  # a user's object may raise anything, SystemExit included
        raise RuleError(
            f"{what} returned no array ({type(exc).__name__}: {exc})", user=True
        ) from exc
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        got = f"an array of dtype {arr.dtype}" if isinstance(grad, np.ndarray) else None
        raise RuleError(f"{what} returned {got or type(grad).__name__}, not numbers", user=True)
    if arr.shape != operand.shape:
        problem = _shape_problem(arr.shape, operand.shape, tuple(out_shape))
        raise RuleError(f"{what} {problem}", user=True)
    if arr.dtype != operand.dtype:
        kept = getattr(stored, "dtype", operand.dtype)
        dtype = f"{kept} (the rule sees it as {operand.dtype}: return either)"
        raise RuleError(
            f"{what} returned dtype {arr.dtype}, the operand's is "
            f"{dtype if kept != operand.dtype else operand.dtype} (compute in the operand's "
            "dtype: np.*_like, .astype(input.dtype))",
            user=True,
        )
    return arr


def _shape_problem(got: Shape, want: Shape, out: Shape) -> str:
    """The shape mismatch, and the usual mistake it looks like; ``out`` is the node's output
    (and upstream gradient) shape."""
    text = f"returned shape {got}, the operand's is {want}"
    try:
        reduce_to(np.empty(got), want)
    except ValueError:
        pass
    else:
        if math.prod(got) == math.prod(want):
            return text + "; looks like: extra dimensions of size 1"
        return text + "; looks like: not summed over the broadcast dimensions"
    if len(got) >= 2 and got[:-2] + (got[-1], got[-2]) == want:
        return text + "; looks like: the transpose of the gradient"
    if got == out and _reduced_from(got, want):
        return text + (
            "; looks like: the upstream gradient of a reduction, not broadcast back to its input"
        )
    return text


def _reduced_from(got: Shape, want: Shape) -> bool:
    """``got`` is ``want`` with some dims removed or set to 1, as a reduction's output is."""
    i = 0
    for n in want:
        if i < len(got) and got[i] in (n, 1):
            i += 1
    return i == len(got) and got != want


@dataclass(frozen=True)
class Backward:
    """The result of the backward walk.

    ``grads``: the accumulated gradient of every input and node a gradient reached.
    ``given``: per node, per tensor parameter, what that node's rule gave its operand (a list for
    list parameters; None where no gradient) at the operand's shape and dtype.
    ``sources``: per node, per parameter that got a gradient, the rule's source name.
    ``notes``: user rules that were asked and gave nothing, so a later source's rule was used.
    """

    grads: dict[str, Array]
    given: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Result:
    """Values of every node and input, and gradients of those that got one. An oracle that
    cannot give a whole gradient gives instead a ``projections`` entry (an object with
    ``compare``, see `runner.numeric.Projection`) or, where it declines, a ``skipped`` reason.
    ``unchecked``: per tensor, the elements of a whole gradient it could not compute (a
    `runner.unchecked.Unchecked`: a bool mask and the reason); they neither pass nor fail."""

    values: dict[str, Array]
    grads: dict[str, Array]
    projections: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    unchecked: dict[str, Any] = field(default_factory=dict)


def forward(graph: Graph, inputs: Mapping[str, Array]) -> dict[str, Array]:
    """Every node's value, in graph order, computed with the ops' numpy forwards."""
    env: dict[str, Array] = dict(inputs)
    for node in graph.nodes:
        args = node.bind(env)
        half = half_dtype(args, node.op)
        if half is not None:
            args = {k: opmath(v) for k, v in args.items()}
        try:
            # inf and NaN are legitimate values here (torch computes them too); the comparison
            # judges them, numpy's warnings would only be noise.
            with np.errstate(all="ignore"):
                value = _rounded(np.asarray(node.op.forward(**args)), half)
                env[node.name] = value
            if value.shape != node.shape:
                raise ValueError(
                    f"it returned shape {value.shape}, the op's shape rule says {node.shape}"
                )
        except Exception as exc:
            raise RuleError(
                f"node '{node.name}': forward of {node.op.name} raised {type(exc).__name__}: {exc}",
                node=node.name,
            ) from exc
    return env


def node_vjp(
    node: Node,
    g: Array,
    out: Array,
    args: Mapping[str, Any],
    rules: Sequence[RuleSet],
    silent: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """One node's gradients per tensor parameter, and the source of each: the first rule set
    that answers an argument gives it, the catalogue the rest. The sources of rule sets that were
    asked but gave no gradient at all (``{}``, or None for every argument) go on ``silent``."""
    op = node.op
    wanted = {p.name: p for p in op.tensor_params if p.grad and _any_wanted(args[p.name])}
    given: dict[str, Any] = {}
    sources: dict[str, str] = {}
    # Half precision: every rule gets the stored values in float32 (torch's opmath type, what
    # its kernels compute in) and each gradient it gives is rounded to its operand's dtype, as
    # torch stores it; a user's rule may return float32 or the operand's own dtype.
    half = half_dtype(args, op)
    wide = {k: opmath(v) for k, v in args.items()} if half is not None else args
    for rule_set in rules:
        fn = rule_set.rules.get(op.name)
        if fn is None or len(given) == len(wanted):
            continue
        if half is None:
            answer = _call_user(rule_set, fn, node, g, out, args)
        else:
            answer = _call_user(rule_set, fn, node, opmath(g), opmath(out), wide)
        if silent is not None and all(answer.get(k) is None for k in wanted):
            silent.append(rule_set.source)
        for key, value in answer.items():
            if key in given or key not in wanted or value is None:
                continue
            if half is not None:
                value = opmath(list(value) if isinstance(value, tuple) else value)
            grads = _user_grads(rule_set, node, wanted[key], value, wide[key], args[key])
            given[key] = _round_like(grads, args[key])
            sources[key] = rule_set.source
    if len(given) < len(wanted):
        recompute = half is not None and op.recomputes_out
        out_wide = _forward_wide(op, wide, opmath(out)) if recompute else opmath(out)
        catalogue = apply_vjp(op, op.vjp, opmath(g), out_wide, wide, where=f"node '{node.name}'")
        for key in wanted:
            if key not in given:
                given[key] = _round_like(catalogue[key], args[key])
                sources[key] = CATALOGUE
    for p in op.tensor_params:
        given.setdefault(p.name, None)
    return given, sources


def _forward_wide(op: Op, wide: Mapping[str, Any], out: Array) -> Array:
    """The node's forward value in float32 from its float32 operands, for its catalogue rule:
    a rule that recomputes part of the forward and compares it with ``out`` (the ties of a
    p=inf norm of a difference: ``|x - y| == out``) needs both in one precision. ``out`` (the
    stored value, in float32) where the forward fails or gives another shape."""
    try:
        with np.errstate(all="ignore"):
            value = np.asarray(op.forward(**wide))
    except Exception:
        return out
    return value if value.shape == out.shape and value.dtype == out.dtype else out


def _round_like(grad: Any, operand: Any) -> Any:
    """``grad`` (an array, a list for a list parameter, or None) in ``operand``'s dtype."""
    if isinstance(grad, list):
        return [_round_like(gi, vi) for gi, vi in zip(grad, operand, strict=True)]
    if grad is None or not floating_array(operand) or grad.dtype == operand.dtype:
        return grad
    return grad.astype(operand.dtype)


def _any_wanted(arg: Any) -> bool:
    return any(floating_array(v) for v in _operands(arg))


class ProcessExitRefused(Exception):
    """A user's rule called ``os._exit`` or ``os.abort``, which would end the run without a
    report (exit status 0 for ``os._exit(0)``: a run that looks green)."""


@contextmanager
def _no_process_exit() -> Iterator[None]:
    """``os._exit`` and ``os.abort`` raise `ProcessExitRefused` while a user's rule runs (a
    rule that imported them by name before is not covered; ``-j`` isolates any crash)."""
    saved = os._exit, os.abort

    def refuse_exit(status: int) -> NoReturn:
        raise ProcessExitRefused(f"the rule called os._exit({status}), which would end the run")

    def refuse_abort() -> NoReturn:
        raise ProcessExitRefused("the rule called os.abort(), which would end the run")

    os._exit, os.abort = refuse_exit, refuse_abort
    try:
        yield
    finally:
        os._exit, os.abort = saved


def _call_user(
    rule_set: RuleSet, fn: Any, node: Node, g: Array, out: Array, args: Mapping[str, Any]
) -> Mapping[str, Any]:
    op = node.op.name

    def copy(v: Any) -> Any:  # the rule must not be able to change the run's arrays
        if isinstance(v, np.ndarray):
            return v.copy()
        return [copy(x) for x in v] if isinstance(v, list) else v

    def fail(message: str, exc: RuleError | None = None) -> RuleError:
        return _user_error(rule_set, node, None, message, exc)

    try:
        # inf and NaN are the comparison's to judge; a rule that loops is the case's failure.
        with np.errstate(all="ignore"), time_limit(), _no_process_exit():
            extra = node.op.gradients_per_output(g.copy(), out.copy(), args)
            answer = fn(g.copy(), out.copy(), {k: copy(v) for k, v in args.items()} | extra)
    except RuleError as exc:  # a case rule's own, already precise
        raise fail(str(exc), exc) from None
    except (KeyboardInterrupt, CaseTimeout):  # the person running gradcase, not the rule
        raise
    except OverBudget as exc:
        raise fail(f"was stopped: {exc}") from None
    except BaseException as exc:  # SystemExit from a rule must not end the run
        shapes = describe_shapes({"grad": g, "out": out, **args})
        from runner.rules.modules import user_line

        raised = user_line(exc)
        # Said already when it is the line the rule is defined on (a lambda).
        at = f" at {raised}" if raised and raised != rule_set.where.get(op) else ""
        raise fail(f"raised {type(exc).__name__}{at}: {exc} ({shapes})") from exc
    if answer is None:
        raise fail(
            "returned None (a missing return?); a rule returns a dict of argument name -> "
            "gradient, and an op left out of RULES keeps the catalogue's rule"
        )
    if not isinstance(answer, Mapping):
        raise fail(
            f"returned {type(answer).__name__}; a rule returns a dict of argument name -> gradient"
        )
    names = [p.name for p in node.op.params]
    unknown = [k for k in answer if k not in names]
    if unknown:
        raise fail(
            f"returned a gradient for {unknown[0]!r}, which {op} does not have (its "
            f"arguments: {', '.join(names)})"
        )
    return answer


def _user_error(
    rule_set: RuleSet, node: Node, argument: str | None, message: str, exc: RuleError | None
) -> RuleError:
    """One shape for every failure of a user's rule: ``node 'c' (matmul): the case rule for
    'input' (`grad @ other`) <message>``, located at the rule."""
    op = node.op.name
    argument = argument or (exc.argument if exc else None)
    text = rule_set.text(op, argument)
    rule = f"the {rule_set.source} rule" + (f" for '{argument}'" if argument else "")
    rule += f" (`{text}`)" if text else ""
    located = exc.where if exc is not None and exc.where else rule_set.locate(op, argument)
    return RuleError(
        f"node '{node.name}' ({op}): {rule} {message}",
        node=node.name,
        user=True,
        where=located,
        argument=argument,
        source=rule_set.source,
        text=text,
    )


def _user_grads(
    rule_set: RuleSet, node: Node, p: Param, value: Any, operand: Any, stored: Any = None
) -> Any:
    try:
        if isinstance(operand, list):
            if not isinstance(value, list | tuple) or len(value) != len(operand):
                count = f" of {len(value)}" if isinstance(value, list | tuple) else ""
                raise RuleError(
                    f"must return a list of {len(operand)} gradients (one per tensor), got "
                    f"{type(value).__name__}{count}"
                )
            return [
                check_user_grad(v, o, what=f"[{i}]", out_shape=node.shape, stored=st)
                if floating_array(o)
                else None
                for i, (v, o, st) in enumerate(
                    zip(value, operand, stored or [None] * len(operand), strict=True)
                )
            ]
        return check_user_grad(value, operand, what="", out_shape=node.shape, stored=stored)
    except RuleError as exc:
        raise _user_error(rule_set, node, p.name, str(exc).lstrip(), None) from None


def describe_shapes(values: Mapping[str, Any]) -> str:
    """``shapes: grad (2, 4), input (2, 3), tensors [(2,), (3,)]`` for the arrays among
    ``values`` (in their order), for the message of a rule that failed."""
    parts = []
    for k, v in values.items():
        if isinstance(v, np.ndarray):
            parts.append(f"{k} {v.shape}")
        elif isinstance(v, list) and v and all(isinstance(x, np.ndarray) for x in v):
            parts.append(f"{k} [{', '.join(str(x.shape) for x in v)}]")
    return "shapes: " + ", ".join(parts)


def backward(
    graph: Graph,
    values: Mapping[str, Array],
    upstream: Array,
    rules: Sequence[RuleSet] = (),
) -> Backward:
    """Gradients from ``graph.output`` back to every node and input that requires grad.

    ``rules``: the user's rule sets, asked in order before the catalogue (see `node_vjp`).
    Raises `RuleError` at the node whose rule failed.
    """
    grads: dict[str, Array] = {graph.output: np.asarray(upstream)}
    given: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    # As in forward: inf and NaN are legitimate (torch makes them too), numpy's warnings noise.
    with np.errstate(all="ignore"):
        for node in reversed(graph.nodes[: graph.index(graph.output) + 1]):
            g = grads.get(node.name)
            if g is None or not graph.requires_grad[node.name]:
                continue
            silent: list[str] = []
            try:
                per_param, sources[node.name] = node_vjp(
                    node, g, values[node.name], node.bind(values), rules, silent
                )
            except RuleError as error:
                error.node = node.name
                raise
            notes += [
                f"the {source} rule for {node.op.name} gave no gradient at node '{node.name}' "
                "(it returned {} or None for every argument), so the catalogue's rule (or a later "
                "source's) was used"
                for source in silent
            ]
            given[node.name] = per_param
            for pname, grad in per_param.items():
                arg = node.args[pname]
                if grad is None:
                    continue
                for ref, gi in zip(_operands(arg), _operands(grad), strict=True):
                    if isinstance(ref, Ref) and gi is not None and graph.requires_grad[ref.name]:
                        prev = grads.get(ref.name)
                        grads[ref.name] = gi if prev is None else prev + gi
    return Backward(grads=grads, given=given, sources=sources, notes=notes)


def run_manual(
    graph: Graph,
    inputs: Mapping[str, Array],
    upstream: Array,
    rules: Sequence[RuleSet] = (),
) -> Result:
    values = forward(graph, inputs)
    return Result(values=values, grads=backward(graph, values, upstream, rules).grads)
