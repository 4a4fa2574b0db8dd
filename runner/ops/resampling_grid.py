"""grid_sample (part of the resampling family), as torch 2.13's CPU kernel computes it
(aten/src/ATen/native/cpu/GridSamplerKernel.cpp), for 4-d input: bilinear, nearest and bicubic
sampling with zeros, border or reflection padding, in the input's precision.

A grid coordinate in [-1, 1] is unnormalised to pixels (``(g + 1) * (size - 1) / 2`` with
align_corners, else ``(g + 1) * size / 2 - 0.5``), then padded: border clips it to
``[0, size - 1]``, reflection reflects it about the border (the pixel centres 0 and size - 1 with
align_corners, the image edges -0.5 and size - 0.5 without) and clips it. The grid's gradient
carries the unnormalisation's factor and the padding's: 0 where clipping holds the coordinate at
a border (at the border itself too: torch counts it out of bounds) and a sign flip per
reflection. Nearest rounds half to even and gives the grid no gradient (0). Bicubic pads each of
its 16 taps rather than the coordinate, so its grid gradient has the unnormalisation's factor only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from runner.ops.spec import Array, Op, Param, Sample, Shape, ShapeError

FAMILY = "resampling"
CUBIC_A = -0.75  # torch's bicubic convolution constant, interpolate's and grid_sample's
MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")


class Axis(NamedTuple):
    """One spatial dim's geometry in the kernel's precision (ComputeLocationBase)."""

    size: int
    factor: Any  # d pixel / d grid coordinate
    low: Any  # where reflection turns (its lower end)
    twice_span: Any
    align_corners: bool
    padding: str

    @classmethod
    def of(cls, size: int, align_corners: bool, padding: str, dt: Any) -> Axis:
        if align_corners:
            return cls(size, dt(size - 1) / dt(2), dt(0), dt(size - 1) * dt(2), True, padding)
        return cls(size, dt(size) / dt(2), dt(-0.5), dt(size) * dt(2), False, padding)

    def unnormalize(self, g: Array) -> Array:
        x: Array = (g + 1) * self.factor
        return x if self.align_corners else x - self.factor.dtype.type(0.5)

    def clip(self, x: Array) -> tuple[Array, Array]:
        """Clipped to [0, size - 1], and 1 where the clip passes a change through (strictly
        inside: torch counts both borders out)."""
        top = x.dtype.type(self.size - 1)
        lo = np.maximum(x, 0)
        res = np.minimum(lo, top)
        return res, ((lo != 0) & (res != top)).astype(x.dtype)

    def reflect(self, x: Array) -> tuple[Array, Array]:
        """Reflected into [low, low + span], and the sign the reflection gives a change."""
        if self.align_corners and self.size <= 1:
            return np.zeros_like(x), np.zeros_like(x)
        shifted = x - self.low
        neg = shifted < 0
        mag = np.abs(shifted)
        extra = mag - np.trunc(mag / self.twice_span) * self.twice_span
        flipped = self.twice_span - extra
        more = extra > flipped
        sign = np.where(more ^ neg, -1, 1).astype(x.dtype)
        return np.where(more, flipped, extra) + self.low, sign

    def pad(self, x: Array) -> tuple[Array, Array]:
        """A pixel coordinate padded, and d padded / d coordinate."""
        if self.padding == "zeros":
            return x, np.ones_like(x)
        sign = np.ones_like(x)
        if self.padding == "reflection":
            x, sign = self.reflect(x)
        x, inside = self.clip(x)
        return x, sign * inside

    def locate(self, g: Array) -> tuple[Array, Array]:
        """Grid coordinates to padded pixel coordinates, and d pixel / d grid."""
        x, d = self.pad(self.unnormalize(g))
        return x, d * self.factor


def _gather(x: Array, iy: Array, ix: Array, ok: Array) -> Array:
    """``x[n, :, iy, ix]`` at ``(N, P)`` positions as ``(N, C, P)``, 0 where not ``ok``."""
    n = np.arange(x.shape[0])[:, None]
    h, w = x.shape[2:]
    v = x[n, :, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]  # (N, P, C)
    return np.moveaxis(np.where(ok[..., None], v, 0), -1, 1)


def _scatter(gx: Array, iy: Array, ix: Array, ok: Array, values: Array) -> None:
    """The transpose of `_gather`: ``values`` (N, C, P) added at the ``ok`` positions."""
    n = np.broadcast_to(np.arange(gx.shape[0])[:, None], iy.shape)
    v = np.moveaxis(values, 1, -1)  # (N, P, C)
    where: Any = (n[ok], slice(None), iy[ok], ix[ok])
    np.add.at(gx, where, v[ok])


def _in(i: Array, size: int) -> Array:
    return (i >= 0) & (i < size)


class _Bilinear(NamedTuple):
    corners: list[tuple[Array, Array, Array, Array]]  # (iy, ix, in bounds, weight) per corner
    n: Array
    s: Array
    w: Array
    e: Array


def _bilinear(x: Array, y: Array, h: int, wd: int, padding: str) -> _Bilinear:
    """compute_interp_params: the four corners around (x, y), their bounds and weights."""
    xw, yn = np.floor(x), np.floor(y)
    w = x - xw
    e = 1 - w
    n = y - yn
    s = 1 - n
    ixw, iyn = xw.astype(np.int64), yn.astype(np.int64)
    ixe, iys = ixw + 1, iyn + 1
    if padding == "zeros":
        wm, nm, em, sm = _in(ixw, wd), _in(iyn, h), _in(ixe, wd), _in(iys, h)
    else:
        wm = nm = np.ones(x.shape, bool)
        em, sm = ixe < wd, iys < h
    corners = [
        (iyn, ixw, nm & wm, s * e),
        (iyn, ixe, nm & em, s * w),
        (iys, ixw, sm & wm, n * e),
        (iys, ixe, sm & em, n * w),
    ]
    return _Bilinear(corners, n, s, w, e)


def _cubic(t: Array) -> list[Array]:
    a = t.dtype.type(CUBIC_A)
    near = [t, 1 - t]
    far = [t + 1, 2 - t]

    def c_near(v: Array) -> Array:
        out: Array = ((a + 2) * v - (a + 3)) * v * v + 1
        return out

    def c_far(v: Array) -> Array:
        out: Array = ((a * v - 5 * a) * v + 8 * a) * v - 4 * a
        return out

    return [c_far(far[0]), c_near(near[0]), c_near(near[1]), c_far(far[1])]


def _cubic_grad(t: Array) -> list[Array]:
    """get_cubic_coefficients_grad: d coefficient / d position of the sample."""
    a = t.dtype.type(CUBIC_A)
    x0, x1, x2, x3 = -1 - t, -t, 1 - t, 2 - t
    return [
        (-3 * a * x0 - 10 * a) * x0 - 8 * a,
        (-3 * (a + 2) * x1 - 2 * (a + 3)) * x1,
        (3 * (a + 2) * x2 - 2 * (a + 3)) * x2,
        (3 * a * x3 - 10 * a) * x3 + 8 * a,
    ]


def _setup(input: Array, grid: Array, mode: str, padding_mode: str, align_corners: bool) -> Any:
    dt = input.dtype.type
    h, w = input.shape[2:]
    ay, ax = (
        Axis.of(h, align_corners, padding_mode, dt),
        Axis.of(w, align_corners, padding_mode, dt),
    )
    g = grid.reshape(grid.shape[0], -1, 2).astype(input.dtype)
    return ay, ax, g[..., 0], g[..., 1]


def _cubic_taps(ay: Axis, ax: Axis, gx: Array, gy: Array) -> Any:
    """Bicubic's 16 taps: (iy, ix, in bounds, weight, d weight / dx, d weight / dy) each."""
    x, y = ax.unnormalize(gx), ay.unnormalize(gy)
    fx, fy = np.floor(x), np.floor(y)
    cx, cy = _cubic(x - fx), _cubic(y - fy)
    dx, dy = _cubic_grad(x - fx), _cubic_grad(y - fy)
    out = []
    for j in range(4):
        yy = ay.pad(fy + (j - 1))[0].astype(np.int64)
        for i in range(4):
            xx = ax.pad(fx + (i - 1))[0].astype(np.int64)
            ok = _in(xx, ax.size) & _in(yy, ay.size)
            out.append((yy, xx, ok, cx[i] * cy[j], dx[i] * cy[j], dy[j] * cx[i]))
    return out


