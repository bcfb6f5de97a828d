"""A classical stage 2 that needs no weights: canonical-frame RGB image -> 4 band "probability" maps.

1. Ink map: the trace is dark in every channel while grid lines are coloured or light, so the
   brightest channel (max of R, G, B), divided by a local background estimate to undo uneven
   lighting, separates them; darkness is mapped to [0, 1] between the grid's and the ink's levels
   (found per image from the darkness histogram).
2. Per band, the trace is followed column by column with the run-tracking dynamic programme of
   `tracking.py` (candidate runs of ink, a cost for vertical gaps, a weak pull towards the band's
   baseline), inside a window around the baseline; where another row's trace crosses in, continuity
   keeps the path on its own trace as well as the runs allow (merged runs stay merged). Ink above
   `saturation` counts as sure ink, so thick black text or a neighbour's bolder stroke never beats
   the band's own fainter trace; runs centred in a lead-label box pay `label_cost`. A second pass
   widens every window (tall R waves, deep S waves) while the runs the other bands took in the
   first pass cost `claim_cost` per column, so a band borrows them only at a true crossing.
3. Thick ink: a steep stroke fills a long run of a column, and near an apex the up and down
   strokes merge, so the run's centroid is biased. Within the tracked run each pixel is weighted by
   its distance to the ink's edge (distance transform computed with square pixels, i.e. x halved),
   which peaks on the stroke's centre line; measured +1.9 dB on a clean render.
4. Per band and column the trace centre is the weighted centroid of the tracked run, snapped to
   the run's end at local extrema (`extract` run estimator); the output maps hold a thin Gaussian
   line (sigma `line_sigma`) at those centres with the run's peak as height, i.e. what a network
   trained on thin anti-aliased lines predicts, so `extract.extract_record` with any options (the
   default argmax + parabolic step included) turns it into a record. Measured on 4 clean renders:
   17.7 dB with default options vs 18.0 for the raw weighted runs read with the run estimator
   (`line_sigma=0` + ExtractOptions(estimator="run")) and 15.8 for raw runs read by argmax.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import cv2
import numpy as np

from ecgdigit.layout import (
    CANONICAL_BASELINES_Y,
    CANONICAL_HEIGHT,
    CANONICAL_PX_PER_MV,
    CANONICAL_WIDTH,
    CANONICAL_X_T0,
    CANONICAL_X_T10,
    NETWORK_CROP_HEIGHT,
    NETWORK_CROP_WIDTH,
    STANDARD_3X4,
    grid_node_canonical,
)
from ecgdigit.trace.extract import ExtractOptions, segment_cuts
from ecgdigit.trace.tracking import TrackOptions, keep_tracked, track_runs


@dataclass
class ClassicalOptions:
    # Subtract what all rows / all columns share (see remove_axis_lines): True, False, or None = when
    # the grid's darkness is >= grid_removal_ratio x the trace's (faint trace on a dark grid).
    remove_grid_lines: Optional[bool] = None
    grid_removal_ratio: float = 0.7
    # Between this ratio and grid_removal_ratio neither choice is sure (grey grids on black-and-white
    # scans): `band_map_variants` returns both readings for the caller to choose from.
    grid_ambiguous_ratio: float = 0.25
    grid_row_percentile: float = 15.0
    grid_block_px: int = 512
    background_kernel: int = 31  # px, local background (max filter) for lighting normalisation
    ink_low: Optional[float] = None  # darkness mapped to 0 (None: from the image)
    ink_high: Optional[float] = None  # darkness mapped to 1 (None: from the image)
    window_up_mv: float = 3.0  # band search window above the baseline
    window_down_mv: float = 3.0  # and below it
    top_row_window_up_mv: float = 5.0  # the first row has only the header above it: tall R waves fit
    prior_cost_per_mv: float = 0.3  # pull towards the baseline (per mV of distance) ...
    # ... counted up to this distance: the pull keeps a band on its own row, but beyond this a tall
    # wave's apex paid more per column than a label's letters or a gap, and was cut off (0: no cap)
    prior_cap_mv: float = 1.5
    jump_cost: float = 0.1
    gap_prob: float = 0.05
    threshold: float = 0.3  # candidate runs: ink >= this
    max_candidates: int = 12  # strongest runs kept per column (grid lines and text compete with the trace)
    centre_weighting: bool = True  # weight by distance to the ink edge (step 3)
    line_sigma: float = 0.8  # px, output line profile (0: return the weighted tracked runs)
    label_box: tuple = (-10, 130, -15, 20)  # canonical px around each label node: x0, x1, y0, y1 (the letters, not the trace above them)
    label_cost: float = 0.5  # extra tracking cost per column for a run centred in a label box
    wide_window_mv: float = 4.5  # second pass: window +- this around the baseline (0: no second pass) ...
    claim_cost: float = 2.0  # ... where runs another band took in the first pass cost this per column ...
    claim_flat_pens: float = 8.0  # ... if at most this many pen widths long (median run length); 0: all runs
    slope_allowance: float = 10.0  # px of free vertical gap per column the path skips
    # Ink at or above this is sure ink: the path must not prefer thick black text or a neighbour's
    # bolder stroke over its own fainter trace (exact views 1.0 -> 0.6: 0001 18.1 -> 24.8 dB, 0003
    # 16.6 -> 22.9). 0.8, not 0.6: where a faint trace is barely darker than the grid, 0.6 saturates
    # both (end to end, 36 dev images: 0.6 15.97 dB, 0.8 16.36).
    saturation: float = 0.8
    x_margin_px: int = 12  # tracking starts this far before t = 0 and ends after t = 10 s
    split_shared: bool = True  # a run two bands share goes to the spike, trimmed for the flat trace (split_shared_runs)
    plain_long_pens: float = 8.0  # runs through a label longer than this many pen widths: read without centre weighting (0: never)
    bridge: float = 0.1  # output maps: level (x peak) joining a column's line to its stroke neighbours (_thin_lines)
    # Mould colonies, blots and stains: ink that holds a disk wider than the pen (`blob_mask`, found on
    # the ink blurred by `blob_blur_px`: colony grain fills in, a thin line fades below `blob_level`).
    # A tracked run longer than `blob_gap_pens` pens centred in such a blob is the trace merged with
    # it (or the blob alone): its centre says nothing of the trace, so the column becomes a gap that
    # the extraction bridges from both sides; and runs centred in a blob pay `blob_cost` per column,
    # so the path does not leave a faint trace for a dark colony beside it. Exact views, seeds 4242 +
    # 4300, 10 images each: 0011 16.56 -> 19.04 dB, 0012 14.44 -> 15.05.
    blob_cost: float = 0.3
    blob_radius_px: float = 4.0  # disk radius in square px (x halved) ...
    blob_radius_pens: float = 1.5  # ... or this many pen widths (`pen_width`) if larger: a bold pen, or a V-shaped
    # QRS apex where its two strokes merge (inscribed radius up to about one pen), is no blob (1.0 cut thick S waves)
    blob_level: float = 0.3
    blob_margin_px: int = 0  # the blob mask grown by this many px
    blob_blur_px: float = 2.0  # sigma along y (x: twice as many px, the frame's aspect)
    blob_gap_pens: float = 3.0  # 0: never a gap
    blob_widespread_share: float = 0.3  # blobs near the baselines in more columns: also read without blobs


def darkness(image: np.ndarray, options: Optional[ClassicalOptions] = None) -> np.ndarray:
    """float32 (H, W) in [0, 1]: 1 - brightness over the local paper level (lighting removed)."""
    o = options or ClassicalOptions()
    img = np.asarray(image)
    if img.ndim == 2:
        bright = img.astype(np.float32)
    else:
        bright = img[..., :3].max(axis=2).astype(np.float32)
    k = max(3, int(o.background_kernel) | 1)
    background = cv2.dilate(bright, np.ones((k, k), np.uint8))  # paper level, ink removed
    background = cv2.GaussianBlur(background, (0, 0), k / 2)
    return np.clip(1.0 - bright / np.maximum(background, 1.0), 0.0, 1.0)


def band_map_variants(image: np.ndarray, options: Optional[ClassicalOptions] = None) -> List[np.ndarray]:
    """`classical_band_maps` readings worth choosing between: one, or - when the grid is about as
    dark as a grey trace, so that keeping or removing the grid lines could each be right - the
    reading without and the reading with grid removal (the caller keeps the more self-consistent
    record; see ecgdigit.pipeline). On exact canonical views (bench_trace_classical seed 123) the
    better-consistency choice gains 0004 +1.7 dB and 0012 +1.8 dB and costs nothing elsewhere."""
    o = options or ClassicalOptions()
    if o.remove_grid_lines is not None:
        return [classical_band_maps(image, o)]
    dark = darkness(image, o)  # computed once for the ratio and every reading
    ratio = grid_to_trace_ratio(dark, o.grid_row_percentile, o.grid_block_px)
    if ratio >= o.grid_removal_ratio or ratio < o.grid_ambiguous_ratio:
        grid_choices = [ratio >= o.grid_removal_ratio]
    else:
        grid_choices = [False, True]
    readings = []
    for remove in grid_choices:
        g = replace(o, remove_grid_lines=remove)
        ink = ink_map(image, g, dark)
        blobs = page_blobs(ink, g) if g.blob_cost > 0 or g.blob_gap_pens > 0 else None
        readings.append(_band_maps_of_ink(ink, g, blobs))
        if blobs is not None and blob_column_share(blobs[0]) > o.blob_widespread_share:
            # "blobs" along most of the rows are the page's texture (moire of a screen photo), not
            # colonies: reading them as blots can lose the trace, so the reading without is offered too
            readings.append(_band_maps_of_ink(ink, replace(g, blob_cost=0.0, blob_gap_pens=0.0)))
    return readings


def page_blobs(ink: np.ndarray, o: ClassicalOptions) -> Tuple[np.ndarray, float]:
    """(blob mask, pen width px) of an ink map as the tracker uses them: `blob_mask` on the ink
    blurred by `blob_blur_px`, with a disk of `blob_radius_px` or `blob_radius_pens` pen widths."""
    pen = pen_width(ink, o.threshold)
    src = cv2.GaussianBlur(ink, (0, 0), 2 * o.blob_blur_px, sigmaY=o.blob_blur_px) if o.blob_blur_px > 0 else ink
    return blob_mask(src, max(o.blob_radius_px, o.blob_radius_pens * pen), o.blob_level, o.blob_margin_px), pen


def blob_column_share(blobs: np.ndarray) -> float:
    """Share of the 0-10 s columns with a blob (`page_blobs`' mask) within 0.5 mV of some row's
    baseline: mould colonies and blots cover ~5-10 %, a screen photo's moire 50-100 %."""
    h, w = blobs.shape
    sx, sy = _frame_scale(h, w)
    blobs = blobs > 0
    x0, x1 = int(CANONICAL_X_T0 * sx), min(int(CANONICAL_X_T10 * sx), w)
    near = np.zeros(h, bool)
    for yb in CANONICAL_BASELINES_Y:
        near[max(int((yb - 0.5 * CANONICAL_PX_PER_MV) * sy), 0):int((yb + 0.5 * CANONICAL_PX_PER_MV) * sy)] = True
    return float(blobs[near, x0:x1].any(axis=0).mean())


def ink_map(image: np.ndarray, options: Optional[ClassicalOptions] = None,
            dark: Optional[np.ndarray] = None) -> np.ndarray:
    """float32 (H, W) in [0, 1]: how much each pixel looks like trace ink (`dark`: the image's
    `darkness`, when the caller already has it; it is not modified)."""
    o = options or ClassicalOptions()
    dark = darkness(image, o) if dark is None else dark
    remove = o.remove_grid_lines
    if remove is None:  # auto: only where the grid is nearly as dark as the trace (costs ~1.5 dB elsewhere)
        remove = grid_to_trace_ratio(dark, o.grid_row_percentile, o.grid_block_px) >= o.grid_removal_ratio
    if remove:
        dark = remove_axis_lines(dark, o.grid_row_percentile, o.grid_block_px)
    low, high = o.ink_low, o.ink_high
    if low is None or high is None:
        auto_low, auto_high = _ink_levels(dark)
        low = auto_low if low is None else low
        high = auto_high if high is None else high
    return np.clip((dark - low) / max(high - low, 1e-3), 0.0, 1.0).astype(np.float32)


def remove_axis_lines(dark: np.ndarray, row_percentile: float = 15.0, block_px: int = 512) -> np.ndarray:
    """Subtract what every column and (block-wise) every row shares: the grid, which the canonical
    frame makes exactly horizontal and vertical, while the trace crosses a row or column only briefly.

    A page whose grid is darker than its trace (faint trace on a black grid) otherwise has its
    grid lines followed instead of the trace. Rows use a low percentile over x (an isoelectric trace
    can lie along one row for a large part of a block), columns the same low percentile over the
    traces' rows (not the median: where tall QRS complexes of three rows line up, their strokes
    cover more than half of a column, and the median removed them).
    """
    h, w = dark.shape
    out = dark.copy()
    ya, yb = _trace_rows(h)
    out -= np.percentile(dark[ya:yb], row_percentile, axis=0)[None, :]
    for x0 in range(0, w, block_px):
        blk = out[:, x0:x0 + block_px]
        blk -= np.percentile(blk, row_percentile, axis=1)[:, None]
    return np.clip(out, 0.0, 1.0)


def grid_to_trace_ratio(dark: np.ndarray, row_percentile: float = 15.0, block_px: int = 512) -> float:
    """How dark the grid lines are relative to the trace: the 99th percentile of the row and column
    line profiles (what remove_axis_lines would subtract) over the trace level of `_ink_levels`."""
    h, w = dark.shape
    ya, yb = _trace_rows(h)
    cols = np.percentile(dark[ya:yb], row_percentile, axis=0)  # low: tall QRS strokes are no grid line
    rows = np.concatenate([np.percentile(dark[ya:yb, x0:x0 + block_px], row_percentile, axis=1)
                           for x0 in range(0, w, block_px)])
    _, high = _ink_levels(dark)
    return float(max(np.percentile(rows, 99), np.percentile(cols, 99)) / max(high, 1e-6))


def _frame_scale(h: int, w: int):
    """(sx, sy) of an image relative to the canonical frame: 1 for the full frame or the network
    crop of it (same pixels, cut), else the ratio of sizes."""
    sx = 1.0 if w in (CANONICAL_WIDTH, NETWORK_CROP_WIDTH) else w / CANONICAL_WIDTH
    sy = 1.0 if h in (CANONICAL_HEIGHT, NETWORK_CROP_HEIGHT) else h / CANONICAL_HEIGHT
    return sx, sy


def _trace_rows(h: int):
    _, sy = _frame_scale(h, CANONICAL_WIDTH)
    return (int((CANONICAL_BASELINES_Y[0] - 3 * CANONICAL_PX_PER_MV) * sy),
            min(int((CANONICAL_BASELINES_Y[-1] + CANONICAL_PX_PER_MV) * sy), h))


def _ink_levels(dark: np.ndarray, low_ratio: float = 0.3):
    """(low, high) darkness levels mapped to 0 and 1.

    In nearly every column of the trace area the darkest pixel is on a trace (text and labels
    touch only a few columns), so `high` is the median over those columns of the column maximum.
    Grid lines can be nearly as dark as a thin grey trace (clean renders: trace 0.49, darkest
    grid 0.33) but a thin anti-aliased trace leaves pixels half covered, so `low` is low
    (`low_ratio` of `high`, 0.3 measured best of 0.3..0.6 on clean renders) and the tracking's
    continuity keeps the path off the grid lines.
    """
    h, w = dark.shape
    sx, sy = _frame_scale(h, w)
    y0 = int((CANONICAL_BASELINES_Y[0] - 2 * CANONICAL_PX_PER_MV) * sy)
    y1 = int((CANONICAL_BASELINES_Y[-1] + CANONICAL_PX_PER_MV) * sy)
    x0, x1 = int(CANONICAL_X_T0 * sx), int(CANONICAL_X_T10 * sx)
    area = dark[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    high = float(np.median(area.max(axis=0))) if area.size else float(dark.max())
    high = max(high, 0.1)
    return low_ratio * high, high


def classical_band_maps(image: np.ndarray, options: Optional[ClassicalOptions] = None,
                        dark: Optional[np.ndarray] = None) -> np.ndarray:
    """float32 (4, H, W) band maps from a canonical-frame image (H = 1700 or a crop, W = 4400 or 4352).

    Images of another size are treated as the canonical frame scaled to that size. `dark`: the
    image's `darkness`, when the caller already has it.
    """
    o = options or ClassicalOptions()
    return _band_maps_of_ink(ink_map(image, o, dark), o)


def _median_run_px(tracks: list) -> Optional[float]:
    """The median length (px) of the tracked runs of all bands: the pen's thickness, as flat strokes
    dominate (None when nothing was tracked)."""
    lengths = np.concatenate([(b - t + 1)[t >= 0] for _, _, t, b in tracks])
    return float(np.median(lengths)) if len(lengths) else None


def _band_maps_of_ink(ink: np.ndarray, o: ClassicalOptions, blobs: Optional[Tuple[np.ndarray, float]] = None) -> np.ndarray:
    """`classical_band_maps` of the page's `ink_map`; `blobs`: its `page_blobs`, when the caller
    already has them (found here when blob handling is on and they are not given)."""
    h, w = ink.shape
    sx, sy = _frame_scale(h, w)
    x0 = max(int((CANONICAL_X_T0 - o.x_margin_px) * sx), 0)
    x1 = min(int(np.ceil((CANONICAL_X_T10 + o.x_margin_px) * sx)) + 1, w)
    label_mask = _label_boxes(h, w, o)
    labels = o.label_cost * label_mask if o.label_cost > 0 else np.zeros((h, w), np.float32)
    if o.blob_cost <= 0 and o.blob_gap_pens <= 0:
        blobs = None
    elif blobs is None:
        blobs = page_blobs(ink, o)
    if blobs is not None and o.blob_cost > 0:
        labels = labels + o.blob_cost * blobs[0]
    n_bands = len(CANONICAL_BASELINES_Y)
    tracks = [_track_band(ink, band, (x0, x1), (sx, sy), o.window_up_mv, o.window_down_mv, labels, o)
              for band in range(n_bands)]
    if o.wide_window_mv > max(o.window_up_mv, o.window_down_mv):
        # Second pass: each band looks further (tall R waves, deep S waves) while the runs its
        # neighbours took in the first pass cost extra, so it only borrows them where it must
        # (a true crossing), not for a whole T wave.
        # Only bands whose path touched its window's edge can gain (the second pass doubles the time).
        at_edge = [band for band, (y0, y1, top, bottom) in enumerate(tracks)
                   if (top[top >= 0] <= 1).any() or (bottom[top >= 0] >= y1 - y0 - 2).any()]
        # Only runs of a flat trace are claimed: a long run is a steep stroke, often two rows'
        # strokes merged where a tall wave crosses the other row, and the spike's band must get it.
        claim_len = None
        if at_edge and o.claim_flat_pens > 0:
            run_px = _median_run_px(tracks)
            claim_len = o.claim_flat_pens * run_px if run_px is not None else None
        claimed = [_run_mask(h, w, top, bottom, y0, x0, max_len=claim_len) for y0, _, top, bottom in tracks] if at_edge else []
        for band in at_edge:
            others = np.maximum.reduce([claimed[b] for b in range(n_bands) if b != band])
            tracks[band] = _track_band(ink, band, (x0, x1), (sx, sy), o.wide_window_mv, o.wide_window_mv,
                                       labels + o.claim_cost * np.clip(others - claimed[band], 0, 1), o)
    if blobs is not None and o.blob_gap_pens > 0:
        # A run merged with a mould colony or blot: its centre says nothing about the trace, which
        # the extraction bridges from both sides instead.
        blob, ink_pen = blobs
        for y0, _, top, bottom in tracks:
            on = top >= 0
            centre = np.where(on, (top + bottom) // 2 + y0, 0)
            merged = on & (blob[centre, np.arange(x0, x1)] > 0) & (bottom - top + 1 > o.blob_gap_pens * ink_pen)
            top[merged] = -1
            bottom[merged] = -1
    plain = np.zeros((n_bands, w), bool)  # columns read without centre weighting
    if o.split_shared:
        tracks, spike_cols = split_shared_runs(tracks)
        plain[:, x0:x1] = spike_cols
    pen = _median_run_px(tracks) or 3.0  # px; the tracks no longer change below
    if o.plain_long_pens > 0:
        # Long runs (steep strokes) through a lead label read as their middle: weighting by
        # thickness pulled the centre onto the letters (elsewhere it helps: merged apex strokes).
        in_label = np.vstack([np.zeros((1, w)), np.cumsum(label_mask, axis=0)])
        for band, (y0, _, top, bottom) in enumerate(tracks):
            cols = np.arange(x0, x1)
            on = top >= 0
            t, b = np.where(on, top + y0, 0), np.where(on, bottom + y0 + 1, 0)
            through_label = (in_label[b, cols] - in_label[t, cols]) > 0
            plain[band, x0:x1] |= on & through_label & (bottom - top + 1 > o.plain_long_pens * pen)
    maps = np.zeros((n_bands, h, w), dtype=np.float32)
    for band, (y0, y1, top, bottom) in enumerate(tracks):
        maps[band, y0:y1, x0:x1] = keep_tracked(ink[y0:y1, x0:x1], top, bottom)
    peak = maps.max(axis=1)  # (4, W) ink level of the tracked run
    if o.centre_weighting:
        weights = centre_weights(ink)
        for band in range(n_bands):
            # A kept shared run reads as one uniform run (its middle; its end at an extremum): the
            # merged junction is the thickest ink there and would pull the centre onto the flat trace.
            maps[band] = np.where(plain[band][None, :], maps[band] > 0, maps[band] * weights)
        maps /= np.maximum(maps.max(axis=1, keepdims=True), 1e-6)
    if o.line_sigma <= 0:
        return maps
    touching = np.zeros((n_bands, w), bool)  # this column's tracked run touches the one before
    run_len = np.zeros((n_bands, w))
    for band, (y0, y1, top, bottom) in enumerate(tracks):
        on = top >= 0
        gap = np.maximum(top[1:] - bottom[:-1], top[:-1] - bottom[1:]) - 1
        touching[band, x0 + 1:x1] = on[1:] & on[:-1] & (gap <= 1)
        run_len[band, x0:x1] = np.where(on, bottom - top + 1, 0)
    # Strokes: ink (outside the lead-label boxes, whose letters are steep strokes too) ...
    stroke_ink = (ink >= o.threshold) & ~(label_mask > 0)
    stroke = (stroke_ink, BRIDGE_MAX_WIDTH_PENS * pen * 2 * sx / sy)  # ... at most this wide (x doubled)
    return _thin_lines(maps, peak, o.line_sigma, o.bridge, touching=touching, run_len=run_len, stroke=stroke)


def _track_band(ink: np.ndarray, band: int, xs: tuple, scale: tuple, up_mv: float, down_mv: float,
                penalty: np.ndarray, o: ClassicalOptions):
    """Track one band's trace inside its window; returns (y0, y1, top, bottom): the window's rows and
    per column (x1 - x0 of them) the chosen run's top and bottom window rows (-1 where skipped)."""
    (x0, x1), (sx, sy) = xs, scale
    h, w = ink.shape
    base = CANONICAL_BASELINES_Y[band]
    if band == 0:
        up_mv = max(up_mv, o.top_row_window_up_mv)
    y0 = max(int((base - up_mv * CANONICAL_PX_PER_MV) * sy), 0)
    y1 = min(int(np.ceil((base + down_mv * CANONICAL_PX_PER_MV) * sy)) + 1, h)
    window = ink[y0:y1, x0:x1]
    track = TrackOptions(candidate_threshold=o.threshold, jump_cost=o.jump_cost, gap_prob=o.gap_prob,
                         max_candidates=o.max_candidates, slope_allowance=o.slope_allowance, saturation=o.saturation,
                         prior_y=base * sy - y0, prior_cost=o.prior_cost_per_mv / (CANONICAL_PX_PER_MV * sy),
                         prior_cap=o.prior_cap_mv * CANONICAL_PX_PER_MV * sy if o.prior_cap_mv > 0 else None)
    # The pen jumps between the segments of a row: the tracking restarts at each boundary.
    cuts = [c - x0 for c in segment_cuts(band, w, ExtractOptions(frame_scale=(sx, sy))) if x0 < c < x1]
    edges = [0] + cuts + [x1 - x0]
    pen = penalty[y0:y1, x0:x1]
    pieces = [track_runs(window[:, a:z], track, pen[:, a:z]) for a, z in zip(edges[:-1], edges[1:])]
    top = np.concatenate([t for t, _ in pieces])
    bottom = np.concatenate([b for _, b in pieces])
    return y0, y1, top, bottom


def split_shared_runs(tracks: list, flat_pens: float = 8.0, split_both: bool = True) -> list:
    """Where two neighbouring bands tracked the same ink run (a tall wave of one row running into the
    other row's trace: both strokes merge in those columns), the band whose trace was flat just
    before (its run at most half as long as the other's) keeps only the part of the run around its
    own course; the other (the spike) keeps the run.

    Without this both bands took the merged run's centroid: the flat trace got a spurious spike
    and the spike lost its apex. `tracks`: per band (y0, y1, top, bottom) as `_track_band` returns
    (same columns for every band); a flat trace's run is at most `flat_pens` pen thicknesses long
    (pen: the median tracked run length). The part follows the flat trace column by column: its
    centre moves to the centre of what it kept, so a low wave of its own inside the merge is kept.
    Where both bands were steep just before (QRS complexes of two rows lined up, `split_both`), the
    upper band takes the upper half of the two runs' union and the lower band the lower half:
    each then reads near its own stroke instead of both reading the merged run's middle.
    Returns (tracks, spike_cols): bool (bands, columns), the shared columns of both bands; these are
    read without centre weighting (the merged junction is the thickest ink there and would pull
    the spike's centre onto the flat trace, and the flat trace's onto the spike).
    """
    tracks = [(y0, y1, top.copy(), bottom.copy()) for y0, y1, top, bottom in tracks]
    spike_cols = np.zeros((len(tracks), len(tracks[0][2])), bool)
    pen = _median_run_px(tracks)
    if pen is None:
        return tracks, spike_cols
    for upper in range(len(tracks) - 1):
        lower = upper + 1
        (ya, ya_end, ta, ba), (yb, yb_end, tb, bb) = tracks[upper], tracks[lower]
        on = (ta >= 0) & (tb >= 0)
        shared = on & (ta + ya <= bb + yb) & (tb + yb <= ba + ya)  # the two intervals overlap
        x = 0
        n = len(ta)
        while x < n:
            if not shared[x]:
                x += 1
                continue
            end = x
            while end < n and shared[end]:
                end += 1
            if x > 0:
                refs = []
                for band, (y0, _, t, b) in ((upper, tracks[upper]), (lower, tracks[lower])):
                    ok = t[x - 1] >= 0 and not shared[x - 1]
                    refs.append((b[x - 1] - t[x - 1] + 1 if ok else np.inf, band))
                (length, flat), (other, spike) = sorted(refs)
                if length <= flat_pens * pen and length <= 0.5 * other:
                    spike_cols[spike, x:end] = True
                    spike_cols[flat, x:end] = True
                    y0, _, t, b = tracks[flat]
                    centre = 0.5 * (t[x - 1] + b[x - 1])
                    half = 0.5 * length + pen
                    for c in range(x, end):
                        lo, hi = max(t[c], int(np.floor(centre - half))), min(b[c], int(np.ceil(centre + half)))
                        # The merged run's end on the flat band's side, if near its course, is its
                        # trace's edge (the spike's ink lies beyond it, towards the other band).
                        if flat == upper and lo == t[c]:
                            hi = min(b[c], t[c] + int(min(length, 2 * pen)))
                        elif flat == lower and hi == b[c]:
                            lo = max(t[c], b[c] - int(min(length, 2 * pen)))
                        if lo > hi:
                            break
                        t[c], b[c] = lo, hi
                        centre = 0.5 * (lo + hi)
                elif split_both:
                    # Both bands steep (QRS complexes lined up): each takes its side's half of the union.
                    # Unless the lower band's stroke, carried on at its speed, has passed above
                    # the upper band's (a tall wave overtaking the other row's): then nothing is split.
                    def course(t, b, y0):
                        if x < 2 or t[x - 2] < 0:
                            return None
                        c1, c2 = 0.5 * (t[x - 1] + b[x - 1]) + y0, 0.5 * (t[x - 2] + b[x - 2]) + y0
                        return c1, c1 - c2
                    up_course, low_course = course(ta, ba, ya), course(tb, bb, yb)
                    for c in range(x, end):
                        top_img, bot_img = min(ta[c] + ya, tb[c] + yb), max(ba[c] + ya, bb[c] + yb)
                        if up_course and low_course:
                            k = c - x + 1
                            if low_course[0] + k * low_course[1] < up_course[0] + k * up_course[1]:
                                continue
                        spike_cols[[upper, lower], c] = True
                        mid = 0.5 * (top_img + bot_img)
                        ta[c] = max(top_img - ya, 0)
                        ba[c] = min(max(int(np.floor(mid)) - ya, ta[c]), ya_end - ya - 1)
                        bb[c] = min(bot_img - yb, yb_end - yb - 1)
                        tb[c] = max(min(int(np.ceil(mid)) - yb, bb[c]), 0)
            x = end
    return tracks, spike_cols


def _run_mask(h: int, w: int, top: np.ndarray, bottom: np.ndarray, y0: int, x0: int, pad: int = 2,
              max_len: Optional[float] = None) -> np.ndarray:
    """float32 (h, w): 1 on the tracked run of each column (padded by `pad` px; only runs at most
    `max_len` px long if given), 0 elsewhere."""
    rows = np.arange(h)[:, None]
    on = top >= 0
    if max_len is not None:
        on &= (bottom - top + 1) <= max_len
    t = np.where(on, top + y0 - pad, h)
    b = np.where(on, bottom + y0 + pad, -1)
    out = np.zeros((h, w), np.float32)
    out[:, x0:x0 + len(top)] = ((rows >= t[None, :]) & (rows <= b[None, :])).astype(np.float32)
    return out


def _thin_lines(maps: np.ndarray, peak: np.ndarray, sigma: float, bridge: float = 0.1,
                touching: Optional[np.ndarray] = None, run_len: Optional[np.ndarray] = None,
                stroke: Optional[tuple] = None) -> np.ndarray:
    """Gaussian line profiles at the run-centroid centre of each band column (see step 4), joined
    by a low bridge (`bridge` x the column's peak, at least BRIDGE_FLOOR) from each centre half-way
    to its neighbours' centres where the two columns are one stroke: their tracked runs touch
    (`touching`, bands x W: this column and the one before) and the centres are no further apart
    than the shorter run is long (`run_len`). A steep stroke's column runs are each about one
    column's rise long or more; a column whose run was merged with a vertical grid line or text
    has its centre far from a short neighbour, and stays an isolated outlier that the extraction's
    tracking drops, as before. With `stroke` = (ink mask, max width px), both centres must also lie
    on ink no wider than that along x: a stroke, not a stain or mould blob the path wandered into
    (label letters are left out of the mask by the caller).

    Without the bridge a steep stroke (an R wave rises 40 px per column) left isolated dots 40 px
    apart, and the extraction's own run tracking (`extract.band_columns`) skipped the whole QRS as
    a jump: tall R waves were cut to the baseline. The bridge stays below the Gaussian's value one
    pixel from the centre, so the argmax and its parabolic step are unchanged.
    """
    from ecgdigit.trace.extract import ExtractOptions, _columns_of

    opts = ExtractOptions(estimator="run", tracking=False)
    h, w = maps.shape[1:]
    rows = np.arange(h, dtype=np.float32)[:, None]
    out = np.zeros_like(maps)
    for b in range(maps.shape[0]):
        y, pk = _columns_of(maps[b], opts)
        on = pk > 0
        prof = np.exp(-0.5 * ((rows - y[None, :].astype(np.float32)) / sigma) ** 2)
        out[b] = np.where(on[None, :], prof * peak[b][None, :].astype(np.float32), 0.0)
        if bridge <= 0:
            continue
        yc = np.where(on, y, np.nan)
        link = touching[b] if touching is not None else np.ones(w, bool)
        if run_len is not None:
            shorter = np.minimum(run_len[b], np.concatenate([[0.0], run_len[b][:-1]]))
            step = np.abs(yc - np.concatenate([[np.nan], yc[:-1]]))
            link = link & (step <= shorter + 2) & (step >= BRIDGE_MIN_STEP)
        if stroke is not None:
            width = _ink_width_at(stroke[0], yc)
            narrow = (width > 0) & (width <= stroke[1])
            link = link & narrow & np.concatenate([[False], narrow[:-1]])
        prev_y = np.where(link, np.concatenate([[np.nan], yc[:-1]]), np.nan)
        next_y = np.where(np.concatenate([link[1:], [False]]), np.concatenate([yc[1:], [np.nan]]), np.nan)
        half_prev = 0.5 * (yc + prev_y)
        half_next = 0.5 * (yc + next_y)
        lo = np.fmin(np.fmin(half_prev, half_next), yc)
        hi = np.fmax(np.fmax(half_prev, half_next), yc)
        cols = np.flatnonzero(on & (hi - lo >= 1.5))
        if not len(cols):
            continue
        level = np.maximum(bridge * peak[b][cols], BRIDGE_FLOOR).astype(np.float32)
        sub = out[b][:, cols]
        span = (rows >= np.floor(lo[cols])[None, :]) & (rows <= np.ceil(hi[cols])[None, :])
        out[b][:, cols] = np.where(span, np.maximum(sub, level[None, :]), sub)
    return out


def _ink_width_at(mask: np.ndarray, y: np.ndarray, reach: int = 64) -> np.ndarray:
    """Per column x: the length along x of the ink run through (x, round(y[x])) (0 off ink or
    where y is NaN), counted up to `reach` px each way."""
    h, w = mask.shape
    cols = np.flatnonzero(np.isfinite(y))
    out = np.zeros(w)
    if not len(cols):
        return out
    rows = np.clip(np.round(y[cols]).astype(int), 0, h - 1)
    width = mask[rows, cols].astype(np.float64)
    for sign in (-1, 1):
        going = mask[rows, cols].copy()
        for d in range(1, reach + 1):
            c = cols + sign * d
            inside = (c >= 0) & (c < w)
            going &= inside & mask[rows, np.clip(c, 0, w - 1)]
            if not going.any():
                break
            width += going
    out[cols] = width
    return out


BRIDGE_MAX_WIDTH_PENS = 6.0  # ink wider than this many pen widths along x is a blob, not a stroke
BRIDGE_MIN_STEP = 10.0  # px between centres: smaller steps need no bridge (extract's tracking follows them)
BRIDGE_FLOOR = 0.06  # above extract's default column threshold (0.05), so the bridge counts as a run


def pen_width(ink: np.ndarray, threshold: float = 0.3, step: int = 7) -> float:
    """The trace's thickness in px along y: the median length of the vertical ink runs in the traces'
    rows (every `step`-th column; flat strokes dominate)."""
    h, w = ink.shape
    ya, yb = _trace_rows(h)
    m = ink[ya:yb, ::step] >= threshold
    edges = np.diff(m.astype(np.int8), axis=0, prepend=0, append=0)
    starts, ends = np.nonzero(edges.T == 1), np.nonzero(edges.T == -1)
    lengths = ends[1] - starts[1]
    return float(np.median(lengths)) if len(lengths) else 3.0


def blob_mask(ink: np.ndarray, radius: float = 4.0, level: float = 0.5, margin: int = 0) -> np.ndarray:
    """float32 (H, W): 1 on ink that holds a disk of `radius` square pixels (x halved, as in
    `centre_weights`), i.e. the morphological opening of the ink: mould colonies, stains and blots,
    not a pen line, which is thinner than the disk across its course."""
    h, w = ink.shape
    half = cv2.resize(ink, (max(w // 2, 1), h), interpolation=cv2.INTER_AREA)
    dist = cv2.distanceTransform((half >= level).astype(np.uint8), cv2.DIST_L2, 5)
    r = int(np.ceil(radius + margin))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    blob = cv2.dilate((dist > radius).astype(np.uint8), disk)
    return cv2.resize(blob, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.float32)


def centre_weights(ink: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Distance of each ink pixel to the ink's edge, in square-pixel units, scaled to [0, 1].

    The canonical frame has twice as many pixels per mm in x as in y, so the distance transform is
    taken on a copy with x halved and brought back.
    """
    h, w = ink.shape
    half = cv2.resize(ink, (max(w // 2, 1), h), interpolation=cv2.INTER_AREA)
    dist = cv2.distanceTransform((half >= level).astype(np.uint8), cv2.DIST_L2, 5)
    dist = cv2.resize(dist, (w, h), interpolation=cv2.INTER_LINEAR)
    return dist / max(float(dist.max()), 1e-6)


def _label_boxes(h: int, w: int, o: ClassicalOptions) -> np.ndarray:
    """float32 (h, w): 1 inside the lead-label boxes of the layout, 0 elsewhere."""
    sx, sy = _frame_scale(h, w)
    out = np.zeros((h, w), np.float32)
    x0b, x1b, y0b, y1b = o.label_box
    for j, i in STANDARD_3X4.label_nodes:
        nx, ny = grid_node_canonical(j, i)
        xa, xb = int(max((nx + x0b) * sx, 0)), int(min((nx + x1b) * sx, w))
        ya, yb = int(max((ny + y0b) * sy, 0)), int(min((ny + y1b) * sy, h))
        out[ya:yb, xa:xb] = 1.0
    return out


def classical_extract(image: np.ndarray, lead_lengths, fs: Optional[float] = None,
                      options: Optional[ClassicalOptions] = None, extract_options=None):
    """Canonical-frame image -> 12-lead record (lead -> mV array), with no network."""
    from ecgdigit.trace.extract import extract_record

    maps = classical_band_maps(image, options)
    eo = extract_options or ExtractOptions()
    return extract_record(maps, lead_lengths, fs, eo)
