"""Sweep samples of the linalg_spectral family: well-separated spectra (so float32 is
meaningful), non-symmetric data, and the edge points each op has: identity and diagonal
matrices, rank-deficient ones, batches, 1 x 1, wide and tall."""

from __future__ import annotations

import numpy as np

from runner.ops.spec import Array, Sample


def spread(rng: np.random.Generator, m: int, n: int, *batch: int) -> Array:
    """A random m x n matrix (or batch) with singular values 1, 2, ..., min(m, n) times 1.5."""
    k = min(m, n)
    u = np.linalg.qr(rng.normal(size=(*batch, m, k)))[0]
    v = np.linalg.qr(rng.normal(size=(*batch, n, k)))[0]
    s = 1.5 * np.arange(1, k + 1, dtype=float)[::-1]
    return np.asarray((u * s) @ np.swapaxes(v, -1, -2))


def symmetric(rng: np.random.Generator, n: int, *batch: int) -> Array:
    """A random symmetric n x n matrix with eigenvalues -n/2 ... spaced by 1.3."""
    q = np.linalg.qr(rng.normal(size=(*batch, n, n)))[0]
    w = 1.3 * (np.arange(n, dtype=float) - n / 2 + 0.25)
    return np.asarray((q * w) @ np.swapaxes(q, -1, -2))


def rank_deficient(rng: np.random.Generator, n: int) -> Array:
    """A square n x n matrix of rank n - 1 (one zero singular value; the others apart)."""
    a = spread(rng, n, n)
    u, s, vh = np.linalg.svd(a)
    s[-1] = 0.0
    return np.asarray((u * s) @ vh)


def eigh_samples(rng: np.random.Generator) -> list[Sample]:
    sym = symmetric(rng, 3)
    lower = sym + np.triu(rng.normal(size=(3, 3)), 1)  # the upper triangle is never read
    return [
        Sample({"input": sym}, "symmetric 3 x 3"),
        Sample({"input": lower}, "non-symmetric: the lower triangle read"),
        Sample({"input": np.swapaxes(lower, 0, 1), "UPLO": "U"}, "UPLO U"),
        Sample({"input": symmetric(rng, 4, 2)}, "batch of 2"),
        Sample({"input": np.array([[-0.7]])}, "1 x 1"),
        Sample({"input": np.diag([3.0, -1.0, 0.5])}, "diagonal"),
        Sample({"input": np.eye(3)}, "identity: a triple eigenvalue, eigenvectors' gradient NaN"),
    ]


def svdvals_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"A": spread(rng, 3, 4)}, "wide"),
        Sample({"A": spread(rng, 4, 3)}, "tall"),
        Sample({"A": spread(rng, 3, 3, 2)}, "batch of 2"),
        Sample({"A": rank_deficient(rng, 3)}, "square, rank 2: one zero singular value"),
        Sample({"A": np.array([[-2.0]])}, "1 x 1, negative"),
        Sample({"A": np.diag([3.0, -1.0, 0.5])}, "diagonal"),
        Sample({"A": np.eye(3)}, "identity: a triple singular value"),
    ]


def svd_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"A": spread(rng, 3, 3), "full_matrices": False}, "square"),
        Sample({"A": spread(rng, 4, 2), "full_matrices": False}, "tall"),
        Sample({"A": spread(rng, 2, 4), "full_matrices": False}, "wide"),
        Sample({"A": spread(rng, 4, 2)}, "tall, full_matrices"),
        Sample({"A": spread(rng, 2, 3)}, "wide, full_matrices"),
        Sample({"A": spread(rng, 3, 2, 2), "full_matrices": False}, "batch of 2"),
        Sample({"A": np.array([[0.5]])}, "1 x 1"),
    ]


def qr_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"A": spread(rng, 3, 3)}, "square"),
        Sample({"A": spread(rng, 4, 2)}, "tall"),
        Sample({"A": spread(rng, 2, 4)}, "wide"),
        Sample({"A": spread(rng, 2, 3), "mode": "complete"}, "wide, complete"),
        Sample({"A": spread(rng, 3, 3), "mode": "complete"}, "square, complete"),
        Sample({"A": spread(rng, 3, 2, 2)}, "batch of 2"),
        Sample({"A": np.array([[-1.5]])}, "1 x 1"),
    ]


def pinv_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample({"input": spread(rng, 3, 3)}, "square"),
        Sample({"input": spread(rng, 4, 2)}, "tall"),
        Sample({"input": spread(rng, 2, 4)}, "wide"),
        Sample({"input": rank_deficient(rng, 3)}, "rank-deficient: one singular value dropped"),
        Sample({"input": spread(rng, 3, 3), "atol": 2.0}, "atol 2 drops the smallest"),
        Sample({"input": spread(rng, 3, 3), "rtol": 0.4}, "rtol 0.4"),
        Sample({"input": symmetric(rng, 3), "hermitian": True}, "hermitian"),
        Sample({"input": spread(rng, 3, 2, 2)}, "batch of 2"),
        Sample({"input": np.array([[4.0]])}, "1 x 1"),
        Sample({"input": np.eye(3)}, "identity"),
    ]


def matrix_norm_samples(rng: np.random.Generator) -> list[Sample]:
    a = spread(rng, 3, 4) + 0.1
    out = [Sample({"A": a, "ord": o}, f"ord {o}") for o in ("fro", "nuc", 2, -2)]
    out += [Sample({"A": rng.normal(size=(3, 4)), "ord": o}, f"ord {o}")
            for o in (1, -1, np.inf, -np.inf)]  # fmt: skip
    return [
        *out,
        Sample(
            {"A": spread(rng, 3, 2, 2), "ord": "nuc", "dim": [0, 2], "keepdim": True},
            "dims (0, 2), keepdim",
        ),  # fmt: skip
        Sample({"A": rng.normal(size=(2, 3, 3)), "ord": 1, "dim": [-1, 0]}, "dims (-1, 0)"),
        Sample({"A": np.eye(3), "ord": 2}, "identity: tied singular values split"),
        Sample({"A": np.eye(3), "ord": 1}, "identity: tied column sums split"),
        Sample({"A": rank_deficient(rng, 3), "ord": "nuc"}, "rank-deficient nuclear norm"),
        Sample({"A": np.zeros((2, 3))}, "zero matrix: 0 gradient"),
        Sample({"A": np.array([[-3.0]]), "ord": -2}, "1 x 1"),
    ]
