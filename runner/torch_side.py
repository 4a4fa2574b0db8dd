"""The reference side: the same graph built from torch ops and differentiated by autograd.

torch is imported here and only here, inside the functions, so commands that do not run cases
(`validate`, `ops`, `--help`) never pay for it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from runner.dtypes import BFLOAT16
from runner.engine import Result, floating_array
from runner.graph import Graph, Node
from runner.ops.spec import Array


class TorchError(Exception):
    """The reference side failed at ``node``: torch refused an op the static checks accepted."""

    node: str | None = None


class DeviceError(Exception):
    """``--device`` names a device torch cannot use here (no CUDA, no such index)."""


def import_torch() -> Any:
    """torch, imported on first use; in gradcase's own process its module objects are then
    moved out of the collector's generations (`runner.collector.freeze`)."""
    global _TORCH
    if _TORCH is None:
        import torch

        from runner.collector import freeze

        freeze()
        _TORCH = torch
    return _TORCH


_TORCH: Any = None


def check_device(device: str) -> str:
    """``device`` ("cpu", "cuda", "cuda:1") checked, and named as the report names it:
    "cuda:0 (NVIDIA H100 80GB HBM3), TF32 off". Raises `DeviceError` when torch has no CUDA
    or no such device."""
    torch = import_torch()

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"--device {device}: not a torch device ({exc})") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise DeviceError(f"--device {device}: gradcase runs torch on cpu or cuda only")
    if not torch.cuda.is_available():
        built = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
        raise DeviceError(
            f"--device {device}: CUDA is not available (torch {torch.__version__} is built "
            f"{built}, and sees no CUDA device); use --device cpu"
        )
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {device}: no such device; torch sees {torch.cuda.device_count()}"
        )
    tf32_off(torch)
    return f"cuda:{index} ({torch.cuda.get_device_name(index)}), TF32 off"


def tf32_off(torch: Any) -> None:
    """Full float32 precision on CUDA: TF32 off for cuBLAS matmuls and for cuDNN (convolutions),
    which torch allows by default for cuDNN; with it, a float32 conv2d lands about 3e-4 from
    float64 instead of about 1e-6, and float32 cases would compare TF32's rounding."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def to_torch(t: Any, value: Any, device: str, float_dtype: Any = None) -> Any:
    """Arrays become tensors; a Python number operand becomes a 0-d tensor that promotes as
    torch's wrapped Python scalars do: a float takes the dtype of the op's floating operand
    (``x - 0.1`` in float64 subtracts 0.1, not float32(0.1), and a 0-d float32 operand stays
    float32), or the default dtype beside integer ones."""
    if isinstance(value, np.ndarray):
        return from_numpy(t, value).to(device)
    if isinstance(value, float):
        return t.tensor(value, dtype=float_dtype, device=device)
    if isinstance(value, (bool, int)):
        return t.tensor(value, device=device)
    return value


def from_numpy(t: Any, value: Array) -> Any:
    """A CPU tensor of ``value``'s dtype and values; bfloat16 (ml_dtypes') through its bits,
    which torch.from_numpy does not take."""
    # Shared with numpy where it can be (a large case's inputs are not held twice): torch
    # never writes to an operand here (the catalogue's references are out of place, and a leaf
    # that requires grad refuses in-place ops); copied when not C-ordered or read-only. copy(),
    # not ascontiguousarray: a 0-d array stays 0-d.
    if not (value.flags.c_contiguous and value.flags.writeable):
        value = value.copy()
    if value.dtype == BFLOAT16:
        return t.from_numpy(value.view(np.uint16)).view(t.bfloat16)
    return t.from_numpy(value)


def to_numpy(t: Any, tensor: Any) -> Array:
    """A tensor's values as a numpy array of its dtype (bfloat16: ml_dtypes', through its bits,
    which Tensor.numpy() does not give)."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == t.bfloat16:
        return np.asarray(tensor.view(t.uint16).numpy().view(BFLOAT16))
    return np.asarray(tensor.numpy())


# How torch 2.13 says it has no kernel in a dtype: the dispatcher ("..._cpu" not implemented for
# 'Half'), torch.linalg's checks (Low precision dtypes not supported. Got Half) and LAPACK-backed
# ops (expected a tensor ... of float, double, cfloat or cdouble types).
_NO_HALF_KERNEL = (
    "not implemented for",
    "Low precision dtypes not supported",
    "of float, double, cfloat or cdouble types",
)


