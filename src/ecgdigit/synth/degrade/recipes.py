"""The nine competition image types (SPEC §1) as recipes over `warp` geometry and `effects`.

Order of work in every recipe: page-space effects (print tone, stains, mould, damage, defocus,
and for photos the scene light pulled back onto the page) at page resolution -> ONE remap of the
page (or of the screen showing it) into the upright output canvas, over a background made at
1/4 size -> per-pixel effects that need the output grid (scanner blur and tone, the screen's
pixel grid / moire) -> orientation turn -> noise -> JPEG.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import cv2
import numpy as np

from ecgdigit.layout import apply_orientation

from . import effects as fx
from .warp import (Affine, Displacement, Fold, Homography, Orientation, RadialLens, Ridge, Warp, Wave,
                   dense_backward_map)

SCAN_HEIGHT_RANGE = (1640, 1666)  # SPEC §1: scans are about 1652 px high
PHOTO_SIZE = (4032, 3024)  # landscape (width, height); portrait is the transpose
# Chance of a 90/180/270 degree turn: photos are turned more often than scans, ~7% overall (SPEC §1).
P_TURN_PHOTO = 0.11
P_TURN_SCAN = 0.03


# --- geometry helpers ------------------------------------------------------------------------------
def _choose_orientation(rng, p_turn: float, landscape: Tuple[int, int], p_portrait_canvas: float) -> Tuple[int, int, int]:
    """(code, canvas_w, canvas_h): the upright canvas the page is photographed into, and the turn."""
    code = int(rng.choice([1, 2, 3])) if rng.random() < p_turn else 0
    w, h = landscape
    if rng.random() < p_portrait_canvas:
        w, h = h, w
    return code, w, h


def _camera(rng, src_w: float, src_h: float, canvas_w: int, canvas_h: int, fill: Tuple[float, float],
            tilt_deg: float, roll_deg: float, lens_k1: Tuple[float, float]) -> List:
    """Homography of a flat sheet (src px) seen by a tilted pinhole camera, fitted into the canvas,
    then radial lens distortion."""
    f = 0.8 * max(canvas_w, canvas_h)  # ~26 mm-equivalent phone lens
    pitch, yaw = np.radians(np.clip(rng.normal(0, tilt_deg, 2), -2.2 * tilt_deg, 2.2 * tilt_deg))
    roll = np.radians(np.clip(rng.normal(0, roll_deg), -3 * roll_deg, 3 * roll_deg))
    cx, cy, sx, sy = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cx, -cy], [0, cy, cx]])
    ry = np.array([[sx, 0, sy], [0, 1, 0], [-sy, 0, sx]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    corners = np.array([[-0.5, -0.5], [src_w - 0.5, -0.5], [src_w - 0.5, src_h - 0.5], [-0.5, src_h - 0.5]])
    centred = np.c_[corners - [src_w / 2, src_h / 2], np.zeros(4)]
    dist = f * src_w / (0.8 * canvas_w)
    cam = centred @ (rz @ ry @ rx).T + [0, 0, dist]
    proj = f * cam[:, :2] / cam[:, 2:3]
    lo, hi = proj.min(0), proj.max(0)
    scale = rng.uniform(*fill) * min(canvas_w / (hi - lo)[0], canvas_h / (hi - lo)[1])
    proj = (proj - lo) * scale
    size = (hi - lo) * scale
    slack = np.array([canvas_w, canvas_h]) - size
    offset = slack * np.clip(rng.normal(0.5, 0.18, 2), 0.02, 0.98) if np.all(slack > 0) else slack / 2
    dst = proj + offset
    hom = cv2.getPerspectiveTransform(corners.astype(np.float32), dst.astype(np.float32)).astype(np.float64)
    lens = RadialLens(center=((canvas_w - 1) / 2, (canvas_h - 1) / 2), norm=float(np.hypot(canvas_w, canvas_h) / 2),
                      k1=float(rng.uniform(*lens_k1)), k2=float(rng.uniform(-0.01, 0.01)))
    return [Homography(hom), lens]


def _curl_terms(rng, pw: int, ph: int, strength: float) -> List:
    """Smooth sag and curl of a sheet lying on a table: long waves and broad bulges."""
    s = max(pw, ph) / 2200.0
    terms = []
    for _ in range(int(rng.integers(2, 5))):
        wavelength = rng.uniform(0.6, 2.5) * max(pw, ph)
        ang = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(1, 9) * s * strength * rng.normal(0, 1, 2)
        terms.append(Wave(tuple(amp), (np.cos(ang) / wavelength, np.sin(ang) / wavelength), rng.uniform(0, 2 * np.pi)))
    for _ in range(int(rng.integers(0, 3))):
        width = rng.uniform(80, 300) * s
        terms.append(Ridge((rng.uniform(0, pw), rng.uniform(0, ph)), rng.uniform(0, np.pi), width,
                           rng.uniform(0.3, 1.0) * max(pw, ph), rng.uniform(-0.08, 0.08) * width * strength))
    return terms


def _wrinkle_ridges(rng, pw, ph, n: int, strength: float) -> List[Ridge]:
    s = max(pw, ph) / 2200.0
    out = []
    for _ in range(n):
        width = rng.uniform(25, 70) * s
        out.append(Ridge((rng.uniform(0, pw), rng.uniform(0, ph)), rng.uniform(0, np.pi), width,
                         rng.uniform(60, 600) * s, rng.uniform(-0.15, 0.15) * width * strength))
    return out


def _ridge_shading(ridges: List[Ridge], pw: int, ph: int, down: int, light_angle: float, gain: float) -> np.ndarray:
    """Low-resolution gain field: each ridge's slope lit from `light_angle` (bright flank, dark flank)."""
    w, h = -(-pw // down), -(-ph // down)
    out = np.ones((h, w), np.float32)
    light = np.array([np.cos(light_angle), np.sin(light_angle)])
    for r in ridges:
        reach = np.array([abs(np.cos(r.angle)) * r.half_length * 1.9 + 5.5 * r.width,
                          abs(np.sin(r.angle)) * r.half_length * 1.9 + 5.5 * r.width])  # = Ridge's support
        lo = np.maximum(((np.asarray(r.center) - reach) / down).astype(int), 0)
        hi = np.minimum(((np.asarray(r.center) + reach) / down).astype(int) + 1, [w, h])
        if np.any(hi <= lo):
            continue
        yy, xx = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float64)
        pts = np.stack([xx.ravel(), yy.ravel()], 1) * down + (down - 1) / 2
        idx, a, sd, _, n = r._local(pts)
        wg = np.exp(-((a / r.half_length) ** 4) - 0.5 * (sd / r.width) ** 2)
        slope = np.zeros(len(pts))
        slope[idx] = -np.sign(r.amp) * (sd / r.width) * wg  # surface slope across the wrinkle
        out[lo[1]:hi[1], lo[0]:hi[0]] *= (1 + gain * slope * float(n @ light)).reshape(yy.shape).astype(np.float32)
    return out


