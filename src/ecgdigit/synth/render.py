"""The clean paper page: grid, traces, lead labels, calibration pulses, separators and header.

Page pixels are paper millimetres times dpi / 25.4 (pixel centre k at coordinate k); the
canonical frame is also linear in millimetres, so page <- canonical is an exact axis-aligned
affine map (`page_from_canonical`). Every label of a RenderedPage is in page pixels.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ecgdigit.layout import (
    DEFAULT_DPI,
    GAIN_MM_PER_MV,
    KEYPOINT_NAMES,
    LARGE_GRID_MM,
    LETTER,
    RECORD_SECONDS,
    RHYTHM_LEAD,
    SMALL_GRID_MM,
    STANDARD_3X4,
    LeadPlacement,
    PaperLayout,
    PaperSize,
    canonical_to_mm,
    grid_node_mm,
    mm_to_pixels,
    seconds_to_mm,
)
from ecgdigit.synth.traces import DRAW_SHIFT, canonical_trace_paths, to_cv_points

RGB = Tuple[int, int, int]

# Grid colour families: (large-line colour, small-line colour) on white paper.
GRID_COLOURS: Dict[str, Tuple[RGB, RGB]] = {
    "red": ((222, 60, 60), (240, 150, 150)),
    "pink": ((240, 130, 160), (248, 190, 205)),
    "orange": ((235, 130, 50), (245, 190, 140)),
    "blue": ((80, 120, 220), (160, 185, 240)),
    "green": ((60, 160, 90), (150, 210, 165)),
    "grey": ((120, 120, 120), (185, 185, 185)),
    "none": ((255, 255, 255), (255, 255, 255)),
}
GRID_WEIGHTS = {"red": 0.3, "pink": 0.2, "orange": 0.1, "blue": 0.1, "green": 0.08, "grey": 0.14, "none": 0.08}
# Fonts shipped with matplotlib (an installed package), so no font files travel with ecgdigit.
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "cmr10.ttf",
)


@functools.lru_cache(maxsize=None)
def _font_dir() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


@functools.lru_cache(maxsize=256)
def _font(name: str, size_px: int):
    from PIL import ImageFont

    return ImageFont.truetype(os.path.join(_font_dir(), name), size_px)


@dataclass(frozen=True)
class PageStyle:
    """How a page looks. `sample_style` draws one; every field can be set by hand."""

    paper_rgb: RGB = (255, 255, 255)
    grid: str = "red"  # a key of GRID_COLOURS
    grid_large_rgb: RGB = GRID_COLOURS["red"][0]
    grid_small_rgb: RGB = GRID_COLOURS["red"][1]
    grid_large_width_px: float = 1.6
    grid_small_width_px: float = 0.8
    grid_large_strength: float = 1.0  # opacity of the large lines
    grid_small_strength: float = 0.8
    trace_rgb: RGB = (0, 0, 0)
    trace_width_px: float = 1.2
    label_font: str = "DejaVuSans.ttf"
    label_size_mm: float = 4.0
    label_rgb: RGB = (0, 0, 0)
    label_dx_mm: float = -0.5  # text left edge relative to its node
    label_dy_mm: float = 0.0  # text vertical centre relative to its node
    header: bool = True
    header_font: str = "DejaVuSans.ttf"
    header_size_mm: float = 3.0
    calibration: bool = True
    separators: bool = True


def sample_style(rng: np.random.Generator, **overrides) -> PageStyle:
    """Draw a random page style; keywords fix any field of PageStyle."""
    names = list(GRID_WEIGHTS)
    w = np.array([GRID_WEIGHTS[n] for n in names])
    grid = names[rng.choice(len(names), p=w / w.sum())]
    large, small = GRID_COLOURS[grid]
    shade = rng.uniform(-25, 15, 3)  # vary the tone within the family
    large = tuple(int(np.clip(c + shade[k], 0, 255)) for k, c in enumerate(large))
    small = tuple(int(np.clip(c + shade[k] * 0.5, 0, 255)) for k, c in enumerate(small))
    paper = (255, 255, 255) if rng.random() < 0.6 else tuple(int(v) for v in 255 - rng.uniform(0, 12, 3))
    if rng.random() < 0.8:
        trace = (0, 0, 0) if rng.random() < 0.6 else tuple(int(v) for v in rng.integers(0, 70, 3))
    else:  # coloured ink
        trace = [(10, 20, 120), (20, 60, 20), (90, 10, 10), (40, 40, 40)][rng.integers(4)]
    font = FONT_FILES[rng.integers(len(FONT_FILES))]
    style = PageStyle(
        paper_rgb=paper,
        grid=grid,
        grid_large_rgb=large,
        grid_small_rgb=small,
        grid_large_width_px=float(rng.uniform(0.9, 2.2)),
        grid_small_width_px=float(rng.uniform(0.4, 1.1)),
        grid_large_strength=float(rng.uniform(0.7, 1.0)),
        grid_small_strength=float(rng.uniform(0.4, 0.9)),
        trace_rgb=tuple(int(v) for v in trace),
        trace_width_px=float(rng.uniform(0.5, 2.5)),
        label_font=font,
        label_size_mm=float(rng.uniform(3.0, 5.0)),
        label_rgb=tuple(int(v) for v in trace) if rng.random() < 0.7 else (0, 0, 0),
        label_dx_mm=float(rng.uniform(-1.0, -0.2)),
        label_dy_mm=float(rng.uniform(-0.8, 0.8)),
        header=bool(rng.random() < 0.85),
        header_font=FONT_FILES[rng.integers(len(FONT_FILES))] if rng.random() < 0.5 else font,
        header_size_mm=float(rng.uniform(2.2, 3.5)),
        calibration=bool(rng.random() < 0.7),
        separators=bool(rng.random() < 0.8),
    )
    return replace(style, **overrides)


@dataclass
class LeadPixelPath:
    """One printed segment in page pixels (same samples as the canonical TracePath)."""

    placement: LeadPlacement
    start: int
    stop: int
    xy: np.ndarray  # (stop - start, 2) float64 page (x, y)

    @property
    def lead(self) -> str:
        return self.placement.lead


@dataclass
class RenderedPage:
    """A clean page and its exact labels, all in page pixel coordinates (x, y)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    keypoints: np.ndarray  # (13, 2) in KEYPOINT_NAMES order; NaN where the layout has no such label
    grid_nodes: np.ndarray  # (n_horizontal_lines, n_vertical_lines, 2): node (j, i)
    lead_paths: List[LeadPixelPath]
    page_from_canonical: np.ndarray  # 3x3 affine: page_xy1 = M @ canonical_xy1
    dpi: float
    paper: PaperSize
    layout: PaperLayout
    style: PageStyle
    fs: float
    header_lines: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def keypoint_names(self) -> Tuple[str, ...]:
        return KEYPOINT_NAMES


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------
def page_from_canonical_matrix(dpi: float = DEFAULT_DPI) -> np.ndarray:
    """3x3 affine matrix taking canonical pixels to page pixels at `dpi` (exact, axis-aligned)."""
    x0_mm, y0_mm = canonical_to_mm(0.0, 0.0)
    x1_mm, y1_mm = canonical_to_mm(1.0, 1.0)
    sx = float(mm_to_pixels(x1_mm - x0_mm, dpi))
    sy = float(mm_to_pixels(y1_mm - y0_mm, dpi))
    return np.array([[sx, 0.0, float(mm_to_pixels(x0_mm, dpi))],
                     [0.0, sy, float(mm_to_pixels(y0_mm, dpi))],
                     [0.0, 0.0, 1.0]])