def grid_sample_forward(
    input: Array, grid: Array, mode: str, padding_mode: str, align_corners: bool | None
) -> Array:
    """F.grid_sample for a 4-d input: (N, C, H, W) sampled at (N, Ho, Wo, 2) -> (N, C, Ho, Wo)."""
    ac = bool(align_corners)
    ay, ax, gx, gy = _setup(input, grid, mode, padding_mode, ac)
    n, c = input.shape[:2]
    if mode == "bicubic":
        out = sum(wt[:, None] * _gather(input, iy, ix, ok) for iy, ix, ok, wt, _, _ in
                  _cubic_taps(ay, ax, gx, gy))  # fmt: skip
    elif mode == "nearest":
        iy = np.rint(ay.locate(gy)[0]).astype(np.int64)
        ix = np.rint(ax.locate(gx)[0]).astype(np.int64)
        ok = _in(iy, ay.size) & _in(ix, ax.size)
        out = _gather(input, iy, ix, ok)
    else:
        b = _bilinear(ax.locate(gx)[0], ay.locate(gy)[0], ay.size, ax.size, padding_mode)
        out = sum(wt[:, None] * _gather(input, iy, ix, ok) for iy, ix, ok, wt in b.corners)
    return np.asarray(out, dtype=input.dtype).reshape(n, c, *grid.shape[1:3])


