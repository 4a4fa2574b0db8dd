"""tinyengine: a tiny reverse-mode autodiff engine over numpy, in the spirit of micrograd.

A `Tensor` holds `data`, `grad`, its `parents` and a `vjp` closure mapping its upstream gradient
to one gradient per parent; `backward` accumulates them in reverse topological order and undoes
broadcasting there, once, so no rule has to. Every rule is right except the full `max`, which is
wrong on purpose: it is the bug the example's cases exist to catch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]
Dim = int | Sequence[int] | None
VJP = Callable[[Array], tuple[Array, ...]]


def unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum `grad` back to `shape`: the leading dims broadcasting added, then the size-1 dims."""
    grad = np.asarray(grad.sum(axis=tuple(range(grad.ndim - len(shape)))))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return np.asarray(grad.sum(axis=ones, keepdims=True))


def _axes(dim: Dim, ndim: int) -> tuple[int, ...]:
    return tuple(range(ndim)) if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)


def _spread(g: Array, shape: tuple[int, ...], dim: Dim, keepdim: bool) -> Array:
    """The upstream of a reduction over `dim`, copied back over the reduced dims of `shape`."""
    return np.broadcast_to(g if keepdim else np.expand_dims(g, _axes(dim, len(shape))), shape)


def _unary(f: Callable[[Array], Array], dfdx: Callable[[Array, Array], Any]) -> Any:
    """An elementwise op from its forward and its derivative, a function of (input, output)."""

    def op(self: Tensor) -> Tensor:
        out = f(self.data)
        return Tensor(out, (self,), lambda g: (g * dfdx(self.data, out),))

    return op


def _binary(f: Callable[[Array, Array], Array], vjp: Callable[..., tuple[Array, Array]]) -> Any:
    """An op of two operands, and its reflected form (`2 - x`), from its forward and its VJP, a
    function of (g, a, b). A Python number takes the tensor's dtype, as in torch (`x * 2`)."""

    def op(self: Tensor, other: Tensor | float, reflected: bool = False) -> Tensor:
        o = other if isinstance(other, Tensor) else Tensor(np.asarray(other, self.data.dtype))
        a, b = (o, self) if reflected else (self, o)
        return Tensor(f(a.data, b.data), (a, b), lambda g: vjp(g, a.data, b.data))

    return op, lambda self, other: op(self, other, reflected=True)


def _matmul_vjp(g: Array, a: Array, b: Array) -> tuple[Array, Array]:
    # torch promotes a 1-D operand ((k,) is (1, k) on the left, (k, 1) on the right) and drops the
    # added dim from the result: put it back in g. Batch dims are left to unbroadcast.
    g = g[..., None] if b.ndim == 1 else g
    g = g[..., None, :] if a.ndim == 1 else g
    a2, b2 = (a[None] if a.ndim == 1 else a), (b[:, None] if b.ndim == 1 else b)
    ga, gb = g @ np.swapaxes(b2, -1, -2), np.swapaxes(a2, -1, -2) @ g
    return ga, (gb[..., 0] if b.ndim == 1 else gb)


class Tensor:
    def __init__(self, data: Any, parents: tuple[Tensor, ...] = (), vjp: VJP | None = None):
        self.data: Array = np.asarray(data)
        self.grad: Array | None = None
        self.parents = parents
        self.vjp = vjp  # None for a leaf

    def __repr__(self) -> str:
        return f"Tensor({self.data!r}, grad={self.grad!r})"

    def backward(self, grad: Any = None) -> None:
        """Accumulate into `.grad` of every tensor this one depends on; `grad` defaults to ones."""
        order: dict[int, Tensor] = {}  # insertion order: every tensor after its parents

        def visit(t: Tensor) -> None:
            if id(t) not in order:
                for p in t.parents:
                    visit(p)
                order[id(t)] = t

        visit(self)
        self.grad = np.ones_like(self.data) if grad is None else np.array(grad, self.data.dtype)
        for t in reversed(order.values()):  # so a tensor's grad is complete when its vjp reads it
            if t.vjp is not None and t.grad is not None:
                for p, g in zip(t.parents, t.vjp(t.grad), strict=True):
                    g = np.array(unbroadcast(np.asarray(g), p.data.shape), dtype=p.data.dtype)
                    p.grad = g if p.grad is None else p.grad + g

    # --- elementwise and matmul: one row per op, the forward then the rule ---
    __add__, __radd__ = _binary(np.add, lambda g, a, b: (g, g))
    __sub__, __rsub__ = _binary(np.subtract, lambda g, a, b: (g, -g))
    __mul__, __rmul__ = _binary(np.multiply, lambda g, a, b: (g * b, g * a))
    __truediv__, __rtruediv__ = _binary(np.divide, lambda g, a, b: (g / b, -g * a / (b * b)))
    __matmul__, __rmatmul__ = _binary(np.matmul, _matmul_vjp)
    __neg__ = _unary(np.negative, lambda x, out: -1)
    exp = _unary(np.exp, lambda x, out: out)
    log = _unary(np.log, lambda x, out: 1 / x)
    tanh = _unary(np.tanh, lambda x, out: 1 - out * out)
    relu = _unary(lambda x: np.maximum(x, 0), lambda x, out: x > 0)  # relu'(0) = 0, as torch

    # --- reductions: dim is an int, a list of ints or None (every dim) ---
    def sum(self, dim: Dim = None, keepdim: bool = False) -> Tensor:
        out = self.data.sum(axis=_axes(dim, self.data.ndim), keepdims=keepdim)
        return Tensor(out, (self,), lambda g: (_spread(g, self.data.shape, dim, keepdim),))

    def mean(self, dim: Dim = None, keepdim: bool = False) -> Tensor:
        n = math.prod(self.data.shape[a] for a in _axes(dim, self.data.ndim))
        out = self.data.mean(axis=_axes(dim, self.data.ndim), keepdims=keepdim)
        return Tensor(out, (self,), lambda g: (_spread(g / n, self.data.shape, dim, keepdim),))

    def max(self) -> Tensor:
        """The largest entry (a full reduction, 0-d)."""
        # DELIBERATELY WRONG, the example's planted bug: the whole gradient goes to the first
        # argmax. torch splits it evenly over tied maxima; the right rule is
        #     hit = self.data == self.data.max(); lambda g: (g * hit / hit.sum(),)
        # With a unique maximum both agree, so only a case with ties can catch it.
        one_hot = np.arange(self.data.size).reshape(self.data.shape) == np.argmax(self.data)
        return Tensor(self.data.max(), (self,), lambda g: (g * one_hot,))

    def softmax(self, dim: int) -> Tensor:
        e = np.exp(self.data - self.data.max(axis=dim, keepdims=True))  # shifted: no overflow
        s = e / e.sum(axis=dim, keepdims=True)
        return Tensor(s, (self,), lambda g: (s * (g - (g * s).sum(axis=dim, keepdims=True)),))

    # --- shape ---
    def reshape(self, *shape: Any) -> Tensor:
        """`reshape(2, 3)` or `reshape([2, 3])`; one size may be -1, as in torch."""
        return Tensor(self.data.reshape(*shape), (self,), lambda g: (g.reshape(self.data.shape),))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        out = np.swapaxes(self.data, dim0, dim1)
        return Tensor(out, (self,), lambda g: (np.swapaxes(g, dim0, dim1),))

    @property
    def T(self) -> Tensor:  # noqa: N802 (torch's name): every dim reversed
        return Tensor(self.data.T, (self,), lambda g: (g.T,))
