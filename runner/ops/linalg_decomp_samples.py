"""Sweep samples of the linalg_decomp family: well-conditioned random matrices (random + n I,
so float32 comparisons mean something), the identity, 1 x 1 matrices, batches (an empty batch
too), and the singular points whose convention is torch's: exactly singular matrices whose LU
is exact in floating point (small integers, power-of-two multipliers), so torch's zero pivot is
an exact zero here too."""

from __future__ import annotations

import numpy as np

from runner.ops.spec import Array, Sample

SINGULAR_2 = [[1.0, 2.0], [2.0, 4.0]]
SINGULAR_3 = [[2.0, 1.0, 0.0], [4.0, 2.0, 0.0], [1.0, 3.0, 5.0]]


def well(rng: np.random.Generator, *shape: int) -> Array:
    """Random matrices plus n times the identity: condition numbers of a few units."""
    n = shape[-1]
    return np.asarray(rng.normal(size=shape) + n * np.eye(n))


def spd(rng: np.random.Generator, *shape: int) -> Array:
    """Symmetric positive definite: M M^T + n I."""
    m = rng.normal(size=shape)
    return np.asarray(m @ np.swapaxes(m, -1, -2) + shape[-1] * np.eye(shape[-1]))


def lower(rng: np.random.Generator, *shape: int) -> Array:
    """Lower triangular with a diagonal in [1, 2]: a Cholesky factor."""
    n = shape[-1]
    low = np.tril(rng.normal(size=shape), -1)
    return np.asarray(low + np.eye(n) * rng.uniform(1.0, 2.0, size=(*shape[:-1], 1)))


def _square_cases(rng: np.random.Generator) -> list[Sample]:
    """What every op of one square matrix is swept on."""
    return [
        Sample({"A": well(rng, 3, 3)}, note="3 x 3"),
        Sample({"A": np.eye(3)}, note="identity"),
        Sample({"A": well(rng, 2, 4, 4)}, note="batch of 2, 4 x 4"),
        Sample({"A": np.array([[-1.5]])}, note="1 x 1, negative"),
        Sample({"A": np.zeros((0, 2, 2))}, note="empty batch"),
        Sample({"A": np.zeros((0, 0))}, note="0 x 0"),
    ]


def inv_samples(rng: np.random.Generator) -> list[Sample]:
    return _square_cases(rng)


def det_samples(rng: np.random.Generator) -> list[Sample]:
    batch = well(rng, 3, 2, 2)
    batch[1] = SINGULAR_2
    return [
        *_square_cases(rng),
        Sample({"A": np.array(SINGULAR_2)}, note="singular 2 x 2: gradient 0"),
        Sample({"A": np.array(SINGULAR_3)}, note="singular 3 x 3: gradient 0"),
        Sample({"A": np.zeros((2, 2))}, note="zero matrix"),
        Sample({"A": np.array([[0.0]])}, note="1 x 1 zero"),
        Sample({"A": batch}, note="batch with one singular matrix"),
    ]


def slogdet_samples(rng: np.random.Generator) -> list[Sample]:
    negative = well(rng, 3, 3)
    negative[[0, 1]] = negative[[1, 0]]
    return [
        *_square_cases(rng),
        Sample({"A": negative}, note="negative det"),
        Sample({"A": np.array(SINGULAR_2)}, note="singular: -inf, gradient inf"),
        Sample({"A": np.array(SINGULAR_3)}, note="singular 3 x 3"),
    ]


def logdet_samples(rng: np.random.Generator) -> list[Sample]:
    mixed = well(rng, 3, 3, 3)
    mixed[1, [0, 1]] = mixed[1, [1, 0]]
    return [
        Sample({"input": well(rng, 3, 3)}, note="3 x 3"),
        Sample({"input": np.eye(2)}, note="identity"),
        Sample({"input": mixed}, note="batch, one det < 0: NaN, zero gradient"),
        Sample({"input": np.array([[-2.0]])}, note="1 x 1 negative"),
        Sample({"input": np.array([[0.0, 1.0], [1.0, 0.0]])}, note="det -1"),
        Sample({"input": np.array(SINGULAR_2)}, note="singular: -inf"),
        Sample({"input": np.zeros((0, 3, 3))}, note="empty batch"),
    ]


def solve_samples(rng: np.random.Generator) -> list[Sample]:
    def n(*s: int) -> Array:
        return np.asarray(rng.normal(size=s))

    return [
        Sample({"A": well(rng, 3, 3), "B": n(3)}, note="vector B"),
        Sample({"A": well(rng, 3, 3), "B": n(3, 2)}, note="matrix B"),
        Sample({"A": well(rng, 2, 3, 3), "B": n(3)}, note="batched A, vector B"),
        Sample({"A": well(rng, 2, 3, 3), "B": n(2, 3)}, note="B shaped as A[..., 0]: vector"),
        Sample({"A": well(rng, 2, 3, 3), "B": n(3, 4)}, note="B broadcast over A's batch"),
        Sample({"A": well(rng, 3, 3), "B": n(5, 1, 3, 2)}, note="A broadcast over B's batch"),
        Sample({"A": well(rng, 3, 3), "B": n(4, 3), "left": False}, note="left=False"),
        Sample({"A": np.array([[2.0]]), "B": n(1, 3)}, note="1 x 1"),
        Sample({"A": np.eye(3), "B": n(3, 2)}, note="identity"),
        Sample({"A": well(rng, 0, 2, 2), "B": n(0, 2, 1)}, note="empty batch"),
    ]


