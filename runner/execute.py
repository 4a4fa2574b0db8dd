"""Running one compiled case: a pure function from the case to its `CaseResult`.

Three sources meet here: the manual rules, torch autograd, and the case's expected (golden)
values. Every checked tensor is compared pairwise; a case passes when every pair agrees.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from runner.compare import DEFAULT_TOLERANCE, EXPECTED_TOLERANCE, compare
from runner.compile import CompiledCase
from runner.engine import RuleError, backward, forward
from runner.inputs import make_input, make_upstream
from runner.report import failure_messages
from runner.torch_side import TorchError, run_torch
from schemas.report import CaseResult, Comparison, Source, TensorCheck


def execute(case: CompiledCase, device: str = "cpu") -> CaseResult:
    start = time.perf_counter()
    try:
        tensors = _checks(case, device)
    except Exception as exc:  # rules and torch may raise anything; one case must not stop a run
        located = isinstance(exc, RuleError | TorchError)
        text = str(exc) if located else f"{type(exc).__name__}: {exc}"
        node = getattr(exc, "node", None)
        if node in case.locations:
            text = f"{case.locations[node]}: {text}"
        return CaseResult(
            name=case.name,
            file=case.file,
            line=case.line,
            status="error",
            duration=time.perf_counter() - start,
            messages=[text],
        )
    result = CaseResult(
        name=case.name,
        file=case.file,
        line=case.line,
        status="passed" if all(t.ok for t in tensors) else "failed",
        duration=time.perf_counter() - start,
        tensors=tensors,
    )
    result.messages = failure_messages(result)
    return result


def _checks(case: CompiledCase, device: str) -> list[TensorCheck]:
    graph = case.graph
    inputs = {name: make_input(plan) for name, plan in case.inputs.items()}
    values = forward(graph, inputs)
    out = values[graph.output]
    upstream = make_upstream(case.model.upstream, graph.shapes[graph.output], out.dtype)
    grads = backward(graph, values, upstream)
    ref = run_torch(graph, inputs, upstream, device)

    tol = case.model.tolerance
    dtype = case.model.dtype
    rtol = tol.rtol if tol.rtol is not None else DEFAULT_TOLERANCE[dtype][0]
    atol = tol.atol if tol.atol is not None else DEFAULT_TOLERANCE[dtype][1]
    exp_rtol = tol.rtol if tol.rtol is not None else EXPECTED_TOLERANCE[0]
    exp_atol = tol.atol if tol.atol is not None else EXPECTED_TOLERANCE[1]

    def check(tensor: str, kind: str, manual: Any, torch: Any, expected: Any) -> TensorCheck:
        pairs: list[Comparison] = [_compare(manual, torch, ("manual", "torch"), rtol, atol)]
        if expected is not None:
            pairs.append(_compare(manual, expected, ("manual", "expected"), exp_rtol, exp_atol))
            pairs.append(_compare(torch, expected, ("torch", "expected"), exp_rtol, exp_atol))
        return TensorCheck(
            tensor=tensor,
            kind=kind,  # type: ignore[arg-type]
            ok=all(p.ok for p in pairs),
            comparisons=pairs,
        )

    expect = case.model.expect
    tensors = [
        check(name, "value", values[name], ref.values[name], expect.value.get(name))
        for name in case.values
    ]
    tensors += [
        check(name, "value", values[name], ref.values[name], literal)
        for name, literal in expect.value.items()
        if name not in case.values
    ]
    tensors += [
        check(name, "grad", grads.get(name), ref.grads.get(name), expect.grad.get(name))
        for name in case.checks
    ]
    tensors += [
        check(name, "grad", grads.get(name), ref.grads.get(name), literal)
        for name, literal in expect.grad.items()
        if name not in case.checks
    ]
    return tensors


def _compare(
    left: Any, right: Any, sources: tuple[Source, Source], rtol: float, atol: float
) -> Comparison:
    result = compare(left, right, sources=sources, rtol=rtol, atol=atol)
    # A rule that computes in the wrong precision is a bug even when the numbers agree.
    if (
        result.ok
        and isinstance(left, np.ndarray)
        and isinstance(right, np.ndarray)
        and left.dtype != right.dtype
    ):
        result.ok = False
        result.problem = f"dtype {left.dtype} vs {right.dtype}"
    return result
