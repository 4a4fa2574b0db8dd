"""einsum: one parser (`plan`) shared by the shape rule, the forward and the VJP.

The parser turns torch's equation into an explicit numpy one: every ellipsis dim gets a fresh
letter, the implicit output is spelled out, and each label gets its broadcast size (torch lets a
size-1 dim broadcast against the same label elsewhere, numpy's einsum does not always). The VJP
for operand k is then another einsum: the upstream and the other operands contracted onto k's
distinct labels, summed where k was broadcast, and written into k's diagonal when a label repeats.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError

FAMILY = "linalg"
# torch orders an implicit output A-Z before a-z (ASCII order, as numpy).
LETTERS = string.ascii_uppercase + string.ascii_lowercase


@dataclass(frozen=True)
class Plan:
    inputs: tuple[str, ...]  # per operand, one letter per dim (ellipsis dims spelled out)
    output: str
    sizes: dict[str, int]  # the broadcast size of every label

    def equation(self) -> str:
        return ",".join(self.inputs) + "->" + self.output


def _term(term: str, where: str) -> tuple[str, str, bool]:
    """A term's letters before and after its ellipsis, and whether it has one (torch skips
    spaces)."""
    term = term.replace(" ", "")
    dots = term.count(".")
    if dots and (dots != 3 or "..." not in term):
        raise ShapeError(f"einsum: {where} {term!r} has a '.' that is not part of an ellipsis")
    head, _, tail = term.partition("...")
    bad = [c for c in head + tail if c not in LETTERS]
    if bad:
        raise ShapeError(f"einsum: {where} {term!r} has {bad[0]!r}; labels must be in [a-zA-Z]")
    return head, tail, dots == 3


def plan(equation: str, shapes: Sequence[Shape]) -> Plan:
    lhs, arrow, rhs = equation.partition("->")
    terms = [_term(t, f"operand {i}") for i, t in enumerate(lhs.split(","))]
    if len(terms) != len(shapes):
        raise ShapeError(
            f"einsum: the equation {equation!r} names {len(terms)} operands, got {len(shapes)}"
        )
    ell_ndim = 0
    for i, ((head, tail, ell), shape) in enumerate(zip(terms, shapes, strict=True)):
        letters = head + tail
        if len(letters) != len(shape) and not (ell and len(letters) <= len(shape)):
            raise ShapeError(
                f"einsum: operand {i} has {len(letters)} labels {letters!r} but is "
                f"{len(shape)}-d{'' if ell else ' and has no ellipsis'}"
            )
        if ell:
            ell_ndim = max(ell_ndim, len(shape) - len(letters))
    used = {c for head, tail, _ in terms for c in head + tail}
    fresh = [c for c in LETTERS if c not in used]
    if ell_ndim > len(fresh):
        raise ShapeError(f"einsum: {len(used)} labels and {ell_ndim} ellipsis dims exceed 52")
    ell_labels = "".join(fresh[:ell_ndim])

    inputs: list[str] = []
    sizes: dict[str, int] = {}
    for i, ((head, tail, ell), shape) in enumerate(zip(terms, shapes, strict=True)):
        n = len(shape) - len(head + tail)
        labels = head + (ell_labels[ell_ndim - n :] if ell else "") + tail
        own: dict[str, int] = {}
        for label, size in zip(labels, shape, strict=True):
            name = "an ellipsis dim" if label in ell_labels else f"label {label}"
            if own.setdefault(label, size) != size:
                raise ShapeError(
                    f"einsum: {name} repeats in operand {i} with sizes {own[label]} and {size}"
                )
            seen = sizes.setdefault(label, size)
            if seen != size and 1 not in (seen, size):
                raise ShapeError(
                    f"einsum: {name} has size {size} in operand {i}, which does not broadcast "
                    f"with size {seen} in an earlier operand"
                )
            sizes[label] = size if seen == 1 else seen
        inputs.append(labels)

    if arrow:
        head, tail, out_ell = _term(rhs, "the output")
        out_letters = head + tail
        for c in out_letters:
            if c not in used:
                raise ShapeError(f"einsum: output label {c} appears in no operand")
        repeated = [c for c, n in Counter(out_letters).items() if n > 1]
        if repeated:
            raise ShapeError(f"einsum: output label {repeated[0]} appears more than once")
        output = head + (ell_labels if out_ell else "") + tail
    else:
        counts = Counter(c for head, tail, _ in terms for c in head + tail)
        output = ell_labels + "".join(c for c in LETTERS if counts[c] == 1)
    return Plan(tuple(inputs), output, sizes)


def einsum_shape(equation: str, operands: Sequence[Shape]) -> Shape:
    p = plan(equation, operands)
    return tuple(p.sizes[c] for c in p.output)


def _broadcast(p: Plan, operands: Sequence[Any]) -> list[Array]:
    arrays = [np.asarray(o) for o in operands]
    return [
        np.broadcast_to(a, [p.sizes[c] for c in labels])
        for a, labels in zip(arrays, p.inputs, strict=True)
    ]


def einsum_forward(equation: str, operands: Sequence[Any]) -> Array:
    p = plan(equation, [np.shape(o) for o in operands])
    arrays = _broadcast(p, operands)
    summed = set("".join(p.inputs)) - set(p.output)
    if summed and all(a.dtype == np.bool_ for a in arrays):
        # torch sums bools into int64 (numpy's einsum would `or` them)
        arrays = [a.astype(np.int64) for a in arrays]
    # optimize: a contraction order (pairwise, BLAS) instead of one loop over every index
    return np.array(np.einsum(p.equation(), *arrays, optimize=True))


def einsum_vjp(g: Array, out: Array, equation: str, operands: Sequence[Any]) -> tuple[Any]:
    p = plan(equation, [np.shape(o) for o in operands])
    arrays = _broadcast(p, operands)
    grads: list[Array | None] = []
    for k, labels in enumerate(p.inputs):
        shape = np.shape(operands[k])
        if not np.issubdtype(arrays[k].dtype, np.floating):
            grads.append(None)
            continue
        distinct = "".join(dict.fromkeys(labels))
        terms = [p.output, *(t for i, t in enumerate(p.inputs) if i != k)]
        args = [g, *(a for i, a in enumerate(arrays) if i != k)]
        # a label only operand k has was summed away: its gradient is broadcast along it
        alone = "".join(c for c in distinct if c not in "".join(terms))
        if alone:
            terms.append(alone)
            args.append(np.ones([p.sizes[c] for c in alone], dtype=g.dtype))
        gk = np.einsum(",".join(terms) + "->" + distinct, *args, optimize=True)
        widened = tuple(
            i for i, c in enumerate(distinct) if shape[labels.index(c)] == 1 != p.sizes[c]
        )
        gk = gk.sum(axis=widened, keepdims=True)
        if distinct == labels:
            grads.append(gk)
            continue
        full = np.zeros(shape, dtype=g.dtype)
        np.einsum(f"{labels}->{distinct}", full)[...] = gk  # a writeable view of the diagonal
        grads.append(full)
    return (grads,)


# (equation, operand shapes, note); an int or bool dtype makes a sample without gradients.
EINSUM_SAMPLES: tuple[tuple[str, tuple[Shape, ...], str], ...] = (
    ("ij,jk->ik", ((2, 3), (3, 4)), "matmul"),
    ("ij,jk", ((2, 3), (3, 4)), "implicit matmul"),
    ("bij,bjk->bik", ((2, 2, 3), (2, 3, 4)), "batched matmul"),
    ("ii->i", ((3, 3),), "diagonal"),
    ("ii", ((3, 3),), "implicit trace"),
    ("iji->ij", ((3, 2, 3),), "diagonal across a third dim"),
    ("...ii->...i", ((2, 3, 3),), "batched diagonal"),
    ("ij->ji", ((2, 3),), "transpose"),
    ("ij->", ((2, 3),), "full sum"),
    ("ij,k->i", ((2, 3), (4,)), "j and k each summed in one operand only"),
    ("i,j->ij", ((2,), (3,)), "outer"),
    ("i,i", ((3,), (3,)), "implicit dot"),
    ("bA,Ba", ((2, 3), (3, 2)), "implicit output sorts A-Z before a-z"),
    ("ij,jk,kl->il", ((2, 3), (3, 4), (4, 2)), "three operands"),
    (" i j , j k -> k i ", ((2, 3), (3, 4)), "spaces"),
    ("...ij,...jk", ((2, 1, 3, 4), (5, 4, 2)), "ellipsis batch broadcast"),
    ("i...j,j...->i...", ((2, 3, 4), (4, 5, 1)), "ellipsis in the middle, broadcast"),
    ("a...,...->", ((2, 3), (1,)), "ellipsis dims summed when the output omits them"),
    ("ij,ij->ij", ((1, 3), (2, 1)), "size-1 labels broadcast"),
    ("ii,i->i", ((1, 1), (3,)), "size-1 diagonal broadcast"),
    (",i->i", ((), (3,)), "0-d operand"),
)


def einsum_samples(rng: np.random.Generator) -> list[Sample]:
    out = [
        Sample(
            {"equation": eq, "operands": [np.asarray(rng.normal(size=s)) for s in shapes]},
            note=f"{eq!r} {note}",
        )
        for eq, shapes, note in EINSUM_SAMPLES
    ]
    ints = [rng.integers(-3, 4, size=s) for s in ((2, 3), (3, 2))]
    out.append(Sample({"equation": "ij,jk", "operands": ints}, note="int64 operands"))
    bools = [rng.integers(0, 2, size=(2, 3)).astype(bool)]
    out.append(Sample({"equation": "ij->i", "operands": bools}, note="bool sums to int64"))
    return out


OPS: list[Op] = [
    Op(
        name="einsum",
        family=FAMILY,
        params=(Param("equation", "str"), Param("operands", "tensors*")),
        forward=einsum_forward,
        vjp=einsum_vjp,
        torch=lambda t, equation, operands: t.einsum(equation, *operands),
        shape=einsum_shape,
        samples=einsum_samples,
        note="a repeated label reads a diagonal, so its gradient is zero off the diagonal; a "
        "size-1 dim broadcasts against the same label elsewhere; an implicit output is the "
        "ellipsis dims then the labels seen once, A-Z before a-z",
    ),
]
