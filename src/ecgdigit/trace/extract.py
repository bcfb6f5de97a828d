"""From the 4 band probability maps in the canonical frame to a 12-lead record.

Steps (each switchable through `ExtractOptions`, so that its gain can be measured):
1. per band, the run of each column that belongs to the trace, by dynamic programming over the
   candidate runs (`tracking`), then the trace's y: argmax + parabolic sub-pixel step (the seed), or the
   probability-weighted centroid of the run of high pixels around the peak, snapped to the run's
   end at local extrema (a steep QRS stroke fills many pixels of one column);
2. columns whose peak is below `threshold` are gaps, filled by PCHIP within the lead segment;
3. per lead segment (time window from layout placements), the column series is interpolated at
   the lead's sample times (Lanczos / PCHIP / linear), so nothing rings across lead boundaries;
4. y -> mV with layout.canonical_y_to_mv; lead II fused from its short and long traces; soft
   Einthoven / Goldberger corrections where the leads nearly agree (`postprocess`).

Coordinates follow the project convention: integer coordinate k is the centre of pixel k. A map
that is the canonical frame scaled by (sx, sy) (e.g. a mask rendered at a smaller size) has its
pixel (c, r) at canonical (c / sx, r / sy); pass `frame_scale`. Top-left crops (1696 x 4352) need no
offset.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
from scipy.interpolate import CubicSpline, PchipInterpolator

from ecgdigit.layout import (
    CANONICAL_HEIGHT,
    CANONICAL_PX_PER_MV,
    CANONICAL_WIDTH,
    N_BANDS,
    RECORD_SECONDS,
    RHYTHM_LEAD,
    STANDARD_3X4,
    LeadPlacement,
    PaperLayout,
    canonical_y_to_mv,
    seconds_to_canonical_x,
    segment_start,
)

from ecgdigit.trace.tracking import TrackOptions, keep_tracked, track_runs

ESTIMATORS = ("argmax", "run")
RESAMPLERS = ("lanczos", "pchip", "cubic", "linear", "fft_row")


@dataclass
class ExtractOptions:
    """Every extraction choice; the defaults are the best measured ones (bench/bench_trace_ceiling.py)."""

    estimator: str = "argmax"  # argmax (seed; best measured) | run (centroid of the high run, thick ink)
    parabolic: bool = True  # argmax only: parabolic sub-pixel step
    run_fraction: float = 0.5  # run = contiguous pixels >= run_fraction * peak
    extremum_snap: bool = True  # run only: at local extrema take the run's far end, not its centre
    threshold: float = 0.05  # columns with peak below this are gaps (low: DP tracking rejects outliers)
    tracking: bool = True  # follow the trace through crossings/speckle by DP over candidate runs
    track_jump_cost: float = 0.1  # per pixel of vertical gap between consecutive runs (tracking.py)
    track_gap_prob: float = 0.1  # skipping a column costs -log(this)
    gap_fill: str = "pchip"  # pchip | linear
    resample: str = "lanczos"  # one of RESAMPLERS; fft_row = seed (FFT over the whole row, then split)
    lanczos_a: int = 4
    edge_jump_mv: float = 0.15  # a segment's end column off its trace's straight continuation by more: a mark
    fuse_lead_ii: bool = True  # blend the short lead II (row 2, col 1) into the rhythm strip
    lead_ii_long_weight: float = 1.35
    lead_ii_short_weight: float = 1.0
    lead_ii_disagree_mv: float = 0.2  # where the two II readings part by more (40 ms mean), I + III picks one
    einthoven: bool = True  # II = I + III over the first column
    goldberger: bool = True  # aVR + aVL + aVF = 0 over the second column
    augmented_with_ii: bool = True  # aVF - aVR = 1.5 II over the second column (II from the rhythm strip)
    consistency_gate: float = 0.35  # apply a constraint only if rms(residual) / rms(leads) is below this
    residual_clip_mv: float = 0.15  # per sample, correct at most this much residual (soft, Huber-like)
    replace_outlier_lead: bool = True  # aVR/aVL/aVF far from what the other two + II say: use that instead
    outlier_others_gate: float = 0.25  # ... only if the other leads agree (rms residual / rms signal below this)
    outlier_ratio: float = 0.6  # ... and the lead is off its prediction by this much (rms, relative)
    frame_scale: Tuple[float, float] = (1.0, 1.0)  # (sx, sy) of the maps relative to the canonical frame

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.resample not in RESAMPLERS:
            raise ValueError(f"resample must be one of {RESAMPLERS}, got {self.resample!r}")
        if self.gap_fill not in ("pchip", "linear"):
            raise ValueError(f"gap_fill must be pchip or linear, got {self.gap_fill!r}")

    def seed(self) -> "ExtractOptions":
        """The 3rd-place pipeline's choices, as a baseline for gain measurements."""
        return replace(self, estimator="argmax", parabolic=True, extremum_snap=False, resample="fft_row", tracking=False,
                       threshold=0.15,
                       fuse_lead_ii=False, einthoven=True, goldberger=False, augmented_with_ii=False,
                       consistency_gate=np.inf, residual_clip_mv=np.inf, replace_outlier_lead=False)


