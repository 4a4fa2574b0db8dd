"""Reductions and scans, one row per op: the numpy forward at the kept shape beside its rule.
The builders and the rules too long for a row are in `reductions_rules`, the sweep's sample
tables in `reductions_samples`."""

from __future__ import annotations

import numpy as np

from runner.ops import outputs
from runner.ops.reductions_rules import (
    ONE_D,
    count,
    cumprod_vjp,
    expand,
    floating_only,
    fro_dims,
    logsumexp,
    logsumexp_check,
    no_empty_dims,
    no_empty_extremum,
    no_keepdim_without_dim,
    norm_vjp,
    prod_vjp,
    rcumsum,
    reduction,
    scan,
    spread_vjp,
    std_vjp,
    var_vjp,
    variance,
    vector_norm,
    widened,
)
from runner.ops.reductions_samples import (
    DIMS_CASES,
    INF,
    INT_CASES,
    NAN,
    NORM_PS,
    PEAKS,
    SCAN_CASES,
    STAT_CASES,
    ZEROS,
    both,
    fixed,
    scan_sweep,
    sweep,
    ties,
)
from runner.ops.spec import Op, Param

OPS: list[Op] = [
    # --- sums and means ---
    reduction(
        "sum",
        lambda x, dims, full: np.sum(x, axis=dims, keepdims=True, dtype=widened(x)),
        lambda g, out, x, dims, full: expand(g, x),
        lambda t, input, dim, keepdim: t.sum(input, dim=dim, keepdim=keepdim),
        samples=sweep(DIMS_CASES),
        note="the upstream is copied over the reduced dims; int and bool inputs sum to int64",
    ),
    reduction(
        "mean",
        lambda x, dims, full: np.mean(floating_only("mean", x), axis=dims, keepdims=True),
        lambda g, out, x, dims, full: expand(g / count(x, dims), x),
        lambda t, input, dim, keepdim: t.mean(input, dim=dim, keepdim=keepdim),
        samples=sweep(DIMS_CASES),
        note="upstream / count of the reduced entries; integer inputs are an error, as in torch",
    ),
    reduction(
        "nansum",
        lambda x, dims, full: np.nansum(x, axis=dims, keepdims=True, dtype=widened(x)),
        lambda g, out, x, dims, full: g * ~np.isnan(x),
        lambda t, input, dim, keepdim: t.nansum(input, dim=dim, keepdim=keepdim),
        samples=both(sweep(DIMS_CASES), fixed(("NaNs", PEAKS, {"dim": 1}))),
        note="NaN entries get 0, the others the upstream",
    ),
    reduction(
        "nanmean",
        lambda x, dims, full: (
            np.nansum(floating_only("nanmean", x), axis=dims, keepdims=True)
            / (~np.isnan(x)).sum(axis=dims, keepdims=True).astype(x.dtype)
        ),
        lambda g, out, x, dims, full: (
            g / (~np.isnan(x)).sum(axis=dims, keepdims=True).astype(g.dtype) * ~np.isnan(x)
        ),
        lambda t, input, dim, keepdim: t.nanmean(input, dim=dim, keepdim=keepdim),
        samples=both(
            sweep(DIMS_CASES),
            fixed(("NaNs", PEAKS, {"dim": -1}), ("all-NaN column", PEAKS, {"dim": 0})),
        ),
        note="NaN entries get 0, the others upstream / count of non-NaN; an all-NaN slice gets NaN",
    ),
    # --- products ---
    reduction(
        "prod",
        lambda x, dims, full: np.prod(x, axis=dims, keepdims=True, dtype=widened(x)),
        prod_vjp,
        lambda t, input, dim, keepdim: (
            t.prod(input) if dim is None else t.prod(input, dim, keepdim)
        ),
        samples=both(
            sweep(INT_CASES),
            fixed(
                ("one zero, full", [[2.0, 3.0], [0.0, 5.0]], {}),
                ("two zeros, full", [[2.0, 0.0], [0.0, 5.0]], {}),
                ("zeros by row", ZEROS, {"dim": 1}),
                ("zeros by column", ZEROS, {"dim": 0, "keepdim": True}),
                ("one zero, 1-d", [0.0, -1.5, 2.0, 3.0], {"dim": -1}),
            ),
        ),
        dim=ONE_D,
        check=no_keepdim_without_dim("prod"),
        note="the product of the other entries: one zero gets the product of the rest, the rest "
        "(and everything when two zeros) get 0; torch uses out/x when the input has no zero",
    ),
    # --- extrema ---
    # max and min (values and indices with a dim) are in `runner.ops.outputs`.
    *(
        reduction(
            name,
            lambda x, dims, full, f=f: f(x, axis=dims, keepdims=True),
            spread_vjp,
            lambda t, input, dim, keepdim, name=name: getattr(t, name)(
                input, dim=[] if dim is None else dim, keepdim=keepdim
            ),
            samples=both(sweep(DIMS_CASES, ties), fixed(("NaN by row", PEAKS, {"dim": 1}))),
            check=no_empty_extremum(name),
            note="ties split the gradient evenly along the reduced dims (1/count); a NaN in a "
            "slice makes the whole slice's gradient NaN",
        )
        for name, f in (("amax", np.amax), ("amin", np.amin))
    ),
    # --- smooth maximum, spread, norms ---
    reduction(
        "logsumexp",
        logsumexp,
        lambda g, out, x, dims, full: g * np.exp(x - out),
        lambda t, input, dim, keepdim: t.logsumexp(input, dim, keepdim),
        samples=both(
            sweep([c for c in DIMS_CASES if c[1] is not None and (c[1] != [] or not c[0])]),
            fixed(
                ("-inf entries", [[-INF, 0.5, 1.0], [-INF, -INF, -INF]], {"dim": 1}),
                ("+inf entry", [[INF, 0.5], [1.0, 2.0]], {"dim": [0, 1], "keepdim": True}),
            ),
        ),
        dim=Param("dim", "dims"),
        check=logsumexp_check,
        note="softmax of the slice, exp(x - out); an all -inf slice gives -inf and NaN gradients; "
        "int inputs give float32",
    ),
    *(
        reduction(
            name,
            f,
            df,
            lambda t, input, dim, correction, keepdim, name=name: getattr(t, name)(
                input, dim, correction=correction, keepdim=keepdim
            ),
            samples=both(
                sweep(STAT_CASES, correction=1),
                sweep(STAT_CASES[:4], correction=0),
                sweep([((2, 3, 4), [0, 2], True)], correction=0.5),
                fixed(
                    ("N <= correction, no dim", [1.0, 2.0, 3.0], {"correction": 3}),
                    (
                        "N < correction, with dim",
                        [[1.0, 2.0], [3.0, 3.0]],
                        {"dim": 1, "correction": 3},
                    ),
                    (
                        "N == correction, with dim",
                        [[1.0, 2.0], [3.0, 3.0]],
                        {"dim": -1, "correction": 2},
                    ),
                    ("zero spread by row", [[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]], {"dim": 1}),
                    ("zero spread, full", [[2.0, 2.0], [2.0, 2.0]], {"correction": 0}),
                ),
            ),
            attrs=(Param("correction", "float", 1, kw_only=True),),
            check=no_empty_dims,
            note=note,
        )
        for name, f, df, note in (
            (
                "var",
                variance,
                var_vjp,
                "2/(N - correction) * (x - mean); dim=None with N <= correction gives inf (NaN "
                "where x equals the mean), with a dim N - correction is not clamped",
            ),
            (
                "std",
                lambda x, dims, full, correction: np.sqrt(variance(x, dims, full, correction)),
                std_vjp,
                "var's rule with upstream g / (2 std); zero spread (std == 0) gives 0",
            ),
        )
    ),
    reduction(
        "norm",
        vector_norm,
        norm_vjp,
        lambda t, input, p, dim, keepdim: t.norm(input, p, dim, keepdim),
        samples=both(
            sweep(DIMS_CASES, p=2),
            sweep(DIMS_CASES, p="fro"),  # every dim list here names at most 2 dims
            *(
                sweep([((3, 4), -1, False), ((3, 4), [0, 1], True), ((), 0, False)], p=p)
                for p in NORM_PS
            ),
            *(
                fixed(
                    (
                        "zero entries",
                        [[0.0, 1.0, -2.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                        {"dim": 1, "p": p},
                    ),
                    ("zero vector", [0.0, 0.0, 0.0], {"p": p}),
                    ("ties in |x|", [[-2.0, 2.0, 1.0]], {"dim": 1, "p": p, "keepdim": True}),
                    ("a NaN entry", [[1.0, NAN, -3.0], [1.0, 2.0, 0.0]], {"dim": 1, "p": p}),
                )
                for p in (2, "fro", *NORM_PS)
            ),
        ),
        lead=(Param("p", "float", "fro", choices=("fro",)),),
        check=fro_dims,
        note="torch.norm with a numeric p is the vector norm over dim (every dim for None), and "
        "p='fro' (the default) the 2-norm over at most 2 dims: a zero norm gives a zero gradient "
        "for p=2 (and p > 1); p=1 gives sign(x), 0 at 0; p=inf splits over the ties of |x|; "
        "p < 1 gives 0 at zero entries; p=0 has no gradient",
    ),
    # --- scans ---
    scan(
        "cumsum",
        lambda x, d: np.cumsum(x, axis=d, dtype=widened(x)),
        lambda g, out, x, d: rcumsum(g, d),
        lambda t, input, dim: t.cumsum(input, dim),
        samples=scan_sweep(SCAN_CASES),
        note="reversed cumulative sum of the upstream; int and bool inputs give int64",
    ),
    scan(
        "cumprod",
        lambda x, d: np.cumprod(x, axis=d, dtype=widened(x)),
        cumprod_vjp,
        lambda t, input, dim: t.cumprod(input, dim),
        samples=both(
            scan_sweep(SCAN_CASES),
            fixed(
                (
                    "zeros",
                    [
                        [2.0, 0.0, 3.0, 0.0, 4.0],
                        [0.0, 1.5, -2.0, 1.0, 0.5],
                        [1.0, 2.0, 0.5, -1.0, 0.0],
                    ],
                    {"dim": 1},
                ),
                ("zeros by column", ZEROS, {"dim": 0}),
            ),
        ),
        note="d out_j / d x_k is the product of x_0..x_j without x_k: exact at zeros (one zero "
        "gets the products up to the next zero, entries after it get 0)",
    ),
]

OPS += outputs.OPS
