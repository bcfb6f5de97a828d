"""One synthetic sample end to end: record -> clean page -> degraded image, with labels in image pixels.

Seeding: everything about record k of a run with seed S comes from generators keyed by (S, k, ...),
so a sample is the same whichever worker renders it and whichever other types are requested.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ecgdigit.layout import (
    CANONICAL_HEIGHT,
    CANONICAL_WIDTH,
    DEFAULT_DPI,
    KEYPOINT_NAMES,
    LETTER,
    STANDARD_3X4,
    PaperLayout,
    PaperSize,
)
from ecgdigit.synth.render import LeadPixelPath, PageStyle, RenderedPage, apply_affine, render_page
from ecgdigit.synth.signals import simulate_record_with_params
from ecgdigit.synth.traces import render_band_masks

COMPETITION_FS = (250.0, 256.0, 500.0, 512.0, 1000.0, 1025.0)
MESH_STEP = 16  # canonical pixels between the nodes of the stored canonical -> image mesh


@dataclass
class SynthSample:
    """One image and its exact labels (all coordinates in output-image pixels, (x, y))."""

    record_id: str
    image_type: str
    fs: float
    signals: np.ndarray  # (n, 12) mV, the full simulated record
    image: np.ndarray  # (H, W, 3) uint8 RGB
    orientation: int  # layout orientation code of the image (0 = upright)
    keypoints: np.ndarray  # (13, 2) KEYPOINT_NAMES order, NaN where the layout has no such label
    grid_nodes: np.ndarray  # (n_h, n_v, 2) large-grid node (j, i)
    lead_paths: List[LeadPixelPath]  # per printed segment, xy in image pixels
    canonical_mesh: np.ndarray  # (ny, nx, 2): image xy of canonical (MESH_STEP * ix, MESH_STEP * iy)
    page: RenderedPage  # the clean page (page-pixel labels, style, layout)
    warp: object  # .forward(page px) -> image px

    @property
    def layout(self) -> PaperLayout:
        return self.page.layout

    @property
    def image_id(self) -> str:
        return f"{self.record_id}-{self.image_type}"


def type_code(image_type: str) -> int:
    """A stable integer for seeding from a type string such as '0005'."""
    return zlib.crc32(str(image_type).encode()) & 0x7FFFFFFF


def record_rng(seed: int, index: int, stage: int, image_type: Optional[str] = None) -> np.random.Generator:
    """Independent generator of stage `stage` of record `index` (and image type) of run `seed`."""
    key = [int(seed) & 0xFFFFFFFF, int(index), int(stage)]
    if image_type is not None:
        key.append(type_code(image_type))
    return np.random.default_rng(key)


def choose_fs(rng: np.random.Generator, fs_choices: Sequence[float] = COMPETITION_FS) -> float:
    return float(fs_choices[rng.integers(len(fs_choices))])


def degrade_page(page_rgb: np.ndarray, image_type: str, rng: np.random.Generator):
    """(image, orientation, warp) of `image_type` made from the clean page."""
    from ecgdigit.synth.degrade import degrade

    out = degrade(page_rgb, image_type, rng)
    image = np.ascontiguousarray(out.image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image, int(out.orientation), out.warp


def canonical_grid(step: int = MESH_STEP, width: int = CANONICAL_WIDTH, height: int = CANONICAL_HEIGHT):
    """Canonical x and y node positions of the mesh: 0, step, ... up to and including the frame edge."""
    xs = np.arange(0, width + step, step, dtype=np.float64)
    ys = np.arange(0, height + step, step, dtype=np.float64)
    return xs, ys


def canonical_mesh(page: RenderedPage, warp, step: int = MESH_STEP) -> np.ndarray:
    """Image xy of every canonical mesh node: (ny, nx, 2) float64."""
    xs, ys = canonical_grid(step)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    return warp.forward(apply_affine(page.page_from_canonical, pts)).reshape(len(ys), len(xs), 2)


def dense_map(mesh: np.ndarray, step: int = MESH_STEP, width: int = CANONICAL_WIDTH,
              height: int = CANONICAL_HEIGHT) -> Tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation of the mesh at every canonical pixel: (map_x, map_y) float32 (height, width).

    The result feeds cv2.remap(image, map_x, map_y, ...) to view the image in the canonical frame.
    """
    sx = CANONICAL_WIDTH / width
    sy = CANONICAL_HEIGHT / height
    u = (np.arange(width, dtype=np.float32) * sx / step)[None, :].repeat(height, 0)
    v = (np.arange(height, dtype=np.float32) * sy / step)[:, None].repeat(width, 1)
    m = mesh.astype(np.float32)
    mx = cv2.remap(np.ascontiguousarray(m[:, :, 0]), u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    my = cv2.remap(np.ascontiguousarray(m[:, :, 1]), u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return mx, my


def make_sample(seed: int, index: int, image_type: str = "0001", *, record_id: Optional[str] = None,
                fs: Optional[float] = None, fs_choices: Sequence[float] = COMPETITION_FS,
                layout: PaperLayout = STANDARD_3X4, paper: PaperSize = LETTER, dpi: float = DEFAULT_DPI,
                style: Optional[PageStyle] = None, signal_options: Optional[dict] = None) -> SynthSample:
    """Render record `index` of run `seed` as `image_type`; deterministic in (seed, index, type)."""
    sig_rng = record_rng(seed, index, 0)
    fs = choose_fs(sig_rng, fs_choices) if fs is None else float(fs)
    signals, params = simulate_record_with_params(fs, sig_rng, **(signal_options or {}))
    return sample_from_signals(signals, fs, image_type, record_rng(seed, index, 1),
                               record_rng(seed, index, 2, image_type), record_id=record_id or str(index),
                               layout=layout, paper=paper, dpi=dpi, style=style, signal_params=params)


def sample_from_signals(signals: np.ndarray, fs: float, image_type: str, page_rng, degrade_rng, *,
                        record_id: str = "0", layout: PaperLayout = STANDARD_3X4, paper: PaperSize = LETTER,
                        dpi: float = DEFAULT_DPI, style: Optional[PageStyle] = None,
                        signal_params=None) -> SynthSample:
    """Clean page from `page_rng` (shared by all types of a record), then the degradation of the type."""
    page = render_page(signals, fs, page_rng, style=style, layout=layout, paper=paper, dpi=dpi,
                       signal_params=signal_params)
    image, orientation, warp = degrade_page(page.image, image_type, np.random.default_rng(degrade_rng))
    fwd = warp.forward
    kp = np.full_like(page.keypoints, np.nan)
    ok = np.isfinite(page.keypoints[:, 0])
    kp[ok] = fwd(page.keypoints[ok])
    nodes = fwd(page.grid_nodes.reshape(-1, 2)).reshape(page.grid_nodes.shape)
    paths = [LeadPixelPath(lp.placement, lp.start, lp.stop, fwd(lp.xy)) for lp in page.lead_paths]
    mesh = canonical_mesh(page, warp)
    return SynthSample(record_id, image_type, fs, signals, image, orientation, kp, nodes, paths, mesh, page, warp)


def canonical_view(sample: SynthSample, width: int = CANONICAL_WIDTH, height: int = CANONICAL_HEIGHT,
                   with_masks: bool = True):
    """The sample's image resampled into the canonical frame (one remap through the exact mapping),
    and the band masks of its traces in the same frame: (image (height, width, 3) uint8,
    masks (n_bands, height, width) uint8 or None)."""
    mx, my = dense_map(sample.canonical_mesh, MESH_STEP, width, height)
    canon = cv2.remap(sample.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=(255, 255, 255))
    masks = None
    if with_masks:
        masks = render_band_masks(sample.signals, sample.fs, width=width, height=height, layout=sample.layout)
    return canon, masks


__all__ = ["SynthSample", "make_sample", "sample_from_signals", "canonical_view", "canonical_mesh", "dense_map",
           "canonical_grid", "record_rng", "COMPETITION_FS", "MESH_STEP", "KEYPOINT_NAMES"]