# ---------------------------------------------------------------------------------------------
# 1. Column-wise trace position per band
# ---------------------------------------------------------------------------------------------
def segment_cuts(band: int, width: int, options: Optional[ExtractOptions] = None,
                 layout: PaperLayout = STANDARD_3X4, n_bands: int = N_BANDS) -> list:
    """Column indices where one printed segment of `band` ends and the next begins.

    The pen jumps there (two polylines, no connecting stroke), so tracking restarts at each cut.
    """
    sx = (options or ExtractOptions()).frame_scale[0]
    cuts = set()
    for pl in layout.placements:
        if min(pl.row, n_bands - 1) == band and pl.t_start > 0:
            c = int(np.ceil(float(seconds_to_canonical_x(pl.t_start)) * sx - 1e-6))
            if 0 < c < width:
                cuts.add(c)
    return sorted(cuts)


def band_columns(prob: np.ndarray, options: Optional[ExtractOptions] = None,
                 layout: PaperLayout = STANDARD_3X4) -> Tuple[np.ndarray, np.ndarray]:
    """Per band and column: the trace's y (map pixels, NaN in gaps) and the peak probability.

    prob: (n_bands, H, W) float in [0, 1] (uint8 masks are scaled by 1/255).
    Returns (y, peak), both (n_bands, W) float64.
    """
    o = options or ExtractOptions()
    prob = np.asarray(prob)
    if prob.ndim != 3:
        raise ValueError(f"probability maps must be (bands, H, W), got shape {prob.shape}")
    if prob.dtype == np.uint8:
        prob = prob.astype(np.float32) / 255.0
    else:
        prob = prob.astype(np.float32, copy=False)
    ys = np.empty((prob.shape[0], prob.shape[2]))
    peaks = np.empty_like(ys)
    for b in range(prob.shape[0]):
        p = prob[b]
        if o.tracking:
            track = TrackOptions(candidate_threshold=o.threshold, jump_cost=o.track_jump_cost, gap_prob=o.track_gap_prob)
            edges = [0] + segment_cuts(b, p.shape[1], o, layout, prob.shape[0]) + [p.shape[1]]
            pieces = [track_runs(p[:, a:z], track) for a, z in zip(edges[:-1], edges[1:])]
            top = np.concatenate([t for t, _ in pieces])
            bottom = np.concatenate([bt for _, bt in pieces])
            p = keep_tracked(p, top, bottom)
        ys[b], peaks[b] = _columns_of(p, o)
    ys[peaks < o.threshold] = np.nan
    return ys, peaks