def grid_sample_vjp(
    g: Array,
    out: Array,
    input: Array,
    grid: Array,
    mode: str,
    padding_mode: str,
    align_corners: bool | None,
) -> tuple[Array, Array]:
    """torch's grid_sampler_2d_backward: the input's gradient scatters each sample's weights;
    the grid's is d output / d pixel coordinate (summed over channels) times d pixel / d grid."""
    ac = bool(align_corners)
    ay, ax, gxs, gys = _setup(input, grid, mode, padding_mode, ac)
    go = g.reshape(*g.shape[:2], -1)
    g_in = np.zeros_like(input)
    g_grid = np.zeros(grid.shape, dtype=input.dtype)
    if mode == "nearest":
        iy = np.rint(ay.locate(gys)[0]).astype(np.int64)
        ix = np.rint(ax.locate(gxs)[0]).astype(np.int64)
        _scatter(g_in, iy, ix, _in(iy, ay.size) & _in(ix, ax.size), go)
        return g_in, g_grid  # the grid has no gradient in nearest mode
    if mode == "bicubic":
        ddx = ddy = np.zeros_like(gxs)
        for iy, ix, ok, wt, wdx, wdy in _cubic_taps(ay, ax, gxs, gys):
            _scatter(g_in, iy, ix, ok, go * wt[:, None])
            val_g = (_gather(input, iy, ix, ok) * go).sum(axis=1)
            ddx = ddx - val_g * wdx
            ddy = ddy - val_g * wdy
        mx, my = ax.factor, ay.factor
    else:
        x, mx = ax.locate(gxs)
        y, my = ay.locate(gys)
        b = _bilinear(x, y, ay.size, ax.size, padding_mode)
        vals = []
        for iy, ix, ok, wt in b.corners:
            _scatter(g_in, iy, ix, ok, go * wt[:, None])
            vals.append(_gather(input, iy, ix, ok))
        nw, ne, sw, se = vals
        ddx = (((ne - nw) * b.s[:, None] + (se - sw) * b.n[:, None]) * go).sum(axis=1)
        ddy = (((sw - nw) * b.e[:, None] + (se - ne) * b.w[:, None]) * go).sum(axis=1)
    g_grid[..., 0] = (ddx * mx).reshape(grid.shape[:3])
    g_grid[..., 1] = (ddy * my).reshape(grid.shape[:3])
    return g_in, g_grid