def _inside(nodes: np.ndarray, w: int, h: int) -> np.ndarray:
    x, y = nodes[..., 0], nodes[..., 1]
    return ((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)).astype(np.float32)


def _photo_background(rng, canvas_w, canvas_h, inside: np.ndarray, kind=None, shadow=True,
                      light: Optional[np.ndarray] = None, decorate=None) -> np.ndarray:
    """Full-size uint8 background (texture made at 1/4 size), with the sheet's soft drop shadow
    and the scene's `light` (a low-resolution gain field) applied before upsampling.
    `decorate(bg_small_float, down)` may draw scene objects first."""
    small_w, small_h = canvas_w // 4, canvas_h // 4
    bg = fx.background(rng, small_w, small_h, kind).astype(np.float32)
    if decorate is not None:
        decorate(bg, 4)
    if shadow:
        m = cv2.resize(inside, (small_w, small_h), interpolation=cv2.INTER_LINEAR)
        shift = rng.normal(0, 4, 2).astype(np.float32)
        m = cv2.warpAffine(m, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (small_w, small_h))
        m = cv2.GaussianBlur(m, (0, 0), rng.uniform(3, 12))
        bg *= 1 - rng.uniform(0.2, 0.55) * m[..., None]
    if light is not None:
        bg *= cv2.resize(light, (small_w, small_h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(np.clip(bg, 0, 255).astype(np.uint8), (canvas_w, canvas_h), interpolation=cv2.INTER_LINEAR)


def _finish(img, rng, code: int, noise, quality):
    img = apply_orientation(img, code) if code else img
    if noise is not None:
        img = fx.add_noise(img, rng, rng.uniform(*noise))
    return fx.jpeg(img, int(rng.integers(*quality)))


def _light_on_page(light: np.ndarray, light_cell: int, to_canvas: List, pw: int, ph: int, down: int) -> np.ndarray:
    """The canvas-space gain field `light` (one value per `light_cell` px) pulled back onto a
    (ph/down, pw/down) page grid through `to_canvas` (homography + lens; the paper's small
    displacement is ignored: a few pixels on a field this smooth change nothing visible)."""
    lw, lh = -(-pw // down), -(-ph // down)
    gx, gy = np.meshgrid((np.arange(lw) + 0.5) * down - 0.5, (np.arange(lh) + 0.5) * down - 0.5)
    q = np.stack([gx.ravel(), gy.ravel()], 1)
    for step in to_canvas:
        q = step.forward(q)
    q = (q + 0.5) / light_cell - 0.5
    mx = q[:, 0].reshape(lh, lw).astype(np.float32)
    my = q[:, 1].reshape(lh, lw).astype(np.float32)
    return cv2.remap(light, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# --- paper photos: 0005, 0009, 0010 ---------------------------------------------------------------
def _photo_of_paper(page, rng, *, terms: List, page_gain: Optional[np.ndarray] = None,
                    alpha: Optional[np.ndarray] = None, cell: int = 8, fill=(0.62, 1.0), tilt=8.0):
    """Photograph a (possibly deformed) sheet lying on a table. `page_gain`: low-resolution
    (h, w, 3) float gain of page-space shading and stains; `alpha`: page-size uint8, 0 where the
    paper is missing (torn off), so that the table shows through.

    Photometry is done where it is cheapest: the scene light is pulled back onto the page and
    applied there together with `page_gain` (one multiply at page size), and to the background
    at 1/4 size; sensor noise goes on the page before the remap (phone noise is denoised and
    soft anyway)."""
    ph, pw = page.shape[:2]
    code, cw, ch = _choose_orientation(rng, P_TURN_PHOTO, PHOTO_SIZE, p_portrait_canvas=0.2)
    margin = 0.1 * max(pw, ph)
    camera = _camera(rng, pw, ph, cw, ch, fill, tilt, 2.5, (-0.06, 0.04))
    steps = [Displacement(terms, (-margin, -margin, pw + margin, ph + margin))] + camera
    light_cell = 16
    light = fx.lighting(rng, cw // light_cell, ch // light_cell)
    gain = _light_on_page(light, light_cell, camera, pw, ph, 8)
    if page_gain is not None:  # at the finer of the two resolutions
        if page_gain.shape[1] > gain.shape[1]:
            gain = cv2.resize(gain, (page_gain.shape[1], page_gain.shape[0]), interpolation=cv2.INTER_LINEAR) * page_gain
        else:
            gain = gain * cv2.resize(page_gain, (gain.shape[1], gain.shape[0]), interpolation=cv2.INTER_LINEAR)
    page = fx.multiply_field(page, gain, 255.0 / max(1.0, float(gain.max()) + 1e-3))
    page = fx.blur(page, rng, rng.uniform(0.2, 1.1) if rng.random() < 0.7 else rng.uniform(1.0, 2.0),
                   motion=rng.uniform(2, 6) if rng.random() < 0.2 else 0)
    if rng.random() < 0.5:  # phone cameras sharpen: unsharp mask, light halos along the traces
        k = rng.uniform(0.2, 0.8)
        page = cv2.addWeighted(page, 1 + k, cv2.GaussianBlur(page, (0, 0), rng.uniform(1.0, 2.5)), -k, 0)
    page = fx.add_noise(page, rng, rng.uniform(1.0, 4.0))
    mapx, mapy, nodes = dense_backward_map(steps, cw, ch, cell)
    bg = _photo_background(rng, cw, ch, _inside(nodes, pw, ph), light=light)
    img = bg.copy() if alpha is not None else bg
    cv2.remap(page, mapx, mapy, cv2.INTER_LINEAR, dst=img, borderMode=cv2.BORDER_TRANSPARENT)
    if alpha is not None:
        a = cv2.remap(alpha, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cv2.copyTo(bg, cv2.threshold(a, 127, 255, cv2.THRESH_BINARY_INV)[1], img)
    img = _finish(img, rng, code, None, (70, 95))
    return img, code, Warp(steps + [Orientation(code, cw, ch)], (img.shape[1], img.shape[0]))


def photo_0005(page, rng):
    page = fx.print_tone(page, rng)
    ph, pw = page.shape[:2]
    return _photo_of_paper(page, rng, terms=_curl_terms(rng, pw, ph, 1.0))


def photo_0009(page, rng):
    """Stained / soaked print: liquid stains with tide lines, yellowing, ink bleed, cockling."""
    page = fx.print_tone(page, rng)
    ph, pw = page.shape[:2]
    down = 2  # stains at half size: tide lines stay crisp
    lw, lh = -(-pw // down), -(-ph // down)
    ab, wet = fx.stain_field(rng, lw, lh, int(rng.integers(2, 8)))
    yellow = np.array([0.02, 0.06, 0.18], np.float32) * rng.uniform(0.3, 1.6)
    ab += (0.6 + 0.4 * fx.fractal_noise(rng, lw, lh, 3, 3))[..., None] * yellow
    ridges = _wrinkle_ridges(rng, pw, ph, int(rng.integers(4, 14)), 1.0)
    cockle = []
    s = max(pw, ph) / 2200.0
    for _ in range(int(rng.integers(2, 6))):
        wl = rng.uniform(120, 400) * s
        ang = rng.uniform(0, 2 * np.pi)
        cockle.append(Wave(tuple(rng.normal(0, 1.2, 2) * s), (np.cos(ang) / wl, np.sin(ang) / wl), rng.uniform(0, 6.3)))
    shade = _ridge_shading(ridges, pw, ph, 8, rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.3))
    gain = np.exp(-ab) * cv2.resize(shade, (lw, lh), interpolation=cv2.INTER_LINEAR)[..., None]
    if wet.max() > 0 and rng.random() < 0.8:  # ink bled where the paper was wet
        w = cv2.resize(wet, (pw, ph), interpolation=cv2.INTER_LINEAR) * np.float32(rng.uniform(0.4, 1.0))
        blurred = cv2.GaussianBlur(page, (0, 0), rng.uniform(1.0, 2.5))
        page = cv2.blendLinear(blurred, page, w, 1 - w)
    terms = _curl_terms(rng, pw, ph, 1.2) + ridges + cockle
    return _photo_of_paper(page, rng, terms=terms, page_gain=gain)


def photo_0010(page, rng):
    """Badly damaged print: folds, crumple creases, tears, missing pieces, wrinkles, dirt, worn edges."""
    page = fx.print_tone(page, rng)
    ph, pw = page.shape[:2]
    s = max(pw, ph) / 2200.0
    down = 4
    lw, lh = -(-pw // down), -(-ph // down)
    ly, lx = np.mgrid[0:lh, 0:lw].astype(np.float32) * down + (down - 1) / 2
    low_gain = np.ones((lh, lw), np.float32)  # smooth page-space shading, at 1/4 size
    lines = np.zeros((ph, pw), np.uint8)  # thin dark crease lines, full size
    wear = np.zeros((ph, pw), np.uint8)  # ink rubbed off along folds
    terms: List = []
    light = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(1, 4))):  # folds along halves / thirds, nearly axis-aligned
        vertical = rng.random() < 0.5
        frac = rng.choice([1 / 2, 1 / 3, 2 / 3, 1 / 4, 3 / 4]) + rng.normal(0, 0.02)
        point = (frac * pw, ph / 2) if vertical else (pw / 2, frac * ph)
        angle = np.pi / 2 + rng.normal(0, 0.03) if vertical else rng.normal(0, 0.03)
        fold = Fold(point, float(angle), rng.uniform(15, 40) * s, rng.uniform(0.005, 0.025) * rng.choice([-1, 1]))
        terms.append(fold)
        sd = (lx - point[0]) * -np.sin(angle) + (ly - point[1]) * np.cos(angle)
        # the two halves face the light differently
        low_gain *= 1 + rng.uniform(0.04, 0.14) * np.sign(np.cos(light - angle)) * np.tanh(sd / fold.softness)
        t = np.array([np.cos(angle), np.sin(angle)])
        ends = [np.asarray(point) - 2 * max(pw, ph) * t, np.asarray(point) + 2 * max(pw, ph) * t]
        pts = fx.jagged_line(rng, ends[0], ends[1], 10 * s, 0.4 * s)
        cv2.polylines(lines, [np.round(pts * 16).astype(np.int32)], False, int(rng.integers(60, 150)),
                      max(1, int(round(1.5 * s))), cv2.LINE_AA, shift=4)
        for a_, b_ in zip(pts[:-1], pts[1:]):  # patchy wear
            if rng.random() < 0.6:
                cv2.line(wear, tuple(np.round(a_).astype(int)), tuple(np.round(b_).astype(int)),
                         int(rng.integers(60, 235)), max(1, int(rng.integers(2, 7) * s)), cv2.LINE_AA)
    # dirt, yellowing and darker worn edges, at 1/4 size
    ab, _ = fx.stain_field(rng, lw, lh, int(rng.integers(0, 4)))
    edge_d = np.minimum(np.minimum(lx, pw - 1 - lx), np.minimum(ly, ph - 1 - ly)) / (0.04 * max(pw, ph))
    ab += (np.exp(-edge_d) * rng.uniform(0.05, 0.3) * (1 + 0.5 * fx.fractal_noise(rng, lw, lh, 6, 3)))[..., None] \
        * np.array([0.6, 0.7, 0.9], np.float32)
    ab += (0.6 + 0.4 * fx.fractal_noise(rng, lw, lh, 3, 3))[..., None] * np.array([0.02, 0.05, 0.12], np.float32) * rng.uniform(0, 1.5)
    ridges = _wrinkle_ridges(rng, pw, ph, int(rng.integers(8, 20)), 1.3)
    low_gain *= cv2.resize(_ridge_shading(ridges, pw, ph, 8, light, rng.uniform(0.15, 0.35)), (lw, lh),
                           interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.7:  # crumpled, then flattened
        low_gain *= fx.facet_shading(rng, lw, lh, int(rng.integers(40, 300)), rng.uniform(0.012, 0.035))
    gain = np.exp(-ab) * low_gain[..., None]
    # tears (narrowing gaps from the edge, light torn fibres along them) and missing pieces
    alpha = np.full((ph, pw), 255, np.uint8)
    fibre = np.zeros((ph, pw), np.uint8)
    for _ in range(int(rng.integers(1, 6))):
        side = rng.integers(4)
        t0 = rng.uniform(0.1, 0.9)
        start = [(t0 * pw, 0), (pw, t0 * ph), (t0 * pw, ph), (0, t0 * ph)][side]
        inward = np.array([(0, 1), (-1, 0), (0, -1), (1, 0)][side], float)
        ang = np.arctan2(inward[1], inward[0]) + rng.normal(0, 0.35)
        length = rng.uniform(0.05, 0.3) * min(pw, ph)
        end = np.asarray(start) + length * np.array([np.cos(ang), np.sin(ang)])
        pts = fx.jagged_line(rng, start, end, 6 * s, 2.0 * s)
        for a_, b_, wdt in zip(pts[:-1], pts[1:], np.linspace(rng.uniform(2, 7) * s, 0.5, len(pts) - 1)):
            pa, pb = tuple(np.round(a_).astype(int)), tuple(np.round(b_).astype(int))
            cv2.line(fibre, pa, pb, 255, max(1, int(wdt + 4 * s)), cv2.LINE_AA)
            cv2.line(alpha, pa, pb, 0, max(int(wdt), 1), cv2.LINE_AA)
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        corner = rng.integers(4)
        cx, cy = [(0, 0), (pw, 0), (pw, ph), (0, ph)][corner]
        rx, ry = rng.uniform(0.05, 0.22) * pw, rng.uniform(0.05, 0.25) * ph
        if rng.random() < 0.5:  # torn-off corner
            poly = np.concatenate([[[cx, cy]], fx.jagged_line(rng, (abs(cx - rx), cy), (cx, abs(cy - ry)), 5 * s, 3 * s)])
        else:  # a bite out of an edge
            edge_pt = np.array([rng.uniform(0.15, 0.85) * pw, cy]) if rng.random() < 0.5 else np.array([cx, rng.uniform(0.15, 0.85) * ph])
            d = rng.uniform(0.03, 0.12) * max(pw, ph)
            th = np.linspace(0, np.pi * 2, 120, endpoint=False)
            wobble = sum(rng.uniform(0, 0.25 / k) * np.sin(k * th + rng.uniform(0, 6.3)) for k in (2, 3, 5, 7))
            radial = 1 + wobble + 0.03 * rng.standard_normal(len(th))  # smooth tear, ragged fibres
            poly = edge_pt + np.c_[np.cos(th) * d * rng.uniform(0.6, 1.4), np.sin(th) * d] * radial[:, None]
        cv2.fillPoly(alpha, [np.round(poly).astype(np.int32)], 0, cv2.LINE_AA)
        cv2.polylines(fibre, [np.round(poly).astype(np.int32)], True, 255, int(5 * s) + 1, cv2.LINE_AA)
    # full-size pass: creases darken, rubbed-off ink and torn fibres lighten
    crease = fx.crease_shading(rng, pw, ph, int(rng.integers(10, 60)), s)
    crease *= 1 - lines.astype(np.float32) * (0.5 / 255)
    page = fx.multiply_field(page, crease, 255.0 / 1.5)
    light_px = cv2.max(cv2.GaussianBlur(fibre, (0, 0), 1.0), wear)
    page = cv2.max(page, cv2.merge([cv2.multiply(light_px, 1, scale=c / 255.0) for c in (240, 238, 230)]))
    terms += _curl_terms(rng, pw, ph, 1.5) + ridges
    return _photo_of_paper(page, rng, terms=terms, page_gain=gain, alpha=alpha)


# --- photo of a laptop screen: 0006 ----------------------------------------------------------------
SCREENS = ((1920, 1080), (1920, 1200), (1366, 768), (2560, 1600), (1536, 864), (2880, 1800))


def _subpixel_lut(pitch_cam: float, contrast: float, gap: float, bgr: bool, aperture: float) -> np.ndarray:
    """(1024, 3) uint8 gain of a screen pixel's RGB stripes at the 32 x 32 sub-pixel positions of
    cv2's fixed-point maps (index fy * 32 + fx), box-averaged over `aperture` camera pixels.

    Sampling this at every camera pixel aliases: that IS the moire. An aperture of a whole pixel
    would cancel the beat exactly when a screen pixel spans one camera pixel; real sensors
    (demosaicing, no anti-alias filter) keep much of it, hence apertures of 0.3-0.7."""
    fine = 96
    u = (np.arange(fine) + 0.5) / fine
    cols = np.zeros((fine, 3), np.float32)
    order = (2, 1, 0) if bgr else (0, 1, 2)
    for k, ch in enumerate(order):
        cols[:, ch] = ((u >= k / 3 + 0.03) & (u < (k + 1) / 3 - 0.03)).astype(np.float32)
    rows = (u < 1 - gap).astype(np.float32)
    pattern = rows[:, None, None] * cols[None, :, :] * 3.0  # mean ~ 1 per channel
    foot = max(1, int(round(aperture * fine / max(pitch_cam, 1e-3))))
    k = np.ones(foot, np.float32) / foot
    pad = np.concatenate([pattern] * 3, 0)
    pad = np.concatenate([pad] * 3, 1)
    sm = pad.copy()
    for ch in range(3):
        sm[..., ch] = cv2.sepFilter2D(np.ascontiguousarray(pad[..., ch]), -1, k, k)
    sm = sm[fine:2 * fine, fine:2 * fine]
    idx = ((np.arange(32) + 0.5) / 32 * fine).astype(int)
    sampled = sm[idx][:, idx]  # (32 fy, 32 fx, 3)
    sampled = sampled / sampled.mean((0, 1), keepdims=True)
    gain = 1 - contrast + contrast * sampled
    return np.clip(gain * 200, 0, 255).astype(np.uint8).reshape(1024, 3)


def _draw_laptop_deck(bg: np.ndarray, rng, cam: List, dw: int, dh: int, down: int) -> None:
    """Draw the laptop's keyboard deck below the display into the 1/`down`-size background: a
    quadrilateral from the hinge towards the camera, keys and a touchpad mapped into it."""
    def to_canvas(pts):
        q = np.asarray(pts, float)
        for step in cam:
            q = step.forward(q)
        return q

    tl, tr, bl, br = to_canvas([[-0.5, -0.5], [dw - 0.5, -0.5], [-0.5, dh - 0.5], [dw - 0.5, dh - 0.5]])
    edge = br - bl
    down_dir = np.array([-edge[1], edge[0]]) / (np.linalg.norm(edge) + 1e-9)
    if down_dir[1] < 0:
        down_dir = -down_dir
    depth = rng.uniform(0.45, 0.8) * np.linalg.norm((bl + br) / 2 - (tl + tr) / 2)
    mid, half = (bl + br) / 2, (br - bl) / 2
    spread = rng.uniform(1.05, 1.25)
    near_l, near_r = mid - half * spread + down_dir * depth, mid + half * spread + down_dir * depth

    def at(u, v):  # bilinear position inside the deck, u across, v from hinge (0) to front (1)
        return ((1 - v) * ((1 - u) * bl + u * br) + v * ((1 - u) * near_l + u * near_r)) / down

    silver = rng.random() < 0.5
    deck = np.float32(rng.uniform(150, 200) if silver else rng.uniform(25, 50))
    key = deck * np.float32(rng.uniform(0.55, 0.8) if silver else rng.uniform(0.6, 0.9))
    colour = tuple(float(v) for v in deck * rng.uniform(0.95, 1.05, 3))
    poly = np.round(np.array([at(0, 0), at(1, 0), at(1, 1), at(0, 1)]) * 16).astype(np.int32)
    cv2.fillPoly(bg, [poly], colour, cv2.LINE_AA, shift=4)
    rows, cols = 6, 14
    for r in range(rows):
        v0 = 0.08 + r * 0.085
        for c in range(cols):
            u0 = 0.08 + c * 0.84 / cols
            quad = [at(u0 + 0.006, v0 + 0.01), at(u0 + 0.84 / cols - 0.006, v0 + 0.01),
                    at(u0 + 0.84 / cols - 0.006, v0 + 0.075), at(u0 + 0.006, v0 + 0.075)]
            cv2.fillPoly(bg, [np.round(np.array(quad) * 16).astype(np.int32)], (float(key),) * 3, cv2.LINE_AA, shift=4)
    pad = [at(0.36, 0.62), at(0.64, 0.62), at(0.64, 0.9), at(0.36, 0.9)]
    cv2.fillPoly(bg, [np.round(np.array(pad) * 16).astype(np.int32)], tuple(c * 0.93 for c in colour), cv2.LINE_AA, shift=4)


def photo_0006(page, rng):
    """Phone photo of a laptop screen showing the page: screen tone, pixel grid + moire, bezel,
    glare, perspective."""
    ph, pw = page.shape[:2]
    sw, sh = SCREENS[rng.integers(len(SCREENS))]
    dark_ui = rng.random() < 0.5
    ui = np.array(rng.uniform(30, 60, 3) if dark_ui else rng.uniform(200, 240, 3), np.uint8)
    screen = np.empty((sh, sw, 3), np.uint8)
    screen[:] = ui
    toolbar = int(sh * rng.uniform(0.03, 0.08))
    screen[:toolbar] = np.clip(ui.astype(int) + (20 if dark_ui else -25), 0, 255)
    zoom = rng.uniform(0.9, 1.0)
    scale = zoom * min(sw / pw, (sh - toolbar) / ph)
    psw, psh = int(round(pw * scale)), int(round(ph * scale))
    ox, oy = (sw - psw) // 2, toolbar + (sh - toolbar - psh) // 2
    screen[oy:oy + psh, ox:ox + psw] = cv2.resize(page, (psw, psh), interpolation=cv2.INTER_AREA)
    # screen tone: lifted blacks, bluish white point, gamma
    black = rng.uniform(15, 45)
    white = np.array([rng.uniform(215, 245), rng.uniform(220, 248), rng.uniform(235, 255)])
    x = np.linspace(0, 1, 256)[:, None] ** rng.uniform(0.8, 1.2)
    screen = cv2.LUT(screen, np.clip(black + (white - black) * x, 0, 255).astype(np.uint8).reshape(256, 1, 3))
    bezel = int(sw * rng.uniform(0.015, 0.04))
    bottom = int(bezel * rng.uniform(1.0, 2.5))
    bez_col = int(rng.uniform(8, 40))
    display = cv2.copyMakeBorder(screen, bezel, bottom, bezel, bezel, cv2.BORDER_CONSTANT, value=(bez_col,) * 3)
    dh, dw = display.shape[:2]
    to_display = Affine(np.array([[psw / pw, 0, 0.5 * psw / pw - 0.5 + ox + bezel],
                                  [0, psh / ph, 0.5 * psh / ph - 0.5 + oy + bezel]]))
    code, cw, ch = _choose_orientation(rng, P_TURN_PHOTO, PHOTO_SIZE, p_portrait_canvas=0.1)
    cam = _camera(rng, dw, dh, cw, ch, (0.75, 1.0), 6.0, 2.0, (-0.05, 0.03))
    # room light and glare (reflections of a window or lamp, an ambient veil) live on the screen
    # surface: made in camera space at 1/16 size, pulled back onto the display and applied there
    lw, lh = cw // 16, ch // 16
    light = fx.lighting(rng, lw, lh, strength=0.6, shadows=0)
    glare = np.zeros((lh, lw), np.float32)
    for _ in range(int(rng.integers(1, 3))):
        cv2.ellipse(glare, (int(rng.uniform(0, lw)), int(rng.uniform(0, lh))),
                    (int(lw * rng.uniform(0.1, 0.4)), int(lh * rng.uniform(0.05, 0.3))), rng.uniform(0, 180), 0, 360,
                    float(rng.uniform(0.2, 1.0)), -1)
    glare = cv2.GaussianBlur(glare, (0, 0), lw * rng.uniform(0.03, 0.1))
    glare = glare / max(float(glare.max()), 1e-6) * rng.uniform(30, 110)
    glare += rng.uniform(0, 25) * (1 + 0.3 * fx.fractal_noise(rng, lw, lh, 2, 2))
    tint = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.9, 1.0), 1.0], np.float32)
    d_light = _light_on_page(light, 16, cam, dw, dh, 4)
    d_glare = _light_on_page(np.ascontiguousarray(glare[..., None] * tint), 16, cam, dw, dh, 4)
    display = fx.multiply_field(display, d_light, 255.0 / max(1.0, float(d_light.max()) + 1e-3))
    display = cv2.add(display, cv2.resize(np.clip(d_glare, 0, 255).astype(np.uint8), (dw, dh), interpolation=cv2.INTER_LINEAR))
    display = fx.add_noise(display, rng, rng.uniform(1.5, 4.5))
    mapx, mapy, nodes = dense_backward_map(cam, cw, ch, 8)
    m1, m2 = cv2.convertMaps(mapx, mapy, cv2.CV_16SC2)
    inside = _inside(nodes, dw, dh)
    deck = (lambda bg, down: _draw_laptop_deck(bg, rng, cam, dw, dh, down)) if rng.random() < 0.7 else None
    img = _photo_background(rng, cw, ch, inside, kind="dark", shadow=False, light=light, decorate=deck)
    cv2.remap(display, m1, m2, cv2.INTER_LINEAR, dst=img, borderMode=cv2.BORDER_TRANSPARENT)
    # pixel grid: camera pixels per screen pixel at the screen centre
    c = np.array([[dw / 2, dh / 2], [dw / 2 + 1, dh / 2]])
    pitch = float(np.linalg.norm(np.diff(cam[1].forward(cam[0].forward(c)), axis=0)))
    lut = _subpixel_lut(pitch, rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.3), rng.random() < 0.2, rng.uniform(0.4, 0.8))
    # the sub-pixel gain, looked up by the fixed-point map's sub-pixel index; indices >= 1024 are
    # neutral (outside the display, where the room shows)
    off_display = cv2.resize((inside * 255).astype(np.uint8), (cw, ch), interpolation=cv2.INTER_LINEAR) < 128
    idx = m2 | (off_display.view(np.uint8).astype(np.uint16) << 10)
    packed = np.zeros((2048, 4), np.uint8)
    packed[:1024, :3] = lut
    packed[1024:, :3] = 200
    pat = packed.view(np.uint32).ravel().take(idx).view(np.uint8).reshape(ch, cw, 4)
    img = cv2.multiply(img, cv2.cvtColor(pat, cv2.COLOR_RGBA2RGB), scale=1 / 200.0)
    img = _finish(img, rng, code, None, (70, 95))
    return img, code, Warp([to_display] + cam + [Orientation(code, cw, ch)], (img.shape[1], img.shape[0]))


# --- scans: 0003, 0004, 0011, 0012 -----------------------------------------------------------------
def _scan(page, rng, bw: bool, mould: bool):
    ph, pw = page.shape[:2]
    page = fx.print_tone(page, rng)
    if mould:
        page = fx.paint_mould(page, rng, int(rng.integers(3, 11)))
    # the sheet's edge casts a thin shadow on the scanner lid
    edge = max(1, int(round(ph / 1000)))
    page = page.copy()
    for sl in (np.s_[:edge], np.s_[-edge:], np.s_[:, :edge], np.s_[:, -edge:]):
        page[sl] = (page[sl] * rng.uniform(0.6, 0.85)).astype(np.uint8)
    out_h = int(rng.integers(*SCAN_HEIGHT_RANGE))
    out_w = int(round(out_h * pw / ph * rng.uniform(0.995, 1.02)))
    s = out_h / ph * rng.uniform(0.975, 1.0)
    ang = np.radians(np.clip(rng.normal(0, 0.7), -2.0, 2.0))
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    centre_out = np.array([(out_w - 1) / 2, (out_h - 1) / 2]) + rng.normal(0, [6, 5])
    b = centre_out - rot @ np.array([(pw - 1) / 2, (ph - 1) / 2])
    affine = Affine(np.c_[rot, b])
    code = 2 if rng.random() < P_TURN_SCAN else 0
    lid = np.array(rng.uniform(225, 255, 3) if rng.random() < 0.85 else rng.uniform(20, 80, 3), np.uint8)
    img = np.empty((out_h, out_w, 3), np.uint8)
    img[:] = lid
    # an affine map is remapped exactly by warpAffine (same pixel-centre convention as remap)
    cv2.warpAffine(page, affine.matrix, (out_w, out_h), dst=img, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    img = fx.blur(img, rng, rng.uniform(0.35, 0.9))
    if rng.random() < 0.25:  # faint streaks from dust on the scanner glass
        prof = np.ones(out_w, np.float32)
        for _ in range(int(rng.integers(1, 4))):
            prof[rng.integers(out_w)] *= rng.uniform(0.8, 0.95)
        img = fx.multiply_field(img, np.broadcast_to(prof[None, :], (2, out_w)).copy(), 255.0)
    if bw:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if rng.random() < 0.12:  # a harsh black-and-white setting: close to a threshold
            t = min(rng.uniform(110, 210), float(np.percentile(img[::16, ::16], 90)) - 25)  # paper stays white
            lut = np.clip((np.arange(256) - t) * rng.uniform(4, 12) + 128, 0, 255).astype(np.uint8)
        else:
            lut = fx.tone_curve_lut(rng, rng.uniform(0, 35), rng.uniform(225, 255), rng.uniform(0.8, 1.6),
                                    rng.uniform(0, 0.9))
        img = cv2.LUT(img, lut)
    else:
        lut = np.stack([fx.tone_curve_lut(rng, rng.uniform(0, 25), rng.uniform(235, 255), g, rng.uniform(0, 0.4))
                        for g in rng.uniform(0.85, 1.2) * rng.uniform(0.97, 1.03, 3)], 1)
        img = cv2.LUT(img, lut.reshape(256, 1, 3))
    img = _finish(img, rng, code, (1.0, 4.0), (55, 93))
    if bw:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return img, code, Warp([affine, Orientation(code, out_w, out_h)], (img.shape[1], img.shape[0]))


def scan_0003(page, rng):
    return _scan(page, rng, bw=False, mould=False)


def scan_0004(page, rng):
    return _scan(page, rng, bw=True, mould=False)


def scan_0011(page, rng):
    return _scan(page, rng, bw=False, mould=True)


def scan_0012(page, rng):
    return _scan(page, rng, bw=True, mould=True)


RECIPES = {
    "0003": scan_0003, "0004": scan_0004, "0005": photo_0005, "0006": photo_0006,
    "0009": photo_0009, "0010": photo_0010, "0011": scan_0011, "0012": scan_0012,
}