def refused(node: Node, exc: Exception, dtype: Any) -> str:
    """The message of torch refusing ``node``'s op: node, op, and for a half dtype torch has no
    kernel for (``"multi_margin_loss_cpu_kernel" not implemented for 'Half'``), the dtype, in
    words."""
    text = f"node '{node.name}': torch's {node.op.name} raised {type(exc).__name__}: {exc}"
    half = str(dtype) in ("torch.float16", "torch.bfloat16")
    if half and node.op.wrong_in_half:
        name = str(dtype).removeprefix("torch.")
        return (
            f"node '{node.name}': torch has no kernel for {node.op.name} in {name} that can be "
            f"trusted: {node.op.wrong_in_half}"
        )
    if str(dtype) in ("torch.float16", "torch.bfloat16") and any(
        said in str(exc) for said in _NO_HALF_KERNEL
    ):
        name = str(dtype).removeprefix("torch.")
        text = (
            f"node '{node.name}': torch has no kernel for {node.op.name} in {name} on this "
            f"device ({type(exc).__name__}: {exc})"
        )
    return text


def seeded(out: Any, upstream: Any) -> Any:
    """``sum(out * upstream)``: its gradient with respect to ``out`` is exactly ``upstream``
    (1 * upstream, elementwise), so backpropagating it is ``out.backward(upstream)`` to the bit.
    torch's own path for an explicit gradient imports sympy on first use (0.3 to 0.8 s per
    process); this one does not."""
    return (out * upstream).sum()


def run_torch(
    graph: Graph, inputs: Mapping[str, Array], upstream: Array | None, device: str = "cpu"
) -> Result:
    torch = import_torch()

    if device != "cpu":
        tf32_off(torch)  # per process: a -j worker runs here without the parent's settings
    threads = torch.get_num_threads()
    if device == "cpu" and _small(graph, inputs):
        torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            # torch's advice (broadcast targets, degrees of freedom <= 0) is about cases that
            # test exactly those points on purpose; the comparison reports what matters.
            warnings.simplefilter("ignore", UserWarning)
            return _run(torch, graph, inputs, upstream, device)
    finally:
        torch.set_num_threads(threads)


# torch's intra-op grain size (at::internal::GRAIN_SIZE): below it most ops run on one thread
# whatever the setting; what one thread saves is the pool's wake-ups, which on a busy machine or
# beside -j workers cost up to a millisecond per op (a 3x2 softmax: 1.2 ms at 2 threads, 9 us at
# 1, issue 11). Not bit-for-bit the same for every kernel: a small layer_norm's value moved by
# one ulp; -j workers and serial runs both do this, so their reports stay identical.
SMALL = 32768


def _small(graph: Graph, inputs: Mapping[str, Array]) -> bool:
    """Every tensor of the graph (inputs and nodes, by their static shapes) under `SMALL`
    elements."""
    sizes = [math.prod(s) for s in graph.shapes.values()]
    sizes += [np.size(a) for a in inputs.values()]
    return max(sizes, default=0) < SMALL


def _run(
    torch: Any, graph: Graph, inputs: Mapping[str, Array], upstream: Array | None, device: str
) -> Result:
    env: dict[str, Any] = {}
    for name, arr in inputs.items():
        tensor = to_torch(torch, arr, device)
        if graph.requires_grad.get(name, False):
            tensor.requires_grad_(True)
        env[name] = tensor

    for node in graph.nodes:
        args, operands = torch_args(torch, node, node.bind(env), device)
        try:
            _trusted_in(torch, node, operands)
            out = node.op.torch(torch, **args)
        except Exception as exc:  # torch refusing what the static checks let through
            error = TorchError(refused(node, exc, _floating_dtype(torch, operands)))
            error.node = node.name
            raise error from exc
        if any(out is v for v in operands):
            # Some torch ops return their input itself (flatten of a 1-D tensor): the node must
            # be a tensor of its own, or its .grad would be its input's.
            out = out.view_as(out)
        if out.requires_grad and not out.is_leaf:
            out.retain_grad()
        env[node.name] = out

    out = env[graph.output]
    if upstream is not None and out.requires_grad:
        try:
            seeded(
                out, from_numpy(torch, np.asarray(upstream)).to(out.device, out.dtype)
            ).backward()
        except Exception as exc:  # a backward kernel refusing what its forward took
            raise _backward_error(torch, graph, env, exc, device) from exc

    values = {k: to_numpy(torch, v) for k, v in env.items()}
    grads = {
        k: to_numpy(torch, v.grad) for k, v in env.items() if getattr(v, "grad", None) is not None
    }
    return Result(values=values, grads=grads)


