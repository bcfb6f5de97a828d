"""Printed trace segments as polylines in the canonical frame, and the 4-band stage-2 masks.

The canonical frame (layout.py) is linear in paper millimetres, so a polyline here maps exactly
onto the page and, through the degradation warp, onto the final image. Band k of the masks holds
printed row k of the layout only (row 3 = rhythm strip for the competition layout), drawn with
sub-pixel anti-aliased lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

from ecgdigit.layout import (
    CANONICAL_HEIGHT,
    CANONICAL_PX_PER_MV,
    CANONICAL_WIDTH,
    LEAD_INDEX,
    STANDARD_3X4,
    LeadPlacement,
    PaperLayout,
    mm_to_canonical,
    segment_start,
    canonical_x_to_seconds,
    seconds_to_canonical_x,
)

# cv2 draws with integer coordinates carrying this many fractional bits.
DRAW_SHIFT = 4
_DRAW_SCALE = 1 << DRAW_SHIFT


@dataclass(frozen=True)
class TracePath:
    """One printed segment: which lead, where it is printed, which samples, and its polyline."""

    placement: LeadPlacement
    start: int  # first sample index within the record
    stop: int  # one past the last sample index
    xy: np.ndarray  # (stop - start, 2) float64 canonical (x, y)

    @property
    def lead(self) -> str:
        return self.placement.lead

    @property
    def band(self) -> int:
        return self.placement.row


def placement_sample_range(placement: LeadPlacement, fs: float, n_samples: int) -> Tuple[int, int]:
    """Sample indices [start, stop) of the record that `placement` prints.

    The count is floor(duration * fs), which equals layout.segment_length for the 2.5 s segments
    (test.csv's number_of_rows) and record_length for a full 10 s strip.
    """
    start = segment_start(placement, fs)
    stop = min(start + int(np.floor(placement.duration * fs + 1e-9)), n_samples)
    return start, stop


def canonical_trace_paths(signals: np.ndarray, fs: float, layout: PaperLayout = STANDARD_3X4) -> List[TracePath]:
    """Polylines, in canonical pixels, of every placement of `layout` (in `layout.placements` order).

    x comes from the sample time (t = n / fs) and y from the voltage relative to the band baseline.
    `signals` is (n_samples, 12) in mV with columns in LEADS order.
    """
    signals = np.asarray(signals, dtype=np.float64)
    if signals.ndim != 2 or signals.shape[1] != len(LEAD_INDEX):
        raise ValueError(f"signals must be (n_samples, 12), got {signals.shape}")
    paths = []
    for pl in layout.placements:
        start, stop = placement_sample_range(pl, fs, signals.shape[0])
        idx = np.arange(start, stop)
        x = seconds_to_canonical_x(idx / fs)
        y = _row_baseline_canonical(layout, pl.row) - signals[start:stop, LEAD_INDEX[pl.lead]] * CANONICAL_PX_PER_MV
        paths.append(TracePath(pl, start, stop, np.stack([x, y], axis=1)))
    return paths


def _row_baseline_canonical(layout: PaperLayout, row: int) -> float:
    """Canonical y of the 0 mV line of printed row `row` (from the layout's paper millimetres)."""
    return float(mm_to_canonical(0.0, layout.baselines_y_mm[row])[1])


def to_cv_points(xy: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Float pixel coordinates -> int32 points for cv2 drawing with DRAW_SHIFT fractional bits.

    cv2 puts integer coordinate k at the centre of pixel k, the same convention as ours.
    """
    pts = np.round(np.asarray(xy, dtype=np.float64) * (scale * _DRAW_SCALE))
    pts = np.clip(pts, -(2 ** 30), 2 ** 30)  # cv2 rejects coordinates beyond int32
    return pts.astype(np.int32).reshape(-1, 1, 2)


def render_band_masks(signals: np.ndarray, fs: float, *, width: int = CANONICAL_WIDTH,
                      height: int = CANONICAL_HEIGHT, line_width: int = 1,
                      layout: PaperLayout = STANDARD_3X4) -> np.ndarray:
    """Anti-aliased trace masks in the canonical frame, uint8 (n_bands, height, width), 255 = on the line.

    Band k holds printed row k of `layout` (n_bands = N_BANDS = 4 for the competition layout,
    layout.n_rows in general). `width`/`height` other than the canonical size scale the frame in
    each axis (smaller masks for quick experiments).
    """
    sx = width / CANONICAL_WIDTH
    sy = height / CANONICAL_HEIGHT
    masks = np.zeros((layout.n_rows, height, width), dtype=np.uint8)
    for path in canonical_trace_paths(signals, fs, layout):
        if len(path.xy) < 2:
            continue
        pts = to_cv_points(path.xy * np.array([sx, sy]))
        cv2.polylines(masks[path.band], [pts], False, 255, int(line_width),
                      cv2.LINE_AA, DRAW_SHIFT)
    return masks


def read_masks(masks: np.ndarray, min_mass: float = 1.0) -> np.ndarray:
    """Per band and column, the intensity-weighted y of the trace; NaN where a column is empty.

    Returns (n_bands, width) float64 in the masks' own pixel coordinates. Used to check labels.
    """
    m = masks.astype(np.float64)
    mass = m.sum(axis=1)
    ys = np.arange(masks.shape[1], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = (m * ys[None, :, None]).sum(axis=1) / mass
    y[mass < min_mass] = np.nan
    return y


def masks_to_record(masks: np.ndarray, fs: float, n_samples: int, layout: PaperLayout = STANDARD_3X4):
    """Voltages read back from band masks (intensity-weighted y per column, linear in time) at the
    sample times of every printed segment: dict lead -> 1-D array (mV). A lead printed twice is
    read from its longest placement (lead II from the rhythm strip). Used to check mask labels.
    """
    ys = read_masks(masks)
    scale_x = masks.shape[2] / CANONICAL_WIDTH
    scale_y = masks.shape[1] / CANONICAL_HEIGHT
    t_cols = canonical_x_to_seconds(np.arange(masks.shape[2]) / scale_x)
    record, span = {}, {}
    for pl in layout.placements:
        start, stop = placement_sample_range(pl, fs, n_samples)
        if span.get(pl.lead, -1) >= stop - start:
            continue
        y = ys[pl.row]
        ok = np.isfinite(y)
        yy = np.interp(np.arange(start, stop) / fs, t_cols[ok], y[ok] / scale_y)
        record[pl.lead] = (_row_baseline_canonical(layout, pl.row) - yy) / CANONICAL_PX_PER_MV
        span[pl.lead] = stop - start
    return record