def apply_affine(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    return xy @ matrix[:2, :2].T + matrix[:2, 2]


def page_grid_nodes(paper: PaperSize = LETTER, dpi: float = DEFAULT_DPI) -> np.ndarray:
    """Large-grid node (j, i) in page pixels, (n_horizontal, n_vertical, 2)."""
    jj, ii = np.meshgrid(np.arange(paper.grid_horizontal_lines), np.arange(paper.grid_vertical_lines), indexing="ij")
    x_mm, y_mm = grid_node_mm(jj, ii)
    return np.stack([mm_to_pixels(x_mm, dpi), mm_to_pixels(y_mm, dpi)], axis=-1)


def keypoint_placements(layout: PaperLayout) -> List[Optional[int]]:
    """For each of KEYPOINT_NAMES, the index into layout.placements carrying that label (or None).

    A lead printed both as a segment and as a full-length strip keys the segment; the strip of
    the rhythm lead is the 'II-rhythm' keypoint.
    """
    placements = layout.placements
    out: List[Optional[int]] = []
    for name in KEYPOINT_NAMES[:-1]:
        ks = [k for k, p in enumerate(placements) if p.lead == name]
        short = [k for k in ks if placements[k].duration < RECORD_SECONDS]
        out.append((short or ks or [None])[0])
    rhythm = [k for k, p in enumerate(placements) if p.lead == RHYTHM_LEAD and p.duration >= RECORD_SECONDS
              and len(layout.placements_of(RHYTHM_LEAD)) > 1]
    out.append(rhythm[0] if rhythm else None)
    return out


# ---------------------------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------------------------
def _line_profile(n: int, positions: np.ndarray, width: float) -> np.ndarray:
    """Coverage (0..1) of pixels 0..n-1 by lines of `width` px centred at `positions`."""
    prof = np.zeros(n, dtype=np.float32)
    half = width / 2.0
    reach = int(np.ceil(half + 1))
    offs = np.arange(-reach, reach + 1)
    pix = np.round(positions).astype(np.int64)[:, None] + offs[None, :]
    lo = np.maximum(pix - 0.5, positions[:, None] - half)
    hi = np.minimum(pix + 0.5, positions[:, None] + half)
    cov = np.clip(hi - lo, 0.0, 1.0)
    ok = (pix >= 0) & (pix < n)
    np.maximum.at(prof, pix[ok], cov[ok].astype(np.float32))
    return prof


def _grid_image(style: PageStyle, paper: PaperSize, dpi: float) -> np.ndarray:
    """Paper with its 1 mm / 5 mm grid, uint8 (H, W, 3).

    Rows crossed by no horizontal line all equal one base row (the vertical lines over paper), so
    only the rows a horizontal line touches are computed in full.
    """
    w, h = paper.pixels(dpi)
    paper_rgb = np.asarray(style.paper_rgb, dtype=np.float32)
    if style.grid == "none":
        img = np.empty((h, w, 3), dtype=np.uint8)
        img[:] = np.asarray(style.paper_rgb, dtype=np.uint8)
        return img
    n_small_x = int(np.ceil(paper.width_mm / SMALL_GRID_MM)) + 1
    n_small_y = int(np.ceil(paper.height_mm / SMALL_GRID_MM)) + 1
    xs = mm_to_pixels(np.arange(n_small_x) * SMALL_GRID_MM, dpi)
    ys = mm_to_pixels(np.arange(n_small_y) * SMALL_GRID_MM, dpi)
    ratio = int(round(LARGE_GRID_MM / SMALL_GRID_MM))
    ax_s = _line_profile(w, xs, style.grid_small_width_px) * style.grid_small_strength
    ay_s = _line_profile(h, ys, style.grid_small_width_px) * style.grid_small_strength
    ax_l = _line_profile(w, xs[::ratio], style.grid_large_width_px) * style.grid_large_strength
    ay_l = _line_profile(h, ys[::ratio], style.grid_large_width_px) * style.grid_large_strength
    c_s = np.asarray(style.grid_small_rgb, dtype=np.float32)
    c_l = np.asarray(style.grid_large_rgb, dtype=np.float32)

    def colour(a_s, a_l):  # small lines over paper, then large lines over that
        c = paper_rgb + a_s[..., None] * (c_s - paper_rgb)
        return c + a_l[..., None] * (c_l - c)

    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = np.clip(colour(ax_s, ax_l) + 0.5, 0, 255).astype(np.uint8)[None]
    rows = np.flatnonzero((ay_s > 0) | (ay_l > 0))
    a_s = 1.0 - (1.0 - ay_s[rows, None]) * (1.0 - ax_s[None, :])  # union of vertical and horizontal lines
    a_l = 1.0 - (1.0 - ay_l[rows, None]) * (1.0 - ax_l[None, :])
    img[rows] = np.clip(colour(a_s, a_l) + 0.5, 0, 255).astype(np.uint8)
    return img


def _blend_alpha(img: np.ndarray, alpha_u8: np.ndarray, colour: Sequence[int], gain: float = 1.0,
                 y0: int = 0, x0: int = 0) -> None:
    """img[y0:, x0:] <- blend towards `colour` with alpha_u8/255*gain (in place, clipped to img)."""
    h, w = alpha_u8.shape
    H, W = img.shape[:2]
    ya, yb = max(y0, 0), min(y0 + h, H)
    xa, xb = max(x0, 0), min(x0 + w, W)
    if ya >= yb or xa >= xb:
        return
    a = alpha_u8[ya - y0:yb - y0, xa - x0:xb - x0]
    sel = np.nonzero(a)
    if sel[0].size == 0:
        return
    region = img[ya:yb, xa:xb]
    av = (a[sel].astype(np.float32) * (gain / 255.0))[:, None]
    old = region[sel].astype(np.float32)
    region[sel] = (old + av * (np.asarray(colour, dtype=np.float32) - old) + 0.5).astype(np.uint8)


def _text_mask(text: str, font_name: str, size_px: int) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """Rendered text as uint8 alpha (h, w) and its ink box (left, top, right, bottom) in that mask."""
    from PIL import Image, ImageDraw

    font = _font(font_name, max(int(size_px), 6))
    l, t, r, b = font.getbbox(text)
    im = Image.new("L", (max(r - l, 1), max(b - t, 1)), 0)
    ImageDraw.Draw(im).text((-l, -t), text, fill=255, font=font)
    return np.asarray(im), (0, 0, r - l, b - t)


def _draw_text(img: np.ndarray, text: str, font_name: str, size_px: float, colour: RGB,
               left: float, top: Optional[float] = None,
               v_centre: Optional[float] = None) -> Tuple[float, float, float, float]:
    """Draw `text` with its ink box's left edge at `left` and its top (or vertical centre) as given.

    Returns the ink box (x0, y0, x1, y1) in page pixels.
    """
    mask, (_, _, w, h) = _text_mask(text, font_name, int(round(size_px)))
    x0 = int(round(left))
    y0 = int(round(top if top is not None else v_centre - h / 2.0))
    _blend_alpha(img, mask, colour, 1.0, y0, x0)
    return (x0, y0, x0 + w, y0 + h)


def _fake_header(rng: np.random.Generator, fs: float, params=None) -> Tuple[List[str], str]:
    """Patient-like header lines and a speed/gain line (invented; intervals from `params` when given)."""
    first = ["J.", "M.", "A.", "R.", "S.", "K.", "L.", "D.", "P."][rng.integers(9)]
    last = ["Smith", "Garcia", "Müller", "Rossi", "Novak", "Tanaka", "Dubois", "Silva", "Kowalski",
            "Jensen", "Okafor", "Patel"][rng.integers(12)]
    sex = "M" if rng.random() < 0.5 else "F"
    y, mo, d = rng.integers(1989, 2024), rng.integers(1, 13), rng.integers(1, 29)
    hh, mm, ss = rng.integers(0, 24), rng.integers(0, 60), rng.integers(0, 60)
    if params is not None:
        rate = int(round(params.heart_rate))
        pr = int(round(1000 * (params.pr_interval + 0.04)))
        qrs = int(round(90 * params.qrs_width))
        qtc = int(round(1000 * params.qtc))
        qt = int(round(qtc * np.sqrt(60.0 / params.heart_rate)))
    else:
        rate, pr, qrs = rng.integers(40, 180), rng.integers(110, 240), rng.integers(70, 170)
        qt, qtc = rng.integers(300, 460), rng.integers(360, 500)
    lines = [
        f"ID: {rng.integers(10 ** 6, 10 ** 8)}   {last}, {first}   {sex}   {rng.integers(18, 95)} yrs",
        f"{d:02d}-{['Jan','Feb','Mar','Apr','May','Jun','Jul','Aug','Sep','Oct','Nov','Dec'][mo-1]}-{y} "
        f"{hh:02d}:{mm:02d}:{ss:02d}",
        f"Vent. rate {rate} BPM   PR int {pr} ms   QRS dur {qrs} ms   QT/QTc {qt}/{qtc} ms",
    ]
    if rng.random() < 0.5:
        if params is not None and params.rhythm == "af":
            lines.append("Atrial fibrillation")
        elif params is not None and params.rhythm == "sinus_pvc":
            lines.append("Sinus rhythm with premature ventricular complexes")
        else:
            lines.append(["Sinus rhythm", "Normal ECG", "Borderline ECG", "Abnormal ECG",
                          "Left ventricular hypertrophy", "Otherwise normal ECG"][rng.integers(6)])
    hum = "50 Hz" if rng.random() < 0.5 else "60 Hz"
    speed = f"25 mm/s   10 mm/mV   0.05-{[40, 100, 150][rng.integers(3)]} Hz   {hum}   {fs:g} Hz"
    return lines, speed


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------
def render_page(signals: np.ndarray, fs: float, rng, *, style: Optional[PageStyle] = None,
                layout: PaperLayout = STANDARD_3X4, paper: PaperSize = LETTER,
                dpi: float = DEFAULT_DPI, signal_params=None) -> RenderedPage:
    """Draw `signals` ((n, 12) mV, LEADS order) as a printed ECG page with exact labels.

    `rng` (Generator or int seed) draws the style (unless given) and the header text;
    `signal_params` (a SignalParams) makes the printed rate and intervals match the record.
    """
    rng = np.random.default_rng(rng)
    style = sample_style(rng) if style is None else style
    img = _grid_image(style, paper, dpi)
    H, W = img.shape[:2]
    px_per_mm = float(mm_to_pixels(1.0, dpi))
    M = page_from_canonical_matrix(dpi)

    # Traces and the other ink (calibration pulses, separators) share one alpha canvas.
    ink = np.zeros((H, W), dtype=np.uint8)
    # cv2's anti-aliased lines look about one pixel wider than their thickness: thin widths fade
    thickness = 1 if style.trace_width_px < 1.8 else 2
    gain = float(min(1.0, style.trace_width_px / 1.2)) if thickness == 1 else 1.0
    paths = canonical_trace_paths(signals, fs, layout)
    lead_paths = [LeadPixelPath(p.placement, p.start, p.stop, apply_affine(M, p.xy)) for p in paths]
    polylines = [to_cv_points(lp.xy) for lp in lead_paths if len(lp.xy) >= 2]

    row_y_px = [float(mm_to_pixels(b, dpi)) for b in layout.baselines_y_mm]
    if style.calibration:
        x_a, x_b = mm_to_pixels(layout.time0_mm - 10.0, dpi), mm_to_pixels(layout.time0_mm - 2.5, dpi)
        x_c, x_d = x_a + 2.5 * px_per_mm, x_a + 7.5 * px_per_mm
        up = GAIN_MM_PER_MV * px_per_mm
        for yb in row_y_px:
            pts = np.array([[x_a, yb], [x_c, yb], [x_c, yb - up], [x_d, yb - up], [x_d, yb], [x_b, yb]])
            polylines.append(to_cv_points(pts))
    if style.separators:
        half = 2.0 * px_per_mm
        for row, yb in zip(layout.rows, row_y_px):
            for pl in row[1:]:
                xs = float(mm_to_pixels(seconds_to_mm(pl.t_start), dpi))
                polylines.append(to_cv_points(np.array([[xs, yb - half], [xs, yb + half]])))
    cv2.polylines(ink, polylines, False, 255, thickness, cv2.LINE_AA, DRAW_SHIFT)
    _blend_alpha(img, ink, style.trace_rgb, gain)

    # Lead labels: the keypoint is the layout's label node; the text sits on it.
    label_px = style.label_size_mm * px_per_mm
    nodes = page_grid_nodes(paper, dpi)
    keypoints = np.full((len(KEYPOINT_NAMES), 2), np.nan)
    kp_of = keypoint_placements(layout)
    for k, pl in enumerate(layout.placements):
        j, i = layout.label_nodes[k]
        x_mm, y_mm = grid_node_mm(j, i)
        nx, ny = float(mm_to_pixels(x_mm, dpi)), float(mm_to_pixels(y_mm, dpi))
        _draw_text(img, pl.lead, style.label_font, label_px, style.label_rgb,
                   left=nx + style.label_dx_mm * px_per_mm, v_centre=ny + style.label_dy_mm * px_per_mm)
    for n, k in enumerate(kp_of):
        if k is not None:
            j, i = layout.label_nodes[k]
            x_mm, y_mm = grid_node_mm(j, i)
            keypoints[n] = (mm_to_pixels(x_mm, dpi), mm_to_pixels(y_mm, dpi))

    header_lines: Tuple[str, ...] = ()
    if style.header:
        lines, speed = _fake_header(rng, fs, signal_params)
        size = style.header_size_mm * px_per_mm
        top = mm_to_pixels(rng.uniform(4.0, 8.0), dpi)
        left = mm_to_pixels(rng.uniform(8.0, 20.0), dpi)
        for line in lines:
            _draw_text(img, line, style.header_font, size, (0, 0, 0), left=left, top=top)
            top += size * 1.45
        # speed/gain line: below the last row, or under the header when the page is full
        bottom_mm = max(layout.baselines_y_mm) + 12.0
        y_speed = mm_to_pixels(bottom_mm, dpi) if bottom_mm + style.header_size_mm < paper.height_mm - 1 else top
        _draw_text(img, speed, style.header_font, size, (0, 0, 0),
                   left=mm_to_pixels(layout.time0_mm + rng.uniform(0, 40), dpi), top=y_speed)
        header_lines = tuple(lines) + (speed,)

    return RenderedPage(img, keypoints, nodes, lead_paths, M, dpi, paper, layout, style, fs, header_lines)


def canonical_xy_from_page(page_xy: np.ndarray, dpi: float = DEFAULT_DPI) -> np.ndarray:
    """Inverse of the page <- canonical map."""
    return apply_affine(np.linalg.inv(page_from_canonical_matrix(dpi)), page_xy)


__all__ = ["PageStyle", "RenderedPage", "LeadPixelPath", "render_page", "sample_style", "page_from_canonical_matrix",
           "page_grid_nodes", "apply_affine", "canonical_xy_from_page", "keypoint_placements", "GRID_COLOURS",
           "FONT_FILES"]
