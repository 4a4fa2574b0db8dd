"""Every registered op, on the samples its registry entry generates, in float32 and float64, with
a random upstream: manual values and gradients against torch autograd. A new op is swept here
without writing a test; an op without samples fails."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from runner.compare import DEFAULT_TOLERANCE, compare
from runner.engine import run_manual
from runner.graph import Graph, Node, Ref
from runner.ops import REGISTRY
from runner.ops.spec import Op, Sample
from runner.roundoff import as_dtype, tensor_floors
from runner.torch_side import run_torch

DTYPES = ("float64", "float32")


def single_op_graph(op: Op, sample: Sample, dtype: str) -> tuple[Graph, dict[str, np.ndarray]]:
    """One node ``out`` applying ``op``; every array argument becomes an input named after its
    parameter (``tensors[0]``... for lists). Floating arrays are cast to ``dtype``."""
    inputs: dict[str, np.ndarray] = {}
    requires: dict[str, bool] = {}
    grad_params = {p.name for p in op.tensor_params if p.grad}

    def leaf(name: str, value: Any, param: str) -> Any:
        if not isinstance(value, np.ndarray):
            return value
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(dtype)
        inputs[name] = value
        requires[name] = param in grad_params and np.issubdtype(value.dtype, np.floating)
        return Ref(name)

    args: dict[str, Any] = {}
    for p in op.params:
        if p.name not in sample.args:
            args[p.name] = p.default
            continue
        value = sample.args[p.name]
        if p.is_tensor and isinstance(value, list):
            args[p.name] = [leaf(f"{p.name}{i}", v, p.name) for i, v in enumerate(value)]
        elif p.is_tensor:
            args[p.name] = leaf(p.name, value, p.name)
        else:
            args[p.name] = value
    shapes = {k: tuple(v.shape) for k, v in inputs.items()}

    def shape_of(a: Any) -> Any:
        if isinstance(a, Ref):
            return shapes[a.name]
        if isinstance(a, list):
            return [shape_of(x) for x in a]
        return () if isinstance(a, (int, float)) and not isinstance(a, bool) else a

    shape_args = {
        p.name: shape_of(args[p.name]) if p.is_tensor else args[p.name] for p in op.params
    }
    out_shape = op.shape(**shape_args)
    shapes["out"] = out_shape
    requires["out"] = any(
        requires.get(r.name, False)
        for p in op.tensor_params
        if p.grad
        for r in (args[p.name] if isinstance(args[p.name], list) else [args[p.name]])
        if isinstance(r, Ref)
    )
    graph = Graph(
        nodes=(Node("out", op, args, out_shape),),
        output="out",
        shapes=shapes,
        requires_grad=requires,
    )
    return graph, inputs


def outputs_of(op: Op, sample: Sample) -> list[Op]:
    """The ops a sample is swept as: ``op`` itself, or for a call with several outputs each
    output's (`Op.output`), so values and indices are both compared with torch's."""
    if op.several(sample.args):
        return [op.output(i) for i in range(len(op.outputs))]
    return [op]


def _cases() -> list[Any]:
    params = []
    for op in REGISTRY.values():
        samples = op.samples(np.random.default_rng(0))
        assert samples, f"op {op.name} has no samples"
        for i, sample in enumerate(samples):
            for one in outputs_of(op, sample):
                for dtype in DTYPES:
                    name = f"{op.name}{one.output_name}"
                    params.append(pytest.param(one, i, dtype, id=f"{name}-{i}-{dtype}"))
    return params


@pytest.mark.parametrize(("op", "index", "dtype"), _cases())
def test_op_matches_torch(op: Op, index: int, dtype: str) -> None:
    sample = op.samples(np.random.default_rng(0))[index]
    graph, inputs = single_op_graph(op, sample, dtype)
    rng = np.random.default_rng(index + 1)
    torch_result = run_torch(graph, inputs, None)  # forward only, for the output dtype
    out_dtype = torch_result.values["out"].dtype
    upstream = rng.normal(size=graph.shapes["out"]).astype(out_dtype)
    manual = run_manual(graph, inputs, upstream)
    ref = run_torch(graph, inputs, upstream) if graph.requires_grad["out"] else torch_result
    tol = DEFAULT_TOLERANCE[dtype]
    references = {"value": ref.values, "grad": ref.grads}
    high = None
    if dtype != "float64":  # the reference's own round-off, as gradcase run measures it
        wide = {k: as_dtype(v, "float64") for k, v in inputs.items()}
        ran = run_torch(graph, wide, upstream.astype(np.float64))
        high = {"value": ran.values, "grad": ran.grads}
    floor = tensor_floors(dtype, graph, inputs, upstream, references, high)
    where = f"{op.name} sample {index} ({sample.note}) {dtype}"
    value = manual.values["out"]
    assert value.shape == graph.shapes["out"], (
        f"{where}: static shape {graph.shapes['out']} vs forward {value.shape}"
    )
    assert value.dtype == ref.values["out"].dtype, (
        f"{where}: dtype {value.dtype} vs torch {ref.values['out'].dtype}"
    )
    checks = [("value", "out", value, ref.values["out"])]
    checks += [
        ("grad", n, manual.grads.get(n), ref.grads.get(n)) for n in inputs if graph.requires_grad[n]
    ]
    for kind, name, left, right in checks:
        label = f"{kind} {name}"
        at = tol.with_floor(floor.get((kind, name), 0.0))
        c = compare(left, right, sources=("manual", "torch"), tol=at)
        assert c.ok, f"{where}: {label}: {c.model_dump(exclude_none=True)}"


# Where an infinite upstream meets a zero inside a formula, the result depends on the order of
# the formula's operations (inf * 0 before or after a sum); these ops compute torch's gradient by
# another, equally exact, order for finite upstreams, so only the infinite case differs.
INF_ORDER = {
    "einsum": "a dim summed in one operand only: torch sums the upstream first (-inf), we multiply",
    "layer_norm": "torch's fused kernel gives NaN where the composed formula gives -inf",
    "qr": "torch's triangular solve meets inf in another order: -inf where numpy's solve gives NaN",
    "cosine_similarity": "at a zero vector torch's norm backward turns inf * 0 into NaN, where "
    "the masked formula gives inf",
}


@pytest.mark.parametrize(
    "op", [op for op in REGISTRY.values() if op.name not in INF_ORDER], ids=lambda op: op.name
)
def test_an_infinite_upstream_gives_torchs_gradient(op: Op) -> None:
    """Ops whose torch backward selects (relu, clamp, hardtanh, trace) or is zeros_like(grad)
    (sign, floor, ceil, round, trunc) give 0 where the gradient is not selected, not inf * 0."""
    for index, sample in enumerate(op.samples(np.random.default_rng(0))):
        for one in outputs_of(op, sample):
            _infinite_upstream(one, index, sample)


def _infinite_upstream(op: Op, index: int, sample: Sample) -> None:
    if True:
        graph, inputs = single_op_graph(op, sample, "float64")
        if not graph.requires_grad["out"]:
            return
        out_dtype = run_torch(graph, inputs, None).values["out"].dtype
        upstream = np.random.default_rng(index).normal(size=graph.shapes["out"]).astype(out_dtype)
        flat = upstream.reshape(-1)
        if flat.size == 0:
            return
        flat[0], flat[-1] = np.inf, -np.inf if flat.size > 1 else np.inf
        manual = run_manual(graph, inputs, upstream)
        ref = run_torch(graph, inputs, upstream)
        for name in inputs:
            if graph.requires_grad[name]:
                c = compare(
                    manual.grads.get(name),
                    ref.grads.get(name),
                    sources=("manual", "torch"),
                    tol=DEFAULT_TOLERANCE["float64"],
                )
                assert c.ok, f"{op.name} sample {index} ({sample.note}) {name}: {c}"
