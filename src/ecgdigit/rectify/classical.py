"""Classical rectifier (no weights): grid lattice -> refined nodes -> orientation + anchor -> map.

Steps
1. Features on a downscaled copy: darkness (1 - gray / paper level) and chroma (max - min
   channel / paper level). Coloured grids are found in the chroma image (traces are grey, so
   they vanish there); black-and-white pages use clipped darkness.
2. Global lattice: the angular energy of the 2-D spectrum gives the two line-family normals;
   a projection profile across each family near the image centre gives the large-grid pitch
   (autocorrelation) and phase (folded profile). This is an affine lattice in RELATIVE node
   indices (k along the family closest to image x, m along image y; (0, 0) near the centre).
   The boxes are square: two families of unequal pitch or not about perpendicular (moire, a
   faint family, a period that is a multiple of the box) are searched again, each family in turn
   the reference. A page filling a small part of a photo is looked at again cropped out of it.
3. Refinement, growing outwards from the centre: the grid feature is resampled into lattice
   space (16 samples per large box, cells centred on nodes); in every cell the median profile
   across each line family gives the line offset with a parabolic sub-sample peak; measured
   nodes are fitted by a RANSAC homography plus a smooth residual field (biharmonic-regularised
   least squares on the node grid, which fills hidden nodes and extrapolates smoothly).
4. Orientation and absolute indices: the darkness is resampled to lattice space (1 sample per
   mm) and the grid removed as the per-phase median over boxes, leaving the "ink"; for each of the 8 orientation codes it is turned upright and
   correlated, over whole-box shifts, with a layout template (trace bands on the four
   baselines from vertical line 3 to 53, calibration pulses left of line 3, lead labels right
   of their label nodes, header text at the top left and the speed line under the last row;
   the same marks mirrored / flipped count against), plus a term for how many detected nodes
   fall inside the page's 57 x 44 grid. The ink is read up to 10 boxes beyond the detected
   grid where it looks like paper (page edges carry the pulses and first labels). The best code and
   its left-right mirror twin (code ^ 4) are compared explicitly. The best (code, shift) fixes
   the orientation and the absolute (j, i) indices.
   The rows' common trace end (10 s), where >= 3 rows end together in plain view, sets the
   time anchor when the layout fits about as well there (the template's own time anchor rests on
   the pulses and labels, often cut off or faint). Lattice hypotheses that refine about equally
   well (the colour and darkness features disagreeing; a step that spans two boxes, seen from
   lines half-way between its steps) are each anchored, and the best layout score wins.
5. The node field (with a margin ring) goes to `api.build_rectification` for the dense map and
   the one remap from the original image.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional, Tuple

import cv2
import numpy as np
from scipy import ndimage, signal, sparse
from scipy.sparse import linalg as splinalg

from ecgdigit import layout
from ecgdigit.rectify.api import (NODE_MARGIN, N_COLS, N_ROWS, USABLE_CONFIDENCE, Rectification, as_rgb_uint8,
                                  border_colour_page_mask, build_rectification, foreign_layout_reason,
                                  largest_bright_region, mask_solidity, page_mask_is_portrait, PAGE_MASK_SOLIDITY,
                                  rejected_rectification, too_small_reason)

PASS1_LONG_SIDE = 1024  # first look: lattice estimate on this size
PAGE_CROP_AREA = 0.45  # a photo's page (box with its pad) smaller than this share of the image: crop to it
PAGE_MASK_MIN_FRACTION = 0.12  # a photo's page covers at least this share of it
PAGE_SPLIT_SOLIDITY = 0.98  # a page split off the bright region by a second threshold is this solid (a screen: 0.98-1.0)
PAGE_CROP_PAD = 0.04  # pad around the page mask, share of its longer side
WORK_PX_PER_BOX = 36.0  # working resolution for refinement (about 7.2 px/mm)
MAX_WORK_PIXELS = 12.5e6  # ... but never a working image larger than this (speed; a 4032 x 3024 photo fits)
RETRY_WORK_FACTORS = (0.75, 0.5)  # a page not matched well is refined again at these shares of the working
# resolution, until one matches well (0.5: laptop-screen photos whose moire still breaks the grid at 0.75)
SAMPLES_PER_BOX = 16  # lattice-space raster resolution while the grid model grows
FINE_SAMPLES_PER_BOX = 32  # ... and for the final node measurement (sub-pixel line peaks)
FINE_PASSES = 3  # measure-and-refit passes at the fine raster
FINE_KEEP_SHARE = 0.8  # ... which must keep this share of the coarse model's nodes
REINDEX_MIN_NODES = 12  # a detached group of found nodes this large is checked for a whole-box slip
REINDEX_MAX_SHARE = 0.15  # ... up to this share of the main group (a larger one: which of the two slipped?)
REINDEX_MAX_GAP = 8.0  # ... lying at most this many boxes from the nodes placed (farther, the field's
# extrapolation is not good to a box: a group 9 boxes out moved the time anchor of 9998 0010 #10 by 4 boxes)
FAR_GROUP_MAX_GAP = 16.0  # a group farther out (up to this) is re-indexed only when it sits about a whole
FAR_SLIP_TOLERANCE = 0.3  # box off the extrapolated field (within this share of a box)
REINDEX_MAX_SPREAD = 0.15  # its nodes' offsets from the prediction spread this little (median, boxes)
REINDEX_BENDING_RATIO = 0.95  # the shift is kept when the field then bends less than this share of before
INK_SAMPLES_PER_BOX = 5  # lattice-space raster for orientation (1 per mm)
INK_GROW_BOXES = 10  # the ink is read this many boxes beyond the detected grid
INK_PAPER_FACTOR = 2.0
GRID_SHOWS_CORR = 0.3  # a box whose ink pattern correlates this well with the median box shows the grid
ROW_END_SPREAD_MM = 8  # rows whose trace ends (seen) spread wider than this: the field is doubtful
TIME_ANCHOR_MARGIN_UNIT = 0.02  # template score lead over the neighbouring time shifts that counts as sure
TRACE_END_SEEN_MM = 5  # a trace end counts when this much page after it was read
ROW_ENDS_AGREE = 3  # rows' trace ends this close (ink raster samples, 1 mm) agree on the time anchor
ROW_ENDS_TOGETHER = 2  # ... and ends of ink above the blank band's this close (where faint traces break up)
RESIDUE_LEVEL = 0.5  # ink after a trace's end under this share of the trace's level is residue (moire, grid), not trace
BETWEEN_BAND_MM = 4.0  # a trace row is looked for in bands this far each side of a page y
TRACE_ROW_SHARE = 0.6  # ... inked along this share of the 10 s span
TRACE_ROW_PROMINENCE = 0.3  # ... and this much more than the paper around it
TRACE_ROW_SPAN_MM = (25.0, 210.0)  # page y where any printed layout has its rows (not the page's edges)
MIN_ROW_SPACING_MM = 12.0  # trace rows of any printed layout lie at least this far apart (12x1: 15 mm)
RIGHT_MARGIN_MM = (4.0, 12.0)  # after 10 s: blank paper on every layout (a line inked there crosses the page)
FOREIGN_ROW_OFFSET_MM = 8.0  # a trace row this far from every baseline of the layout is not one of its rows
FOREIGN_LAYOUT_MARGIN = 0.05  # anchor margin of a page in another layout: its leads would be read wrong
TWO_ENDS_MARGIN = 0.5  # anchor margin when two rows' ends broke the template's tie
CONFIRMING_ENDS = 2  # rows' trace ends at the template's own 10 s that confirm its time anchor
# anchor margin of a reading no trace end confirms where another look's ends put the page elsewhere
CROSS_LOOK_MARGIN = 0.1
TRACE_END_STRONG = 0.5  # a row's trace ends at its last ink this strong (share of the row's trace level)
CONTROL_BAND_OFFSET_MM = 18.0  # blank control band for a row's ink: this far above its baseline (rows are 33-36 mm apart)
CONTROL_BAND_PCT = 90  # the trace must be darker than this percentile of the control band ...
CONTROL_BAND_FACTOR = 1.25  # ... times this
EXTENT_TOLERANCE_MM = 2.0  # row ink may reach this far beyond the pulse's foot / the 10 s line (blur, closing)
PULSE_LEAD_MM = 10.0  # the calibration pulse's foot starts this long before time 0
ROW_BAND_MM = 8  # a row's trace is looked for this far above and below its baseline
PULSE_STROKE_INK = 0.25  # a pulse's top stroke this dark (ink scale 0..1) counts, or half the row's trace level if fainter
EXTENT_CONFLICT_MARGIN = 0.12  # margin when the rows' ink fits no time anchor the layout accepts
PULSE_CONFLICT_MARGIN = 0.08  # margin when the rows' ink starts at a pulse's foot but no pulse is there
TRACE_END_SCORE_SHARE = 0.7  # the trace ends move the time anchor where the layout scores this share of its best
INK_SCALE_PCT = 99.5  # ink is scaled to 1 at this percentile of the samples read, and clipped there
INK_TOPHAT_MM = 0  # ink wider than this (in samples of 1 mm) in both directions is not a stroke
INK_PAPER_ABS = 0.05
READ_ISLAND_MM = 10  # read samples this short, cut off from the rest of a row by unread ones, hold no trace
_DEBUG = False
_DEBUG_DUMP: Optional[str] = None  # .npz path: `_orient_and_anchor` saves its upright ink raster there
PULSE_WEIGHT = 2.0  # template weights of the calibration pulse's top stroke and of lead labels
LABEL_WEIGHT = 1.0
# header text (top left, 8..20 mm from the page's left edge, 4 lines from 4..8 mm down) and the
# speed/gain line (under the last row, starting 0..40 mm after time 0): regions nearly always inked
HEADER_WEIGHT = 0.5
MIRROR_MARGIN_UNIT = 0.02  # score difference between the two mirror hypotheses that counts as sure
MIRROR_PRIOR = 0.02  # head start of the unmirrored reading (pages are seen from the front)
MIRROR_CLEAR_UNIT = 0.04  # a mirrored reading's lead beyond the head start that counts as sure
# (a mirrored clean render or photo leads by 0.09-0.10; moire pages read upright gave their mirror 0.02 more)
UPRIGHT_PRIOR = 0.015  # head start of the upright readings (codes 0 and 4) over the turned ones
# a page under the usable confidence is reported upright unless its turned or mirrored reading
# matched the layout this well (93 % of pages are upright, pages are seen from the front): the 40
# turned pages of seeds 9996-10000 read right matched at 0.165-0.39; the 7 upright screen/mould
# photos read turned (pass-1 lattice locked onto moire, all under the usable confidence) at 0.01-0.11.
# Usable pages keep their reading: with every orientation drawn (--all-orientations) mirrored pages
# read right at 0.12-0.14 with confidence 0.6
NOT_UPRIGHT_MIN_SCORE = 0.14
HEADER_BOX_MM = ((22.0, 60.0), (7.0, 17.0))
SPEED_LINE_BOX_MM = ((42.0, 75.0), (12.5, 14.5))  # x after time 0, y below the last baseline
MIN_IMAGE_SIDE = 200
MIN_FOUND_NODES = 60
GOOD_LAYOUT_SCORE = 0.15  # a hypothesis matching the layout this well with GOOD_NODE_COUNT nodes ends the search
GOOD_NODE_COUNT = 1000
FULL_LAYOUT_SCORE = 0.2  # layout match from which it no longer lowers the confidence
MIN_PAGE_NODES = 250  # of the page's 44 x 57: fewer cannot anchor a layout (10% of the page)
MIN_PROMINENCE = 4.0  # line peak over the robust spread of its cell profile
PAGE_FRACTION_RANGE = (0.28, 1.15)  # page width / image long side, bounds the pitch search
# ... and the least of it in a look cropped to the page mask (the page fills about 0.9 of it; a
# screen's moire beats at a third of the box and may be the strongest period there)
CROPPED_PAGE_FRACTION_MIN = 0.45
PAGE_AXIS_TOLERANCE_DEG = 12.0  # grid lines run within this of the page outline's edges (perspective tilts them)
MAX_WINDOW_BOXES = 48  # refinement window: at most this many boxes each way from its middle
PAGE_WINDOW_HALF_BOXES = 40  # ... and around a photo's page mask (56 boxes, perspective and a margin; the mask may hold a screen; 36 cut a grey-grid photo short: 12 boxes off)
PERSPECTIVE_PITCH_SPREAD = 1.15  # largest / smallest box size over the image's tiles
SQUARE_PITCH_RATIO = 1.15  # the two families' pitches differ less than this (square boxes, moderate perspective)
SQUARE_ANGLE_DEG = 8.0  # and their lines cross within this of a right angle
SPLIT_LINE_RATIO = 0.6  # lines half-way between a lattice step's lines this strong: the step spans 2 boxes
MULTIPLE_LINE_RATIO = 0.5  # lines of a found period this much weaker than the strongest: a multiple is the grid
CLIP_PCT = {True: 99.5, False: 98.0}  # grid-feature clip: colour grid / darkness (limits traces)


@dataclass
class Lattice:
    """Affine lattice: image(k, m) = origin + k * a + m * b (pixels of the image it was found in)."""

    origin: np.ndarray
    a: np.ndarray
    b: np.ndarray
    strength: float
    local: bool = False  # valid only near `origin` (pitch varies across the image)
    centre_in_doubt: bool = False  # lattices turned off the page's edges would have made `local` the other way

    def scaled(self, s: float) -> "Lattice":
        # pixel centres: x' = (x + 0.5) * s - 0.5
        return Lattice((self.origin + 0.5) * s - 0.5, self.a * s, self.b * s, self.strength)

    def __call__(self, k, m):
        k = np.asarray(k, dtype=np.float64)[..., None]
        m = np.asarray(m, dtype=np.float64)[..., None]
        return self.origin + k * self.a + m * self.b

    def inverse(self, xy):
        mat = np.stack([self.a, self.b], axis=1)
        return np.linalg.solve(mat, (np.asarray(xy, dtype=np.float64) - self.origin).T).T


# -------------------------------------------------------------------------------------------------
# Features
# -------------------------------------------------------------------------------------------------
def _features(rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(darkness, chroma), float32 in 0..1, relative to the local paper level."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = gray.shape
    k = max(5, int(round(max(h, w) / 150)) | 1)
    # the paper level varies slowly: estimate it on a quarter-size copy (fast), then upsample
    q = 4 if min(h, w) >= 400 else 1
    small = cv2.resize(gray, (max(1, w // q), max(1, h // q)), interpolation=cv2.INTER_AREA) if q > 1 else gray
    ks = max(3, (k // q) | 1)
    paper = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (ks, ks)))
    paper = cv2.GaussianBlur(paper, (0, 0), max(1.0, k / q))
    if q > 1:
        paper = cv2.resize(paper, (w, h), interpolation=cv2.INTER_LINEAR)
    paper = np.maximum(paper, 8.0)
    dark = np.clip(1.0 - gray / paper, 0.0, 1.0)
    r, g, b = cv2.split(rgb)  # channel max / min in uint8 with cv2: far cheaper than float reductions
    mx = cv2.max(cv2.max(r, g), b)
    mn = cv2.min(cv2.min(r, g), b)
    sat = cv2.subtract(mx, mn).astype(np.float32) / np.maximum(mx.astype(np.float32), 8.0)
    # coloured grid ink: dark AND saturated (grey/black traces have no saturation)
    chroma = dark * np.clip(sat / 0.25, 0.0, 1.0)
    return dark, chroma


def _page_mask(rgb: np.ndarray) -> Optional[np.ndarray]:
    """The paper (or screen) in a photo: the largest bright region, holes filled, edge trimmed; or,
    where brightness does not set it apart, the solid region coloured unlike the image's border.

    None when it covers nearly everything (scans) or too little to be a page."""
    mask = page_mask_by_brightness(rgb)
    if mask is None:
        # a sheet on a background as bright as itself (the brightness threshold joined them), taken
        # only where the page is small in the frame: there the cropped look matters (its grid
        # aliases at the first look's scale); on a sheet filling the frame a hue mask, cut ragged
        # along shaded edges, costs more grid than it saves (9998 0010 #15: 1.3 -> 6.3 mm)
        mask = border_colour_page_mask(rgb, min_fraction=PAGE_MASK_MIN_FRACTION)
        if mask is None or _page_crop_box(mask) is None:
            return None
        mask = ndimage.binary_erosion(mask, iterations=max(2, _page_mask_kernel(rgb) // 2))
    return mask


def _page_crop_box(mask: np.ndarray) -> Optional[Tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of a page mask's box with its pad (`PAGE_CROP_PAD`), in the mask's pixels,
    when it is small enough in the frame to be looked at again cropped (`PAGE_CROP_AREA`), else None."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    pad = PAGE_CROP_PAD * max(np.ptp(xs), np.ptp(ys))
    x0, x1 = max(0.0, xs.min() - pad), min(float(w), xs.max() + 1 + pad)
    y0, y1 = max(0.0, ys.min() - pad), min(float(h), ys.max() + 1 + pad)
    return (x0, y0, x1, y1) if (x1 - x0) * (y1 - y0) < PAGE_CROP_AREA * w * h else None


def _page_mask_kernel(rgb: np.ndarray) -> int:
    """Odd smoothing kernel (px) of the brightness page mask, about 1 % of the image's long side;
    half of it is trimmed off every page mask's edge."""
    return max(3, int(max(rgb.shape[:2]) / 100) | 1)