def _backward_error(
    torch: Any, graph: Graph, env: Mapping[str, Any], exc: Exception, device: str
) -> TorchError:
    """torch's backward raised ``exc`` after every forward ran: the error at the node whose
    backward raises it when differentiated alone (`node_vjp` under an upstream of ones, walking
    back from the output), else at no node."""
    said = f"{type(exc).__name__}: {exc}"
    values = {k: to_numpy(torch, v) if isinstance(v, torch.Tensor) else v for k, v in env.items()}
    for node in reversed(graph.nodes):
        ones = np.ones(graph.shapes[node.name], values[node.name].dtype)
        try:
            node_vjp(node, node.bind(values), ones, device)
        except TorchError:
            error = TorchError(
                f"node '{node.name}': torch's backward of {node.op.name} raised {said}"
            )
            error.node = node.name
            return error
        except Exception:  # this node's own check failed otherwise: not the culprit
            continue
    return TorchError(f"torch's backward raised {said} (no single node's backward raises it)")


def torch_args(
    torch: Any, node: Node, args: dict[str, Any], device: str
) -> tuple[dict[str, Any], list[Any]]:
    """The node's bound arguments with every operand a tensor (see `to_torch`), and the
    operands as given (to detect an op that returns one of them)."""
    operands = [
        v
        for p in node.op.tensor_params
        for v in (args[p.name] if isinstance(args[p.name], list) else [args[p.name]])
    ]
    floating = _floating_dtype(torch, operands)
    if floating in (torch.float16, torch.bfloat16) and any(
        np.ndim(v) > 0 for v in operands if not isinstance(v, (int, float))
    ):
        # torch's half kernels read a Python scalar in float32 (their opmath type:
        # `original_scalar_value`), not rounded to half, as the manual side does; a 0-d float32
        # tensor beside a tensor with dims promotes as the scalar does (to the tensor's dtype).
        # Beside 0-d operands only it would promote them to float32: there the scalar is
        # rounded to half (a difference of half an ulp, within the half tolerances).
        floating = torch.float32
    for p in node.op.tensor_params:
        value = args[p.name]
        if isinstance(value, list):
            args[p.name] = [to_torch(torch, v, device, floating) for v in value]
        else:
            args[p.name] = to_torch(torch, value, device, floating)
    return args, operands


def _trusted_in(torch: Any, node: Node, operands: list[Any]) -> None:
    """Raise NotImplementedError, as torch does for a dtype it has no kernel for, where the
    op's torch kernel is known to be wrong in the operands' half dtype (`Op.wrong_in_half`)."""
    dtype = _floating_dtype(torch, operands)
    if node.op.wrong_in_half and dtype in (torch.float16, torch.bfloat16):
        raise NotImplementedError(node.op.wrong_in_half)


def _floating_dtype(torch: Any, operands: list[Any]) -> Any:
    """The torch dtype of the first floating operand (a tensor or a numpy array), or None."""
    for v in operands:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.dtype
    for v in operands:
        if isinstance(v, np.ndarray) and floating_array(v):
            return getattr(torch, str(v.dtype))
    return None


def node_vjp(
    node: Node, args: Mapping[str, Any], grad: Array, device: str = "cpu"
) -> dict[str, Any]:
    """torch's gradient of one node alone: the op applied to fresh leaves made from ``args``
    (numpy, as `Node.bind` gives them) and differentiated with ``grad`` as its upstream
    gradient (``torch.autograd.grad``). Per tensor parameter: an array at the operand's shape,
    a list for list parameters, None for operands torch does not differentiate.

    Used to tell which node's rule is wrong; raises `TorchError` when torch refuses the op.
    """
    torch = import_torch()

    if device != "cpu":
        tf32_off(torch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        targs, _ = torch_args(torch, node, dict(args), device)
        leaves: list[Any] = []
        slots: dict[str, list[int | None]] = {}
        for p in node.op.tensor_params:
            value = targs[p.name]
            items = value if isinstance(value, list) else [value]
            slots[p.name] = []
            for t in items:
                if p.grad and isinstance(t, torch.Tensor) and t.is_floating_point():
                    t.requires_grad_(True)
                    slots[p.name].append(len(leaves))
                    leaves.append(t)
                else:
                    slots[p.name].append(None)
        try:
            out = node.op.torch(torch, **targs)
            upstream = from_numpy(torch, np.asarray(grad)).to(out.device, out.dtype)
            found = torch.autograd.grad(
                seeded(out, upstream), leaves, allow_unused=True, materialize_grads=True
            )
        except Exception as exc:
            raise TorchError(refused(node, exc, _floating_dtype(torch, leaves))) from exc
    result: dict[str, Any] = {}
    for name, indices in slots.items():
        arrays = [None if i is None else to_numpy(torch, found[i]) for i in indices]
        result[name] = arrays if isinstance(args[name], list) else arrays[0]
    return result
