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

    def forward(self, p: np.ndarray) -> np.ndarray:
        m = self.matrix
        return p @ m[:, :2].T + m[:, 2]

    def backward(self, q: np.ndarray) -> np.ndarray:
        inv = cv2.invertAffineTransform(self.matrix.astype(np.float64))
        return q @ inv[:, :2].T + inv[:, 2]


@dataclass
class Homography:
    """Projective map of the flat paper plane onto the camera plane (3 x 3 `matrix`, forward)."""

    matrix: np.ndarray

    @staticmethod
    def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
        h = p @ m[:, :2].T + m[:, 2]
        return h[:, :2] / h[:, 2:3]

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
        c = np.asarray(self.center)
        v = (d - c) / self.norm
        r2 = (v * v).sum(1, keepdims=True)
        return c + (d - c) * (1.0 + self.k1 * r2 + self.k2 * r2 * r2)

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
        s = np.sin(2 * np.pi * (q @ np.asarray(self.freq)) + self.phase)
        return s[:, None] * np.asarray(self.amp)


@dataclass
class Ridge:
    """A wrinkle: points near a line segment shift along its normal by a Gaussian profile."""

    center: Tuple[float, float]
    angle: float  # direction of the line, radians
    width: float  # Gaussian sigma across the line, page px
    half_length: float
    amp: float  # shift along the normal at the line, page px

    def profile(self, q):
        """(s, along-window, gaussian) of each point: s is the signed distance to the line."""
        t = np.array([np.cos(self.angle), np.sin(self.angle)])
        n = np.array([-t[1], t[0]])
        rel = q - np.asarray(self.center)
        s = rel @ n
        a = rel @ t
        window = np.exp(-((a / self.half_length) ** 4))
        return s, window, np.exp(-0.5 * (s / self.width) ** 2), n

    def __call__(self, q):
        s, window, g, n = self.profile(q)
        return (self.amp * window * g)[:, None] * n


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
        return (q - np.asarray(self.point)) @ n, n

    def __call__(self, q):
        s, n = self.signed_distance(q)
        e = self.softness
        # d = slope * n * (sqrt(s^2+e^2) - e) pulls no point across the line and is C-infinity.
        return (self.slope * (np.sqrt(s * s + e * e) - e))[:, None] * n


@dataclass
class Displacement:
    """Paper that is not flat: the flat-view point q shows page point p = q + d(q).

    `forward` (page -> flat view) solves q + d(q) = p by Newton with a numerical Jacobian;
    the terms keep |grad d| well below 1 so that the map is one-to-one.
    """

    terms: List = field(default_factory=list)

    def displacement(self, q: np.ndarray) -> np.ndarray:
        d = np.zeros_like(q)
        for term in self.terms:
            d += term(q)
        return d

    def backward(self, q: np.ndarray) -> np.ndarray:
        return q + self.displacement(q)

    def forward(self, p: np.ndarray) -> np.ndarray:
        q = p - self.displacement(p)
        h = 0.25
        ex = np.array([h, 0.0])
        ey = np.array([0.0, h])
        for _ in range(_NEWTON_MAX_ITER):
            r = self.backward(q) - p
            if np.max(np.abs(r), initial=0.0) < _NEWTON_TOL * 0.01:
                break
            jx = (self.backward(q + ex) - self.backward(q - ex)) / (2 * h)
            jy = (self.backward(q + ey) - self.backward(q - ey)) / (2 * h)
            det = jx[:, 0] * jy[:, 1] - jy[:, 0] * jx[:, 1]
            dx = (jy[:, 1] * r[:, 0] - jy[:, 0] * r[:, 1]) / det
            dy = (-jx[:, 1] * r[:, 0] + jx[:, 0] * r[:, 1]) / det
            q = q - np.stack([dx, dy], 1)
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


def dense_backward_map(steps: Sequence, width: int, height: int, cell: int = 8):
    """float32 (map_x, map_y) of shape (height, width) for cv2.remap: output pixel -> source pixel.

    The chain is evaluated exactly at the centres of `cell` x `cell` blocks (plus a 1-node margin
    so that every pixel lies between nodes) and upsampled with cv2.resize(INTER_LINEAR), whose
    pixel-centre convention puts node k exactly at pixel (k + 0.5) * cell - 0.5. Bilinear, not
    cubic: OpenCV's cubic kernel (a = -0.75) does not even reproduce linear maps (errors of
    0.2 px on a page-sized map); bilinear errs by cell^2 / 8 * |map''|, under 0.03 px for the
    smooth maps used here. Also returns the exact (gh, gw, 2) node values at the block centres.
    """
    margin = 1
    gw = -(-width // cell) + 2 * margin
    gh = -(-height // cell) + 2 * margin
    xs = (np.arange(gw) - margin + 0.5) * cell - 0.5
    ys = (np.arange(gh) - margin + 0.5) * cell - 0.5
    gx, gy = np.meshgrid(xs, ys)
    src = backward_through(steps, np.stack([gx.ravel(), gy.ravel()], 1))
    out = []
    for k in range(2):
        coarse = src[:, k].reshape(gh, gw).astype(np.float32)
        fine = cv2.resize(coarse, (gw * cell, gh * cell), interpolation=cv2.INTER_LINEAR)
        out.append(np.ascontiguousarray(fine[margin * cell:margin * cell + height, margin * cell:margin * cell + width]))
    nodes = src.reshape(gh, gw, 2)[margin:-margin, margin:-margin]
    return out[0], out[1], nodes


def coarse_backward_grid(steps: Sequence, width: int, height: int, cell: int) -> np.ndarray:
    """(gh, gw, 2) source points at the centres of `cell`-sized blocks: cheap masks and fields."""
    gw, gh = -(-width // cell), -(-height // cell)
    xs = (np.arange(gw) + 0.5) * cell - 0.5
    ys = (np.arange(gh) + 0.5) * cell - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return backward_through(steps, np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gh, gw, 2)