def page_mask_by_brightness(rgb: np.ndarray) -> Optional[np.ndarray]:
    """`_page_mask` from brightness alone (the largest bright region), or None."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    k = _page_mask_kernel(rgb)
    blur = cv2.medianBlur(cv2.GaussianBlur(gray, (0, 0), k / 2), k)
    mask = _bright_page_mask(blur)
    return None if mask is None else ndimage.binary_erosion(mask, iterations=max(2, k // 2))


def _bright_page_mask(blur: np.ndarray) -> Optional[np.ndarray]:
    """The page as the largest bright region of a smoothed grey image (see `_page_mask`), or None."""
    mask = largest_bright_region(blur, min_fraction=PAGE_MASK_MIN_FRACTION)
    if mask is None:
        return None
    if mask_solidity(mask) < PAGE_MASK_SOLIDITY:
        # a page joined to another bright thing (a laptop's keyboard and lit bezel around its
        # screen): the page is the brightest of them, split off by a second threshold inside. It
        # must come out a clean quadrilateral: a second threshold on a sheet in patchy light
        # splits off a sunlit patch (solidity 0.92-0.95), not the page
        mask = largest_bright_region(blur, min_fraction=PAGE_MASK_MIN_FRACTION, within=mask)
        if mask is None or mask_solidity(mask) < PAGE_SPLIT_SOLIDITY:
            return None
    # a page is a compact quadrilateral-like blob (solid, as checked above) clearly brighter than
    # its surroundings; shading on a full-frame page (wrinkles, stains) gives low-contrast regions
    contrast = float(np.median(blur[mask])) - float(np.median(blur[~mask]))
    return mask if contrast >= 40 else None


def _clip_at_percentile(f: np.ndarray, pct: float, mask: Optional[np.ndarray] = None) -> np.ndarray:
    if mask is not None:
        f = np.where(mask, f, 0.0).astype(np.float32)
        vals = f[mask][::3]
        q = float(np.percentile(vals, pct)) if vals.size else 0.0
        if q <= 1e-3:
            return f * 0.0
        return np.minimum(f, q) / q
    q = float(np.percentile(f[::3, ::3], pct))
    if q <= 1e-3:
        return f * 0.0
    return np.minimum(f, q) / q


# -------------------------------------------------------------------------------------------------
# Global lattice estimate
# -------------------------------------------------------------------------------------------------
def _angle_spectrum(f: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    h, w = f.shape
    hp = f - cv2.GaussianBlur(f, (0, 0), 6)
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(hp * win))).astype(np.float32)
    thetas = np.deg2rad(np.arange(0.0, 180.0, 0.25))
    freqs = np.linspace(1.0 / 40.0, 1.0 / 2.2, 160)
    kx = freqs[None, :] * np.cos(thetas)[:, None] * w + w // 2
    ky = freqs[None, :] * np.sin(thetas)[:, None] * h + h // 2
    vals = ndimage.map_coordinates(spec, [ky.ravel(), kx.ravel()], order=1).reshape(kx.shape)
    prof = vals.mean(axis=1)
    prof = ndimage.gaussian_filter1d(prof, 1.5, mode="wrap")
    return thetas, prof


def _circular_peak(prof: np.ndarray, idx: int) -> float:
    n = len(prof)
    y0, y1, y2 = prof[(idx - 1) % n], prof[idx], prof[(idx + 1) % n]
    den = y0 - 2 * y1 + y2
    return idx + (0.5 * (y0 - y2) / den if den < 0 else 0.0)


def _family(f: np.ndarray, theta: float, pitch_range: Tuple[float, float]) -> Optional[Tuple[float, float, float]]:
    """Pitch, phase (relative to the image centre along the normal) and strength of one line family."""
    h, w = f.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx -= (w - 1) / 2.0
    yy -= (h - 1) / 2.0
    c, s = np.cos(theta), np.sin(theta)
    t = xx * c + yy * s  # across the lines
    u = -xx * s + yy * c  # along the lines
    L = max(h, w)
    sel = (np.abs(u) < 0.3 * L) & (np.abs(t) < 0.4 * L)
    if sel.sum() < 1000:
        return None
    tv, fv = t[sel], f[sel]
    binw = 0.25
    idx = np.floor((tv - tv.min()) / binw).astype(np.int64)
    cnt = np.bincount(idx)
    prof = np.bincount(idx, weights=fv) / np.maximum(cnt, 1)
    prof = prof[cnt > 0] if (cnt > 0).all() else np.interp(np.arange(len(cnt)), np.nonzero(cnt)[0], prof[cnt > 0])
    # pixel centres fill the sub-pixel bins unevenly (exactly so on unrotated scans): that leaves a
    # 1 px period whose multiples (5 px, 10 px) can outscore the grid; half a pixel of blur removes it
    prof = ndimage.gaussian_filter1d(prof, 0.5 / binw)
    prof = prof - ndimage.uniform_filter1d(prof, max(1, min(int(4 * pitch_range[1] / binw), len(prof))) | 1)
    n = len(prof)
    lo_f = max(2, int(2.2 / binw))  # smallest period worth looking at (small grid at low resolution)
    lo, hi = int(pitch_range[0] / binw), min(int(pitch_range[1] / binw), n // 3)
    if hi <= lo + 2:
        return None
    fr = np.fft.rfft(prof, 2 * n)
    ac = np.fft.irfft(np.abs(fr) ** 2)[:n]
    ac = ac / max(ac[0], 1e-12)
    # large-grid pitch: the strongest autocorrelation peak in the plausible range, unless half of it
    # is about as strong (then the strongest was a multiple)
    locmax = [q for q in range(max(lo, 1), min(hi, len(ac) - 2) + 1) if ac[q] > ac[q - 1] and ac[q] >= ac[q + 1]]
    if not locmax:
        return None
    best = max(locmax, key=lambda q: ac[q])
    while best // 2 >= lo:
        half = best // 2
        j = half - 1 + int(np.argmax(ac[half - 1:half + 2]))
        if ac[j] >= 0.8 * ac[best]:
            best = j
        else:
            break
    # a resolved 1 mm small grid of about equal lines can make a 2-4 mm multiple the strongest:
    # five times the fundamental wins when it is about as strong
    peaks = [q for q in range(lo_f, lo) if ac[q] > ac[q - 1] and ac[q] >= ac[q + 1] and ac[q] > 0.2]
    if peaks:
        fund = max(peaks, key=lambda q: ac[q])
        y0, y1, y2 = ac[fund - 1], ac[fund], ac[fund + 1]
        den = y0 - 2 * y1 + y2
        fund_f = fund + (float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) if den < 0 else 0.0)
        cand = int(round(5 * fund_f))
        half = max(2, int(0.3 * fund_f))
        if lo <= cand <= hi and cand + half + 1 < len(ac):
            j = cand - half + int(np.argmax(ac[cand - half:cand + half + 1]))
            if abs(j - best) > 0.1 * best and ac[j] >= 0.7 * ac[best]:
                best = j
    strength = float(ac[best])
    y0, y1, y2 = ac[best - 1], ac[best], ac[best + 1]
    den = y0 - 2 * y1 + y2
    pitch = (best + (float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) if den < 0 else 0.0)) * binw
    # a multiple of the found period is the large grid when the found lines are not all alike:
    # a half-pitch lattice alternates large lines with empty gaps, a small-grid one has every
    # fifth line strong
    for mult in (2, 5):
        if mult * pitch > pitch_range[1]:
            continue
        fold = _fold(tv, fv, mult * pitch)
        nb = len(fold)
        base = float(np.median(fold))
        k0 = int(np.argmax(fold))
        heights = np.array([fold[[(k0 + round(k * nb / mult) + d) % nb for d in (-1, 0, 1)]].max() - base
                            for k in range(mult)])
        if heights[0] > 0 and np.sort(heights)[-2] < MULTIPLE_LINE_RATIO * heights[0]:
            pitch = mult * pitch
            break
    # phase: fold the central pixels modulo the pitch
    fold = _fold(tv, fv, pitch)
    nb = len(fold)
    pk = _circular_peak(fold, int(np.argmax(fold)))
    phase = (pk + 0.5) / nb * pitch
    if phase > pitch / 2:
        phase -= pitch
    return pitch, phase, strength


def _fold(tv: np.ndarray, fv: np.ndarray, period: float, nb: int = 64) -> np.ndarray:
    """Mean feature over positions folded modulo `period` (nb bins, lightly smoothed)."""
    ph = np.floor((np.mod(tv, period) / period) * nb).astype(np.int64) % nb
    fold = np.bincount(ph, weights=fv, minlength=nb) / np.maximum(np.bincount(ph, minlength=nb), 1)
    return ndimage.gaussian_filter1d(fold, 1.0, mode="wrap")


def _axis_offset_deg(v: np.ndarray, axis_deg: float) -> float:
    """Angle (degrees, 0..45) between direction `v` and the nearest of `axis_deg` and the axis
    at right angles to it."""
    d = (np.degrees(np.arctan2(v[1], v[0])) - axis_deg) % 90.0
    return float(min(d, 90.0 - d))


def _page_axis_deg(mask: Optional[np.ndarray]) -> Optional[float]:
    """Direction (degrees) of the edges of a solid page mask (its least-area rectangle), or None
    where there is no mask or a ragged one."""
    if mask is None or mask_solidity(mask) < PAGE_MASK_SOLIDITY:
        return None
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return float(cv2.minAreaRect(max(contours, key=cv2.contourArea))[2])


def _estimate_lattice(f: np.ndarray, min_page_fraction: float = PAGE_FRACTION_RANGE[0],
                      page_axis_deg: Optional[float] = None) -> Optional[Lattice]:
    """Best lattice over the whole image and 3 x 3 overlapping tiles (photos show background
    with its own texture; a tile inside the page sees the grid alone). `min_page_fraction`: the
    page's least width as a share of the image's long side (it bounds the pitch from below).
    `page_axis_deg`: the direction of the page's edges, where known; the grid runs along them,
    so lattices turned far from them (a screen's moire, periodic over a tile) are passed over
    while any lattice along them is found."""
    h, w = f.shape
    L = max(h, w)
    found = [_estimate_lattice_in(f, L, min_page_fraction)]
    th, tw = int(0.45 * h), int(0.45 * w)
    for cy in (0.27, 0.5, 0.73):
        for cx in (0.27, 0.5, 0.73):
            y0, x0 = int(cy * h - th / 2), int(cx * w - tw / 2)
            lat = _estimate_lattice_in(f[y0:y0 + th, x0:x0 + tw], L, min_page_fraction)
            if lat is not None:
                found.append(Lattice(lat.origin + np.array([x0, y0]), lat.a, lat.b, lat.strength))
    found = [q for q in found if q is not None]
    if not found:
        return None
    along = found
    if page_axis_deg is not None:
        along = [q for q in found if max(_axis_offset_deg(q.a, page_axis_deg),
                                         _axis_offset_deg(q.b, page_axis_deg)) <= PAGE_AXIS_TOLERANCE_DEG] or found
    best = max(along, key=lambda q: q.strength)
    # strong perspective: the pitch differs across the image, and the best lattice holds only
    # near where it was measured (its origin); refinement should grow from there
    def pitch_varies(lattices):
        boxes = [_box_px(q) for q in lattices if q is best or q.strength > 0.5 * best.strength]
        return max(boxes) / min(boxes) > PERSPECTIVE_PITCH_SPREAD

    best.local = pitch_varies(along)
    # turned lattices (moire) beside it: the pitch's spread says little, and where the growth
    # should start (the page's middle, or where the lattice was measured) is in doubt
    best.centre_in_doubt = along is not found and pitch_varies(found) != best.local
    return best


def _square_families(f: np.ndarray, fams, thetas: np.ndarray, prof: np.ndarray):
    """The two line families of a SQUARE grid: about perpendicular, about equal pitch.

    Moire, a faint family or a strong small grid can make one family's strongest period a
    multiple (or a fraction) of the box, or its strongest angle a beat pattern's. When the two
    disagree, each family in turn is taken as the reference and the other is searched again near
    the perpendicular and within the reference pitch's range; the pair with the stronger weaker
    family wins (the shorter pitch when they are about as strong: a period's multiples are
    periods too). None when no consistent pair is found."""
    ok = [q for q in fams if q is not None]
    if len(ok) == 2:
        (t1, p1, _, s1), (t2, p2, _, s2) = ok
        dev = abs((np.rad2deg(t2 - t1) % 180.0) - 90.0)
        if max(p1, p2) / min(p1, p2) <= SQUARE_PITCH_RATIO and dev <= SQUARE_ANGLE_DEG:
            return fams
    if not ok:
        return None
    step = float(np.rad2deg(thetas[1] - thetas[0]))
    n = len(prof)
    options = []
    for ref in ok:
        t_ref, p_ref, _, s_ref = ref
        if not np.isfinite(p_ref) or p_ref <= 1.0:
            continue
        perp = int(round((np.rad2deg(t_ref) + 90.0) % 180.0 / step)) % n
        half = int(round(SQUARE_ANGLE_DEG / step))
        window = [(perp + d) % n for d in range(-half, half + 1)]
        peak = max(window, key=lambda q: prof[q])
        cands = {np.deg2rad(_circular_peak(prof, peak) * step), np.deg2rad(perp * step)}
        found = []
        for theta in cands:
            r = _family(f, theta, (p_ref / SQUARE_PITCH_RATIO, p_ref * SQUARE_PITCH_RATIO))
            if r is not None:
                found.append((theta, *r))
        if found:
            other = max(found, key=lambda q: q[3])
            options.append((min(s_ref, other[3]), max(p_ref, other[1]), [ref, other]))
    if not options:
        return None
    options.sort(key=lambda q: -q[0])
    best = options[0]
    for opt in options[1:]:  # about as strong with shorter boxes: the longer was a multiple
        if opt[1] < best[1] / 1.5 and opt[0] >= 0.75 * best[0]:
            best = opt
    return best[2]


def _lattices_differ(p: Lattice, q: Lattice) -> bool:
    """Two lattice estimates that do not describe the same grid (box size or line angles)."""
    if max(_box_px(p), _box_px(q)) / max(min(_box_px(p), _box_px(q)), 1e-9) > 1.08:
        return True
    for u, v in ((p.a, q.a), (p.b, q.b)):
        cos = abs(float(u @ v)) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-12)
        if cos < np.cos(np.deg2rad(3.0)):
            return True
    return False


def _box_px(lat: "Lattice") -> float:
    return float(np.sqrt(abs(lat.a[0] * lat.b[1] - lat.a[1] * lat.b[0])))


def _estimate_lattice_in(f: np.ndarray, L: int, min_page_fraction: float = PAGE_FRACTION_RANGE[0]) -> Optional[Lattice]:
    h, w = f.shape
    box_lo = min_page_fraction * L / (layout.LETTER.width_mm / layout.LARGE_GRID_MM)
    box_hi = PAGE_FRACTION_RANGE[1] * L / (layout.LETTER.width_mm / layout.LARGE_GRID_MM)
    thetas, prof = _angle_spectrum(f)
    i1 = int(np.argmax(prof))
    d = np.abs(((np.rad2deg(thetas) - np.rad2deg(thetas[i1])) + 90.0) % 180.0 - 90.0)
    mask = (d > 60.0)
    if not mask.any():
        return None
    i2 = int(np.argmax(np.where(mask, prof, -np.inf)))
    th = []
    for i in (i1, i2):
        th.append(np.deg2rad(_circular_peak(prof, i) * 0.25))
    fams = []
    for theta in th:
        r = _family(f, theta, (box_lo, box_hi))
        fams.append(None if r is None else (theta, *r))
    fams = _square_families(f, fams, thetas, prof)
    if fams is None:
        return None
    # vertical lines: normal closest to image x; orient normals to +x / +y
    fams.sort(key=lambda q: -abs(np.cos(q[0])))
    (tv, pv, phv, sv), (thh, ph_, phh, sh) = fams
    nv = np.array([np.cos(tv), np.sin(tv)])
    nh = np.array([np.cos(thh), np.sin(thh)])
    if nv[0] < 0:
        nv, phv = -nv, -phv
    if nh[1] < 0:
        nh, phh = -nh, -phh
    mat = np.stack([nv, nh])
    inv = np.linalg.inv(mat)
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    origin = centre + inv @ np.array([phv, phh])
    a = inv @ np.array([pv, 0.0])
    b = inv @ np.array([0.0, ph_])
    # spectral contrast: how periodic the feature is
    return Lattice(origin, a, b, strength=float(min(sv, sh)))


# -------------------------------------------------------------------------------------------------
# Refinement
# -------------------------------------------------------------------------------------------------
def _upsample_field(field: np.ndarray, S: int) -> Tuple[np.ndarray, np.ndarray]:
    """Bilinear node field at sub-positions k + (b + 0.5) / S - 0.5: exactly cv2.resize's sampling."""
    nm, nk = field.shape[:2]
    f32 = field.astype(np.float32)
    mx = cv2.resize(np.ascontiguousarray(f32[:, :, 0]), (nk * S, nm * S), interpolation=cv2.INTER_LINEAR)
    my = cv2.resize(np.ascontiguousarray(f32[:, :, 1]), (nk * S, nm * S), interpolation=cv2.INTER_LINEAR)
    return mx, my


def _bilinear_field(field: np.ndarray, gm: np.ndarray, gk: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    coords = [gm.ravel(), gk.ravel()]
    x = ndimage.map_coordinates(field[:, :, 0], coords, order=1, mode="nearest").reshape(gm.shape)
    y = ndimage.map_coordinates(field[:, :, 1], coords, order=1, mode="nearest").reshape(gm.shape)
    return x, y


def _peak_offsets(prof: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """prof (..., S): sub-sample peak offset in cell units (-0.5..0.5), contrast, ok flag."""
    S = prof.shape[-1]
    idx = np.argmax(prof, axis=-1)
    ok = (idx > 0) & (idx < S - 1)
    ic = np.clip(idx, 1, S - 2)
    y0 = np.take_along_axis(prof, (ic - 1)[..., None], -1)[..., 0]
    y1 = np.take_along_axis(prof, ic[..., None], -1)[..., 0]
    y2 = np.take_along_axis(prof, (ic + 1)[..., None], -1)[..., 0]
    den = y0 - 2 * y1 + y2
    delta = np.where(den < -1e-9, 0.5 * (y0 - y2) / np.where(den < -1e-9, den, -1.0), 0.0)
    delta = np.clip(delta, -0.5, 0.5)
    off = (idx + delta + 0.5) / S - 0.5
    med = np.median(prof, axis=-1)
    contrast = prof.max(axis=-1) - med
    spread = 1.4826 * np.median(np.abs(prof - med[..., None]), axis=-1)
    prominence = contrast / (spread + 0.02 * contrast + 1e-6)
    return off, contrast, ok, prominence


def _measure(f: np.ndarray, field: np.ndarray, S: int = SAMPLES_PER_BOX):
    """Measure every node of `field` (nm, nk, 2): measured image xy, contrast, ok."""
    nm, nk = field.shape[:2]
    mx, my = _upsample_field(field, S)
    raster = cv2.remap(f, mx, my, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    cells = raster.reshape(nm, S, nk, S)  # [m, v, k, u]
    prof_v = np.median(cells, axis=3).transpose(0, 2, 1)  # profile over v (across horizontal lines)
    prof_u = np.median(cells, axis=1)  # (nm, nk, S): profile over u (across vertical lines)
    dv, cv_, okv, pv = _peak_offsets(prof_v)
    du, cu, oku, pu = _peak_offsets(prof_u)
    KK, MM = np.meshgrid(np.arange(nk, dtype=np.float64), np.arange(nm, dtype=np.float64))
    px, py = _bilinear_field(field, MM + dv, KK + du)
    h, w = f.shape
    box = np.median(np.hypot(*np.diff(field, axis=1).reshape(-1, 2).T))
    inside = (field[:, :, 0] > box / 2) & (field[:, :, 0] < w - 1 - box / 2) & \
             (field[:, :, 1] > box / 2) & (field[:, :, 1] < h - 1 - box / 2)
    return np.stack([px, py], axis=-1), np.minimum(cu, cv_), okv & oku & inside, np.minimum(pu, pv)


def _biharmonic_operator(nm: int, nk: int) -> sparse.csr_matrix:
    """Second differences along k, along m, and mixed, on an (nm, nk) node grid."""
    idx = np.arange(nm * nk).reshape(nm, nk)
    rows, cols, vals = [], [], []
    r = 0

    def add(terms):
        nonlocal r
        for c, v in terms:
            rows.append(np.full(c.size, 0) + r + np.arange(c.size))
            cols.append(c.ravel())
            vals.append(np.full(c.size, v))
        r += terms[0][0].size

    add([(idx[:, :-2], 1.0), (idx[:, 1:-1], -2.0), (idx[:, 2:], 1.0)])
    add([(idx[:-2, :], 1.0), (idx[1:-1, :], -2.0), (idx[2:, :], 1.0)])
    s2 = np.sqrt(2.0)
    add([(idx[:-1, :-1], s2), (idx[:-1, 1:], -s2), (idx[1:, :-1], -s2), (idx[1:, 1:], s2)])
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(r, nm * nk))


def _smooth_field(data: np.ndarray, weight: np.ndarray, lam: float, op: sparse.csr_matrix) -> np.ndarray:
    """argmin_r sum w (r - d)^2 + lam |op r|^2, per coordinate; data (nm, nk, 2)."""
    nm, nk = weight.shape
    W = sparse.diags(weight.ravel().astype(np.float64))
    A = (W + lam * (op.T @ op)).tocsc()
    lu = splinalg.splu(A, permc_spec="MMD_AT_PLUS_A")  # symmetric: this ordering factors fastest
    out = np.empty((nm, nk, 2))
    for c in range(2):
        out[:, :, c] = lu.solve(weight.ravel() * data[:, :, c].ravel()).reshape(nm, nk)
    return out


def _apply_h(H: np.ndarray, k: np.ndarray, m: np.ndarray) -> np.ndarray:
    pts = np.stack([k, m, np.ones_like(k)], axis=-1) @ H.T
    return pts[..., :2] / pts[..., 2:3]


@dataclass
class GridModel:
    H: np.ndarray  # 3x3: relative (k, m) -> work image px
    resid: np.ndarray  # (nm, nk, 2) smooth residual on the relative window
    k0: int  # relative k of window column 0
    m0: int
    found: np.ndarray  # (nm, nk) bool
    box_px: float

    def field(self) -> np.ndarray:
        nm, nk = self.found.shape
        KK, MM = np.meshgrid(np.arange(nk) + self.k0, np.arange(nm) + self.m0)
        return _apply_h(self.H, KK.astype(np.float64), MM.astype(np.float64)) + self.resid

    def at(self, k: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Model position at relative (possibly fractional, possibly outside the window) indices."""
        nm, nk = self.found.shape
        base = _apply_h(self.H, k, m)
        ck = np.clip(k - self.k0, 0, nk - 1)
        cm = np.clip(m - self.m0, 0, nm - 1)
        coords = [cm.ravel(), ck.ravel()]
        rx = ndimage.map_coordinates(self.resid[:, :, 0], coords, order=1, mode="nearest").reshape(k.shape)
        ry = ndimage.map_coordinates(self.resid[:, :, 1], coords, order=1, mode="nearest").reshape(k.shape)
        return base + np.stack([rx, ry], axis=-1)


def _refine(f: np.ndarray, lat: Lattice, centre_xy: Optional[np.ndarray] = None,
            lam: float = 0.5, bounds: Optional[Tuple[float, float, float, float]] = None) -> Optional[GridModel]:
    """Grid model grown from `centre_xy` over the lattice window covering the image (or `bounds`,
    (x0, y0, x1, y1) in image px: the page's box in a photo)."""
    h, w = f.shape
    x0, y0, x1, y1 = bounds if bounds is not None else (0, 0, w - 1, h - 1)
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)
    km = lat.inverse(corners)
    # one box beyond the area, at most MAX_WINDOW_BOXES each way from its middle (the lattice's
    # origin may lie near a page edge)
    half = MAX_WINDOW_BOXES if bounds is None else PAGE_WINDOW_HALF_BOXES
    kmid, mmid = [int(round(0.5 * (km[:, c].min() + km[:, c].max()))) for c in (0, 1)]
    k0 = int(max(np.floor(km[:, 0].min()) - 1, kmid - half))
    k1 = int(min(np.ceil(km[:, 0].max()) + 1, kmid + half))
    m0 = int(max(np.floor(km[:, 1].min()) - 1, mmid - half))
    m1 = int(min(np.ceil(km[:, 1].max()) + 1, mmid + half))
    nk, nm = k1 - k0 + 1, m1 - m0 + 1
    if _DEBUG:
        print("window k", k0, k1, "m", m0, m1, "bounds", bounds, "km", km.round(1).tolist())
    KK, MM = np.meshgrid(np.arange(nk, dtype=np.float64) + k0, np.arange(nm, dtype=np.float64) + m0)
    field = lat(KK, MM)
    box = float(np.sqrt(abs(lat.a[0] * lat.b[1] - lat.a[1] * lat.b[0])))
    op = _biharmonic_operator(nm, nk)
    kc, mc = lat.inverse(np.asarray(centre_xy, dtype=np.float64)[None])[0] if centre_xy is not None else (0.0, 0.0)
    dist = np.hypot(KK - kc, MM - mc)  # grow outwards from the page centre
    radius = 4.0
    max_dist = dist.max()
    extra = 0
    model = None
    prom_thr = None
    for _ in range(14):
        meas, contrast, ok, prominence = _measure(f, field)
        if _DEBUG:
            print("prominence pct", np.percentile(prominence[ok], [5, 25, 50, 75, 95]).round(1))
        cand = ok & (dist <= radius)
        if cand.sum() < 12:
            if radius >= max_dist:
                return model
            radius *= 1.5
            continue
        ref = np.percentile(contrast[cand], 75)
        if prom_thr is None:  # grids with strong small lines have less prominent large lines
            prom_thr = min(MIN_PROMINENCE, 0.5 * float(np.median(prominence[cand])))
        good = cand & (contrast > 0.3 * ref) & (prominence > prom_thr)
        if good.sum() < 12:
            if radius >= max_dist:
                return model
            radius *= 1.5
            continue
        src = np.stack([KK[good], MM[good]], axis=-1).astype(np.float32)
        dst = meas[good].astype(np.float32)
        H, inl = cv2.findHomography(src, dst, cv2.RANSAC, 0.3 * box, maxIters=2000, confidence=0.999)
        if H is None:
            return model
        inl = inl.ravel().astype(bool)
        use = np.zeros_like(good)
        use[np.nonzero(good)[0][inl], np.nonzero(good)[1][inl]] = True
        base = _apply_h(H, KK, MM)
        for _rej in range(2 if radius >= max_dist else 1):
            resid = _smooth_field(meas - base, use.astype(np.float64), lam, op)
            err = np.hypot(*(meas - base - resid).transpose(2, 0, 1))
            e = err[use]
            tol = max(0.05 * box, 4.0 * 1.4826 * np.median(e))
            use = use & (err < tol)
        resid = _smooth_field(meas - base, use.astype(np.float64), lam, op)
        field = base + resid
        model = GridModel(H, resid, k0, m0, use, box)
        if radius >= max_dist:
            extra += 1
            if extra >= 2:
                break
        radius *= 1.5
    if model is None:
        return None
    return _final_fit(f, _reindex_detached(model, meas, op, lam), op, lam)


def _field_bending(resid: np.ndarray, op: sparse.csr_matrix) -> float:
    """Mean squared second difference of a residual field (px^2): how much it bends."""
    return float(np.mean([(op @ resid[:, :, c].ravel()) ** 2 for c in range(2)]))


def _reindex_detached(model: GridModel, meas: np.ndarray, op: sparse.csr_matrix, lam: float) -> GridModel:
    """Re-index groups of found nodes that the growth reached across a gap a whole box off.

    Beyond a shadow, a fold or a trace-covered band the grown field can arrive one or two boxes
    off; the nodes there are then measured on the wrong lines and the smooth residual bends to
    take them (confidently wrong by a box where it happens). The groups cut off from the largest
    one (and small beside it) are placed again nearest first, each judged against what is placed
    already (never against the other unjudged groups: two slipped groups would vouch for each
    other). The placed field predicts where the group's nodes should be; a group sitting one rigid
    offset from there is tried at the whole-box shifts on both sides of the offset, and the shift
    through which the field bends least is taken when it bends clearly less than unshifted."""
    found = model.found
    # groups: 4-connected found nodes (a slipped patch often touches the main group at a node or two)
    lab, n = ndimage.label(found)
    if n < 2:
        return model
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    main = 1 + int(np.argmax(sizes))
    nm, nk = found.shape
    KK, MM = np.meshgrid(np.arange(nk, dtype=np.float64) + model.k0, np.arange(nm, dtype=np.float64) + model.m0)
    base = _apply_h(model.H, KK, MM)
    # the core: the main group, then every group judged, nearest first, as it was placed
    core = lab == main
    data = np.where(core[..., None], meas, 0.0) - base
    judged = [g for g in range(1, n + 1)
              if g != main and REINDEX_MIN_NODES <= sizes[g - 1] <= REINDEX_MAX_SHARE * sizes[main - 1]]
    todo = list(judged)
    moved = False
    while todo:
        dist = ndimage.distance_transform_edt(~core)
        g = min(todo, key=lambda q: dist[lab == q].min())
        todo.remove(g)
        grp = lab == g
        mm, kk = np.nonzero(grp)

        def placed(sk: int, sm: int):
            tm, tk = mm + sm, kk + sk
            ok = (tm >= 0) & (tm < nm) & (tk >= 0) & (tk < nk)
            ok[ok] = ~core[tm[ok], tk[ok]]  # never over a node already placed
            w, dat = core.copy(), data.copy()
            w[tm[ok], tk[ok]] = True
            dat[tm[ok], tk[ok]] = meas[mm[ok], kk[ok]] - base[tm[ok], tk[ok]]
            return w, dat

        def bending(sk: int, sm: int) -> float:
            w, dat = placed(sk, sm)
            return _field_bending(_smooth_field(dat, w.astype(np.float64), lam, op), op)

        best = (0, 0)
        if dist[grp].min() > FAR_GROUP_MAX_GAP:
            core, data = placed(*best)
            continue
        pred = base + _smooth_field(data, core.astype(np.float64), lam, op)
        ea, eb = np.gradient(pred, axis=1), np.gradient(pred, axis=0)  # local box vectors
        mats = np.stack([ea[grp], eb[grp]], axis=-1)  # (n, 2, 2): columns a, b
        d = np.linalg.solve(mats, (meas[grp] - pred[grp])[..., None])[..., 0]  # offsets (dk, dm) in boxes
        med = np.median(d, axis=0)
        rigid = np.median(np.abs(d - med)) <= REINDEX_MAX_SPREAD  # one rigid offset
        if dist[grp].min() > REINDEX_MAX_GAP:
            # too far out for the bending to judge a shift; a rigid group sitting about a whole box
            # off the extrapolated field was reached across the gap that box off
            whole = np.round(med)
            if rigid and np.any(whole != 0) and np.all(np.abs(med - whole) <= FAR_SLIP_TOLERANCE):
                if _DEBUG:
                    print("far group", int(g), "gap", round(float(dist[grp].min()), 1), "size", int(sizes[g - 1]),
                          "sits", med.round(2), "boxes off the field: re-indexed")
                best = (int(whole[0]), int(whole[1]))
                moved = True
        else:
            # the extrapolation across the gap is good to a fraction of a box only: the whole-box
            # shifts on both sides of the offset are tried
            shifts = {(sk, sm) for sk in (int(np.floor(med[0])), int(np.ceil(med[0])))
                      for sm in (int(np.floor(med[1])), int(np.ceil(med[1])))} - {(0, 0)}
            if shifts and rigid:
                unshifted = bending(0, 0)
                tried = sorted((bending(sk, sm), sk, sm) for sk, sm in shifts)
                if _DEBUG:
                    print("reindex group", int(g), "gap", round(float(dist[grp].min()), 1), "size",
                          int(sizes[g - 1]), "offset", med.round(2), "bending unshifted", round(unshifted, 4),
                          "shifted", [(round(v, 4), sk, sm) for v, sk, sm in tried])
                if tried[0][0] < REINDEX_BENDING_RATIO * unshifted:
                    best = tried[0][1:]
                    moved = True
        core, data = placed(*best)
    if not moved:
        return model
    # the found nodes: the placed core, plus the groups not judged (too small or too large) where free
    rest = found & ~core & ~np.isin(lab, judged)
    data[rest] = meas[rest] - base[rest]
    core |= rest
    resid = _smooth_field(data, core.astype(np.float64), lam, op)
    return GridModel(model.H, resid, model.k0, model.m0, core, model.box_px)


def _final_fit(f: np.ndarray, model: GridModel, op: sparse.csr_matrix, lam: float) -> GridModel:
    """Measure the nodes again at FINE_SAMPLES_PER_BOX and refit, a few times. A line's sub-pixel
    peak found between raster samples is biased toward the nearest sample, by an amount that drifts
    slowly over the page (about 0.4 px on a clean render at 16 samples per box); once the field sits
    on the lines the peaks fall on the sample centres, where that bias vanishes. On clean renders the
    node error drops from about 0.4 px to 0.04 px; a time error of 1 ms costs dB at QRS slopes."""
    nm, nk = model.found.shape
    KK, MM = np.meshgrid(np.arange(nk, dtype=np.float64) + model.k0, np.arange(nm, dtype=np.float64) + model.m0)
    base = _apply_h(model.H, KK, MM)
    for _ in range(FINE_PASSES):
        field = model.field()
        meas, _, ok, _ = _measure(f, field, FINE_SAMPLES_PER_BOX)
        # the nodes the growth kept, measured again; those that moved far from the model are dropped
        moved = np.hypot(*(meas - field).transpose(2, 0, 1))
        use = model.found & ok & (moved < 0.1 * model.box_px)
        if use.sum() < FINE_KEEP_SHARE * model.found.sum():
            # the fine raster sees other peaks than the coarse one did: the model's step is not the
            # grid's box (e.g. two boxes, see _box_divisions); keep the coarse model for that check
            return model
        if _DEBUG:
            print("final fit: nodes", int(use.sum()), "moved", np.median(moved[use]).round(3))
        resid = _smooth_field(meas - base, use.astype(np.float64), lam, op)
        model = GridModel(model.H, resid, model.k0, model.m0, use, model.box_px)
    return model


# -------------------------------------------------------------------------------------------------
# Orientation and absolute indices
# -------------------------------------------------------------------------------------------------
_TEMPLATE_CACHE: Dict[int, np.ndarray] = {}


def _layout_template(S: int = INK_SAMPLES_PER_BOX) -> np.ndarray:
    """Expected ink of an upright page at S samples per box, cells centred on nodes (44*S, 57*S).

    Trace bands on the four baselines from time 0 to 10 s; calibration-pulse top strokes (1 mV
    above the baseline, within 7.5 mm before time 0, which covers the renderers we know) and
    lead labels (text at the label node) with positive weight; the same marks mirrored
    left-right and/or flipped about their baseline get negative weight, so that only the right
    orientation collects them.
    """
    if S in _TEMPLATE_CACHE:
        return _TEMPLATE_CACHE[S]
    mm_per = layout.LARGE_GRID_MM / S
    ys = (np.arange(N_ROWS * S) + 0.5) * mm_per - layout.LARGE_GRID_MM / 2
    xs = (np.arange(N_COLS * S) + 0.5) * mm_per - layout.LARGE_GRID_MM / 2
    X, Y = np.meshgrid(xs, ys)
    lay = layout.STANDARD_3X4
    x0 = layout.seconds_to_mm(0.0)
    x1 = layout.seconds_to_mm(layout.RECORD_SECONDS)
    xc = 0.5 * (x0 + x1)
    up_mm = layout.GAIN_MM_PER_MV

    def marks(mirror: bool, flip: bool) -> np.ndarray:
        xx = 2 * xc - X if mirror else X
        out = np.zeros_like(X)
        for y_b in lay.baselines_y_mm:
            yy = 2 * y_b - Y if flip else Y
            out += PULSE_WEIGHT * ((np.abs(yy - (y_b - up_mm)) <= 1.0) & (xx >= x0 - 7.5) & (xx <= x0 - 0.5))
        rows_of = {}
        for k, (j, i) in enumerate(lay.label_nodes):
            rows_of.setdefault(j, []).append(i)
        for r, y_b in enumerate(lay.baselines_y_mm):
            j = lay.label_nodes[[p.row for p in lay.placements].index(r)][0]
            _, yl = layout.grid_node_mm(j, 0)
            yy = 2 * y_b - Y if flip else Y
            for i in rows_of[j]:
                xl, _ = layout.grid_node_mm(j, i)
                out += LABEL_WEIGHT * ((xx >= xl - 1.0) & (xx <= xl + 6.0) & (np.abs(yy - yl) <= 2.5))
        return out

    page_h = (N_ROWS - 1) * layout.LARGE_GRID_MM

    def text(mirror: bool, flip: bool) -> np.ndarray:
        """Header lines at the top left and the speed/gain line under the last row, left aligned."""
        xx = 2 * xc - X if mirror else X
        yy = page_h - Y if flip else Y
        (hx0, hx1), (hy0, hy1) = HEADER_BOX_MM
        out = (xx >= hx0) & (xx <= hx1) & (yy >= hy0) & (yy <= hy1)
        (sx0, sx1), (sy0, sy1) = SPEED_LINE_BOX_MM
        y_last = max(lay.baselines_y_mm)
        out |= (xx >= x0 + sx0) & (xx <= x0 + sx1) & (yy >= y_last + sy0) & (yy <= y_last + sy1)
        return HEADER_WEIGHT * out

    t = np.zeros_like(X)
    for y_b in lay.baselines_y_mm:
        t += np.exp(-0.5 * ((Y - y_b) / 2.5) ** 2) * ((X >= x0) & (X <= x1))
    t += marks(False, False) + text(False, False)
    t -= marks(True, False) + marks(False, True) + marks(True, True)
    t -= text(True, False) + text(False, True) + text(True, True)
    _TEMPLATE_CACHE[S] = t
    return t


def _ink_raster(dark: np.ndarray, model: GridModel):
    """(ink, read): the darkness resampled to lattice space (S samples per box, cells centred
    on nodes) with the grid removed and scaled to 0..1, and the samples read (the detected grid,
    grown into paper-like boxes, inside the image).
    None when there is no ink at all."""
    S = INK_SAMPLES_PER_BOX
    nm, nk = model.found.shape
    field = model.field()
    mx, my = _upsample_field(field, S)
    # blur first: each sample stands for a 1 mm cell
    sig = max(model.box_px / S / 2.5, 0.5)
    inkb = cv2.GaussianBlur(dark, (0, 0), sig)
    obs = cv2.remap(inkb, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    on_grid = ndimage.binary_fill_holes(ndimage.binary_closing(model.found, iterations=2))
    if on_grid.sum() < 4:
        return None
    # remove the grid: it is the same in every box, so the per-phase median over boxes is the grid
    cells = obs.reshape(nm, S, nk, S).transpose(0, 2, 1, 3)  # (nm, nk, S, S)
    grid_cell = np.median(cells[on_grid], axis=0)
    # the page's edges often go undetected (pulses, first labels, header): the smooth model
    # extrapolates well over a few boxes, so the ink is read a little beyond the detected grid
    if INK_GROW_BOXES:
        # ... but only into boxes that look like paper: mostly empty once the grid is gone (a
        # trace or label covers a few samples of a box; table, screen bezel or shadow cover most)
        clean = np.clip(cells - grid_cell[None, None], 0, None)
        box_med = np.median(clean.reshape(nm, nk, -1), axis=-1)
        ref = float(np.median(box_med[on_grid]))
        paper = box_med <= max(INK_PAPER_FACTOR * ref, INK_PAPER_ABS * float(np.percentile(clean[on_grid], 99.5)))
        # ... and where the grid shows (a scanner lid, a table, a bezel and the dark band along the
        # page's edge against them have no grid; that band would look like a trace row)
        gc = grid_cell - grid_cell.mean()
        cc = cells - cells.mean(axis=(2, 3), keepdims=True)
        corr = (cc * gc).sum(axis=(2, 3)) / np.sqrt((cc ** 2).sum(axis=(2, 3)) * (gc ** 2).sum() + 1e-12)
        reach = ndimage.binary_dilation(on_grid, iterations=INK_GROW_BOXES)
        grown = reach & paper & (corr > GRID_SHOWS_CORR)
        on_grid = on_grid | grown
        # a box between read boxes is read too: a pulse's top stroke or a label hides the grid in
        # its box, and near the page's edge (outside the detected grid) that box would be skipped
        near = ndimage.binary_dilation(on_grid, iterations=1)
        on_grid = on_grid | (ndimage.binary_erosion(near, iterations=1, border_value=1) & reach)
    on_grid_px = np.kron(on_grid, np.ones((S, S), dtype=bool))
    # samples beyond the image are not read (they are no evidence of empty paper)
    h, w = dark.shape
    on_grid_px &= (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    obs = np.clip(cells - grid_cell[None, None], 0, None).transpose(0, 2, 1, 3).reshape(nm * S, nk * S)
    if INK_TOPHAT_MM:
        # traces, pulses and text are thin strokes; shadows, bezels and stains are wide blobs
        obs = obs - ndimage.grey_opening(obs, size=(INK_TOPHAT_MM, INK_TOPHAT_MM))
    obs = np.where(on_grid_px, obs, 0.0)
    scale = float(np.percentile(obs[on_grid_px], INK_SCALE_PCT))
    if scale < 1e-3:
        return None
    obs = np.minimum(obs / scale, 1.0)
    return obs, on_grid_px


class AnchorReading(NamedTuple):
    """A grid model's placement on the page: orientation code, the absolute box shifts (dj, di) of
    the layout, its template score, the margin to the other readings (1: sure), the ink read, the
    trace rows of another layout (`_trace_rows_elsewhere`), and whether the template's own time
    anchor, kept, has >= `CONFIRMING_ENDS` rows' trace ends at its 10 s line."""
    code: int
    dj: int
    di: int
    score: float
    margin: float
    ink_total: float
    foreign_rows: int
    ends_confirm: bool


def _orient_and_anchor(dark: np.ndarray, model: GridModel,
                       codes: Tuple[int, ...] = tuple(range(layout.N_ORIENTATIONS))) -> Optional[AnchorReading]:
    """The page's `AnchorReading`, or None when there is no ink at all. `codes`: the orientation
    codes the reading may take; the margins still weigh it against all eight.

    Two steps, because most of the layout (the trace bands, the page outline) looks the same in a
    left-right mirror: (1) the mirror-symmetric part of the template picks the pair of codes
    {c, c ^ 4} (axis and up/down) and the box shift; (2) the two mirror hypotheses are compared
    at mirror-consistent shifts (the same page boxes), so only the marks that are not
    mirror-symmetric (pulses, labels, header) decide, and neither side can slide away from them.
    """
    S = INK_SAMPLES_PER_BOX
    raster = _ink_raster(dark, model)
    if raster is None:
        return None
    obs, on_grid_px = raster
    level = np.median(obs[on_grid_px])
    obs0 = np.where(on_grid_px, obs - level, 0.0)
    tmpl = _layout_template(S)
    t_full = tmpl - tmpl.mean()
    t_sym = 0.5 * (t_full + t_full[:, ::-1])
    norm = np.linalg.norm(t_full) * max(np.linalg.norm(obs0), 1e-9)
    page = np.ones((N_ROWS, N_COLS))
    n_found = max(model.found.sum(), 1)
    full, sym = {}, {}
    for code in range(layout.N_ORIENTATIONS):
        o = layout.undo_orientation(obs0, code)
        fnd = layout.undo_orientation(model.found.astype(np.float64), code)
        inside = signal.correlate(fnd, page, mode="full", method="fft") / n_found
        # shift (dj, di): upright array box (a, b) <-> template node (a - dj, b - di)
        hb, wb = fnd.shape
        djs = np.arange(-(N_ROWS - 1), hb)
        dis = np.arange(-(N_COLS - 1), wb)
        in_sub = inside[(djs + N_ROWS - 1)[:, None], (dis + N_COLS - 1)[None, :]]
        for t, out in ((t_full, full), (t_sym, sym)):
            corr = signal.correlate(o, t, mode="full", method="fft") / norm
            th, tw = t.shape
            c_sub = corr[(S * djs + th - 1)[:, None], (S * dis + tw - 1)[None, :]]
            out[code] = (c_sub + 0.5 * (in_sub - 1.0), djs, dis)
    # (1) the best code by the full score; its own best placement and its mirror twin's
    best = {}
    for code in range(layout.N_ORIENTATIONS):
        sc, djs, dis = full[code]
        a, b = np.unravel_index(int(np.argmax(sc)), sc.shape)
        best[code] = (float(sc[a, b]), int(a), int(b))
    # most pages are upright (the competition's: 93 %): a turned reading must lead by more than
    # UPRIGHT_PRIOR (real printer layouts the template does not know score all turns about alike)
    lead = {c: best[c][0] + (UPRIGHT_PRIOR if c % 4 == 0 else 0.0) for c in range(layout.N_ORIENTATIONS)}
    code0 = max(codes, key=lambda c: lead[c])
    twin = code0 ^ 4  # left-right mirror of code0's reading (layout.apply_orientation)

    # (2) reading: code0 at its best placement against its mirror twin at the twin's best placement
    cand = [(best[c][0], c, int(full[c][1][best[c][1]]), int(full[c][2][best[c][2]])) for c in (code0, twin)]
    # a scan or photo shows the page's front: a mirrored reading must win clearly
    cand.sort(key=lambda q: (q[1] in codes, q[0] + (MIRROR_PRIOR if q[1] < 4 else 0.0)), reverse=True)
    pair_score = max(cand[0][0], best[code0][0]) + (lead[code0] - best[code0][0])  # with code0's head start
    axis_margin = pair_score - max(lead[c] for c in range(layout.N_ORIENTATIONS) if c % 2 != code0 % 2)
    flip_margin = pair_score - max(lead[c] for c in range(layout.N_ORIENTATIONS)
                                   if c % 2 == code0 % 2 and c not in (code0, twin))
    if _DEBUG:
        print("codes", sorted(((round(v[0], 3), c) for c, v in best.items()), reverse=True), "mirror", [tuple(round(v, 3) if isinstance(v, float) else v for v in q) for q in cand])
    score, code, dj, di = cand[0]
    mirror_margin = cand[0][0] - cand[1][0] + (MIRROR_PRIOR if cand[0][1] < 4 else -MIRROR_PRIOR)
    # a mirrored reading (a page seen through from its back: rare) must be clearly better
    mirror_unit = MIRROR_MARGIN_UNIT if cand[0][1] < 4 else MIRROR_CLEAR_UNIT
    margin = min(axis_margin / 0.04, flip_margin / 0.04, mirror_margin / mirror_unit)
    # time anchor: every row's trace ends at 10 s (renderers differ in what precedes time 0)
    up, up_read = layout.undo_orientation(obs, code), layout.undo_orientation(on_grid_px, code)
    if _DEBUG_DUMP:  # the upright ink raster for inspection
        np.savez(_DEBUG_DUMP, up=up, read=up_read, found=layout.undo_orientation(model.found, code), dj=dj, di=di)
    ends = _row_trace_ends(up, dj, up_read)
    di_end = _agreed_ends_anchor(ends)
    di_template = di
    if _DEBUG:
        print("code", code, "dj", dj, "di", di, "ends", ends, "ends (mm from 10 s)",
              [round((e + 0.5) * 1.0 - 2.5 - 5 * di - layout.seconds_to_mm(10.0), 1) for e in ends], "di_end", di_end)
    if len(ends) >= 3 and max(ends) - min(ends) > ROW_END_SPREAD_MM * S / layout.LARGE_GRID_MM:
        # the rows end together on paper: ends far apart in plain view mean a wrong field (a
        # moire lattice locked onto the wrong lines in places) or a wrong row anchor
        margin = min(margin, 0.3)
    if di_end is not None and di_end != di:
        # the template's time anchor rests on what precedes time 0 and the labels (often cut off,
        # torn or faint); where >= 3 rows end together in plain view, their ends decide, unless
        # the layout fits far worse there
        sc, djs, dis = full[code]
        a = int(np.nonzero(djs == dj)[0][0])
        b = np.nonzero(dis == di_end)[0]
        s_end = float(sc[a, b[0]]) if b.size else -np.inf
        if _DEBUG:
            print("di template", di, "di from trace ends", di_end, "score there", round(s_end, 3), "best", round(score, 3))
        if abs(di_end - di) <= 1 or s_end >= TRACE_END_SCORE_SHARE * score:
            di = di_end
    # the rows' ink lies between the pulse's foot (10 mm before time 0) and 10 s: a time anchor
    # that leaves the ink of two rows outside is wrong, whatever the template says
    sc, djs, dis = full[code]
    a = int(np.nonzero(djs == dj)[0][0])
    extents = _row_extents(up, dj, up_read)
    lo_hi = _extent_anchor_range(extents)
    allowed = dis.copy()
    if lo_hi is not None:
        allowed = dis[(dis >= lo_hi[0]) & (dis <= lo_hi[1])]
        if _DEBUG:
            print("di allowed by the rows' extents", lo_hi, "template di", di)
        if allowed.size == 0:
            margin = min(margin, EXTENT_CONFLICT_MARGIN)
            allowed = dis.copy()
        elif di not in allowed:
            # the rows' extents are read from plain-view ink (a photo's grey grid, folds and
            # stains pass for ink too): they doubt the template's anchor but never move it
            margin = min(margin, EXTENT_CONFLICT_MARGIN)
            allowed = dis.copy()
    if not _pulses_where_ink_starts_early(up, dj, di, extents):
        # the rows' ink starts where a calibration pulse would, but no pulse is there: the ink is
        # something else or the field's scale is off (moire), and the anchor cannot be trusted
        if _DEBUG:
            print("ink starts at the pulse's foot but no pulse top there")
        margin = min(margin, PULSE_CONFLICT_MARGIN)
    if di_end is None and allowed.size > 1:
        # no trace end confirms the time anchor: the template's score is nearly flat along time
        # (the bands slide along the traces), so a neighbour shift about as good makes it doubtful
        b = int(np.nonzero(dis == di)[0][0])
        side = [float(sc[a, q]) for q in (b - 1, b + 1) if 0 <= q < sc.shape[1] and dis[q] in allowed]
        if side:
            margin = min(margin, max(0.1, (float(sc[a, b]) - max(side)) / TIME_ANCHOR_MARGIN_UNIT))
        # two rows whose ends agree on a neighbour shift break a tie of the template
        if len(ends) == 2 and abs(ends[0] - ends[1]) <= 2 and margin < 1.0:
            di_two = _ends_anchor(ends)
            if abs(di_two - di) == 1 and di_two in allowed:
                if _DEBUG:
                    print("two row ends move the tied time anchor", di, "->", di_two)
                di, margin = di_two, min(margin, TWO_ENDS_MARGIN)
    # ends that moved the template's anchor confirm nothing (a confirming look's early, spread ends
    # overrode its template by two boxes once, and that look then doubted a right reading)
    ends_confirm = di == di_template and sum(_ends_anchor([e]) == di for e in ends) >= CONFIRMING_ENDS
    return AnchorReading(code, dj, di, score, margin, float(obs.sum()), _trace_rows_elsewhere(up, dj, di, up_read),
                         ends_confirm)


def _pulses_where_ink_starts_early(up: np.ndarray, dj: int, di: int, extents: list) -> bool:
    """False when >= 2 rows' ink starts where a calibration pulse's foot would (10 mm before time
    0, +-2.5 mm) and none of them shows the pulse's top stroke (1 mV up, 2.5-7.5 mm after the
    foot's start) at anchor (dj, di); True otherwise."""
    S = INK_SAMPLES_PER_BOX
    mm_per = layout.LARGE_GRID_MM / S
    box = layout.LARGE_GRID_MM
    foot = layout.seconds_to_mm(0.0) - PULSE_LEAD_MM
    expected = found = 0
    for first, _, _, _, y_b in extents:
        x_first = (first + 0.5) * mm_per - box / 2 - box * di
        if abs(x_first - foot) > 2.5:
            continue
        expected += 1
        found += int(_pulse_top_at(up, dj, y_b, first + int(round(3.5 / mm_per)), first + int(round(6.5 / mm_per)) + 1))
    if _DEBUG:
        print("pulse slots with ink", expected, "pulse tops found", found)
    return expected < 2 or found > 0


def _pulse_top_at(up: np.ndarray, dj: int, y_b: float, xa: int, xb: int) -> bool:
    """A calibration pulse's top stroke (1 mV above the row's baseline `y_b`, mm) over samples
    xa..xb of the upright ink raster, with blank paper below it. The stroke is as dark as the
    row's trace: with bold header text setting the ink scale, a thin trace reads about 0.3."""
    mm_per = layout.LARGE_GRID_MM / INK_SAMPLES_PER_BOX
    h, w = up.shape
    p_top = _raster_row(y_b - layout.GAIN_MM_PER_MV, dj)
    below = p_top + int(round(8 / mm_per))
    band = _row_band(up, dj, y_b)
    if xa < 0 or xb > w or p_top - 1 < 0 or below > h or band is None:
        return False
    level = band[2]
    stroke = float(np.median(up[p_top - 1:p_top + 2, xa:xb].max(axis=0)))
    between = float(np.median(up[p_top + 2:below, xa:xb]))  # between the top and the baseline: empty
    return stroke > min(PULSE_STROKE_INK, 0.5 * level) and stroke > 2.0 * between


def _extent_anchor_range(extents: list) -> Optional[Tuple[float, float]]:
    """(lowest, highest) box shift di that keeps the rows' ink (see `_row_extents`) between the
    calibration pulse's foot and the 10 s line; None when no bound is found. (A trace end seen
    does not bound it from above: faint traces break up, and their runs end early in plain view;
    `_trace_end_anchor` reads the ends where >= 3 rows agree.) Only run ends seen in plain view count
    (the ink at the edge of the view may be the page's edge). Each bound is the one that all rows
    but one (of 3 or 4; both of 2) demand: a row may carry a fold line or a stain into its band,
    or lose a faint stretch of its trace."""
    S = INK_SAMPLES_PER_BOX
    mm_per = layout.LARGE_GRID_MM / S
    box = layout.LARGE_GRID_MM
    t0 = layout.seconds_to_mm(0.0)
    t10 = layout.seconds_to_mm(layout.RECORD_SECONDS)
    tol = EXTENT_TOLERANCE_MM

    def shift(q: int, page_x: float, slack: float) -> float:
        # sample q sits at page x = (q + 0.5) * mm_per - box / 2 - box * di
        return ((q + 0.5) * mm_per - box / 2 - page_x + slack) / box

    lows, highs = [], []
    for first, last, first_seen, last_seen, _ in extents:
        if last_seen:
            lows.append(shift(last, t10, -tol))  # the ink reaches the 10 s line at most
        if first_seen:
            highs.append(shift(first, t0 - PULSE_LEAD_MM, tol))  # the ink starts at the pulse's foot at the earliest
    lo = hi_ = None
    if len(lows) >= 2:
        lo = float(np.ceil(sorted(lows)[-max(2, len(lows) - 1)]))
    if len(highs) >= 2:
        hi_ = float(np.floor(sorted(highs)[max(2, len(highs) - 1) - 1]))
    if lo is None and hi_ is None:
        return None
    return (-np.inf if lo is None else lo), (np.inf if hi_ is None else hi_)


def _raster_row(y_mm: float, dj: int) -> int:
    """Row of the upright ink raster (cells centred on nodes) at page y `y_mm` when the page's node
    row 0 sits at raster box row dj."""
    return int(round((y_mm / layout.LARGE_GRID_MM + dj + 0.5) * INK_SAMPLES_PER_BOX - 0.5))


def _raster_col(x_mm: float, di: int) -> int:
    """Column of the upright ink raster at page x `x_mm` when the page's node column 0 sits at
    raster box column di (the inverse of the mapping `_ends_anchor` reads)."""
    return int(round((x_mm / layout.LARGE_GRID_MM + di + 0.5) * INK_SAMPLES_PER_BOX - 0.5))


def _trace_rows_elsewhere(up: np.ndarray, dj: int, di: int, read: Optional[np.ndarray] = None,
                          span_mm: Tuple[float, float] = TRACE_ROW_SPAN_MM) -> int:
    """The number of trace rows on the page when they are another layout's (more than the 3x4+II
    layout's four, some away from its baselines), else 0.

    A trace row: a band (BETWEEN_BAND_MM each side) inked along most of the 10 s span, standing
    out from the paper around it (a photo's noise or moire inks every band alike and makes no
    row). The page is another printed layout (6x2, 12x1, 3x4 with three rhythm strips, a partial
    view) when two such rows lie away from every baseline of the layout and there are more than
    four rows in all: four rows at another spacing are the same leads printed by another machine.
    Rows are looked for at page y in `span_mm`."""
    mm_per = layout.LARGE_GRID_MM / INK_SAMPLES_PER_BOX
    half = int(round(BETWEEN_BAND_MM / mm_per))
    x0, x1 = (_raster_col(layout.seconds_to_mm(t), di) for t in (0.0, layout.RECORD_SECONDS))
    x0, x1 = max(0, x0), min(up.shape[1], x1)
    baselines = np.array(layout.STANDARD_3X4.baselines_y_mm)
    levels = [b[2] for b in (_row_band(up, dj, y) for y in baselines) if b is not None and b[2] > 0]
    if x1 - x0 < 10 or not levels:
        return 0
    thr = 0.3 * float(np.median(levels))

    def share(y_mm: float, xa: int, xb: int) -> float:
        """Inked share of columns xa..xb in the band at y_mm; nan where mostly out of view."""
        p = _raster_row(y_mm, dj)
        xa, xb = max(0, xa), min(up.shape[1], xb)
        if p - half < 0 or p + half + 1 > up.shape[0] or xb - xa < 3:
            return np.nan
        cols = read[p, xa:xb] if read is not None else np.ones(xb - xa, bool)
        if cols.sum() < 0.5 * (xb - xa):
            return np.nan
        inked = ndimage.binary_closing(up[p - half:p + half + 1, xa:xb].max(axis=0) > thr, iterations=1)
        return float(inked[cols].mean())

    ys = np.arange(*span_mm, 1.0)
    prof = np.nan_to_num(np.array([share(y, x0, x1) for y in ys]), nan=0.0)
    peaks, _ = signal.find_peaks(prof, height=TRACE_ROW_SHARE, prominence=TRACE_ROW_PROMINENCE,
                                 distance=int(MIN_ROW_SPACING_MM))
    rows_y = ys[peaks]
    if _DEBUG:
        print("trace rows on the page at y (mm)", rows_y)
    # every layout's rows end at 10 s: ink running on through the margin after it is a line across
    # the page (a fold, a crease, a shadow's edge), not a trace row; where that margin is out of
    # view (a screen's edge, the page cut off) the line cannot be told from a row and does not count
    m0, m1 = (_raster_col(layout.seconds_to_mm(layout.RECORD_SECONDS) + d, di) for d in RIGHT_MARGIN_MM)
    away = [y for y in rows_y if np.abs(baselines - y).min() > FOREIGN_ROW_OFFSET_MM
            and share(y, m0, m1) < TRACE_ROW_SHARE]  # (nan < x is False)
    # one stray line (a fold, a shadow's edge, a torn edge) is not a layout: another layout puts at
    # least two rows where this one has none, and has more rows than its four (fewer found: faint
    # rows and header lines on a poor photo, not evidence of another layout)
    return len(rows_y) if len(away) >= 2 and len(rows_y) > len(baselines) else 0


def _row_band(up: np.ndarray, dj: int, y_b: float) -> Optional[Tuple[int, np.ndarray, float]]:
    """(raster row of the baseline, the ink's column profile over the band ROW_BAND_MM each side of
    it (max), the trace's ink level: median of the profile's non-zero samples), or None when the
    band leaves the raster."""
    p_b = _raster_row(y_b, dj)
    half = int(ROW_BAND_MM * INK_SAMPLES_PER_BOX / layout.LARGE_GRID_MM)
    if p_b - half < 0 or p_b + half > up.shape[0]:
        return None
    prof = up[p_b - half:p_b + half].max(axis=0)
    level = float(np.median(prof[prof > 0])) if (prof > 0).any() else 0.0
    return p_b, prof, level


def _row_extents(up: np.ndarray, dj: int, read: Optional[np.ndarray] = None, control: bool = True,
                 trim_speckle: bool = False) -> list:
    """Per row whose ink is found: (first, last, first_seen, last_seen, baseline_mm), the sample
    indices (x) of the first and last long ink run along the row's baseline band.

    `read` (the samples of `up` that were read, same shape): an end followed by samples not read
    (the image border, a torn or shadowed edge) may be where the view ends, not the trace;
    `*_seen` says that TRACE_END_SEEN_MM of read samples follow it. `control`: the ink must also
    stand above what the blank band between the rows holds (noise, moire); that keeps noise from
    stretching the runs, but breaks faint traces up (their runs end early). `trim_speckle`: the
    last run ends before weak pieces beyond a gap (`_trace_end_before_speckle`)."""
    S = INK_SAMPLES_PER_BOX
    mm_per = layout.LARGE_GRID_MM / S
    h, w = up.shape
    seen = int(TRACE_END_SEEN_MM / mm_per)
    out = []
    for y_b in layout.STANDARD_3X4.baselines_y_mm:
        band = _row_band(up, dj, y_b)
        if band is None or band[2] <= 0:
            continue
        p_b, prof, level = band
        lo, hi = p_b - int(ROW_BAND_MM / mm_per), p_b + int(ROW_BAND_MM / mm_per)
        thr = 0.3 * level
        # the same band half-way to the row above is blank paper but for tall waves: what it holds
        # in most columns is grid residue, moire or stain, and the trace must stand above it
        c_lo, c_hi = lo - int(CONTROL_BAND_OFFSET_MM / mm_per), hi - int(CONTROL_BAND_OFFSET_MM / mm_per)
        if control and c_lo >= 0:
            ctrl = up[c_lo:c_hi].max(axis=0)
            cols = read[p_b] & read[(c_lo + c_hi) // 2] if read is not None else np.ones(w, bool)
            if cols.sum() >= 10:
                thr = max(thr, CONTROL_BAND_FACTOR * float(np.percentile(ctrl[cols], CONTROL_BAND_PCT)))
        # thin traces break up after the grid removal: close gaps, then the long runs make the row
        lab, n = ndimage.label(ndimage.binary_closing(prof > thr, iterations=2))
        runs = [np.nonzero(lab == k)[0] for k in range(1, n + 1)]
        runs = [r for r in runs if r.size >= int(6 / mm_per)]
        if read is not None and len(runs) > 1:
            runs = _without_end_islands(runs, read[p_b])
        if not runs:
            continue
        first, run_end = int(runs[0][0]), int(runs[-1][-1])
        last = run_end
        if trim_speckle:
            last = _trace_end_before_speckle(prof[runs[-1]], thr, TRACE_END_STRONG * level) + int(runs[-1][0])
        if read is None:
            out.append((first, last, True, True, y_b))
            continue
        last_seen = run_end + 1 + seen <= w and bool(read[p_b, run_end + 1:run_end + 1 + seen].all())
        first_seen = first - seen >= 0 and bool(read[p_b, first - seen:first].all())
        out.append((first, last, first_seen, last_seen, y_b))
    return out


def _without_end_islands(runs: list, read_row: np.ndarray) -> list:
    """The ink runs of one row (sorted along x) without those at either end that lie in an island
    of read samples (shorter than `READ_ISLAND_MM`, cut off from the next run inward by samples not
    read): a patch of table past a torn edge, read as paper, is no part of the trace, and its ink
    would carry the row's end out of view. Gaps inside the page (a stain's unread box) are kept."""
    island = int(READ_ISLAND_MM * INK_SAMPLES_PER_BOX / layout.LARGE_GRID_MM)
    lab, _ = ndimage.label(read_row)

    def cut_off(run: np.ndarray, gap_start: int, gap_end: int) -> bool:
        seg = lab[run[run.size // 2]]
        return (seg == 0 or int((lab == seg).sum()) < island) and not read_row[gap_start:gap_end].all()

    while len(runs) > 1 and cut_off(runs[-1], runs[-2][-1] + 1, runs[-1][0]):
        runs = runs[:-1]
    while len(runs) > 1 and cut_off(runs[0], runs[0][-1] + 1, runs[1][0]):
        runs = runs[1:]
    return runs


def _trace_end_before_speckle(values: np.ndarray, thr: float, strong: float) -> int:
    """Index of a trace's end in its closed ink run `values`: the closing lets speckle just past
    the end (dots above `thr` but weak, across gaps) stretch the run by up to a box, which moved
    the time anchor a box late on harsh B/W scans. Pieces after a gap holding no `strong` ink are
    dropped; a faint but unbroken tail (a shaded photo) is kept. The run's own end still says
    whether the view goes on after it."""
    above = values > thr
    end = len(values) - 1
    while True:
        gaps = np.nonzero(~above[:end + 1])[0]
        if gaps.size == 0 or values[gaps[-1] + 1:end + 1].max(initial=0.0) >= strong:
            return end
        before = np.nonzero(above[:gaps[-1]])[0]
        if before.size == 0:
            return end
        end = int(before[-1])


def _row_trace_ends(up: np.ndarray, dj: int, read: Optional[np.ndarray] = None) -> list:
    """Sample index (x) where each row's trace ends, for the rows whose end is found and seen
    (see `_row_extents`)."""
    plain, trimmed = ([last for _, last, _, last_seen, _ in _row_extents(up, dj, read, control=False, trim_speckle=t)
                       if last_seen] for t in (False, True))
    # ink that stands above the blank band between the rows ends where the traces do, also where
    # a photographed screen's moire or grid residue fills the paper after them at half the trace's
    # level (there the plain runs go on to the page's edge, 6 mm, and the time anchor went a box
    # late). Such an end counts where what follows it is that weak (not a trace going on fainter:
    # a stain's edge crossing the rows ended three rows' above-band ink 52 mm early), and where
    # the rows end together (below): above-band ink breaks faint traces up early (3 mm,
    # scattered), and a row ending well before the others is one broken up.
    paper_after = int(RIGHT_MARGIN_MM[1] * INK_SAMPLES_PER_BOX / layout.LARGE_GRID_MM)
    above = []
    for _, last, _, last_seen, y_b in _row_extents(up, dj, read, control=True, trim_speckle=True):
        _, prof, level = _row_band(up, dj, y_b)
        after = prof[last + 1:last + 1 + paper_after]
        if last_seen and after.size and np.median(after) < RESIDUE_LEVEL * level:
            above.append(last)
    # trimmed ends win where the rows agree on them at least as well (speckle after the ends of a
    # B/W scan's traces); where trimming spreads them (faint broken tails and moire in a photo:
    # what remains is not the end) the plain ends stand
    runs = trimmed if trimmed and np.ptp(trimmed) <= np.ptp(plain) else plain
    if len(above) >= 2:
        together = [e for e in above if e >= np.median(above) - ROW_ENDS_AGREE]
        # two rows ending together (they may break a tie of the template) where the plain runs of
        # fewer than two rows end in view (residue carried the others on to the view's edge)
        if np.ptp(together) <= ROW_ENDS_TOGETHER and (len(together) >= 3 or (len(together) == 2 and len(runs) < 2)):
            return together
    return runs


def _trace_end_anchor(up: np.ndarray, dj: int, read: Optional[np.ndarray] = None) -> Optional[int]:
    """Box shift di that puts the rows' trace ends on the 10 s line, or None when fewer than 3
    rows show their end or they disagree (see `_row_trace_ends` for `read`)."""
    return _agreed_ends_anchor(_row_trace_ends(up, dj, read))


def _agreed_ends_anchor(ends: list) -> Optional[int]:
    """`_ends_anchor` of the rows' trace ends (`_row_trace_ends`) when >= 3 rows show one and they agree."""
    if len(ends) < 3:
        return None
    ends = np.sort(np.array(ends))
    if ends[-1] - ends[0] > ROW_ENDS_AGREE:  # rows disagree: keep the template's anchor
        return None
    return _ends_anchor(ends)


def _ends_anchor(ends) -> int:
    """Box shift di that puts the median of the rows' trace ends (ink raster samples) on 10 s."""
    mm_per = layout.LARGE_GRID_MM / INK_SAMPLES_PER_BOX
    q_end = float(np.median(ends))
    x_end_mm = layout.seconds_to_mm(layout.RECORD_SECONDS)
    # sample q covers x_mm = (q + 0.5) * mm_per - box / 2 - box * di
    return int(round(((q_end + 0.5) * mm_per - layout.LARGE_GRID_MM / 2 - x_end_mm) / layout.LARGE_GRID_MM))


def _relative_of_absolute(code: int, dj: int, di: int, nm: int, nk: int):
    """Affine integer map from absolute (j, i) to relative window index (row, col)."""
    rows = np.arange(nm, dtype=np.float64)[:, None] * np.ones((1, nk))
    cols = np.ones((nm, 1)) * np.arange(nk, dtype=np.float64)[None, :]
    ru = layout.undo_orientation(rows, code)
    cu = layout.undo_orientation(cols, code)
    hb, wb = ru.shape
    A, B = np.meshgrid(np.arange(wb, dtype=np.float64), np.arange(hb, dtype=np.float64))  # A=col b, B=row a
    # upright box (a, b) = (j + dj, i + di)
    design = np.stack([np.ones(A.size), B.ravel() - dj, A.ravel() - di], axis=1)  # [1, j, i]
    coef_r = np.linalg.lstsq(design, ru.ravel(), rcond=None)[0]
    coef_c = np.linalg.lstsq(design, cu.ravel(), rcond=None)[0]
    return np.round(coef_r), np.round(coef_c)


def _page_node_field(model: GridModel, code: int, dj: int, di: int, swx: float, swy: float):
    """(node field (44 + 2m, 57 + 2m, 2) in original image px, page nodes detected (44, 57))."""
    nm, nk = model.found.shape
    coef_r, coef_c = _relative_of_absolute(code, dj, di, nm, nk)
    m = NODE_MARGIN
    JJ, II = np.meshgrid(np.arange(-m, N_ROWS + m, dtype=np.float64), np.arange(-m, N_COLS + m, dtype=np.float64),
                         indexing="ij")
    rr = coef_r[0] + coef_r[1] * JJ + coef_r[2] * II
    cc = coef_c[0] + coef_c[1] * JJ + coef_c[2] * II
    node_w = model.at(cc + model.k0, rr + model.m0)
    node_field = np.empty_like(node_w)
    node_field[..., 0] = (node_w[..., 0] + 0.5) / swx - 0.5
    node_field[..., 1] = (node_w[..., 1] + 0.5) / swy - 0.5
    ri = rr[m:m + N_ROWS, m:m + N_COLS].astype(int)
    ci = cc[m:m + N_ROWS, m:m + N_COLS].astype(int)
    inwin = (ri >= 0) & (ri < nm) & (ci >= 0) & (ci < nk)
    found = np.zeros((N_ROWS, N_COLS), bool)
    found[inwin] = model.found[ri[inwin], ci[inwin]]
    return node_field, found


def _grid_model(rgb: np.ndarray, lat_full: Lattice, from_chroma: bool, mask1: Optional[np.ndarray],
                work_px_per_box: float, timings: Dict[str, float]):
    """(model, darkness, grid feature, (swx, swy)) of the image refined from `lat_full` (original
    pixels) at the working resolution of its box size."""
    t0 = time.perf_counter()
    h, w = rgb.shape[:2]
    box_full = _box_px(lat_full)
    sw = min(1.0, work_px_per_box / box_full, np.sqrt(MAX_WORK_PIXELS / (h * w)))
    work = cv2.resize(rgb, (max(1, round(w * sw)), max(1, round(h * sw))), interpolation=cv2.INTER_AREA) \
        if sw < 1 else rgb
    swx, swy = work.shape[1] / w, work.shape[0] / h
    dark, chroma = _features(work)
    mask_w = None
    if mask1 is not None:
        mask_w = cv2.resize(mask1.astype(np.uint8), (work.shape[1], work.shape[0]),
                            interpolation=cv2.INTER_NEAREST).astype(bool)
    feat = _clip_at_percentile(chroma if from_chroma else dark, CLIP_PCT[from_chroma], mask_w)
    feat = cv2.GaussianBlur(feat, (0, 0), 0.8)
    lat_w = Lattice((lat_full.origin + 0.5) * np.array([swx, swy]) - 0.5, lat_full.a * np.array([swx, swy]),
                    lat_full.b * np.array([swx, swy]), lat_full.strength)
    timings["features"] = timings.get("features", 0.0) + time.perf_counter() - t0
    t0 = time.perf_counter()
    # grow from the page centre; under strong perspective (the pitch differs by up to a third
    # across the page) from where the lattice was measured, the only place where it holds
    bounds = None
    if mask_w is not None:  # the page's box (with a margin of a few boxes): the window need not cover the room
        ys, xs = np.nonzero(mask_w[::4, ::4])
        pad = 3 * _box_px(lat_w)
        bounds = (max(0.0, xs.min() * 4 - pad), max(0.0, ys.min() * 4 - pad),
                  min(work.shape[1] - 1.0, xs.max() * 4 + pad), min(work.shape[0] - 1.0, ys.max() * 4 + pad))
    if lat_full.local:
        centre = lat_w.origin
    elif mask_w is not None:
        centre = np.array([xs.mean() * 4, ys.mean() * 4])
    else:
        centre = np.array([(work.shape[1] - 1) / 2.0, (work.shape[0] - 1) / 2.0])
    model = _refine(feat, lat_w, centre, bounds=bounds)
    timings["refine"] = timings.get("refine", 0.0) + time.perf_counter() - t0
    return model, dark, feat, (swx, swy)


def _box_divisions(feat: np.ndarray, model: "GridModel", S: int = 30, max_nodes: int = 150) -> Tuple[int, int]:
    """(div_a, div_b): how many boxes (1 or 2) one step of the model spans along a (k) and b (m).

    Lines as strong as the stepped ones half-way between them mean 2 boxes per step (thirds are
    not tested: a third of a 3-box step is only 1/3 mm from a small-grid line). Read from the
    feature sampled in lattice space over up to `max_nodes` found nodes, profiles across each
    family averaged over them."""
    jj, kk = np.nonzero(model.found)
    if jj.size < 12:
        return 1, 1
    pick = np.linspace(0, jj.size - 1, min(jj.size, max_nodes)).astype(int)
    m = (jj[pick] + model.m0).astype(np.float64)
    k = (kk[pick] + model.k0).astype(np.float64)
    u = np.arange(S) / S
    K = k[:, None, None] + u[None, None, :] + 0.0 * u[None, :, None]
    M = m[:, None, None] + u[None, :, None] + 0.0 * u[None, None, :]
    xy = model.at(K, M).astype(np.float32)  # (n, S along m, S along k, 2)
    n = len(pick)
    samp = cv2.remap(feat, xy[..., 0].reshape(n * S, S), xy[..., 1].reshape(n * S, S), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0).reshape(n, S, S)
    out = []
    for prof in (np.median(samp.mean(axis=1), axis=0), np.median(samp.mean(axis=2), axis=0)):  # across a, across b
        base = float(np.median(prof))
        top = float(max(prof[-1], prof[0], prof[1])) - base
        half = float(prof[S // 2 - 1:S // 2 + 2].max()) - base
        out.append(2 if top > 0 and half >= SPLIT_LINE_RATIO * top else 1)
    if _DEBUG:
        print("box divisions", out)
    return out[0], out[1]


def _local_lattice(model: "GridModel", div: Tuple[int, int], swx: float, swy: float) -> Lattice:
    """The model's local affine lattice at its central found node, steps divided by `div`, in
    original pixels (local: refinement grows from its origin)."""
    jj, kk = np.nonzero(model.found)
    c = int(np.argmin((jj - jj.mean()) ** 2 + (kk - kk.mean()) ** 2))
    k0, m0 = float(kk[c] + model.k0), float(jj[c] + model.m0)
    pts = model.at(np.array([k0, k0 + 1.0, k0]), np.array([m0, m0, m0 + 1.0]))
    sc = np.array([swx, swy])
    pts = (pts + 0.5) / sc - 0.5
    return Lattice(pts[0], (pts[1] - pts[0]) / div[0], (pts[2] - pts[0]) / div[1], 1.0, True)


# -------------------------------------------------------------------------------------------------
# Soundness of the node field
# -------------------------------------------------------------------------------------------------
# Where the grid model holds only part of the page, the rest is extrapolated from it: over a fold,
# a tear or moire this goes wrong by millimetres (or whole boxes) while the nodes that were found
# fit it well. Calibrated on seeds 9100/9200/9600/9800, types 0005/0006/0009/0010/0012 (8 each):
# pages read within 0.6 mm had >= 0.40 of their page nodes in view found and <= 0.24 of the trace
# area more than 5 boxes from a found node; the broken 0010 fields (1.6 .. 190 mm) had 0.27 .. 0.39
# found, or 0.55 of the trace area far from any found node. On seeds 9300/9400/9500 (not tuned on) it
# cost 2 of 49 usable good pages (0010 with 0.34 / 0.38 found, 0.4 mm) and refused 1 of 3 bad ones (the
# others: wrong anchors or orientation on a sound field, and a slip of one box between found parts).
FOUND_SHARE_RAMP = (0.36, 0.50)  # share of page nodes in view found: factor 0 at the first, 1 at the second
FAR_FROM_FOUND_BOXES = 5.0  # a trace-area node this far (in boxes) from a found node is extrapolated far
FAR_SHARE_RAMP = (0.30, 0.50)  # share of the trace area extrapolated far: factor 1 at the first, 0 at the second
TRACE_AREA_PAD_MM = (25.0, 10.0)  # the trace area: this far above the first baseline, below the last


def _trace_area_nodes() -> np.ndarray:
    """(N_ROWS, N_COLS) bool: page nodes of the area the traces are printed in (standard layout)."""
    base = layout.STANDARD_3X4.baselines_y_mm
    j0 = int(np.floor((min(base) - TRACE_AREA_PAD_MM[0]) / layout.LARGE_GRID_MM))
    j1 = int(np.ceil((max(base) + TRACE_AREA_PAD_MM[1]) / layout.LARGE_GRID_MM))
    i0 = int(np.floor(float(layout.seconds_to_mm(0.0)) / layout.LARGE_GRID_MM))
    i1 = int(np.ceil(float(layout.seconds_to_mm(layout.RECORD_SECONDS)) / layout.LARGE_GRID_MM))
    area = np.zeros((N_ROWS, N_COLS), bool)
    area[max(j0, 0):min(j1, N_ROWS - 1) + 1, max(i0, 0):min(i1, N_COLS - 1) + 1] = True
    return area


def field_soundness(nodes: np.ndarray, found: np.ndarray, width: int, height: int) -> Tuple[float, float, float]:
    """(factor 0..1, share of page nodes in view found, share of the trace area in view extrapolated
    far) of a page node field `nodes` (N_ROWS, N_COLS, 2) in image px with its `found` mask."""
    inview = np.isfinite(nodes).all(-1) & (nodes[..., 0] >= 0) & (nodes[..., 0] <= width - 1) & \
        (nodes[..., 1] >= 0) & (nodes[..., 1] <= height - 1)
    if not inview.any():
        return 0.0, 0.0, 1.0
    share = float((found & inview).sum() / inview.sum())
    dist = ndimage.distance_transform_edt(~found) if found.any() else np.full(found.shape, np.inf)
    area = _trace_area_nodes() & inview
    far = float((dist[area] > FAR_FROM_FOUND_BOXES).mean()) if area.any() else 1.0
    f_share = np.clip((share - FOUND_SHARE_RAMP[0]) / (FOUND_SHARE_RAMP[1] - FOUND_SHARE_RAMP[0]), 0.0, 1.0)
    f_far = np.clip((FAR_SHARE_RAMP[1] - far) / (FAR_SHARE_RAMP[1] - FAR_SHARE_RAMP[0]), 0.0, 1.0)
    return float(f_share * f_far), share, far


# -------------------------------------------------------------------------------------------------
# Entry
# -------------------------------------------------------------------------------------------------
def _doubt_unconfirmed_anchors(results: list, box_px: float) -> list:
    """`results` (score, n_found, model, dark, (swx, swy), oa) with the margin of every reading
    whose anchor no trace end confirms cut to CROSS_LOOK_MARGIN where another look, in the same
    orientation, has its template's own anchor confirmed by rows' trace ends (`ends_confirm`) and
    puts the page elsewhere (its middle node over half a box away). Under moire the template can
    prefer a shift by a whole lead column (12 boxes: the labels land on the next column's) and look
    sure of it, in the one look that sees no trace end."""
    def centre(q):
        _, _, model, _, (swx, swy), oa = q
        field, _ = _page_node_field(model, oa.code, oa.dj, oa.di, swx, swy)
        return field[NODE_MARGIN + N_ROWS // 2, NODE_MARGIN + N_COLS // 2]

    confirmed = [(q[5].code, centre(q)) for q in results if q[5].ends_confirm]
    out = []
    for q in results:
        oa = q[5]
        others = [c for code, c in confirmed if code == oa.code] if not oa.ends_confirm else []
        if others:
            mine = centre(q)
            if max(np.linalg.norm(c - mine) for c in others) > 0.5 * box_px:
                if _DEBUG:
                    print("anchor unconfirmed where another look's trace ends put the page elsewhere")
                oa = oa._replace(margin=min(oa.margin, CROSS_LOOK_MARGIN))
        out.append(q[:5] + (oa,))
    return out


def _anchor_confidence(n_found: int, margin: float, score: float) -> float:
    """Confidence in a grid model's placement on the page: enough nodes, a clear orientation and
    time anchor, a good layout match (each factor 1 from its 'sure' level on)."""
    return (min(1.0, n_found / GOOD_NODE_COUNT) * min(1.0, max(margin, 0.0))
            * min(1.0, max(score, 0.0) / FULL_LAYOUT_SCORE))


def _reject(rgb: np.ndarray, reason: str, timings: Dict[str, float], interpolation: int) -> Rectification:
    return rejected_rectification(rgb, reason, timings, "classical", interpolation)


def rectify_classical(image: np.ndarray, *, interpolation: int = cv2.INTER_LINEAR,
                      work_px_per_box: float = WORK_PX_PER_BOX) -> Rectification:
    rgb = as_rgb_uint8(image)
    timings: Dict[str, float] = {}
    h, w = rgb.shape[:2]
    too_small = too_small_reason(rgb, MIN_IMAGE_SIDE)
    if too_small:
        return _reject(rgb, too_small, timings, interpolation)
    # --- pass 1: lattice on a small copy
    t0 = time.perf_counter()
    s1 = min(1.0, PASS1_LONG_SIDE / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * s1)), max(1, round(h * s1))), interpolation=cv2.INTER_AREA) \
        if s1 < 1 else rgb
    s1x, s1y = small.shape[1] / w, small.shape[0] / h
    mask1 = _page_mask(small)
    # a page that fills a small part of a photo is looked at again, cropped, at the same size:
    # a 1 mm grid of a few pixels aliases (and a screen's moire beats) far less at twice the scale
    ox, oy = 0.0, 0.0
    look, look_mask = small, mask1
    min_page_fraction, page_axis_deg = PAGE_FRACTION_RANGE[0], None
    box = _page_crop_box(mask1) if mask1 is not None else None
    if box is not None:
        x0, y0 = int(box[0] / s1x), int(box[1] / s1y)
        x1, y1 = int(np.ceil(box[2] / s1x)), int(np.ceil(box[3] / s1y))
        crop = rgb[y0:y1, x0:x1]
        sc = min(1.0, PASS1_LONG_SIDE / max(crop.shape[:2]))
        look = cv2.resize(crop, (max(1, round(crop.shape[1] * sc)), max(1, round(crop.shape[0] * sc))),
                          interpolation=cv2.INTER_AREA) if sc < 1 else crop
        look_mask = cv2.resize(mask1[int(y0 * s1y):int(np.ceil(y1 * s1y)), int(x0 * s1x):int(np.ceil(x1 * s1x))]
                               .astype(np.uint8), (look.shape[1], look.shape[0]),
                               interpolation=cv2.INTER_NEAREST).astype(bool)
        ox, oy = float(x0), float(y0)
        s1x, s1y = look.shape[1] / crop.shape[1], look.shape[0] / crop.shape[0]
        min_page_fraction = CROPPED_PAGE_FRACTION_MIN
        page_axis_deg = _page_axis_deg(look_mask)
    dark1, chroma1 = _features(look)
    cands = []
    for from_chroma, feat in ((True, chroma1), (False, dark1)):
        fc = _clip_at_percentile(feat, CLIP_PCT[from_chroma], look_mask)
        if fc.max() <= 0:
            continue
        lat = _estimate_lattice(fc, min_page_fraction, page_axis_deg)
        if lat is not None:
            cands.append((lat.strength, from_chroma, lat))
    timings["lattice"] = time.perf_counter() - t0
    if not cands:
        return _reject(rgb, "no periodic grid found", timings, interpolation)
    cands.sort(key=lambda c: -c[0])
    strength, from_chroma, lat1 = cands[0]
    if strength < 0.05:
        return _reject(rgb, f"no periodic grid found (periodicity {strength:.3f})", timings, interpolation)
    # --- working resolution, refinement, orientation + absolute indices. Lattice hypotheses that
    # refine about equally well (the two features disagreeing, under moire or a faint family; a
    # step spanning 2 or 3 boxes) are told apart by how well the page layout matches them.
    tries = [cands[0]]
    if len(cands) > 1 and _lattices_differ(cands[0][2], cands[1][2]):
        tries.append(cands[1])
    results = []  # (score, n_found, model, dark, (swx, swy), oa)
    n_best = 0

    def attempt(from_chroma: bool, lat1: Lattice, wpx: float) -> bool:
        """Refine and anchor one lattice hypothesis at `wpx` px per box; True when it matches well."""
        nonlocal n_best
        lat_full = Lattice((lat1.origin + 0.5) / np.array([s1x, s1y]) - 0.5 + np.array([ox, oy]),
                           lat1.a / np.array([s1x, s1y]), lat1.b / np.array([s1x, s1y]), lat1.strength, lat1.local)
        if _DEBUG:
            print("lattice (full px)", lat_full.a.round(2), lat_full.b.round(2), "chroma" if from_chroma else "dark",
                  "crop", (ox, oy), "px/box", wpx)
        model, dark, feat, sw = _grid_model(rgb, lat_full, from_chroma, mask1, wpx, timings)
        if model is None or model.found.sum() < MIN_FOUND_NODES:
            n_best = max(n_best, 0 if model is None else int(model.found.sum()))
            return False
        hyps = [(model, dark, sw)]
        div = _box_divisions(feat, model)
        split_box = _box_px(lat_full) / np.sqrt(div[0] * div[1])
        if div != (1, 1) and split_box >= PAGE_FRACTION_RANGE[0] * max(h, w) / (layout.LETTER.width_mm / layout.LARGE_GRID_MM):
            model2, dark2, _, sw2 = _grid_model(rgb, _local_lattice(model, div, *sw), from_chroma, mask1, wpx, timings)
            if model2 is not None and model2.found.sum() >= MIN_FOUND_NODES:
                hyps.append((model2, dark2, sw2))
        good = False
        for mdl, drk, sw_ in hyps:
            t0 = time.perf_counter()
            oa = _orient_and_anchor(drk, mdl)
            timings["orientation"] = timings.get("orientation", 0.0) + time.perf_counter() - t0
            if oa is not None:
                results.append((oa.score, int(mdl.found.sum()), mdl, drk, sw_, oa))
                good |= oa.score >= GOOD_LAYOUT_SCORE and int(mdl.found.sum()) >= GOOD_NODE_COUNT
                if _DEBUG:
                    print("hypothesis: layout score", round(oa.score, 3), "found", int(mdl.found.sum()))
        return good

    good = False
    for _, from_chroma, lat1 in tries:
        if attempt(from_chroma, lat1, work_px_per_box):
            good = True
            break  # a well-matched page: the other feature's lattice is not needed
    if not good and tries[0][2].centre_in_doubt:
        # the growth started from the other place (page middle or the lattice's own origin)
        lat_other = dataclasses.replace(tries[0][2], local=not tries[0][2].local)
        good = attempt(tries[0][1], lat_other, work_px_per_box)
    if not good:
        # more looks at coarser working resolutions: screen pixels, moire and fine print texture
        # blur away there (and a refinement stuck on them may grow through)
        for factor in RETRY_WORK_FACTORS:
            if attempt(tries[0][1], tries[0][2], factor * work_px_per_box):
                break
    if not results:
        if n_best < MIN_FOUND_NODES:
            return _reject(rgb, f"too few grid nodes found ({n_best} < {MIN_FOUND_NODES})", timings, interpolation)
        return _reject(rgb, "grid found but no traces (blank page?)", timings, interpolation)
    results = _doubt_unconfirmed_anchors(results, _box_px(tries[0][2]) / min(s1x, s1y))
    # the hypothesis we are surest of: the layout score alone is nearly flat along time (the bands
    # slide along the traces), so one whose anchor the trace ends confirm beats a slightly
    # better-scored one they do not (a photo's second look at 0.75x read 3 row ends 4 boxes
    # from where the first look's template put the 10 s line)
    _, _, model, dark, (swx, swy), oa = max(results, key=lambda q: (_anchor_confidence(q[1], q[5].margin, q[0]), q[0], q[1]))

    def place(oa):
        """The page node field, found mask, confidence and reasons of reading `oa`, or why the
        reading places too few nodes on the page (str)."""
        code, dj, di, score, margin, ink_total, foreign_rows, _ = oa
        # after the choice of hypothesis (it changes the confidence, never the reading), and only on a
        # well-found grid: where few nodes are found the rows may be off anyway, and a gridless page's
        # stray "grid" must leave the way open to the gridless reading
        foreign_rows = foreign_rows if int(model.found.sum()) >= GOOD_NODE_COUNT else 0
        if foreign_rows:
            margin = min(margin, FOREIGN_LAYOUT_MARGIN)
        node_field, found = _page_node_field(model, code, dj, di, swx, swy)
        n_found = int(found.sum())
        outside = int(model.found.sum()) - n_found
        if n_found < MIN_PAGE_NODES:  # a few scattered "nodes" (a grid lost to a harsh threshold, mould, moire)
            return f"too few page grid nodes found ({n_found} < {MIN_PAGE_NODES})"
        m = NODE_MARGIN
        sound, share, far = field_soundness(node_field[m:m + N_ROWS, m:m + N_COLS], found, w, h)
        conf = _anchor_confidence(n_found, margin, score) * sound
        reasons = []
        if sound < 1.0:
            reasons.append(f"node field unsound (factor {sound:.2f}: {share:.2f} of the page nodes in view found, "
                           f"{far:.2f} of the trace area over {FAR_FROM_FOUND_BOXES:g} boxes from a found node)")
        if n_found < GOOD_NODE_COUNT:
            reasons.append(f"only {n_found} page grid nodes detected")
        if margin < 1.0:
            reasons.append(f"orientation or anchor uncertain (margin {margin:.3f})")
        if foreign_rows:
            reasons.append(foreign_layout_reason(foreign_rows))
        if score < FULL_LAYOUT_SCORE:
            reasons.append(f"weak layout match (score {score:.3f})")
        if outside > 0.1 * max(model.found.sum(), 1):
            reasons.append(f"{outside} detected nodes fall outside the page grid")
        return node_field, found, code, conf, reasons

    placed = place(oa)
    if isinstance(placed, str):
        return _reject(rgb, placed, timings, interpolation)
    node_field, found, code, conf, reasons = placed
    if (conf < USABLE_CONFIDENCE and code != 0 and oa.score < NOT_UPRIGHT_MIN_SCORE and not oa.ends_confirm
            and not (code % 2 == 1 and page_mask_is_portrait(mask1))):
        # a page not to be read whose turned or mirrored reading matched the layout this weakly (a
        # lattice locked onto moire): its orientation is a guess, and most pages are upright -
        # unless the rows end at that reading's own 10 s line (its template put the layout where
        # the traces are), or the sheet's outline stands portrait and the reading is turned a quarter
        upright = _orient_and_anchor(dark, model, codes=(0,))
        placed_up = place(upright) if upright is not None else None
        if isinstance(placed_up, tuple):
            node_field, found, code, conf_up, reasons_up = placed_up
            conf = min(conf, conf_up)
            reasons = reasons_up + [f"read upright: the best reading (code {oa.code}) matched the layout weakly"]
    return build_rectification(rgb, node_field, found, code, conf, "; ".join(reasons), timings, "classical",
                               interpolation)
