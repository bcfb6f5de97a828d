"""Stage-2 training targets from the signals (or their canonical polylines).

- `band_masks`: the 4-band anti-aliased masks (uint8, 255 on the line), drawn by the synthetic
  engine's `render_band_masks` at any frame size (the BCE target).
- `column_centres`: per band and column, the y of the trace at the column centre and whether the
  column holds a trace. Tiny ((4, W) floats) so it travels with a batch; the per-column soft target
  (a Gaussian over y, for a per-column cross-entropy loss) is built from it on the device by
  `gaussian_column_targets` / the loss in `ecgdigit.train.losses`.

Frame scaling follows the synthetic engine: a map of size (H, W) has pixel (c, r) at canonical
(c / sx, r / sy) with sx = W / 4400, sy = H / 1700.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ecgdigit.layout import CANONICAL_HEIGHT, CANONICAL_WIDTH, N_BANDS, STANDARD_3X4, PaperLayout


def band_masks(signals: np.ndarray, fs: float, height: int = CANONICAL_HEIGHT, width: int = CANONICAL_WIDTH,
               line_width: int = 1, layout: PaperLayout = STANDARD_3X4) -> np.ndarray:
    """uint8 (4, height, width) anti-aliased trace masks of the record `signals` ((n, 12) mV)."""
    from ecgdigit.synth.traces import render_band_masks

    return render_band_masks(signals, fs, width=width, height=height, line_width=line_width, layout=layout)


def column_centres_from_paths(paths: List, height: int = CANONICAL_HEIGHT, width: int = CANONICAL_WIDTH,
                              n_bands: int = N_BANDS) -> Tuple[np.ndarray, np.ndarray]:
    """(y, valid), both (n_bands, width): the trace's y (map pixels) at each column centre.

    `paths` are synth.traces.TracePath polylines in canonical pixels. A column belongs to a segment
    when its centre lies between the segment's first and last point; the y there is the polyline's
    value (linear between samples, as drawn).
    """
    sx, sy = width / CANONICAL_WIDTH, height / CANONICAL_HEIGHT
    y = np.zeros((n_bands, width), dtype=np.float32)
    valid = np.zeros((n_bands, width), dtype=bool)
    cols = np.arange(width, dtype=np.float64)
    for path in paths:
        if len(path.xy) < 2:
            continue
        band = min(path.band, n_bands - 1)
        px = path.xy[:, 0] * sx
        py = path.xy[:, 1] * sy
        c0 = max(int(np.ceil(px[0])), 0)
        c1 = min(int(np.floor(px[-1])), width - 1)
        if c1 < c0:
            continue
        y[band, c0:c1 + 1] = np.interp(cols[c0:c1 + 1], px, py)
        valid[band, c0:c1 + 1] = True
    valid &= (y >= 0) & (y <= height - 1)  # traces clipped by the frame edge carry no target
    return y, valid


def column_centres(signals: np.ndarray, fs: float, height: int = CANONICAL_HEIGHT, width: int = CANONICAL_WIDTH,
                   layout: PaperLayout = STANDARD_3X4) -> Tuple[np.ndarray, np.ndarray]:
    """`column_centres_from_paths` for the record `signals` ((n, 12) mV) printed with `layout`."""
    from ecgdigit.synth.traces import canonical_trace_paths

    return column_centres_from_paths(canonical_trace_paths(signals, fs, layout), height, width)


def gaussian_column_targets(y: np.ndarray, valid: np.ndarray, height: int, sigma: float = 1.0) -> np.ndarray:
    """float32 (n_bands, height, width): per column a Gaussian over rows centred at y, summing to 1.

    Columns without a trace are all zero. numpy reference of what the training loss builds on
    the device.
    """
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    g = np.exp(-0.5 * ((rows - y[:, None, :]) / sigma) ** 2).astype(np.float32)
    g /= np.maximum(g.sum(axis=1, keepdims=True), 1e-12)
    return g * valid[:, None, :]


def masks_as_float(masks: np.ndarray) -> np.ndarray:
    """uint8 masks (255 = line) -> float32 targets in [0, 1]."""
    return np.asarray(masks, dtype=np.float32) / 255.0


def crop_targets(masks: Optional[np.ndarray], y: Optional[np.ndarray], valid: Optional[np.ndarray],
                 height: int, width: int):
    """Top-left crop of masks (bands, H, W) and column targets (bands, W) to (height, width)."""
    out_m = masks[:, :height, :width] if masks is not None else None
    out_y = y[:, :width] if y is not None else None
    out_v = valid[:, :width] & (y[:, :width] <= height - 1) if valid is not None else None
    return out_m, out_y, out_v