def grid_sample_shape(
    input: Shape, grid: Shape, mode: str, padding_mode: str, align_corners: bool | None
) -> Shape:
    op = "grid_sample"
    if len(input) == 5:
        raise ShapeError(f"{op}: 5-d (volumetric) input is not in the catalogue; 4-d is")
    if len(input) != 4 or len(grid) != 4 or grid[3] != 2:
        raise ShapeError(
            f"{op}: expected input (N, C, H, W) and grid (N, H_out, W_out, 2), got input "
            f"{tuple(input)} and grid {tuple(grid)}"
        )
    if input[0] != grid[0]:
        raise ShapeError(f"{op}: input {tuple(input)} and grid {tuple(grid)} differ in batch size")
    if min(input[2:]) <= 0:
        raise ShapeError(f"{op}: input {tuple(input)} has an empty spatial dim")
    return (input[0], input[1], grid[1], grid[2])


def grid_sample_kinks(
    h: float, input: Any, grid: Any, mode: str = "bilinear", padding_mode: str = "zeros",
    align_corners: Any = None, moved: Any = None,
) -> str | None:  # fmt: skip
    """Bilinear: a pixel coordinate at an integer (its weights' slope jumps; clipping and
    reflection turn there or, without align_corners, at half-integers); nearest: at a
    half-integer (rounding jumps to the next pixel). Bicubic's kernel is C1: no kink."""
    if mode == "bicubic":
        return None
    g = np.asarray(grid, dtype=np.float64)
    shape = np.shape(input)
    found = 0
    for k, size in ((0, shape[3]), (1, shape[2])):
        a = Axis.of(size, bool(align_corners), padding_mode, np.float64)
        x = a.unnormalize(g[..., k])
        reach = h * float(a.factor)
        frac = np.abs(x - np.round(x))
        half = np.abs(frac - 0.5)
        if mode == "nearest":
            found += int(np.count_nonzero(half <= reach))
        else:
            at = frac <= reach
            if padding_mode == "reflection" and not align_corners:
                at |= half <= reach
            found += int(np.count_nonzero(at))
    if not found:
        return None
    where = "a half-integer" if mode == "nearest" else "an integer (or a reflection point)"
    return f"{found} grid coordinate(s) within {h:.2g} of {where} in pixels"


def _grid_samples(rng: np.random.Generator) -> list[Sample]:
    out = []
    for mode in MODES:
        for pad in PADDINGS:
            for ac in (False, True):
                grid = rng.uniform(-1.3, 1.3, size=(2, 3, 4, 2))
                out.append(
                    Sample(
                        {
                            "input": rng.normal(size=(2, 2, 4, 5)),
                            "grid": grid,
                            "mode": mode,
                            "padding_mode": pad,
                            "align_corners": ac,
                        },  # fmt: skip
                        note=f"{mode} {pad} align_corners={ac}",
                    )
                )
    # Edge points: the corners (+-1), the centre and far outside (reflection folds twice).
    edges = np.array(
        [[[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]], [[-1.0, 1.0], [2.9, -3.7], [1.0, 0.3]]]]
    )
    for mode in MODES:
        for pad in PADDINGS:
            out.append(
                Sample(
                    {
                        "input": rng.normal(size=(1, 2, 3, 4)),
                        "grid": edges,
                        "mode": mode,
                        "padding_mode": pad,
                        "align_corners": True,
                    },  # fmt: skip
                    note=f"{mode} {pad}: the corners, the centre, far outside",
                )
            )
    return out


GRID_SAMPLE = Op(
    name="grid_sample",
    family=FAMILY,
    params=(
        Param("input", "tensor"),
        Param("grid", "tensor"),
        Param("mode", "str", "bilinear", choices=MODES),
        Param("padding_mode", "str", "zeros", choices=PADDINGS),
        Param("align_corners", "bool?", None),
    ),
    forward=grid_sample_forward,
    vjp=grid_sample_vjp,
    torch=lambda t, **kw: t.nn.functional.grid_sample(**kw),
    shape=grid_sample_shape,
    samples=_grid_samples,
    note=(
        "4-d input only. Nearest rounds half to even and gives the grid gradient 0; bilinear's "
        "grid gradient at an integer pixel coordinate is the one-sided slope of the cell floor() "
        "picks; border and reflection clip with gradient 0 at and beyond the borders (torch "
        "counts a coordinate exactly at 0 or size - 1 as clipped) and reflection flips its sign "
        "once per reflection; bicubic pads each tap and passes no gradient through the padding. "
        "align_corners=None is False"
    ),
)

OPS: list[Op] = [GRID_SAMPLE]
