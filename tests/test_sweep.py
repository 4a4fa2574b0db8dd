"""Every registered op, on the samples its registry entry generates, in float32 and float64, with
a random upstream: manual values and gradients against torch autograd. A new op is swept here
without writing a test; an op without samples fails."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from runner.compare import DEFAULT_TOLERANCE, compare
from runner.dtypes import is_floating
from runner.engine import run_manual
from runner.graph import Graph, Node, Ref
from runner.ops import REGISTRY
from runner.ops.spec import Op, Sample
from runner.roundoff import as_dtype, tensor_floors
from runner.torch_side import TorchError, run_torch

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
        requires[name] = param in grad_params and is_floating(value.dtype)
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
    **dict.fromkeys(
        ("det", "slogdet", "logdet", "solve"),
        "an infinite upstream on a solve's right-hand side: which of inf and NaN each element "
        "gets depends on the order of the BLAS triangular solve's updates (torch's build's)",
    ),
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


# --- half precision ----------------------------------------------------------------------------

HALF_DTYPES = ("float16", "bfloat16")


def _beyond_range(low: Any, high: Any) -> bool:
    """torch's result in half precision is NaN or infinite where its float64 result on the same
    inputs is finite: the sample's point is outside the dtype's range (an eps of 1e-12 that
    float16 rounds to 0, an exp that overflows 65504), where torch's composite ops round an
    intermediate the manual side keeps in float32 (runner/dtypes.py)."""
    if low is None or high is None:
        return False
    a, b = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return a.shape == b.shape and bool(np.any(~np.isfinite(a) & np.isfinite(b)))


def half_sweep(op: Op, dtype: str) -> tuple[int, list[str]]:
    """Every sample of ``op`` in ``dtype`` against torch, as `test_op_matches_torch` (values and
    gradients under a random upstream, floors as `gradcase run` measures them). Returns the
    number of samples compared and the reasons of those skipped; raises AssertionError at the
    first disagreement and `TorchError` when torch has no kernel for the op in ``dtype``."""
    compared, skipped = 0, []
    for index, sample in enumerate(op.samples(np.random.default_rng(0))):
        for one in outputs_of(op, sample):
            with np.errstate(over="ignore"):  # a sample's 1e38 is inf in float16, on both sides
                graph, inputs = single_op_graph(one, sample, dtype)
            torch_result = run_torch(graph, inputs, None)
            out_dtype = torch_result.values["out"].dtype
            rng = np.random.default_rng(index + 1)
            upstream = rng.normal(size=graph.shapes["out"]).astype(out_dtype)
            ref = run_torch(graph, inputs, upstream) if graph.requires_grad["out"] else torch_result
            wide = {k: as_dtype(v, "float64") for k, v in inputs.items()}
            ran = run_torch(
                graph, wide, upstream.astype(np.float64) if ref is not torch_result else None
            )
            where = f"{one.name} sample {index} ({sample.note}) {dtype}"
            pairs = [(ref.values["out"], ran.values["out"])]
            pairs += [(ref.grads.get(n), ran.grads.get(n)) for n in inputs]
            if any(_beyond_range(lo, hi) for lo, hi in pairs):
                skipped.append(f"{where}: beyond {dtype}'s range (torch: not finite)")
                continue
            manual = run_manual(graph, inputs, upstream)
            high = {"value": ran.values, "grad": ran.grads}
            references = {"value": ref.values, "grad": ref.grads}
            capped: dict[tuple[str, str], float] = {}
            floor = tensor_floors(dtype, graph, inputs, upstream, references, high, capped=capped)
            assert manual.values["out"].dtype == ref.values["out"].dtype, where
            checks = [("value", "out", manual.values["out"], ref.values["out"])]
            checks += [
                ("grad", n, manual.grads.get(n), ref.grads.get(n))
                for n in inputs
                if graph.requires_grad[n]
            ]
            ill = []
            for kind, name, left, right in checks:
                at = DEFAULT_TOLERANCE[dtype].with_floor(floor.get((kind, name), 0.0))
                c = compare(left, right, sources=("manual", "torch"), tol=at)
                if not c.ok and (kind, name) in capped:
                    # torch's own half result is further from float64 than any floor allows:
                    # `gradcase run` says the tensor is ill-conditioned in the dtype.
                    ill.append(f"{where}: {kind} {name} ill-conditioned in {dtype}")
                    continue
                assert c.ok, f"{where}: {kind} {name}: {c.model_dump(exclude_none=True)}"
            skipped += ill
            compared += not ill
    return compared, skipped


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("op", list(REGISTRY.values()), ids=lambda op: op.name)
def test_op_matches_torch_in_half_precision(op: Op, dtype: str) -> None:
    """Every op in float16 and bfloat16 (all its samples in one test, to keep the sweep's
    time small), or skipped with the reason: torch has no CPU kernel for it in the dtype.
    Samples beyond the dtype's range are skipped alone; bfloat16 has float32's range."""
    try:
        compared, skipped = half_sweep(op, dtype)
    except TorchError as exc:
        if "torch has no kernel" not in str(exc):
            raise
        pytest.skip(str(exc))
    assert compared, f"{op.name}: no sample compared in {dtype}: {skipped}"
    # bfloat16 has float32's range; a sample ill-conditioned in half precision is one of few.
    assert all("ill-conditioned" in s for s in skipped) or dtype == "float16", skipped
    assert sum("ill-conditioned" in s for s in skipped) <= max(2, compared // 4), skipped


def refused_in(dtype: str) -> list[str]:
    """The ops torch has no CPU kernel for in ``dtype`` (forward of each op's first sample)."""
    names = []
    for op in REGISTRY.values():
        sample = op.samples(np.random.default_rng(0))[0]
        graph, inputs = single_op_graph(outputs_of(op, sample)[0], sample, dtype)
        try:
            run_torch(graph, inputs, None)
        except TorchError as exc:
            assert "torch has no kernel" in str(exc) and dtype in str(exc), str(exc)
            names.append(op.name)
    return names


def test_half_precision_covers_most_ops() -> None:
    """torch's CPU has half kernels for most ops of the catalogue (all elementwise, reduction,
    matmul, convolution and loss ops but multi_margin_loss with torch 2.13): the ops it refuses
    are skipped above with torch's message, naming the op and the dtype."""
    for dtype in HALF_DTYPES:
        names = refused_in(dtype)
        assert len(REGISTRY) - len(names) >= 0.8 * len(REGISTRY), f"{dtype}: refused {names}"
        assert "multi_margin_loss" in names, names
        for name in ("matmul", "sum", "softmax", "layer_norm", "conv2d", "cross_entropy"):
            assert name not in names, f"{dtype}: {name} refused"