def _columns_of(p: np.ndarray, o: ExtractOptions) -> Tuple[np.ndarray, np.ndarray]:
    h, w = p.shape
    cols = np.arange(w)
    am = np.argmax(p, axis=0)
    peak = p[am, cols].astype(np.float64)
    if o.estimator == "argmax":
        y = am.astype(np.float64)
        if o.parabolic:
            up = p[np.clip(am - 1, 0, h - 1), cols].astype(np.float64)
            down = p[np.clip(am + 1, 0, h - 1), cols].astype(np.float64)
            denom = up - 2 * peak + down
            with np.errstate(invalid="ignore", divide="ignore"):
                step = np.where((denom < 0) & (am > 0) & (am < h - 1), 0.5 * (up - down) / denom, 0.0)
            y += np.clip(step, -0.5, 0.5)
        return y, peak

    # Run of pixels >= fraction * peak containing the argmax: [top, bottom] (inclusive).
    high = p >= (o.run_fraction * peak.astype(np.float32))[None, :]
    rows = np.arange(h)[:, None]
    last_low_above = np.maximum.accumulate(np.where(high, -1, rows), axis=0)  # last low row at or above
    first_low_below = np.minimum.accumulate(np.where(high, h, rows)[::-1], axis=0)[::-1]
    top = last_low_above[am, cols] + 1
    bottom = first_low_below[am, cols] - 1
    # Probability-weighted centroid over the run via cumulative sums along y.
    pf = p.astype(np.float64)
    cs = np.vstack([np.zeros((1, w)), np.cumsum(pf, axis=0)])
    csy = np.vstack([np.zeros((1, w)), np.cumsum(pf * np.arange(h)[:, None], axis=0)])
    mass = cs[bottom + 1, cols] - cs[top, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = (csy[bottom + 1, cols] - csy[top, cols]) / mass
    y = np.where(mass > 0, y, am.astype(np.float64))
    if o.extremum_snap:
        y = _snap_extrema(y, top, bottom, p, cols)
    return y, peak


def _snap_extrema(y: np.ndarray, top: np.ndarray, bottom: np.ndarray, p: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Where a column is a local extremum of the trace, its value is the run's far end.

    A column holding a peak is covered from the apex down to where both strokes leave the column;
    the centroid sits half-way, the true value at the column centre is near the apex. The end is
    refined by the anti-aliased coverage of the end pixel (a half-covered pixel = edge mid-pixel).
    """
    length = bottom - top + 1
    prev_y = np.concatenate([[np.nan], y[:-1]])
    next_y = np.concatenate([y[1:], [np.nan]])
    is_max = (prev_y > y) & (next_y > y) & (length > 2)  # voltage maximum: neighbours lower on paper
    is_min = (prev_y < y) & (next_y < y) & (length > 2)
    h = p.shape[0]
    # Anti-aliased end: the line's centre lies about half a line-width inside the outermost lit
    # pixel; the partial coverage of the pixel beyond tells by how much more.
    above = p[np.clip(top - 1, 0, h - 1), cols] / np.maximum(p[top, cols], 1e-6)
    below = p[np.clip(bottom + 1, 0, h - 1), cols] / np.maximum(p[bottom, cols], 1e-6)
    top_edge = top - np.clip(above, 0, 1) + 0.5
    bottom_edge = bottom + np.clip(below, 0, 1) - 0.5
    y = np.where(is_max, top_edge, y)
    return np.where(is_min, bottom_edge, y)


# ---------------------------------------------------------------------------------------------
# 2-3. Per lead segment: gaps, resampling
# ---------------------------------------------------------------------------------------------
def _fill_gaps(c: np.ndarray, v: np.ndarray, method: str) -> Optional[np.ndarray]:
    ok = np.isfinite(v)
    if ok.all():
        return v
    if ok.sum() == 0:
        return None
    if ok.sum() == 1:
        return np.full_like(v, v[ok][0])
    if method == "pchip" and ok.sum() >= 3:
        f = PchipInterpolator(c[ok], v[ok], extrapolate=False)
        out = f(c)
    else:
        out = np.interp(c, c[ok], v[ok], left=np.nan, right=np.nan)
    first, last = np.flatnonzero(ok)[[0, -1]]
    out[:first] = v[first]
    out[last + 1:] = v[last]
    out[ok] = v[ok]
    return out


def _drop_edge_jumps(v: np.ndarray, max_jump: float, max_columns: int = 3) -> np.ndarray:
    """Gaps (NaN) for a segment's first/last 1..max_columns columns when they all leave the straight
    continuation of the trace's next columns by more than `max_jump` (map px): they read a calibration
    pulse's edge or a separator tick beside the trace's end. A steep QRS at a segment end continues
    its slope and stays."""
    v = v.copy()
    for ends in (v, v[::-1]):  # the reversed view writes through to v
        ok = np.flatnonzero(np.isfinite(ends))
        for k in range(1, max_columns + 1):
            if len(ok) < k + 3:
                break
            i0, i1, i2 = ok[k], ok[k + 1], ok[k + 2]
            slope = ends[i0] - ends[i1]
            if abs(ends[i1] - slope - ends[i2]) > max_jump:
                continue  # the inner columns are no straight line here either
            pred = ends[i0] + slope * (i0 - ok[:k]) / max(i1 - i0, 1)
            if np.all(np.abs(ends[ok[:k]] - pred) > max_jump):
                ends[ok[:k]] = np.nan
                break
    return v


def _lanczos_sample(values: np.ndarray, positions: np.ndarray, a: int) -> np.ndarray:
    """Band-limited interpolation of `values` (at 0..n-1) at `positions`; odd reflection at the ends."""
    n = len(values)
    pad = a + 1
    left = 2 * values[0] - values[1:pad + 1][::-1] if n > pad else np.full(pad, values[0])
    right = 2 * values[-1] - values[-pad - 1:-1][::-1] if n > pad else np.full(pad, values[-1])
    ext = np.concatenate([left, values, right])
    pos = np.clip(positions, 0, n - 1) + pad
    base = np.floor(pos).astype(np.int64)
    offsets = np.arange(-a + 1, a + 1)
    idx = base[:, None] + offsets[None, :]
    d = pos[:, None] - idx
    kernel = np.sinc(d) * np.sinc(d / a)
    kernel /= kernel.sum(axis=1, keepdims=True)
    return (ext[np.clip(idx, 0, len(ext) - 1)] * kernel).sum(axis=1)


def resample_columns(columns_x: np.ndarray, values: np.ndarray, x: np.ndarray, method: str,
                     lanczos_a: int = 4) -> np.ndarray:
    """Values of a uniformly spaced column series (positions columns_x, step 1) at positions x."""
    if len(values) == 1:
        return np.full(len(x), values[0])
    xc = np.clip(x, columns_x[0], columns_x[-1])
    if method == "linear":
        return np.interp(xc, columns_x, values)
    if method == "pchip":
        return PchipInterpolator(columns_x, values)(xc)
    if method == "cubic":
        return CubicSpline(columns_x, values, bc_type="natural")(xc)
    if method == "lanczos":
        return _lanczos_sample(values, xc - columns_x[0], lanczos_a)
    raise ValueError(f"unknown resampling method {method!r}")


@dataclass
class SegmentTrace:
    """One placement's extracted samples: record indices [start, start + len(mv))."""

    placement: LeadPlacement
    start: int
    mv: np.ndarray
    confidence: np.ndarray  # per sample, the interpolated column peak probability


def _sample_range(placement: LeadPlacement, fs: float, n_wanted: int, full_length: int) -> Tuple[int, int]:
    """Record sample indices this placement provides for a lead that wants `n_wanted` samples."""
    start = segment_start(placement, fs)
    stop = start + int(np.floor(placement.duration * fs + 1e-9))
    if placement.duration >= RECORD_SECONDS - 1e-9:
        stop = max(stop, full_length)
    return start, stop


def trace_segments(y: np.ndarray, peak: np.ndarray, lead_lengths: Mapping[str, int], fs: Optional[float] = None,
                   options: Optional[ExtractOptions] = None, layout: PaperLayout = STANDARD_3X4) -> Dict[str, list]:
    """Per lead, the SegmentTrace of every placement that prints it (mV, at the lead's sample times)."""
    o = options or ExtractOptions()
    fs = float(fs) if fs else lead_lengths[RHYTHM_LEAD] / RECORD_SECONDS
    full_length = int(round(RECORD_SECONDS * fs))
    sx, sy = o.frame_scale
    n_bands, width = y.shape
    cols = np.arange(width, dtype=np.float64)
    out: Dict[str, list] = {}
    filled_rows = {}
    if o.resample == "fft_row":
        filled_rows = {b: _fill_gaps(cols, y[b], o.gap_fill) for b in range(n_bands)}
    for pl in layout.placements:
        if pl.lead not in lead_lengths:
            continue
        band = min(pl.row, n_bands - 1)
        start, stop = _sample_range(pl, fs, int(lead_lengths[pl.lead]), full_length)
        idx = np.arange(start, stop)
        x = seconds_to_canonical_x(idx / fs) * sx  # map pixel coordinates
        if o.resample == "fft_row":
            mv = _fft_row_segment(filled_rows[band], x, band, fs, sx, sy)
            conf = np.interp(x, cols, peak[band])
            out.setdefault(pl.lead, []).append(SegmentTrace(pl, start, mv, conf))
            continue
        # The segment's own columns: those between its first and last sample (inward rounding),
        # so that the neighbouring segment's stroke never enters.
        c0 = max(int(np.ceil(x[0] - 1e-9)), 0)
        c1 = min(int(np.floor(x[-1] + 1e-9)), width - 1)
        if c1 < c0:  # fewer than one column: take the nearest one
            c0 = c1 = int(np.clip(np.round(x.mean()), 0, width - 1))
        cx = cols[c0:c1 + 1]
        v = _fill_gaps(cx, _drop_edge_jumps(y[band, c0:c1 + 1], o.edge_jump_mv * CANONICAL_PX_PER_MV * sy), o.gap_fill)
        if v is None:  # nothing found: flat at the baseline
            mv = np.zeros(len(idx))
        else:
            mv = canonical_y_to_mv(resample_columns(cx, v, x, o.resample, o.lanczos_a) / sy, band)
        conf = np.interp(x, cx, peak[band, c0:c1 + 1])
        out.setdefault(pl.lead, []).append(SegmentTrace(pl, start, mv, conf))
    return out


def _fft_row_segment(row_y: Optional[np.ndarray], x: np.ndarray, band: int, fs: float, sx: float,
                     sy: float) -> np.ndarray:
    """The seed's resampling: FFT-resample the row's 10 s of columns to 10*fs samples, then slice."""
    from scipy.signal import resample

    if row_y is None:
        return np.zeros(len(x))
    n_full = int(round(RECORD_SECONDS * fs))
    x0 = seconds_to_canonical_x(0.0) * sx
    x1 = seconds_to_canonical_x(RECORD_SECONDS) * sx
    c0, c1 = int(np.round(x0)), min(int(np.round(x1)), len(row_y))
    full = resample(row_y[c0:c1], n_full)
    idx = np.clip(np.round((x - x0) / (x1 - x0) * n_full).astype(np.int64), 0, n_full - 1)
    return canonical_y_to_mv(full[idx] / sy, band)


# ---------------------------------------------------------------------------------------------
# 4. Whole record
# ---------------------------------------------------------------------------------------------
def extract_record(prob: np.ndarray, lead_lengths: Mapping[str, int], fs: Optional[float] = None,
                   options: Optional[ExtractOptions] = None, layout: PaperLayout = STANDARD_3X4) -> Dict[str, np.ndarray]:
    """12-lead record (lead -> mV array of exactly lead_lengths[lead] values) from band maps.

    prob: (4, H, W) probabilities (or uint8 masks) in the canonical frame (H = 1700 or the 1696
    network crop, W = 4400 or 4352), or scaled by options.frame_scale. `fs` defaults to
    lead_lengths["II"] / 10.
    """
    from ecgdigit.trace.postprocess import postprocess_record

    o = options or ExtractOptions()
    y, peak = band_columns(prob, o, layout)
    segs = trace_segments(y, peak, lead_lengths, fs, o, layout)
    fs = float(fs) if fs else lead_lengths[RHYTHM_LEAD] / RECORD_SECONDS
    return postprocess_record(segs, lead_lengths, fs, o, layout)


def expected_frame_scale(shape: Tuple[int, int], canonical: Tuple[int, int] = (CANONICAL_HEIGHT, CANONICAL_WIDTH)):
    """(sx, sy) of a map of (H, W) rendered over the whole canonical frame at reduced size."""
    return shape[1] / canonical[1], shape[0] / canonical[0]
