"""Layout-based rectifier for ECG pages printed WITHOUT a grid (thermal printouts, gridless renders).

The classical rectifier reads the large-grid lattice; here the page's own layout is the target:
the four trace rows of the 3 x 4 + rhythm layout (`layout.STANDARD_3X4`), each printed from 0 s
to 10 s on its baseline, the lead labels under the segment starts, the calibration pulses before
time 0 and the separator ticks at the segment boundaries (when printed), the header at the top.

Steps (`_analyse`, on a working copy whose long side is `WORK_LONG_SIDE`; when the page comes out
smaller than `TARGET_PX_PER_MM` it runs again on the page cropped from the original at about that
resolution; only the final remap reads the original pixels)
1. Ink: black top-hat of the grey image over the local paper level (thin dark strokes only, so
   shading, stains and keyboard keys mostly vanish), inside the bright, colourless page region;
   on textured pages (a photographed screen's pixel grid) the grey image is smoothed first.
2. Row direction: the projection profile of the ink, opened along the candidate direction, is
   sharpest across the rows; the sharpest direction and the sharpest one across it (columns of
   tall QRS complexes can win) are both read. The ink is turned so that the rows run along x.
3. Rows: sets of four across-row profile peaks spaced like the baselines (35.95, 35.95, 32.9 mm,
   either way up), plus a template match of the whole profile, in the ink profile and in the
   coverage profile (per height, the share of columns with flat ink near it: rows wandering by
   millimetres split into several ink peaks, text lines peak in ink but cover part of the page);
   each set is read in full.
4. Each row is followed along x: in short windows the most frequent height of flat ink (a
   horizontal opening keeps it) is the trace's isoelectric level, i.e. about the baseline.
   The trace starts at 0 s and ends at 10 s: the ends of the long ink run along the row (labels
   under the baseline, texture and the calibration pulse's 2.5 mm gap are kept out).
5. For the four readings (which row is the top one x which end is 0 s) a page model is fitted
   robustly: row ends give page x, baseline samples page y; calibration pulses (template match,
   all rows or none) give exact x (rising/falling edge) and heights (foot, top 10 mm up);
   separator ticks, looked for where a first fit puts them, give exact boundary times and
   baseline heights. The model is a ladder, each step taken only when it clearly explains more:
   similarity (a scan; x anchors far off it while the others fit are dropped: a row end run into
   mould, a stain or a screen's frame) -> affine -> homography -> homography + radial lens term
   (k1 about the image centre, the plumb-line constraint of the straight baselines), all pulled
   towards what a real camera can make (square pixels, centred principal point). Camera views
   (perspective taken) get a curl: a smooth page displacement, vertical from the baselines'
   residuals along x, horizontal from the x anchors' residuals (separators searched again, wider,
   through the curled model). Row ends off the line through the others are dropped.
   Each reading's ink is pulled back to page millimetres and scored on the marks that are NOT
   mirror/flip symmetric (labels, pulses, header, speed line); found pulses add to the score, and
   the fit residuals count against it. The best reading gives the orientation code.
6. The large-grid node field (with its margin ring) comes from the page model in original pixels
   and `api.build_rectification` makes the one remap.

Confidence is the product of: row ends found (of 8), row-end residual, baseline residual beyond
the signals' wander, the layout marks' share of the ink, the margin to the best reading of a
different orientation, how far the trace area moves when one row's evidence is left out (a
geometry that hangs on one row), and how strongly the sheet had to be bent (between the anchors
a bent page is guessed). Images without a readable 4-row layout get confidence 0 and a reason.
"""
from __future__ import annotations

import itertools
import time
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from scipy import ndimage, optimize, signal

from ecgdigit import layout
from ecgdigit.rectify.api import (NODE_MARGIN, N_COLS, N_ROWS, USABLE_CONFIDENCE, Rectification, as_rgb_uint8,
                                  build_rectification, foreign_layout_reason, largest_bright_region, mask_solidity,
                                  PAGE_MASK_SOLIDITY,
                                  rejected_rectification, too_small_reason)
from ecgdigit.rectify.classical import (INK_SAMPLES_PER_BOX, page_mask_by_brightness as _bright_page_mask,
                                        _trace_rows_elsewhere)

METHOD = "gridless"
WORK_LONG_SIDE = 1400  # working copy (px on the image's long side)
ANGLE_LONG_SIDE = 400  # the row-direction search runs on this size
MIN_IMAGE_SIDE = 200
PAGE_FRACTION_RANGE = (0.25, 1.2)  # page width / image long side
LAYOUT = layout.STANDARD_3X4
BASELINES_MM = np.asarray(LAYOUT.baselines_y_mm, dtype=np.float64)
X_T0_MM = float(layout.seconds_to_mm(0.0))
X_T10_MM = float(layout.seconds_to_mm(layout.RECORD_SECONDS))
PAGE_W_MM = layout.LETTER.width_mm
PAGE_H_MM = layout.LETTER.height_mm
ROW_CANDIDATES = 3  # row sets read in full (the best reading of all wins)
ROW_GAP_TOLERANCE = 0.08  # relative error of a row gap (perspective, wander) that halves a match
TRACK_STEP_MM = 2.5  # baseline samples along a row
TRACK_WINDOW_MM = 10.0  # window whose most frequent ink height is the baseline
RUN_GAP_MM = 1.0  # gaps in a row's ink up to this length are bridged (the pulse ends 2.5 mm before 0 s;
# under perspective and with thick strokes that gap shrinks, and at 1.6 mm pulses merged into the run)
HLINE_FRACTION = 250  # horizontal opening length: long side / this (about 1 - 2 mm of page)
COVERAGE_BAND = 1 / 120  # half band (share of the long side, 2 - 8 mm of page) of the row coverage profile
TEXTURE_LEVEL = 0.02  # median ink above this: the page is textured (screen pixels), smooth more
# share of the page's ink on the layout's asymmetric marks: gridless pages of ours 0.05 - 0.3;
# other layouts or gridded pages read as if gridless 0.02 - 0.05
MARKS_NONE, MARKS_SURE = 0.03, 0.08
# ink periodicity along page x at 3.5 - 7 mm lags: gridless pages of ours <= 0.25, gridded pages
# read correctly anyway up to 0.56, gridded pages misread 0.75 - 0.95
GRID_PERIODICITY = 0.65
FOREIGN_LAYOUT_CONFIDENCE = 0.05  # a page in another printed layout: below the usable confidence, with its reason
OTHER_LAYOUT_PAD_BOXES = 10  # ... whose trace rows are looked for this far beyond the page read
TARGET_PX_PER_MM = 4.5  # second pass: the page alone at about this resolution
CROP_MARGIN_MM = 15.0
MAX_CROP_LONG_SIDE = 2000
PERSPECTIVE_PRIOR = 1.0 / 0.1  # one residual unit (mm) per 10 % scale change across the page
FIXED_BASELINE_WEIGHT = 0.15  # baselines' share when exact heights exist (per exact height)
PERSPECTIVE_GAIN = 0.7  # the homography must cut the affine fit's robust cost to this share
PERSPECTIVE_GAIN_NO_BACKGROUND = 0.4  # ... when the page fills the image (scans)
BELOW_BASELINE_MM = 2.5  # the start/end test ignores ink further below the baseline (labels sit 6 mm below)


# -------------------------------------------------------------------------------------------------
# Ink and page
# -------------------------------------------------------------------------------------------------
def _ink(gray: np.ndarray, mask: Optional[np.ndarray] = None) -> Tuple[np.ndarray, bool]:
    """Thin dark strokes relative to the local paper level, float32 0..1 (0 outside `mask`), and
    whether the page is textured.

    A fine texture over the whole page (a photographed screen's pixel grid) would count as ink
    everywhere: when the typical pixel is inky, the grey image is smoothed more and it is redone."""
    k = max(5, int(round(max(gray.shape) / 200)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    best = None
    for sigma in (0.7, 1.6, 2.5):
        g = cv2.GaussianBlur(gray, (0, 0), sigma).astype(np.float32)
        closed = cv2.morphologyEx(g, cv2.MORPH_CLOSE, kernel)
        ink = np.clip((closed - g) / np.maximum(closed, 16.0), 0.0, 1.0)
        if mask is not None:
            ink = np.where(mask, ink, 0.0).astype(np.float32)
        inside = ink[::4, ::4] if mask is None else ink[mask][::16]
        if inside.size == 0:
            return ink, False
        level = float(np.median(inside))
        if best is None and level < TEXTURE_LEVEL:
            return ink, False
        # textured: keep the smoothing under which the strokes stand out most over the texture
        contrast = float(np.percentile(inside, 99.7)) / max(level, 0.005)
        if best is None or contrast > best[0]:
            best = (contrast, ink)
    return best[1], True


def _page_mask(rgb: np.ndarray) -> Optional[np.ndarray]:
    """The bright, nearly colourless page (or screen) region of a photo; None when it is (nearly)
    the whole image. Colour counts against: wooden tables are bright too, but saturated. A tinted
    (aged, yellowed) sheet is saturated too: where the colourless region is missing or comes out
    ragged, the plainly bright region (`classical._page_mask`) is the page if it covers more."""
    mask = _colourless_page_mask(rgb)
    if mask is not None and mask_solidity(mask) >= PAGE_MASK_SOLIDITY:
        return mask
    bright = _bright_page_mask(rgb)
    if bright is not None and (mask is None or bright.sum() > mask.sum()):
        return bright
    return mask


def _colourless_page_mask(rgb: np.ndarray) -> Optional[np.ndarray]:
    """The bright, nearly colourless region of `_page_mask`, or None."""
    h, w = rgb.shape[:2]
    s = 256.0 / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 2.0).astype(np.float32)
    mx, mn = small.max(axis=2), small.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 8.0)
    blur = np.clip(mx * np.clip(1.0 - sat / 0.4, 0.0, 1.0), 0, 255).astype(np.uint8)
    mask = largest_bright_region(blur, min_fraction=0.08)
    if mask is None:
        return None
    contrast = float(np.median(blur[mask])) - float(np.median(blur[~mask]))
    if contrast < 30:
        return None
    mask = ndimage.binary_erosion(mask, iterations=2)
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


