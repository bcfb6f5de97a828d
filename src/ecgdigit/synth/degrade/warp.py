"""Exactly known geometry from a clean page to a degraded image.

A `Warp` is a chain of steps, each with an exact `forward` (towards the output image) and `backward`
(towards the page). One of the two directions of a step is analytic; the other is solved by Newton
iteration to far below 0.01 px. The image itself is made with ONE `cv2.remap` whose map is the
backward chain evaluated on a coarse grid of output pixels and upsampled (`dense_backward_map`).

Coordinates are pixel centres, x right, y down, as in cv2.remap: pixel (0, 0) covers [-0.5, 0.5]^2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from ecgdigit.layout import N_ORIENTATIONS

_NEWTON_TOL = 1e-4  # px; far below the 0.05 px the contract promises
_NEWTON_MAX_ITER = 50


def _as_points(points) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    return pts


@dataclass
class Affine:
    """q = A p + b, with `matrix` = [A | b] (2 x 3)."""

    matrix: np.ndarray

    @staticmethod
    def _apply(m, p):
        x, y = p[:, 0], p[:, 1]
        return np.stack([m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]], 1)

    def forward(self, p: np.ndarray) -> np.ndarray:
        return self._apply(np.asarray(self.matrix, np.float64), p)

    def backward(self, q: np.ndarray) -> np.ndarray:
        return self._apply(cv2.invertAffineTransform(np.asarray(self.matrix, np.float64)), q)


@dataclass
class Homography:
    """Projective map of the flat paper plane onto the camera plane (3 x 3 `matrix`, forward)."""

    matrix: np.ndarray

    @staticmethod
    def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
        x, y = p[:, 0], p[:, 1]
        w = 1.0 / (m[2, 0] * x + m[2, 1] * y + m[2, 2])
        return np.stack([(m[0, 0] * x + m[0, 1] * y + m[0, 2]) * w, (m[1, 0] * x + m[1, 1] * y + m[1, 2]) * w], 1)

    def forward(self, p: np.ndarray) -> np.ndarray:
        return self._apply(self.matrix, p)

    def backward(self, q: np.ndarray) -> np.ndarray:
        return self._apply(np.linalg.inv(self.matrix), q)


@dataclass
class RadialLens:
    """Radial lens distortion about `center`.

    Defined in the backward direction (recorded pixel d -> ideal pinhole point u):
    u = c + (d - c) * (1 + k1 r^2 + k2 r^4), r = |d - c| / norm. Forward solves that for d by Newton.
    """

    center: Tuple[float, float]
    norm: float
    k1: float
    k2: float

    def _radial(self, r):
        return r * (1.0 + self.k1 * r * r + self.k2 * r ** 4)

    def backward(self, d: np.ndarray) -> np.ndarray:
        dx, dy = d[:, 0] - self.center[0], d[:, 1] - self.center[1]
        r2 = (dx * dx + dy * dy) * (1.0 / self.norm ** 2)
        f = 1.0 + self.k1 * r2 + self.k2 * r2 * r2
        return np.stack([self.center[0] + dx * f, self.center[1] + dy * f], 1)

    def forward(self, u: np.ndarray) -> np.ndarray:
        c = np.asarray(self.center)
        ru = np.hypot(*((u - c) / self.norm).T)
        rd = ru.copy()
        for _ in range(_NEWTON_MAX_ITER):
            f = self._radial(rd) - ru
            df = 1.0 + 3 * self.k1 * rd ** 2 + 5 * self.k2 * rd ** 4
            step = f / df
            rd -= step
            if np.all(np.abs(step) * self.norm < 1e-7):
                break
        scale = np.where(ru > 1e-12, rd / np.maximum(ru, 1e-12), 1.0)
        return c + (u - c) * scale[:, None]


# --- smooth paper deformation -------------------------------------------------------------------
@dataclass
class Wave:
    """Displacement `amp` * sin(2 pi freq . q + phase), in page pixels."""

    amp: Tuple[float, float]
    freq: Tuple[float, float]  # cycles per page pixel
    phase: float

    def __call__(self, q):
        s = np.sin((2 * np.pi * self.freq[0]) * q[:, 0] + (2 * np.pi * self.freq[1]) * q[:, 1] + self.phase)
        return np.stack([s * self.amp[0], s * self.amp[1]], 1)

    def value_and_jacobian(self, q):
        """(d (N, 2), J (N, 2, 2)) with J[:, r, c] = d d_r / d q_c."""
        wx, wy = 2 * np.pi * self.freq[0], 2 * np.pi * self.freq[1]
        ph = wx * q[:, 0] + wy * q[:, 1] + self.phase
        sn, cs = np.sin(ph), np.cos(ph)
        d = np.stack([sn * self.amp[0], sn * self.amp[1]], 1)
        jac = np.empty((len(q), 2, 2))
        jac[:, 0, 0], jac[:, 0, 1] = self.amp[0] * wx * cs, self.amp[0] * wy * cs
        jac[:, 1, 0], jac[:, 1, 1] = self.amp[1] * wx * cs, self.amp[1] * wy * cs
        return d, jac


@dataclass
class Ridge:
    """A wrinkle: points near a line segment shift along its normal by a Gaussian profile."""

    center: Tuple[float, float]
    angle: float  # direction of the line, radians
    width: float  # Gaussian sigma across the line, page px
    half_length: float
    amp: float  # shift along the normal at the line, page px

    def _frame(self):
        t = np.array([np.cos(self.angle), np.sin(self.angle)])
        return t, np.array([-t[1], t[0]])

    def _local(self, q):
        """Indices of the points near the segment and their (along a, across s) coordinates.
        Only those move (the window is < 1e-6 beyond 1.9 half-lengths, the Gaussian beyond 5.5
        widths), which keeps many wrinkles cheap."""
        t, n = self._frame()
        ext = np.abs(t) * 1.9 * self.half_length + np.abs(n) * 5.5 * self.width
        rx, ry = q[:, 0] - self.center[0], q[:, 1] - self.center[1]
        idx = np.flatnonzero((np.abs(rx) <= ext[0]) & (np.abs(ry) <= ext[1]))
        rx, ry = rx[idx], ry[idx]
        a = rx * t[0] + ry * t[1]
        s = rx * n[0] + ry * n[1]
        inside = (np.abs(a) <= 1.9 * self.half_length) & (np.abs(s) <= 5.5 * self.width)
        return idx[inside], a[inside], s[inside], t, n

    def profile(self, q):
        """(s, along-window, gaussian, normal) of each point: s is the signed distance to the line."""
        t, n = self._frame()
        rx, ry = q[:, 0] - self.center[0], q[:, 1] - self.center[1]
        s = rx * n[0] + ry * n[1]
        a = rx * t[0] + ry * t[1]
        return s, np.exp(-((a / self.half_length) ** 4)), np.exp(-0.5 * (s / self.width) ** 2), n

    def __call__(self, q):
        idx, a, s, t, n = self._local(q)
        out = np.zeros_like(q)
        if len(idx):
            v = self.amp * np.exp(-((a / self.half_length) ** 4) - 0.5 * (s / self.width) ** 2)
            out[idx, 0] = v * n[0]
            out[idx, 1] = v * n[1]
        return out

    def value_and_jacobian(self, q):
        idx, a, s, t, n = self._local(q)
        d = np.zeros_like(q)
        jac = np.zeros((len(q), 2, 2))
        if len(idx):
            wg = np.exp(-((a / self.half_length) ** 4) - 0.5 * (s / self.width) ** 2)
            # grad(window * g) = window g' n + window' g t
            ds = -s / self.width ** 2 * wg
            da = -4 * a ** 3 / self.half_length ** 4 * wg
            gx = ds * n[0] + da * t[0]
            gy = ds * n[1] + da * t[1]
            d[idx, 0] = self.amp * wg * n[0]
            d[idx, 1] = self.amp * wg * n[1]
            jac[idx, 0, 0], jac[idx, 0, 1] = self.amp * n[0] * gx, self.amp * n[0] * gy
            jac[idx, 1, 0], jac[idx, 1, 1] = self.amp * n[1] * gx, self.amp * n[1] * gy
        return d, jac


@dataclass
class Fold:
    """A fold or crease line: both halves lean towards it (a softened kink)."""

    point: Tuple[float, float]
    angle: float
    softness: float  # page px over which the kink is rounded
    slope: float  # foreshortening of each half, dimensionless (0.005 .. 0.03)

    def signed_distance(self, q):
        t = np.array([np.cos(self.angle), np.sin(self.angle)])
        n = np.array([-t[1], t[0]])
        return (q[:, 0] - self.point[0]) * n[0] + (q[:, 1] - self.point[1]) * n[1], n

    def __call__(self, q):
        s, n = self.signed_distance(q)
        e = self.softness
        # d = slope * n * (sqrt(s^2+e^2) - e) pulls no point across the line and is C-infinity.
        return (self.slope * (np.sqrt(s * s + e * e) - e))[:, None] * n

    def value_and_jacobian(self, q):
        s, n = self.signed_distance(q)
        e = self.softness
        root = np.sqrt(s * s + e * e)
        d = (self.slope * (root - e))[:, None] * n
        k = self.slope * s / root  # d/ds of the profile; grad s = n
        jac = np.empty((len(q), 2, 2))
        jac[:, 0, 0], jac[:, 0, 1] = k * n[0] * n[0], k * n[0] * n[1]
        jac[:, 1, 0], jac[:, 1, 1] = k * n[1] * n[0], k * n[1] * n[1]
        return d, jac


@dataclass
class Displacement:
    """Paper that is not flat: the flat-view point q shows page point p = q + d(q).

    `forward` (page -> flat view) solves q + d(q) = p by Newton with a numerical Jacobian;
    the terms keep |grad d| well below 1 so that the map is one-to-one. `support` (x0, y0, x1, y1):
    d is 0 outside this box (set it well around the page: there only the table shows), which
    saves evaluating the terms where nothing of the page is seen.
    """

    terms: List = field(default_factory=list)
    support: Tuple[float, float, float, float] | None = None

    def displacement(self, q: np.ndarray) -> np.ndarray:
        if self.support is not None:
            x0, y0, x1, y1 = self.support
            keep = (q[:, 0] >= x0) & (q[:, 0] <= x1) & (q[:, 1] >= y0) & (q[:, 1] <= y1)
            d = np.zeros_like(q)
            if np.any(keep):
                sub = q[keep]
                acc = np.zeros_like(sub)
                for term in self.terms:
                    acc += term(sub)
                d[keep] = acc
            return d
        d = np.zeros_like(q)
        for term in self.terms:
            d += term(q)
        return d

    def backward(self, q: np.ndarray) -> np.ndarray:
        return q + self.displacement(q)

    def value_and_jacobian(self, q: np.ndarray):
        d = np.zeros_like(q)
        jac = np.zeros((len(q), 2, 2))
        keep = None
        if self.support is not None:
            x0, y0, x1, y1 = self.support
            keep = (q[:, 0] >= x0) & (q[:, 0] <= x1) & (q[:, 1] >= y0) & (q[:, 1] <= y1)
            if not np.any(keep):
                return d, jac
            sub = q[keep]
        else:
            sub = q
        dd = np.zeros_like(sub)
        jj = np.zeros((len(sub), 2, 2))
        for term in self.terms:
            v, j = term.value_and_jacobian(sub)
            dd += v
            jj += j
        if keep is None:
            return dd, jj
        d[keep], jac[keep] = dd, jj
        return d, jac

    def forward(self, p: np.ndarray) -> np.ndarray:
        """Newton on q + d(q) = p with the analytic Jacobian, iterating only unconverged points."""
        q = p - self.displacement(p)
        active = np.arange(len(p))
        for _ in range(_NEWTON_MAX_ITER):
            if len(active) == 0:
                break
            qa = q[active]
            d, jac = self.value_and_jacobian(qa)
            r = qa + d - p[active]
            done = np.abs(r).max(1) < _NEWTON_TOL * 0.01
            a11, a12 = 1 + jac[:, 0, 0], jac[:, 0, 1]
            a21, a22 = jac[:, 1, 0], 1 + jac[:, 1, 1]
            det = a11 * a22 - a12 * a21
            dx = (a22 * r[:, 0] - a12 * r[:, 1]) / det
            dy = (-a21 * r[:, 0] + a11 * r[:, 1]) / det
            step = np.stack([dx, dy], 1)
            step[done] = 0
            q[active] = qa - step
            active = active[~done]
        return q


@dataclass
class Orientation:
    """The upright canvas (`width` x `height`) turned by layout orientation `code`
    (optional left-right mirror, then code % 4 quarter turns counter-clockwise), exactly as
    `layout.apply_orientation` turns an image."""

    code: int
    width: int
    height: int

    def __post_init__(self):
        if not 0 <= self.code < N_ORIENTATIONS:
            raise ValueError(f"orientation code must be in 0..7, got {self.code}")

    def forward(self, p: np.ndarray) -> np.ndarray:
        x, y = p[:, 0].copy(), p[:, 1].copy()
        w, h = self.width, self.height
        if self.code >= 4:
            x = (w - 1) - x
        for _ in range(self.code % 4):  # one counter-clockwise quarter turn: (x, y) -> (y, w-1-x)
            x, y = y, (w - 1) - x
            w, h = h, w
        return np.stack([x, y], 1)

    def backward(self, q: np.ndarray) -> np.ndarray:
        x, y = q[:, 0].copy(), q[:, 1].copy()
        k = self.code % 4
        # sizes of the canvas before each quarter turn
        sizes = [(self.width, self.height) if i % 2 == 0 else (self.height, self.width) for i in range(k)]
        for w, _h in reversed(sizes):
            x, y = (w - 1) - y, x
        if self.code >= 4:
            x = (self.width - 1) - x
        return np.stack([x, y], 1)

    @property
    def output_size(self) -> Tuple[int, int]:
        return (self.height, self.width) if self.code % 2 else (self.width, self.height)


class Warp:
    """Page pixel -> output image pixel geometry, composed of every geometric step of a degradation.

    `forward(points)` maps (N, 2) page points (x, y) to output pixels; `backward` maps output pixels
    back to the page. Both are exact to < 1e-3 px (Newton for the implicit steps).
    `output_size` is (width, height) of the output image.
    """

    def __init__(self, steps: Sequence = (), output_size: Tuple[int, int] | None = None):
        self.steps = list(steps)
        self.output_size = output_size

    def forward(self, points: np.ndarray) -> np.ndarray:
        p = _as_points(points)
        for step in self.steps:
            p = step.forward(p)
        return p

    def backward(self, points: np.ndarray) -> np.ndarray:
        q = _as_points(points)
        for step in reversed(self.steps):
            q = step.backward(q)
        return q

    @property
    def orientation(self) -> int:
        for step in self.steps:
            if isinstance(step, Orientation):
                return step.code
        return 0

    def __repr__(self) -> str:
        return f"Warp({[type(s).__name__ for s in self.steps]}, output_size={self.output_size})"


def backward_through(steps: Sequence, points: np.ndarray) -> np.ndarray:
    q = points
    for step in reversed(list(steps)):
        q = step.backward(q)
    return q


_QUARTER = np.array([-0.0546875, 0.8203125, 0.2734375, -0.0390625])  # cubic Lagrange at t = 1/4


def _refine(a: np.ndarray, axis: int) -> np.ndarray:
    """Values at the quarter points k + 1/4 and k + 3/4 between nodes k = 1 .. n-3 (4-point cubic
    Lagrange, exact for cubics), interleaved: a grid of twice the density, shifted by 1/4."""
    a = np.moveaxis(a, axis, 0)
    n = a.shape[0]
    taps = [a[i:n - 3 + i] for i in range(4)]
    q1 = sum(w * t for w, t in zip(_QUARTER, taps))
    q3 = sum(w * t for w, t in zip(_QUARTER[::-1], taps))
    out = np.empty((2 * (n - 3),) + a.shape[1:], a.dtype)
    out[0::2], out[1::2] = q1, q3
    return np.moveaxis(out, 0, axis)


def dense_backward_map(steps: Sequence, width: int, height: int, cell: int = 8):
    """float32 (map_x, map_y) of shape (height, width) for cv2.remap: output pixel -> source pixel,
    and the exact (gh, gw, 2) values at the centres of the `cell` x `cell` blocks.

    The chain is evaluated exactly at the block centres (plus 2 nodes of margin), refined to
    half-size blocks by cubic interpolation and upsampled with cv2.resize(INTER_LINEAR), whose
    pixel-centre convention puts refined node j exactly at pixel (j - 1 + 0.5) * cell/2 - 0.5.
    Not cv2's INTER_CUBIC: its kernel (a = -0.75) does not even reproduce linear maps (0.2 px
    errors on page-sized maps). The bilinear step errs by (cell/2)^2 / 8 * |map''|: < 0.02 px
    for the maps made here (checked in tests/test_degrade.py).
    """
    if cell % 2:
        raise ValueError(f"cell must be even, got {cell}")
    margin = 2
    gw = -(-width // cell) + 2 * margin
    gh = -(-height // cell) + 2 * margin
    xs = (np.arange(gw) - margin + 0.5) * cell - 0.5
    ys = (np.arange(gh) - margin + 0.5) * cell - 0.5
    gx, gy = np.meshgrid(xs, ys)
    src = backward_through(steps, np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gh, gw, 2)
    half = cell // 2
    out = []
    for k in range(2):
        fine = _refine(_refine(src[..., k], 1), 0).astype(np.float32)
        fine = cv2.resize(fine, (fine.shape[1] * half, fine.shape[0] * half), interpolation=cv2.INTER_LINEAR)
        out.append(fine[half:half + height, half:half + width])  # a view: cv2 takes row strides
    return out[0], out[1], src[margin:-margin, margin:-margin]