def solve_triangular_samples(rng: np.random.Generator) -> list[Sample]:
    def n(*s: int) -> Array:
        return np.asarray(rng.normal(size=s))

    def tri(*s: int) -> Array:  # a full matrix: only one triangle is read
        return n(*s) + 3 * np.eye(s[-1])

    return [
        Sample({"A": tri(3, 3), "B": n(3, 2), "upper": True}, note="upper"),
        Sample({"A": tri(3, 3), "B": n(3, 2), "upper": False}, note="lower"),
        Sample({"A": tri(3, 3), "B": n(4, 3), "upper": True, "left": False}, note="left=False"),
        Sample(
            {"A": tri(3, 3), "B": n(3, 2), "upper": False, "unitriangular": True},
            note="unitriangular",
        ),
        Sample(
            {"A": tri(2, 3, 3), "B": n(5, 1, 3, 2), "upper": False, "left": True},
            note="batch broadcast",
        ),
        Sample(
            {"A": tri(3, 3), "B": n(2, 3), "upper": True, "left": False, "unitriangular": True},
            note="left=False, unitriangular",
        ),
        Sample({"A": np.array([[0.5]]), "B": n(1, 2), "upper": True}, note="1 x 1"),
        Sample(
            {
                "A": np.array([[2.0, 0.0], [1.0, 0.0]]),
                "B": np.array([[1.0], [0.0]]),
                "upper": False,
            },
            note="zero on the diagonal: inf and NaN",
        ),
    ]


def cholesky_samples(rng: np.random.Generator) -> list[Sample]:
    skew = spd(rng, 3, 3)
    skew[0, 2] += 5.0  # the upper triangle is never read
    skew_upper = skew.T.copy()  # the lower triangle is never read with upper=True
    return [
        Sample({"A": spd(rng, 3, 3)}, note="3 x 3"),
        Sample({"A": spd(rng, 3, 3), "upper": True}, note="upper"),
        Sample({"A": skew}, note="not symmetric: the lower triangle is read"),
        Sample(
            {"A": skew_upper, "upper": True}, note="not symmetric, upper: the upper one is read"
        ),
        Sample({"A": spd(rng, 2, 4, 4)}, note="batch"),
        Sample({"A": np.eye(3)}, note="identity"),
        Sample({"A": np.array([[2.25]])}, note="1 x 1"),
        Sample({"A": np.zeros((0, 2, 2))}, note="empty batch"),
    ]


def cholesky_solve_samples(rng: np.random.Generator) -> list[Sample]:
    def n(*s: int) -> Array:
        return np.asarray(rng.normal(size=s))

    full = lower(rng, 3, 3) + np.triu(n(3, 3), 1)  # the upper triangle is never read
    return [
        Sample({"input": n(3, 2), "input2": lower(rng, 3, 3)}, note="lower"),
        Sample(
            {"input": n(3, 2), "input2": np.swapaxes(lower(rng, 3, 3), 0, 1), "upper": True},
            note="upper",
        ),
        Sample({"input": n(3, 2), "input2": full}, note="input2 not triangular"),
        Sample({"input": n(2, 3, 1), "input2": lower(rng, 3, 3)}, note="batched B"),
        Sample({"input": n(3, 2), "input2": lower(rng, 4, 3, 3)}, note="batched L"),
        Sample({"input": n(1, 2), "input2": np.array([[1.5]])}, note="1 x 1"),
    ]


def matrix_power_samples(rng: np.random.Generator) -> list[Sample]:
    a = well(rng, 3, 3) / 3
    out = [Sample({"A": a, "n": k}, note=f"n = {k}") for k in (0, 1, 2, 3, 4, 5, 6, 7, -1, -2, -5)]
    return [
        *out,
        Sample({"A": well(rng, 2, 2, 2) / 2, "n": 3}, note="batch, n = 3"),
        Sample({"A": np.array([[1.1]]), "n": -3}, note="1 x 1, n = -3"),
        Sample({"A": np.zeros((0, 2, 2)), "n": 2}, note="empty batch"),
        Sample({"A": np.eye(2), "n": 5}, note="identity"),
    ]


def matrix_exp_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"A": rng.normal(size=(3, 3)) * 0.3}, note="small norm"),
        Sample({"A": rng.normal(size=(3, 3)) * 2.0}, note="norm > 1: scaling and squaring"),
        Sample({"A": rng.normal(size=(2, 4, 4))}, note="batch"),
        Sample({"A": np.zeros((2, 2))}, note="zero matrix"),
        Sample({"A": np.eye(3)}, note="identity"),
        Sample({"A": np.array([[0.0, 1.0], [0.0, 0.0]])}, note="nilpotent"),
        Sample({"A": np.array([[-0.7]])}, note="1 x 1"),
        Sample({"A": np.zeros((0, 3, 3))}, note="empty batch"),
    ]