# -------------------------------------------------------------------------------------------------
# Row direction and coarse rows
# -------------------------------------------------------------------------------------------------
def _rotation(angle_deg: float, shape: Tuple[int, int]) -> Tuple[np.ndarray, Tuple[int, int]]:
    """2x3 affine turning an image of `shape` by `angle_deg` (rows at that angle become
    horizontal) onto a canvas that holds all of it, and that canvas size (w, h)."""
    h, w = shape
    a = np.radians(angle_deg)
    c, s = abs(np.cos(a)), abs(np.sin(a))
    W, H = int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c))
    M = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0)
    M[0, 2] += (W - w) / 2.0
    M[1, 2] += (H - h) / 2.0
    return M, (W, H)


def _row_angle(ink: np.ndarray) -> List[Tuple[float, float]]:
    """Candidate row directions (degrees, image coordinates) with their sharpness relative to the
    best: the sharpest projection and the sharpest one roughly across it."""
    h, w = ink.shape
    s = ANGLE_LONG_SIDE / max(h, w)
    small = cv2.resize(ink, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    sig = max(1.0, ANGLE_LONG_SIDE / 250)
    opener = np.ones((1, max(3, int(round(ANGLE_LONG_SIDE / 70)))), np.uint8)  # about 4 mm of page

    def sharpness(angle: float) -> float:
        M, size = _rotation(angle, small.shape)
        rot = cv2.warpAffine(small, M, size, flags=cv2.INTER_LINEAR)
        # only what runs along the candidate direction: tall QRS spikes (steep strokes) are
        # lines too, across the rows
        rot = cv2.morphologyEx(rot, cv2.MORPH_OPEN, opener)
        prof = ndimage.gaussian_filter1d(rot.sum(axis=1).astype(np.float64), sig)
        return float(np.sum(np.diff(prof) ** 2))

    coarse = np.arange(0.0, 180.0, 2.0)
    vals = np.array([sharpness(a) for a in coarse])
    out = []
    # the best direction, and the best one roughly across it: with tall QRS complexes printed at
    # the same times in every row, the columns of spikes can be sharper than the rows
    k0 = int(np.argmax(vals))
    across = np.abs(((coarse - coarse[k0]) + 90.0) % 180.0 - 90.0) >= 60.0
    k1 = int(np.flatnonzero(across)[np.argmax(vals[across])])
    for k in (k0, k1):
        fine = coarse[k] + np.arange(-2.0, 2.01, 0.5)
        fvals = np.array([sharpness(a) for a in fine])
        out.append((float(fine[int(np.argmax(fvals))]) % 180.0, float(fvals.max() / max(vals.max(), 1e-12))))
    return out


def _coarse_rows(prof: np.ndarray, long_side: int) -> Optional[Tuple[np.ndarray, float, float]]:
    """Four row positions (px, ascending) in an across-row ink profile, the px/mm scale and the
    normalised correlation of the best layout match (either way up)."""
    n = prof.size
    p = prof - ndimage.uniform_filter1d(prof, max(3, int(n / 6)))  # remove slow trends (shading)
    best = None
    s_lo = PAGE_FRACTION_RANGE[0] * long_side / PAGE_W_MM
    s_hi = PAGE_FRACTION_RANGE[1] * long_side / PAGE_W_MM
    for s in np.geomspace(s_lo, s_hi, 48):
        lo, hi = BASELINES_MM.min() - 12.0, BASELINES_MM.max() + 12.0
        y = np.arange(lo * s, hi * s + 1.0)
        for flip in (False, True):
            mm = (y / s) if not flip else (BASELINES_MM.min() + BASELINES_MM.max()) - y / s
            t = np.zeros_like(y)
            for b in BASELINES_MM:
                t += np.exp(-0.5 * ((mm - b) / 2.0) ** 2)
            t = t - t.mean()
            if len(t) >= n:
                continue
            # normalised correlation over every placement
            num = np.correlate(p, t, mode="valid")
            ones = np.ones(len(t))
            s1 = np.correlate(p, ones, mode="valid")
            s2 = np.correlate(p * p, ones, mode="valid")
            var = np.maximum(s2 - s1 * s1 / len(t), 1e-12)
            ncc = num / (np.sqrt(var) * np.linalg.norm(t))
            k = int(np.argmax(ncc))
            if best is None or ncc[k] > best[0]:
                off = k - lo * s  # profile index of page y = 0 mm (upright reading)
                if not flip:
                    rows = off + BASELINES_MM * s
                else:
                    rows = off + ((BASELINES_MM.min() + BASELINES_MM.max()) - BASELINES_MM) * s
                best = (float(ncc[k]), np.sort(rows), float(s))
    if best is None:
        return None
    return best[1], best[2], best[0]


def _row_coverage(Dh: np.ndarray, long_side: int) -> np.ndarray:
    """Across-row profile of coverage: per height, the share of the ink's columns with flat ink
    within COVERAGE_BAND of it (a trace row wandering by millimetres still covers nearly every
    column; a header or speed line covers a part)."""
    if not (Dh > 0).any():
        return np.zeros(Dh.shape[0])
    on = Dh > 0.5 * float(np.percentile(Dh[Dh > 0], 90))
    cols = np.nonzero(on.any(axis=0))[0]
    if cols.size < 2:
        return np.zeros(Dh.shape[0])
    x0, x1 = (int(v) for v in np.percentile(cols, [2, 98]))
    half = max(2, int(round(long_side * COVERAGE_BAND)))
    return ndimage.maximum_filter1d(on[:, x0:x1 + 1].astype(np.uint8), 2 * half + 1, axis=0).mean(axis=1)


def _row_peaks(prof: np.ndarray, long_side: int) -> List[Tuple[np.ndarray, float, float]]:
    """Sets of four peaks of the across-row profile spaced like the layout's baselines (either
    way up), best first: (positions ascending, px/mm, score). The four trace rows are the strongest long horizontal
    ink; header lines, a speed line or a page border are single peaks that break the spacing."""
    pk = signal.find_peaks(prof, prominence=0.05 * float(prof.max()))[0]
    if len(pk) < 4:
        return []
    pk = pk[np.argsort(prof[pk])[::-1][:16]]  # the strongest few
    pk = np.sort(pk)
    gaps_mm = np.diff(BASELINES_MM)
    s_lo = PAGE_FRACTION_RANGE[0] * long_side / PAGE_W_MM
    s_hi = PAGE_FRACTION_RANGE[1] * long_side / PAGE_W_MM
    top = float(prof[pk].max())
    found = []
    for combo in itertools.combinations(range(len(pk)), 4):
        y = pk[list(combo)].astype(np.float64)
        g = np.diff(y)
        for pattern in (gaps_mm, gaps_mm[::-1]):
            s = float(g.sum() / pattern.sum())
            if not s_lo <= s <= s_hi:
                continue
            err = np.abs(g / s - pattern) / pattern
            fit = float(np.exp(-0.5 * np.sum((err / ROW_GAP_TOLERANCE) ** 2)))
            score = fit * float(prof[y.astype(int)].sum()) / (4 * top)
            if score >= 0.05:
                found.append((score, y, s))
    found.sort(key=lambda c: -c[0])
    return [(y, s, score) for score, y, s in found[:ROW_CANDIDATES]]


# -------------------------------------------------------------------------------------------------
# Following a row
# -------------------------------------------------------------------------------------------------
def _track_row(D: np.ndarray, y0: float, s: float, half_band: float, x_centre: float):
    """Baseline samples (x, y, weight) of the row near height y0 in the deskewed ink D."""
    h, w = D.shape
    step = max(1.0, TRACK_STEP_MM * s)
    win = max(2, int(round(TRACK_WINDOW_MM * s / 2)))
    hb = int(round(half_band))
    sig_prior = 4.0 * s
    out = []
    for direction in (1, -1):
        y_pred = y0
        x = x_centre if direction == 1 else x_centre - step
        empty = 0
        while 0 <= x < w:
            yc = int(round(y_pred))
            ya, yb = max(0, yc - hb), min(h, yc + hb + 1)
            xa, xb = max(0, int(round(x)) - win), min(w, int(round(x)) + win + 1)
            if yb - ya < 5 or xb <= xa:
                break
            prof = D[ya:yb, xa:xb].sum(axis=1)
            total = float(prof.sum())
            if total < 0.05 * (xb - xa):  # about no ink in the window: paper
                empty += 1
                if empty * step > 6.0 * s:
                    break
                x += direction * step
                continue
            empty = 0
            prof = ndimage.gaussian_filter1d(prof.astype(np.float64), max(0.6, 0.4 * s))
            yy = np.arange(ya, yb, dtype=np.float64)
            score = prof * np.exp(-0.5 * ((yy - y_pred) / sig_prior) ** 2)
            k = int(np.argmax(score))
            if 0 < k < len(prof) - 1:
                den = prof[k - 1] - 2 * prof[k] + prof[k + 1]
                dk = 0.5 * (prof[k - 1] - prof[k + 1]) / den if den < 0 else 0.0
            else:
                dk = 0.0
            y = ya + k + float(np.clip(dk, -1, 1))
            out.append((x, y, float(prof[k] / (xb - xa))))
            y_pred = 0.7 * y + 0.3 * y_pred
            x += direction * step
    if not out:
        return np.zeros((0, 3))
    a = np.array(sorted(out))
    return a



def _baseline_curve(track: np.ndarray, deg: int = 2):
    """Robust polynomial y(x) through a row's baseline samples (extrapolates past the ends)."""
    x, y, w = track[:, 0], track[:, 1], np.maximum(track[:, 2], 1e-6)
    d = min(deg, max(0, len(x) - 2))
    keep = np.ones(len(x), bool)
    for _ in range(3):
        coef = np.polyfit(x[keep], y[keep], d, w=np.sqrt(w[keep]))
        r = y - np.polyval(coef, x)
        mad = 1.4826 * np.median(np.abs(r[keep])) + 0.5
        keep = np.abs(r) <= 3.0 * mad
        if keep.sum() < d + 2:
            break
    return coef, keep


def _row_strip(D: np.ndarray, coef: np.ndarray, half_band: float) -> Tuple[np.ndarray, np.ndarray]:
    """(offsets (n,), strip (n, w)): the ink at heights baseline(x) + offset for every column."""
    h, w = D.shape
    hb = int(np.ceil(half_band))
    offs = np.arange(-hb, hb + 1, dtype=np.float32)
    xs = np.arange(w, dtype=np.float32)
    yb = np.polyval(coef, xs.astype(np.float64)).astype(np.float32)
    mapx = np.repeat(xs[None, :], len(offs), 0)
    mapy = yb[None, :] + offs[:, None]
    strip = cv2.remap(D, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return offs, strip


def _run_containing(present: np.ndarray, centre: int, gap: int) -> Optional[Tuple[int, int]]:
    closed = ndimage.binary_closing(present, structure=np.ones(gap + 1)) | present
    lab, n = ndimage.label(closed)
    if n == 0:
        return None
    k = lab[min(max(centre, 0), len(present) - 1)]
    if k == 0:
        return None
    idx = np.flatnonzero(lab == k)
    # the closing may extend a run by a bridged pixel: trim to present pixels
    idx = idx[present[idx]]
    return int(idx[0]), int(idx[-1])


def _end_position(prof: np.ndarray, e: int, direction: int, s: float) -> float:
    """Sub-pixel end of an ink run whose last present column is `e`, running in `direction`:
    where the column maximum falls to half of its level just inside the run."""
    n = len(prof)
    inside = prof[max(0, min(e, e - direction * int(3 * s))):max(e, e - direction * int(3 * s)) + 1]
    level = float(np.median(inside)) if inside.size else float(prof[e])
    half = 0.5 * level
    k = e
    # walk outwards while above half
    while 0 <= k + direction < n and prof[k + direction] >= half:
        k += direction
    # walk inwards while below half
    while 0 <= k - direction < n and prof[k] < half:
        k -= direction
    nxt = k + direction
    if not 0 <= nxt < n:
        return float(k) + 0.5 * direction
    a, b = float(prof[k]), float(prof[nxt])
    frac = (a - half) / (a - b) if a > b else 0.5
    return float(k) + direction * float(np.clip(frac, 0.0, 1.0))


def _row_ends(offs, strip, centre: int, s: float, up_sign: int, t0_left: bool, thr: float,
              cut: Optional[float] = None):
    """(x_t0, x_t10) in deskewed px for one reading of a row, or None.

    up_sign = -1: page up is towards smaller deskewed y (so the labels, below the baseline, are at
    positive offsets). Near the 0 s end, ink further than BELOW_BASELINE_MM below the baseline
    is ignored (the lead label starts up to 1 mm before 0 s); the 10 s end has no label. `cut`:
    nothing before this x (after it when 0 s is on the right) belongs to the trace (a calibration
    pulse ends there)."""
    full = strip.max(axis=0)
    below = BELOW_BASELINE_MM * s
    keep = offs <= below if up_sign < 0 else offs >= -below
    excl = strip[keep].max(axis=0)
    gap = max(1, int(round(RUN_GAP_MM * s)))
    run = _run_containing(full > thr, centre, gap)
    if run is None:
        return None
    A, B = run
    near = int(round(12.0 * s))
    comb = full.copy()
    if t0_left:
        comb[:A + near] = excl[:A + near]
    else:
        comb[B - near:] = excl[B - near:]
    present = comb > thr
    if cut is not None:
        c = int(np.clip(np.ceil(cut) if t0_left else np.floor(cut), 0, len(present) - 1))
        if t0_left:
            present[:c] = False
        else:
            present[c + 1:] = False
    run2 = _run_containing(present, centre, gap)
    if run2 is None:
        return None
    a, b = run2
    if t0_left:
        return _end_position(comb, a, -1, s), _end_position(full, B, 1, s)
    return _end_position(comb, b, 1, s), _end_position(full, A, -1, s)


_PULSE_CACHE: Dict[Tuple[int, bool, bool], np.ndarray] = {}
PULSE_MIN_NCC = 0.55
PULSE_BONUS = 0.03  # reading score per calibration pulse found


def _pulse_template(s: float, up_sign: int, t0_left: bool) -> Tuple[np.ndarray, Tuple[float, float]]:
    """Ink template of a calibration pulse at s px/mm (3 mm margins), and where its rising edge
    meets the top line inside it (x, y px)."""
    m = 3.0
    w = int(round((5.0 + 2.5 + 2 * m) * s))
    h = int(round((10.0 + 2 * m) * s))
    img = np.zeros((h, w), np.float32)
    x_r, x_f = (m + 2.5) * s, (m + 7.5) * s
    y_top, y_foot = m * s, (m + 10.0) * s
    pts = np.array([[m * s, y_foot], [x_r, y_foot], [x_r, y_top], [x_f, y_top], [x_f, y_foot]])
    cv2.polylines(img, [np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)], False, 1.0,
                  max(1, int(round(0.25 * s))), cv2.LINE_AA, 4)
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    anchor = (x_r, y_top)
    if not t0_left:
        img = img[:, ::-1]
        anchor = (w - 1 - anchor[0], anchor[1])
    if up_sign > 0:
        img = img[::-1]
        anchor = (anchor[0], h - 1 - anchor[1])
    return np.ascontiguousarray(img), anchor


def _find_pulse(D: np.ndarray, coef: np.ndarray, x_e: float, s: float, up_sign: int, t0_left: bool):
    """The calibration pulse just before 0 s of a row, or None: dict(x_rise, x_fall, y_top, y_foot)
    in deskewed px. `x_e`: where the row's ink run starts on its 0 s side."""
    h, w = D.shape
    d = 1 if t0_left else -1
    best = None
    # under perspective the local scale differs from the page's mean by up to about a third
    for sl in s * np.array([0.7, 0.82, 1.0, 1.2, 1.4]):
        tmpl, (ax, ay) = _pulse_template(sl, up_sign, t0_left)
        th, tw = tmpl.shape
        xa, xb = sorted((x_e - d * 14.0 * sl, x_e + d * 8.0 * sl))
        yb = float(np.polyval(coef, x_e))
        ya, yz = yb - 16.0 * sl, yb + 16.0 * sl
        xa, xb = int(max(0, xa - tw / 2)), int(min(w, xb + tw / 2))
        ya, yz = int(max(0, ya)), int(min(h, yz))
        win = np.ascontiguousarray(D[ya:yz, xa:xb])
        if win.shape[0] <= th or win.shape[1] <= tw or tmpl.std() == 0:
            continue
        res = cv2.matchTemplate(win, tmpl, cv2.TM_CCOEFF_NORMED)
        # near-empty windows give meaningless (even 1.0) correlations: ignore them
        energy = cv2.matchTemplate(win * win, np.ones_like(tmpl), cv2.TM_CCORR)
        res = np.where(energy > 0.05 * float((tmpl * tmpl).sum()) * max(float(win.max()), 1e-6) ** 2, res, -1.0)
        k = np.unravel_index(int(np.argmax(res)), res.shape)
        if best is None or res[k] > best[0]:
            best = (float(res[k]), sl, xa + k[1] + ax, ya + k[0] + ay)
    if best is None or best[0] < PULSE_MIN_NCC:
        return None
    ncc, sl, x_r0, y_t0 = best  # rising edge and top line, template precision
    s = sl  # the local scale from here on
    x_f0 = x_r0 + d * 5.0 * s
    y_f0 = y_t0 - up_sign * 10.0 * s  # foot (baseline) level
    # sub-pixel edges: column profile between foot and top
    y_lo, y_hi = sorted((y_t0, y_f0))
    rows = slice(int(round(y_lo + 2.0 * s)), int(round(y_hi - 2.0 * s)) + 1)

    def peak_x(x0):
        a, b = int(round(x0 - 1.5 * s)), int(round(x0 + 1.5 * s)) + 1
        if a < 1 or b >= w - 1 or rows.stop - rows.start < 2:
            return None
        prof = D[rows, a:b].mean(axis=0)
        j = int(np.argmax(prof))
        if 0 < j < len(prof) - 1:
            den = prof[j - 1] - 2 * prof[j] + prof[j + 1]
            return a + j + (0.5 * (prof[j - 1] - prof[j + 1]) / den if den < 0 else 0.0)
        return float(a + j)

    def peak_y(y0, x_from, x_to):
        a, b = int(round(min(x_from, x_to))), int(round(max(x_from, x_to))) + 1
        c, e = int(round(y0 - 1.5 * s)), int(round(y0 + 1.5 * s)) + 1
        if c < 1 or e >= h - 1 or b - a < 2:
            return None
        prof = D[c:e, a:b].mean(axis=1)
        j = int(np.argmax(prof))
        if 0 < j < len(prof) - 1:
            den = prof[j - 1] - 2 * prof[j] + prof[j + 1]
            return c + j + (0.5 * (prof[j - 1] - prof[j + 1]) / den if den < 0 else 0.0)
        return float(c + j)

    x_r, x_f = peak_x(x_r0), peak_x(x_f0)
    if x_r is None or x_f is None:
        return None
    y_top = peak_y(y_t0, x_r + d * 1.0 * s, x_f - d * 1.0 * s)
    y_foot = peak_y(y_f0, x_r - d * 2.2 * s, x_r - d * 0.5 * s)
    if y_top is None or y_foot is None:
        return None
    # a pulse is 5 mm wide and 10 mm tall: reject shapes far from that (the scale is known to ~10 %)
    pw, ph = abs(x_f - x_r), abs(y_foot - y_top)
    if not (0.4 < pw / ph < 0.6 and 8.0 * s < ph < 12.0 * s):
        return None
    s = ph / 10.0
    # the trace starts 2.5 mm after the falling edge: the gap must be paper near the baseline
    gx = sorted((x_f + d * 0.9 * s, x_f + d * 1.6 * s))
    gap = D[int(round(min(y_foot, y_top) + 1.5 * s)):int(round(max(y_foot, y_top) - 1.5 * s)) + 1,
            int(round(gx[0])):int(round(gx[1])) + 1]
    edge = D[int(round(y_lo + 1.5 * s)):int(round(y_hi - 1.5 * s)) + 1, int(round(x_f)) - 1:int(round(x_f)) + 2]
    if gap.size and edge.size and float(np.median(gap.max(axis=1))) > 0.5 * float(np.median(edge.max(axis=1))):
        return None
    return dict(x_rise=float(x_r), x_fall=float(x_f), y_top=float(y_top), y_foot=float(y_foot), ncc=ncc)


SEPARATOR_MIN_NCC = 0.45
SEPARATORS_MIN = 5  # of the 9 a page with separators prints


def _find_separator(D: np.ndarray, x_pred: float, y_pred: float, s: float,
                    reach_mm: float = 1.5) -> Optional[Tuple[float, float]]:
    """The 4 mm separator tick expected near deskewed (x_pred, y_pred) (its centre, on the
    baseline): its centre (x, y), or None. The tick must be a vertical run of 4 mm (+-20 %)."""
    h, w = D.shape
    bar = max(1, int(round(0.25 * s)))
    th, tw = int(round(8.0 * s)) | 1, int(round(3.0 * s)) | 1
    tmpl = np.zeros((th, tw), np.float32)
    cy, cx = th // 2, tw // 2
    tmpl[int(round(cy - 2.0 * s)):int(round(cy + 2.0 * s)) + 1, cx - bar // 2:cx - bar // 2 + bar] = 1.0
    tmpl = cv2.GaussianBlur(tmpl, (0, 0), 0.7)
    xa, xb = int(max(0, x_pred - reach_mm * s - tw / 2)), int(min(w, x_pred + reach_mm * s + tw / 2 + 1))
    ya, yb = int(max(0, y_pred - 2.5 * s - th / 2)), int(min(h, y_pred + 2.5 * s + th / 2 + 1))
    win = np.ascontiguousarray(D[ya:yb, xa:xb])
    if win.shape[0] <= th + 2 or win.shape[1] <= tw + 2 or float(win.max()) <= 0:
        return None
    res = cv2.matchTemplate(win, tmpl, cv2.TM_CCOEFF_NORMED)
    energy = cv2.matchTemplate(win * win, np.ones_like(tmpl), cv2.TM_CCORR)
    res = np.where(energy > 0.05 * float((tmpl * tmpl).sum()) * float(win.max()) ** 2, res, -1.0)
    j, i = np.unravel_index(int(np.argmax(res)), res.shape)
    if res[j, i] < SEPARATOR_MIN_NCC:
        return None
    x0, y0 = xa + i + cx, ya + j + cy
    # x: peak of the column profile over the tick's middle; y: middle of the vertical ink run
    rows = slice(int(round(y0 - 1.2 * s)), int(round(y0 + 1.2 * s)) + 1)
    c0 = int(round(x0))
    if c0 - 2 < 0 or c0 + 3 > w:
        return None
    prof = D[rows, c0 - 2:c0 + 3].mean(axis=0)
    k = int(np.argmax(prof))
    x = float(c0 - 2 + k)
    if 0 < k < 4:
        den = prof[k - 1] - 2 * prof[k] + prof[k + 1]
        x += float(np.clip(0.5 * (prof[k - 1] - prof[k + 1]) / den, -0.5, 0.5)) if den < 0 else 0.0
    ci = int(round(x))
    ys = np.arange(int(max(0, y0 - 4.0 * s)), int(min(h, y0 + 4.0 * s)) + 1)
    col = D[ys, max(0, ci - 1):ci + 2].max(axis=1)
    half = 0.5 * float(col[np.abs(ys - y0) <= 1.0 * s].max())
    on = col >= half
    c = int(np.argmin(np.abs(ys - y0)))
    if not on[c]:
        return None
    top, bot = c, c
    while top > 0 and on[top - 1]:
        top -= 1
    while bot < len(on) - 1 and on[bot + 1]:
        bot += 1
    length = (bot - top + 1)
    if not 3.2 * s <= length <= 4.8 * s:
        return None
    return x, float(ys[top] + ys[bot]) / 2.0


def _off_line(pts, tol: float):
    """Of points (x, y, ...) that should lie on one near-vertical line (deskewed frame), those
    more than `tol` px in x off the line through the others."""
    if len(pts) < 3:
        return []
    xy = np.array([(p[0], p[1]) for p in pts])
    bad = []
    for k in range(len(pts)):
        rest = np.delete(xy, k, axis=0)
        coef = np.polyfit(rest[:, 1], rest[:, 0], 1 if len(rest) >= 3 else 0)
        worst = np.max(np.abs(np.polyval(coef, rest[:, 1]) - rest[:, 0]))
        if abs(np.polyval(coef, xy[k, 1]) - xy[k, 0]) > tol and worst <= tol:
            bad.append(pts[k])
    return bad


# -------------------------------------------------------------------------------------------------
# Page model
# -------------------------------------------------------------------------------------------------
def _apply_h(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, dtype=np.float64)
    q = p @ H[:, :2].T + H[:, 2]
    return q[..., :2] / q[..., 2:3]


def _undistort(d: np.ndarray, lens: Optional[Tuple[float, float, float, float]], k1: float) -> np.ndarray:
    """Recorded image points -> ideal pinhole points under radial lens distortion k1 about the
    lens centre: u = c + (d - c) (1 + k1 r^2), r = |d - c| / norm (`lens` = (cx, cy, norm, f))."""
    d = np.asarray(d, dtype=np.float64)
    if lens is None or k1 == 0.0:
        return d
    c = np.array(lens[:2])
    v = d - c
    r2 = (v * v).sum(axis=-1, keepdims=True) / lens[2] ** 2
    return c + v * (1.0 + k1 * r2)


def _distort(u: np.ndarray, lens: Optional[Tuple[float, float, float, float]], k1: float) -> np.ndarray:
    """Inverse of `_undistort` (fixed-point iteration; |k1| is small)."""
    u = np.asarray(u, dtype=np.float64)
    if lens is None or k1 == 0.0:
        return u
    c = np.array(lens[:2])
    v = u - c
    d = v.copy()
    for _ in range(8):
        r2 = (d * d).sum(axis=-1, keepdims=True) / lens[2] ** 2
        d = v / (1.0 + k1 * r2)
    return c + d


def page_to_image(model: dict, pts: np.ndarray) -> np.ndarray:
    """Page mm -> image px through a page model (curl: a smooth page displacement (mm), H: page ->
    ideal px, k1/lens: radial lens)."""
    pts = np.asarray(pts, dtype=np.float64)
    if model.get("curl") is not None:
        pts = pts + _curl_shift(model["curl"], pts)
    return _distort(_apply_h(model["H"], pts), model.get("lens"), model.get("k1", 0.0))


# curl: smooth displacement of the page (sag, bends, waves of a sheet lying on a table), as
# Legendre polynomials in page x over the trace span and in page y over the rows (constant
# beyond them: nothing there to measure it by)
CURL_DEG_Y = 4  # vertical shift along the rows (the baselines are dense in x)
CURL_DEG_X_ENDS = 1  # horizontal shift with only row ends / pulses as x anchors
CURL_DEG_X_SEPS = 3  # ... with separator ticks at 2.5 / 5 / 7.5 s too
CURL_RIDGE = 0.05  # ridge weight against the data's (normalised) weight
CURL_HUBER_MM = 1.0


def _curl_basis(pts: np.ndarray, deg_x: int, deg_y: int) -> np.ndarray:
    x_mid, x_half = (X_T0_MM + X_T10_MM) / 2.0, (X_T10_MM - X_T0_MM) / 2.0
    y_mid, y_half = (BASELINES_MM.min() + BASELINES_MM.max()) / 2.0, np.ptp(BASELINES_MM) / 2.0
    u = np.clip((pts[..., 0] - x_mid) / x_half, -1.05, 1.05)
    v = np.clip((pts[..., 1] - y_mid) / y_half, -1.0, 1.0)
    pu = np.polynomial.legendre.legvander(u, deg_x)
    pv = np.polynomial.legendre.legvander(v, deg_y)
    return (pu[..., :, None] * pv[..., None, :]).reshape(pts.shape[:-1] + ((deg_x + 1) * (deg_y + 1),))


def _curl_shift(curl: dict, pts: np.ndarray) -> np.ndarray:
    dx = _curl_basis(pts, curl["deg_x"], 1) @ curl["cx"]
    dy = _curl_basis(pts, CURL_DEG_Y, 1) @ curl["cy"]
    return np.stack([dx, dy], -1)


def _robust_ridge(A: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted ridge least squares, reweighted twice (Huber) against outliers."""
    coef = np.zeros(A.shape[1])
    wr = np.ones(len(b))
    for _ in range(3):
        sw = np.sqrt(w * wr)
        lhs = (A * sw[:, None])
        reg = CURL_RIDGE * float(np.sum(w)) / max(len(b), 1)
        coef = np.linalg.solve(lhs.T @ lhs + reg * np.eye(A.shape[1]), lhs.T @ (b * sw))
        r = np.abs(A @ coef - b)
        wr = np.where(r <= CURL_HUBER_MM, 1.0, CURL_HUBER_MM / np.maximum(r, 1e-9))
    return coef


def _fit_curl(fit: dict, end_img, end_page, base_img, base_y, base_w, fix_img, fix_y, with_seps: bool) -> dict:
    """The page model `fit` with a curl added, fitted to what the homography leaves: baseline and
    exact-height residuals (vertical shift), row end / pulse / separator residuals (horizontal).
    Residuals are re-measured through the curled model."""
    G, lens, k1 = fit["G"], fit["lens"], fit["k1"]
    keep = fit["end_kept"]
    qb = _apply_h(G, _undistort(base_img, lens, k1))
    qe = _apply_h(G, _undistort(end_img[keep], lens, k1))
    qf = _apply_h(G, _undistort(fix_img, lens, k1)) if len(fix_img) else np.zeros((0, 2))
    # each row's baseline samples weigh as much as a few exact heights together
    wb = base_w / max(float(base_w.mean()), 1e-9) * (8.0 / max(len(base_img), 1) * 4.0)
    A_y = np.concatenate([_curl_basis(qb, CURL_DEG_Y, 1), _curl_basis(qf, CURL_DEG_Y, 1)])
    b_y = np.concatenate([qb[:, 1] - base_y, qf[:, 1] - fix_y])
    w_y = np.concatenate([wb, np.full(len(qf), 1.0)])
    cy = _robust_ridge(A_y, b_y, w_y)
    deg_x = CURL_DEG_X_SEPS if with_seps else CURL_DEG_X_ENDS
    cx = _robust_ridge(_curl_basis(qe, deg_x, 1), qe[:, 0] - end_page[keep, 0], np.ones(len(qe)))
    curl = dict(cx=cx, cy=cy, deg_x=deg_x)
    out = dict(fit, curl=curl)
    # residuals through the curled model (page coordinates of the data, less the curl there)
    out["r_end"] = qe[:, 0] - _curl_shift(curl, qe)[:, 0] - end_page[keep, 0]
    out["r_base"] = qb[:, 1] - _curl_shift(curl, qb)[:, 1] - base_y
    return out


def _camera_residuals(H: np.ndarray, lens) -> np.ndarray:
    """How far a page -> image homography is from a pinhole camera with square pixels, centred
    principal point and focal length f looking at a flat page: cosine between the page axes' rays
    and their relative length difference (both 0 for a scan, which is a similarity)."""
    cx, cy, _, f = lens
    M = np.array([[1.0 / f, 0.0, -cx / f], [0.0, 1.0 / f, -cy / f], [0.0, 0.0, 1.0]]) @ H
    m1, m2 = M[:, 0], M[:, 1]
    n1, n2 = float(m1 @ m1), float(m2 @ m2)
    return np.array([float(m1 @ m2) / np.sqrt(n1 * n2 + 1e-30), (n1 - n2) / (n1 + n2 + 1e-30)])


CAMERA_PRIOR_MM = 150.0  # residual (mm) per unit of camera inconsistency: 1 % shear or aspect = 1.5 mm
CAMERA_PRIOR_NO_BACKGROUND_MM = 1000.0  # ... when the page fills the image (a scan: a similarity)
LENS_PRIOR = 1.0 / 0.03  # k1 residual scale (mm per unit k1 / 0.03)
LENS_GAIN = 0.85  # the lens term must cut the robust cost to this share
LENS_MAX = 0.15  # |k1| bound (phone lenses: a few hundredths)
HOPELESS_END_MM = 15.0  # median x anchor residual of the affine fit beyond which a reading is not refined
END_OUTLIER_MM = 3.0  # an x anchor this far off the affine map (and far beyond the others) is dropped


def _fit_page_model(end_img: np.ndarray, end_page: np.ndarray, base_img: np.ndarray, base_y: np.ndarray,
                    base_w: np.ndarray, scale: float, fix_img: Optional[np.ndarray] = None,
                    fix_y: Optional[np.ndarray] = None, lens=None,
                    perspective_gain: float = PERSPECTIVE_GAIN, camera_prior_mm: float = CAMERA_PRIOR_MM) -> dict:
    """Robust fit of G (ideal image -> page mm) and a radial lens term k1 to row ends (both
    coordinates) and baseline samples (page y only), and exactly known heights (`fix_*`: pulse
    foot and top, separator centres; page y only, weighted like a row end). `lens` = (cx, cy,
    norm, f) in image px: the camera's centre, the lens norm and a nominal focal length; with it
    the homography is pulled towards one a real camera (or a scanner: a similarity) can make, and
    a lens term is tried. Returns dict(G, H (page -> ideal px), k1, lens, r_end, r_base, r_fix,
    perspective, cost)."""
    if fix_img is None or len(fix_img) == 0:
        fix_img, fix_y = np.zeros((0, 2)), np.zeros(0)
    c = np.concatenate([end_img, base_img]).mean(axis=0)
    L = float(scale)
    Tn = np.array([[1 / L, 0, -c[0] / L], [0, 1 / L, -c[1] / L], [0, 0, 1]])
    # start: the affine map of the row ends (x) and baseline samples (y)
    e_n0 = (end_img - c) / L
    b_n0 = (base_img - c) / L
    A = np.c_[e_n0, np.ones(len(e_n0))]
    B = np.c_[b_n0, np.ones(len(b_n0))]
    ax = np.linalg.lstsq(A, end_page[:, 0], rcond=None)[0]
    ay = np.linalg.lstsq(B, base_y, rcond=None)[0]
    G0 = np.array([ax, ay, [0.0, 0.0, 1.0]])
    # the baselines (the traces' isoelectric level, which wanders) count as much as the row ends
    # together; much less when pulses or separators give exact heights
    wb = np.sqrt(base_w / max(base_w.mean(), 1e-9)) * np.sqrt(len(end_img) / max(len(base_img), 1))
    if len(fix_img):
        wb = wb * np.sqrt(min(1.0, FIXED_BASELINE_WEIGHT * len(end_img) / len(fix_img)))
    span = np.ptp(np.concatenate([e_n0, b_n0]), axis=0)

    mirrored = np.linalg.det(G0[:2, :2]) < 0

    def unpack(p, mode):
        if mode == "similarity":  # rotation + scale (+ mirror): a scan
            a, b = p[0], p[1]
            M = np.array([[a, b], [b, -a]]) if mirrored else np.array([[a, b], [-b, a]])
            return np.vstack([np.c_[M, p[2:4]], [0.0, 0.0, 1.0]]), 0.0
        if mode == "affine":
            return np.vstack([p[:6].reshape(2, 3), [0.0, 0.0, 1.0]]), 0.0
        G = np.append(p[:8], 1.0).reshape(3, 3)
        return G, (float(p[8]) if mode == "lens" else 0.0)

    keep = np.ones(len(end_img), bool)  # x anchors in use (outliers of the affine fit dropped)

    def res(p, mode):
        G, k1 = unpack(p, mode)
        e_n = (_undistort(end_img[keep], lens, k1) - c) / L
        b_n = (_undistort(base_img, lens, k1) - c) / L
        f_n = (_undistort(fix_img, lens, k1) - c) / L
        re = _apply_h(G, e_n)[:, 0] - end_page[keep, 0]
        rb = (_apply_h(G, b_n)[:, 1] - base_y) * wb
        rf = (_apply_h(G, f_n)[:, 1] - fix_y) if len(f_n) else np.zeros(0)
        out = [re, rb, rf]
        if mode not in ("affine", "similarity"):
            # perspective prior: the rows' convergence is measured from noisy baselines (the
            # signals' wander), and an unneeded perspective term bends time along the rows
            out.append(PERSPECTIVE_PRIOR * G[2, :2] * span)
        if mode == "lens":
            out.append(np.array([LENS_PRIOR * k1]))
        if lens is not None and mode != "similarity":
            try:
                H = np.linalg.inv(G @ Tn)
            except np.linalg.LinAlgError:
                H = np.eye(3)
            out.append(camera_prior_mm * _camera_residuals(H, lens))
        return np.concatenate(out)

    def solve(p0, mode):
        lo, hi = np.full(len(p0), -np.inf), np.full(len(p0), np.inf)
        if mode == "lens":
            lo[8], hi[8] = -LENS_MAX, LENS_MAX
            p0 = p0.copy()
            p0[8] = np.clip(p0[8], -LENS_MAX * 0.99, LENS_MAX * 0.99)
        return optimize.least_squares(res, p0, loss="soft_l1", f_scale=1.0, method="trf", max_nfev=200,
                                      args=(mode,), bounds=(lo, hi))

    # an anchor far off the similarity map while the others fit it (a row end run into a mould
    # colony, a stain or the screen's frame) is dropped before the richer models can bend towards
    # it; under strong perspective every end is off the similarity map and none is dropped
    A2 = G0[:2, :2]
    a0 = 0.5 * (A2[0, 0] - A2[1, 1]) if mirrored else 0.5 * (A2[0, 0] + A2[1, 1])
    b0 = 0.5 * (A2[0, 1] + A2[1, 0]) if mirrored else 0.5 * (A2[0, 1] - A2[1, 0])
    sim = solve(np.array([a0, b0, G0[0, 2], G0[1, 2]]), "similarity")
    r_sim = np.abs(res(sim.x, "similarity")[:len(end_img)])
    bad = (r_sim > END_OUTLIER_MM) & (r_sim > 4.0 * float(np.median(r_sim)) + 0.5)
    if bad.any() and (~bad).sum() >= 5:
        keep = ~bad
    aff = solve(G0.ravel()[:6], "affine")
    best, mode = aff, "affine"
    p_aff = np.append(aff.x, [0.0, 0.0])
    # a reading whose ends are way off the affine map is a wrong one (wrong orientation, wrong
    # rows): richer models would not save it, and they cost time
    hopeless = float(np.median(np.abs(res(aff.x, "affine")[:int(keep.sum())]))) > HOPELESS_END_MM
    sol = aff if hopeless else solve(p_aff, "perspective")
    # a flat sheet seen square on (scans) is affine; take the perspective only when it explains
    # clearly more than the affine map
    if not hopeless and sol.cost <= perspective_gain * aff.cost:
        best, mode = sol, "perspective"
    # a camera view (perspective taken, or a background around the page): its lens may bend the rows
    if lens is not None and not hopeless and (mode == "perspective" or perspective_gain >= PERSPECTIVE_GAIN):
        lsol = solve(np.append(best.x if mode == "perspective" else p_aff, 0.0), "lens")
        if lsol.cost <= LENS_GAIN * best.cost:
            best, mode = lsol, "lens"
    G, k1 = unpack(best.x if mode != "affine" else best.x, mode)
    G = G @ Tn
    G = G / G[2, 2]
    H = np.linalg.inv(G)
    H = H / H[2, 2]
    r_end = _apply_h(G, _undistort(end_img[keep], lens, k1))[:, 0] - end_page[keep, 0]
    r_base = _apply_h(G, _undistort(base_img, lens, k1))[:, 1] - base_y
    r_fix = _apply_h(G, _undistort(fix_img, lens, k1))[:, 1] - fix_y if len(fix_img) else np.zeros(0)
    return dict(G=G, H=H, k1=float(k1), lens=lens, r_end=r_end, r_base=r_base, r_fix=r_fix,
                perspective=mode != "affine", lens_used=mode == "lens", cost=float(best.cost), end_kept=keep)


_MARKS_CACHE: Dict[str, np.ndarray] = {}
MARK_STEP_MM = 1.0


def _marks_template() -> np.ndarray:
    """Page raster (1 sample / mm) of where an upright page has ink that is not symmetric under a
    left-right mirror or an up-down flip: lead labels, calibration pulses, header, speed line."""
    if "m" in _MARKS_CACHE:
        return _MARKS_CACHE["m"]
    ys = (np.arange(int(PAGE_H_MM / MARK_STEP_MM)) + 0.5) * MARK_STEP_MM
    xs = (np.arange(int(PAGE_W_MM / MARK_STEP_MM)) + 0.5) * MARK_STEP_MM
    X, Y = np.meshgrid(xs, ys)
    t = np.zeros_like(X)
    for j, i in LAYOUT.label_nodes:
        xl, yl = layout.grid_node_mm(j, i)
        t += 1.0 * ((X >= xl - 1.0) & (X <= xl + 6.0) & (np.abs(Y - yl) <= 2.5))
    for b in BASELINES_MM:
        t += 1.0 * ((X >= X_T0_MM - 10.5) & (X <= X_T0_MM - 2.0) & (Y >= b - 10.5) & (Y <= b - 1.0))
    t += 0.5 * ((X >= 8.0) & (X <= 120.0) & (Y >= 3.0) & (Y <= 28.0))
    y_last = BASELINES_MM.max()
    t += 0.5 * ((X >= X_T0_MM) & (X <= X_T0_MM + 120.0) & (Y >= y_last + 11.0) & (Y <= y_last + 16.5))
    _MARKS_CACHE["m"] = t
    return t


def _to_image(H, pts: np.ndarray) -> np.ndarray:
    """Page mm -> image px through a homography or a page model dict (`page_to_image`)."""
    return page_to_image(H, pts) if isinstance(H, dict) else _apply_h(H, pts)


def _page_raster(ink: np.ndarray, H) -> np.ndarray:
    """The working ink pulled back to page millimetres (1 sample / mm) through H (page -> work px)."""
    ys = (np.arange(int(PAGE_H_MM / MARK_STEP_MM)) + 0.5) * MARK_STEP_MM
    xs = (np.arange(int(PAGE_W_MM / MARK_STEP_MM)) + 0.5) * MARK_STEP_MM
    X, Y = np.meshgrid(xs, ys)
    q = _to_image(H, np.stack([X, Y], -1))
    return cv2.remap(ink, q[..., 0].astype(np.float32), q[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def _grid_periodicity(ink: np.ndarray, H) -> float:
    """Strongest autocorrelation of the ink's column profile (page x) at lags of 3.5 - 7 mm: a
    printed large grid (5 mm, read at any scale error up to about 30 %) shows up here; traces do not."""
    step = 0.25
    xs = np.arange(20.0, PAGE_W_MM - 20.0, step)
    ys = np.arange(20.0, PAGE_H_MM - 15.0, 1.0)
    X, Y = np.meshgrid(xs, ys)
    q = _to_image(H, np.stack([X, Y], -1))
    r = cv2.remap(ink, q[..., 0].astype(np.float32), q[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    prof = r.sum(axis=0).astype(np.float64)
    prof = prof - ndimage.uniform_filter1d(prof, int(10.0 / step))
    den = float(np.dot(prof, prof))
    if den <= 0:
        return 0.0
    lags = np.arange(int(3.5 / step), int(7.0 / step) + 1)
    return float(max(np.dot(prof[:-k], prof[k:]) / den for k in lags))


def _other_layout_rows(ink: np.ndarray, model) -> int:
    """The number of trace rows on the page read by `model` (page mm -> work px) when they are
    another printed layout's, else 0: the classical rectifier's test (`_trace_rows_elsewhere`) on
    the ink pulled back to its upright raster (1 sample / mm, reaching OTHER_LAYOUT_PAD_BOXES
    beyond the page).

    Every reading here assumes the 3x4+II layout; a 6x2, 12x1 or 3x4 + 3 rhythm-strip page whose
    rows happened to fit it would give the wrong leads."""
    # rows are looked for beyond the page's edges too: a reading that fitted the 3x4+II rows to
    # some of another layout's (at a wrong scale) leaves the others off its page
    pad = OTHER_LAYOUT_PAD_BOXES  # raster boxes before the page's node (0, 0)
    mm = layout.LARGE_GRID_MM / INK_SAMPLES_PER_BOX
    n_y, n_x = (int(np.ceil((side / layout.LARGE_GRID_MM + 2 * pad) * INK_SAMPLES_PER_BOX)) for side in (PAGE_H_MM, PAGE_W_MM))
    ys, xs = ((np.arange(n) + 0.5) * mm - (pad + 0.5) * layout.LARGE_GRID_MM for n in (n_y, n_x))
    X, Y = np.meshgrid(xs, ys)
    q = _to_image(model, np.stack([X, Y], -1)).astype(np.float32)
    h, w = ink.shape
    read = (q[..., 0] >= 0) & (q[..., 0] <= w - 1) & (q[..., 1] >= 0) & (q[..., 1] <= h - 1)
    if read.sum() < 0.25 * read.size:
        return 0
    # each sample stands for a 1 mm cell (the classical raster blurs the same way)
    px_per_mm = float(np.median(np.linalg.norm(np.diff(q, axis=1), axis=-1))) / mm
    blurred = cv2.GaussianBlur(ink, (0, 0), max(px_per_mm * mm / 2.5, 0.5))
    up = cv2.remap(blurred, q[..., 0], q[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    # a textured page (a screen's pixel grid) has ink everywhere: keep what stands above it
    up = np.where(read, np.clip(up - 2.0 * float(np.median(up[read])), 0.0, None), 0.0)
    scale = float(np.percentile(up[read], 99.5))
    if scale < 1e-3:
        return 0
    beyond = pad * layout.LARGE_GRID_MM - 5.0
    return _trace_rows_elsewhere(np.minimum(up / scale, 1.0), pad, pad, read, span_mm=(-beyond, PAGE_H_MM + beyond))


# orientation code c turns an upright page's axes by R^(c % 4) F^(c >= 4) (layout.apply_orientation)
_F = np.array([[-1.0, 0.0], [0.0, 1.0]])
_R = np.array([[0.0, 1.0], [-1.0, 0.0]])
_CODE_AXES = [np.linalg.matrix_power(_R, c % 4) @ (_F if c >= 4 else np.eye(2)) for c in range(layout.N_ORIENTATIONS)]


def orientation_of(H: np.ndarray) -> int:
    """Orientation code of an image whose page -> image homography is H (at the page centre)."""
    c = np.array([PAGE_W_MM / 2, PAGE_H_MM / 2])
    d = 1.0
    p = _apply_h(H, np.array([c, c + [d, 0.0], c + [0.0, d]]))
    J = np.stack([p[1] - p[0], p[2] - p[0]], axis=1)
    J = J / np.linalg.norm(J, axis=0, keepdims=True)
    return int(np.argmax([np.sum(J * M) for M in _CODE_AXES]))


# -------------------------------------------------------------------------------------------------
# Entry
# -------------------------------------------------------------------------------------------------
def _reject(rgb, reason, timings, interpolation) -> Rectification:
    return rejected_rectification(rgb, reason, timings, METHOD, interpolation)


FOCAL_PER_LONG_SIDE = 0.8  # a phone's main camera (about 26 mm equivalent): f / image long side


def _default_lens(w: int, h: int) -> Tuple[float, float, float, float]:
    """(cx, cy, norm, f) of a camera whose image is `w` x `h` px uncropped."""
    return ((w - 1) / 2.0, (h - 1) / 2.0, float(np.hypot(w, h)) / 2.0, FOCAL_PER_LONG_SIDE * max(w, h))


def _analyse(work: np.ndarray, timings: Dict[str, float], debug: bool = False, lens=None):
    """Steps 1-5 on a working copy: the best reading as a dict (H: page mm -> ideal work px, k1
    and lens: the radial lens term (`page_to_image`), s: px/mm, score margin, residuals, ...) or
    the reason (str) why there is no ECG layout to read. `lens` = (cx, cy, norm, f): the camera's
    centre, lens norm and nominal focal length in work px (default: those of the whole image)."""
    if lens is None:
        lens = _default_lens(work.shape[1], work.shape[0])
    t0 = time.perf_counter()
    gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    mask = _page_mask(work)
    # no background around the page: most likely a scan (or a flatbed-like copy), seen square on
    perspective_gain = PERSPECTIVE_GAIN if mask is not None else PERSPECTIVE_GAIN_NO_BACKGROUND
    camera_prior_mm = CAMERA_PRIOR_MM if mask is not None else CAMERA_PRIOR_NO_BACKGROUND_MM
    ink, textured = _ink(gray, mask)
    long_side = max(ink.shape)
    if float(np.percentile(ink if mask is None else ink[mask], 99.5)) < 0.04:
        return "no ink strokes found (blank page?)"
    timings["ink"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    angles = _row_angle(ink)
    views = []  # per candidate direction: (angle, M, Minv, D, Dh, row candidates)
    for angle, sharp in angles:
        M, size = _rotation(angle, ink.shape)
        D = cv2.warpAffine(ink, M, size, flags=cv2.INTER_LINEAR)
        Minv = cv2.invertAffineTransform(M)
        # flat stretches of the traces (the isoelectric line) survive a short horizontal opening; the
        # lead labels and header text, made of short strokes, mostly do not
        L = max(3, int(round(long_side / HLINE_FRACTION)))
        Dh = cv2.morphologyEx(D, cv2.MORPH_OPEN, np.ones((1, L), np.uint8))
        prof = ndimage.gaussian_filter1d(Dh.sum(axis=1).astype(np.float64), max(1.0, long_side / 500))
        candidates = _row_peaks(ndimage.gaussian_filter1d(prof, max(1.0, long_side / 250)), long_side)
        cover = ndimage.gaussian_filter1d(_row_coverage(Dh, long_side), max(1.0, long_side / 250))
        # the ink profile peaks where ink is dense (text lines too) and splits a wandering trace row;
        # the coverage profile peaks where ink runs across the page (the trace rows, page borders)
        more = [_coarse_rows(prof, long_side)] + _row_peaks(cover, long_side)[:1] + [_coarse_rows(cover, long_side)]
        for c in more:
            if c is None:
                continue
            # only other rows: a set near one already read (rows within a third of a row gap) is the
            # same reading started a few mm off
            near = max(0.01 * long_side, float(np.diff(c[0]).min()) / 3)
            if not any(np.abs(q[0] - c[0]).max() < near for q in candidates):
                candidates.append(c)
        views.append((angle, sharp, M, Minv, D, Dh, candidates))
    timings["rows"] = time.perf_counter() - t0
    if not any(v[-1] for v in views):
        return "no ECG trace rows found (no grid, and no 4-row layout)"

    def read_rows(rows_y, s, M, Minv, D, Dh):
        """Every reading (4 hypotheses) of one set of coarse rows, or why there is none."""
        t0 = time.perf_counter()
        gaps = np.diff(rows_y)
        half_band = 0.45 * float(gaps.min())
        tracks, curves = [], []
        # start each row where the ink along it is densest (the page's middle)
        for y0 in rows_y:
            ya, yb = int(max(0, y0 - half_band)), int(min(D.shape[0], y0 + half_band))
            colsum = ndimage.uniform_filter1d(Dh[ya:yb].sum(axis=0), max(3, int(40 * s)))
            xc = float(np.argmax(colsum))
            tr = _track_row(Dh, y0, s, half_band, xc)
            if len(tr) < 8:
                return "trace rows found but too short to follow (no grid, layout not recognised)"
            coef, keep = _baseline_curve(tr)
            tracks.append(tr[keep])
            curves.append(coef)
        timings["track"] = timings.get("track", 0.0) + time.perf_counter() - t0

        t0 = time.perf_counter()
        strips = [_row_strip(D, coef, half_band) for coef in curves]
        # a short smoothing along the row: the traces are continuous, texture (screen pixels) averages out
        n_smooth = max(1, int(round(0.8 * s)))
        if textured and n_smooth > 1:
            strips = [(offs, ndimage.uniform_filter1d(strip, n_smooth, axis=1)) for offs, strip in strips]
        levels, texture = [], []
        for (offs, strip), tr in zip(strips, tracks):
            cols = slice(int(tr[0, 0]), int(tr[-1, 0]) + 1)
            full = strip[:, cols].max(axis=0)
            levels.append(float(np.percentile(full, 60)) if full.size else 0.0)
            # between the rows the band is mostly paper: its column maximum is the texture's level
            far = np.abs(offs) >= 0.55 * half_band
            texture.append(float(np.median(strip[far][:, cols].max(axis=0))) if full.size and far.any() else 0.0)
        thr = max(0.3 * float(np.median(levels)), 2.0 * float(np.median(texture)))

        def to_work(xy):
            xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
            return xy @ Minv[:, :2].T + Minv[:, 2]

        hyps = []
        marks = _marks_template()
        for flip_y in (False, True):
            for t0_left in (True, False):
                up_sign = -1 if not flip_y else 1
                order = [0, 1, 2, 3] if not flip_y else [3, 2, 1, 0]  # deskewed row k is page row order[k]
                end_img, end_page, base_img, base_y, base_w, fix_img, fix_y = [], [], [], [], [], [], []
                centres = [int(round(np.median(tr[:, 0]))) for tr in tracks]
                ends_all = [_row_ends(offs, strip, c, s, up_sign, t0_left, thr)
                            for (offs, strip), c in zip(strips, centres)]
                pulses = [None if e is None else _find_pulse(D, coef, e[0], s, up_sign, t0_left)
                          for e, coef in zip(ends_all, curves)]
                # the page prints a pulse on every row or on none: a lone match is something else
                n_pulses = sum(p is not None for p in pulses)
                row_ends = []
                if n_pulses < 3:
                    pulses = [None] * len(pulses)
                    n_pulses = 0
                for k, ((offs, strip), tr) in enumerate(zip(strips, tracks)):
                    r = order[k]
                    b_mm = BASELINES_MM[r]
                    ends, pulse = ends_all[k], pulses[k]
                    if pulse is not None:
                        d = 1 if t0_left else -1
                        ends = _row_ends(offs, strip, centres[k], s, up_sign, t0_left, thr,
                                         cut=pulse["x_fall"] + d * 1.0 * s)
                        y_mid = 0.5 * (pulse["y_top"] + pulse["y_foot"])
                        for x_d, x_mm in ((pulse["x_rise"], X_T0_MM - 7.5), (pulse["x_fall"], X_T0_MM - 2.5)):
                            end_img.append(to_work([x_d, y_mid])[0])
                            end_page.append([x_mm, b_mm])
                        for f in (0.25, 0.5, 0.75):
                            x_d = pulse["x_rise"] + f * (pulse["x_fall"] - pulse["x_rise"])
                            fix_img.append(to_work([x_d, pulse["y_top"]])[0])
                            fix_y.append(b_mm - layout.GAIN_MM_PER_MV)
                        fix_img.append(to_work([pulse["x_rise"] - d * 1.2 * s, pulse["y_foot"]])[0])
                        fix_y.append(b_mm)
                    if ends is not None:
                        if n_pulses and pulse is None:  # this row's 0 s end may be its (unseen) pulse's start
                            ends = (None, ends[1])
                        for x_d, x_mm in zip(ends, (X_T0_MM, X_T10_MM)):
                            if x_d is not None:
                                row_ends.append((x_d, float(np.polyval(curves[k], x_d)), x_mm, b_mm))
                    base_img.extend(to_work(tr[:, :2]))
                    base_y.extend([b_mm] * len(tr))
                    base_w.extend(tr[:, 2])
                # the 0 s ends of the rows lie on one straight line (a line stays straight under
                # perspective), and so do the 10 s ends: an end off the line through the others
                # ran into something else (mould, a stain, a fold)
                for x_mm in (X_T0_MM, X_T10_MM):
                    pts = [e for e in row_ends if e[2] == x_mm]
                    for e in _off_line(pts, 2.0 * s):
                        row_ends.remove(e)
                for x_d, y_d, x_mm, b_mm in row_ends:
                    end_img.append(to_work([x_d, y_d])[0])
                    end_page.append([x_mm, b_mm])
                if len(end_img) < 6:
                    continue

                def reading_data(with_seps: bool) -> dict:
                    """The evidence gathered so far, as `_full_model` fits it."""
                    return dict(end_img=np.array(end_img), end_page=np.array(end_page),
                                base_img=np.array(base_img), base_y=np.array(base_y), base_w=np.array(base_w),
                                fix_img=np.array(fix_img).reshape(-1, 2), fix_y=np.array(fix_y), scale=long_side,
                                lens=lens, seps=with_seps, perspective_gain=perspective_gain,
                                camera_prior_mm=camera_prior_mm)

                data = reading_data(False)
                fit = _full_model(data)
                # separators: 4 mm ticks centred on the baseline at every segment boundary (all or
                # none), looked for where the fit so far puts them (again through the curled
                # model when the plain one found too few: a wave in the sheet moves them by mm)
                n_seps = 0
                for attempt in range(2):
                    if attempt == 1 and fit.get("curl") is None:
                        break
                    seps = []
                    for r in range(len(LAYOUT.rows)):
                        for pl in LAYOUT.rows[r][1:]:
                            x_mm = float(layout.seconds_to_mm(pl.t_start))
                            p_work = page_to_image(fit, np.array([[x_mm, BASELINES_MM[r]]]))[0]
                            p_desk = M[:, :2] @ p_work + M[:, 2]
                            found = _find_separator(D, p_desk[0], p_desk[1], s, 1.5 if attempt == 0 else 5.0)
                            if found is not None:
                                seps.append((found, r, x_mm))
                    if debug:
                        print(f"  separators attempt {attempt}: {len(seps)} found")
                    if len(seps) < SEPARATORS_MIN:
                        continue
                    n_seps = len(seps)
                    for (x_d, y_d), r, x_mm in seps:
                        end_img.append(to_work([x_d, y_d])[0])
                        end_page.append([x_mm, BASELINES_MM[r]])
                        fix_img.append(to_work([x_d, y_d])[0])
                        fix_y.append(BASELINES_MM[r])
                    data = reading_data(True)
                    fit = _full_model(data)
                    break
                H, r_end, r_base = fit["H"], fit["r_end"], fit["r_base"]
                pg = _page_raster(ink, fit)
                # a textured page (a screen's pixel grid) has ink everywhere: count what stands above it
                pg = np.clip(pg - 2.0 * float(np.median(pg)), 0.0, None)
                tot = float(pg.sum()) + 1e-9
                score = float((pg * marks).sum()) / tot
                rms_end = float(np.sqrt(np.mean(r_end ** 2)))
                rms_base = float(np.sqrt(np.median(r_base ** 2)))
                hyps.append(dict(H=H, k1=fit["k1"], lens=lens, perspective=fit["perspective"], score=score,
                                 curl=fit.get("curl"), data=data,
                                 rms_end=rms_end, rms_base=rms_base,
                                 n_end=int(fit["end_kept"][2 * n_pulses:2 * n_pulses + len(row_ends)].sum()),
                                 flip_y=flip_y, t0_left=t0_left, n_pulses=n_pulses))
                if debug:
                    print(f"flip_y {flip_y} t0_left {t0_left}: score {score:.3f} rms_end {rms_end:.2f} mm "
                          f"rms_base {rms_base:.2f} mm n_end {len(end_img)} pulses {n_pulses} seps {n_seps} "
                          f"code {orientation_of(H)} persp {fit['perspective']} k1 {fit['k1']:.3f} "
                          f"r_end {np.round(r_end, 1)} end_page_x {np.round(np.array(end_page)[:, 0], 1)}")
        timings["fit"] = timings.get("fit", 0.0) + time.perf_counter() - t0
        for hp in hyps:
            hp["s"] = s
        return hyps

    hyps, reason = [], ""
    for angle, sharp, M, Minv, D, Dh, candidates in views:
        for rows_y, s, quality in candidates:
            if debug:
                print(f"angle {angle:.1f} sharp {sharp:.2f} rows {np.round(rows_y, 1)} s {s:.2f} quality {quality:.3f}")
            got = read_rows(rows_y, s, M, Minv, D, Dh)
            if isinstance(got, str):
                reason = reason or got
            else:
                hyps += got
    if not hyps:
        return reason or "trace rows found but their ends could not be placed (no grid)"

    def total(hp):
        # calibration pulses are found only in the reading that has them the right way round
        return hp["score"] + PULSE_BONUS * hp["n_pulses"] - 0.02 * (hp["rms_end"] + hp["rms_base"])

    hyps.sort(key=total, reverse=True)
    best = hyps[0]
    best["grid"] = _grid_periodicity(ink, best)
    best["foreign_rows"] = _other_layout_rows(ink, best)
    t0 = time.perf_counter()
    best["spread"] = _row_out_spread(best)
    timings["spread"] = time.perf_counter() - t0
    code = orientation_of(best["H"])
    others = [total(hp) for hp in hyps[1:] if orientation_of(hp["H"]) != code]
    margin = total(best) - max(others) if others else 0.0
    return dict(best, margin=margin)


def _full_model(d: dict, keep_end=None, keep_base=None, keep_fix=None) -> dict:
    """Page model (homography, lens, and a curl when a camera view: the sheet may bend) of a
    reading's data (`data` of a hypothesis), optionally of a subset of it."""
    sel = lambda arr, k: arr if k is None else arr[k]  # noqa: E731
    end_img, end_page = sel(d["end_img"], keep_end), sel(d["end_page"], keep_end)
    base_img, base_y, base_w = sel(d["base_img"], keep_base), sel(d["base_y"], keep_base), sel(d["base_w"], keep_base)
    fix_img, fix_y = sel(d["fix_img"], keep_fix), sel(d["fix_y"], keep_fix)
    fit = _fit_page_model(end_img, end_page, base_img, base_y, base_w, d["scale"], fix_img, fix_y, lens=d["lens"],
                          perspective_gain=d["perspective_gain"],
                          camera_prior_mm=d["camera_prior_mm"])
    if fit["perspective"]:
        fit = _fit_curl(fit, end_img, end_page, base_img, base_y, base_w, fix_img, fix_y, d["seps"])
    return fit


# page points of the trace area (rows' bands, 0..10 s) where the readings are compared
_TRACE_PTS = np.stack(np.meshgrid(np.linspace(X_T0_MM, X_T10_MM, 11),
                                  np.linspace(BASELINES_MM.min() - 10.0, BASELINES_MM.max() + 10.0, 6)),
                      -1).reshape(-1, 2)


def _row_out_spread(a: dict) -> float:
    """How much the reading's trace area moves (mm, worst rms over the rows) when one row's
    evidence (its baseline, ends, pulse and separators) is left out: a geometry that one row
    alone decides (a row end run into a stain, a row tracked off its trace) is not to be trusted."""
    d = a.get("data")
    if d is None:
        return 0.0
    ref = page_to_image(a, _TRACE_PTS)
    row_of = lambda y: np.argmin(np.abs(np.asarray(y)[:, None] - BASELINES_MM[None, :]), axis=1)  # noqa: E731
    r_end = row_of(d["end_page"][:, 1])
    r_base = row_of(d["base_y"])
    r_fix = row_of(d["fix_y"]) if len(d["fix_y"]) else np.zeros(0, int)
    worst = 0.0
    for r in range(len(BASELINES_MM)):
        ke, kb, kf = r_end != r, r_base != r, r_fix != r
        if ke.sum() < 5:
            continue
        try:
            fit = _full_model(d, ke, kb, kf)
        except (np.linalg.LinAlgError, ValueError):
            continue
        q = page_to_image(fit, _TRACE_PTS)
        worst = max(worst, float(np.sqrt(np.mean(np.sum((q - ref) ** 2, axis=1)))) / a["s"])
    return worst


# confidence against wrong geometry (seed 31000, 8 gridless records x 9 types): readings off by more
# than 2 mm had the trace area move 1.8 - 50 mm when one row was left out, or a curl of 3.4 - 15 mm;
# right ones (< 1 mm) up to 1.5 mm and 2.6 mm
SPREAD_OK_MM, SPREAD_BAD_MM = 1.5, 3.5
CURL_OK_MM, CURL_BAD_MM = 2.5, 6.0


def _confidence(a: dict) -> Tuple[float, List[str]]:
    conf = 1.0
    reasons = []
    if a["n_end"] < 8:
        conf *= a["n_end"] / 8.0
        reasons.append(f"only {a['n_end']} of 8 row ends found")
    if a["rms_end"] > 0.7:  # the row ends (and pulse edges) disagree about time
        conf *= 0.7 / a["rms_end"]
        reasons.append(f"row ends off the layout by {a['rms_end']:.2f} mm rms")
    if a["rms_base"] > 3.0:  # baselines wander with the signal; beyond that the rows are not straight
        conf *= 3.0 / a["rms_base"]
        reasons.append(f"baselines off the layout by {a['rms_base']:.2f} mm")
    if a.get("grid", 0.0) > GRID_PERIODICITY:  # a printed grid: the classical rectifier's page
        conf = 0.0
        reasons.append(f"a printed grid shows (periodicity {a['grid']:.2f}): not read as a gridless page")
    evidence = a["score"] + PULSE_BONUS * a["n_pulses"]
    if evidence < MARKS_SURE:  # little of the ink sits where the labels, pulses and header go
        conf *= float(np.clip((evidence - MARKS_NONE) / (MARKS_SURE - MARKS_NONE), 0.0, 1.0))
        reasons.append(f"weak layout match (label/pulse/header marks {a['score']:.3f})")
    if a["margin"] < 0.05:
        conf *= max(a["margin"], 0.0) / 0.05
        reasons.append(f"orientation uncertain (margin {a['margin']:.3f})")
    spread = a.get("spread", 0.0)
    if spread > SPREAD_OK_MM:  # the geometry hangs on one row's evidence
        conf *= float(np.clip((SPREAD_BAD_MM - spread) / (SPREAD_BAD_MM - SPREAD_OK_MM), 0.02, 1.0))
        reasons.append(f"geometry moves {spread:.1f} mm without one row's evidence")
    if a.get("curl") is not None:
        bend = float(np.abs(_curl_shift(a["curl"], _TRACE_PTS)).max())
        if bend > CURL_OK_MM:  # a strongly bent sheet: between the anchors the page is guessed
            conf *= float(np.clip((CURL_BAD_MM - bend) / (CURL_BAD_MM - CURL_OK_MM), 0.02, 1.0))
            reasons.append(f"sheet bent by {bend:.1f} mm")
    # a reading that would be used, whose leads would come from the wrong rows (on a reading too
    # poor to be used anyway the rows it sees are no evidence of another layout)
    if a.get("foreign_rows", 0) and conf >= USABLE_CONFIDENCE:
        conf = FOREIGN_LAYOUT_CONFIDENCE
        reasons.append(foreign_layout_reason(a["foreign_rows"]))
    return conf, reasons


def _resized(rgb: np.ndarray, scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """(image scaled by `scale` (INTER_AREA), 3x3 map from its pixels to `rgb`'s pixels)."""
    h, w = rgb.shape[:2]
    if scale >= 1.0:
        return rgb, np.eye(3)
    out = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sx, sy = out.shape[1] / w, out.shape[0] / h
    # pixel centres: x = (x' + 0.5) / sx - 0.5
    return out, np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])


def rectify_gridless(image: np.ndarray, *, interpolation: int = cv2.INTER_LINEAR,
                     debug: bool = False) -> Rectification:
    """Rectify an ECG page printed without a grid (see the module docstring).

    Two passes: the whole image at `WORK_LONG_SIDE`; then, when the page came out smaller than
    `TARGET_PX_PER_MM` and the original has the pixels, the page alone (plus a margin) cropped
    from the original at about that resolution."""
    rgb = as_rgb_uint8(image)
    timings: Dict[str, float] = {}
    h0, w0 = rgb.shape[:2]
    too_small = too_small_reason(rgb, MIN_IMAGE_SIDE)
    if too_small:
        return _reject(rgb, too_small, timings, interpolation)
    work, to_orig = _resized(rgb, WORK_LONG_SIDE / max(h0, w0))
    a = _analyse(work, timings, debug)
    if isinstance(a, str):
        return _reject(rgb, a, timings, interpolation)
    conf, reasons = _confidence(a)
    best, to_best = a, to_orig  # the reading and its work px -> original px map

    def to_original(reading, to_o, pts):
        return _apply_h(to_o, page_to_image(reading, pts))

    px_per_mm = a["s"] * to_orig[0, 0]  # page scale in original pixels
    if a["s"] < 0.8 * TARGET_PX_PER_MM and px_per_mm > a["s"] * 1.2:
        t0 = time.perf_counter()
        corners = np.array([[-CROP_MARGIN_MM, -CROP_MARGIN_MM], [PAGE_W_MM + CROP_MARGIN_MM, -CROP_MARGIN_MM],
                            [PAGE_W_MM + CROP_MARGIN_MM, PAGE_H_MM + CROP_MARGIN_MM],
                            [-CROP_MARGIN_MM, PAGE_H_MM + CROP_MARGIN_MM]])
        q = to_original(a, to_orig, corners)
        x0, y0 = (int(np.clip(np.floor(v), 0, n - 1)) for v, n in zip(q.min(axis=0), (w0, h0)))
        x1, y1 = (int(np.clip(np.ceil(v), 0, n - 1)) + 1 for v, n in zip(q.max(axis=0), (w0, h0)))
        if x1 - x0 >= MIN_IMAGE_SIDE and y1 - y0 >= MIN_IMAGE_SIDE:
            scale = min(1.0, TARGET_PX_PER_MM / px_per_mm, MAX_CROP_LONG_SIDE / max(x1 - x0, y1 - y0))
            crop, crop_to = _resized(np.ascontiguousarray(rgb[y0:y1, x0:x1]), scale)
            shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
            crop_to_orig = shift @ crop_to
            # the camera's centre, lens norm and focal length are those of the whole image
            cx0, cy0, norm0, f0 = _default_lens(w0, h0)
            c_crop = _apply_h(np.linalg.inv(crop_to_orig), np.array([[cx0, cy0]]))[0]
            k = 1.0 / crop_to_orig[0, 0]
            lens = (float(c_crop[0]), float(c_crop[1]), norm0 * k, f0 * k)
            timings["crop"] = time.perf_counter() - t0
            t2: Dict[str, float] = {}
            a2 = _analyse(crop, t2, debug, lens=lens)
            for key, v in t2.items():
                timings[key + "_2"] = v
            if not isinstance(a2, str):
                conf2, reasons2 = _confidence(a2)
                if conf2 >= 0.8 * conf:
                    best, to_best, conf, reasons = a2, crop_to_orig, conf2, reasons2
    # node field in original pixels
    m = NODE_MARGIN
    JJ, II = np.meshgrid(np.arange(-m, N_ROWS + m, dtype=np.float64), np.arange(-m, N_COLS + m, dtype=np.float64),
                         indexing="ij")
    x_mm, y_mm = layout.grid_node_mm(JJ, II)
    node_field = to_original(best, to_best, np.stack([x_mm, y_mm], -1))
    code = orientation_of(to_best @ best["H"])
    reason = "no grid: page geometry from the trace layout" + ("; " + "; ".join(reasons) if reasons else "")
    return build_rectification(rgb, node_field, np.zeros((N_ROWS, N_COLS), bool), code, conf, reason, timings,
                               METHOD, interpolation)
