"""Photometric building blocks: smooth random fields, print and scanner tone, noise, JPEG,
backgrounds, lighting, stains, mould, creases and tears.

Smooth fields are made at low resolution and upsampled (cv2.resize); per-pixel work stays in
uint8 cv2 calls so that a 4032 x 3024 photo costs well under half a second on one core.
Every function draws its randomness from the numpy Generator it is given; cv2's own RNG
(cv2.randn) is seeded from that Generator so results are reproducible.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


# --- random fields --------------------------------------------------------------------------------
def smooth_noise(rng: np.random.Generator, width: int, height: int, cells: float) -> np.ndarray:
    """float32 (height, width) Gaussian noise with about `cells` features across the larger side."""
    cells = max(cells, 1.0)
    gw = int(np.ceil(cells * width / max(width, height))) + 2
    gh = int(np.ceil(cells * height / max(width, height))) + 2
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(g, (width, height), interpolation=cv2.INTER_CUBIC)


def fractal_noise(rng, width, height, cells=4.0, octaves=4, persistence=0.5) -> np.ndarray:
    """Sum of `octaves` smooth noises, each twice finer; roughly unit variance."""
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        out += amp * smooth_noise(rng, width, height, cells * 2 ** k)
        total += amp * amp
        amp *= persistence
    return out / np.float32(np.sqrt(total))


def seed_cv2(rng: np.random.Generator) -> None:
    cv2.setRNGSeed(int(rng.integers(1, 2 ** 31 - 1)))


_NOISE_BANK_SIDE = 3328  # noise goes on pages (2200 x 1700 at 200 dpi), screens (<= 3110 px) and scans
_NOISE_BANK_SIGMA = 16.0
_noise_bank = None


def _bank() -> np.ndarray:
    """A fixed (side, side, 3) int8 sensor-noise texture (luma + 0.4 x chroma), made once per
    process with a fixed seed; images take randomly offset windows of it (cheap and reproducible)."""
    global _noise_bank
    if _noise_bank is None:
        state = np.random.default_rng(20251124)
        cv2.setRNGSeed(int(state.integers(1, 2 ** 31 - 1)))
        luma = np.empty((_NOISE_BANK_SIDE, _NOISE_BANK_SIDE), np.int16)
        cv2.randn(luma, 0, _NOISE_BANK_SIGMA / 1.077)  # 1.077 = sqrt(1 + 0.4^2)
        chroma = np.empty((_NOISE_BANK_SIDE, _NOISE_BANK_SIDE, 3), np.int16)
        cv2.randn(chroma, (0, 0, 0), (0.4 * _NOISE_BANK_SIGMA / 1.077,) * 3)
        _noise_bank = np.clip(chroma + luma[..., None], -127, 127).astype(np.int8)
    return _noise_bank


def add_noise(img: np.ndarray, rng, sigma: float) -> np.ndarray:
    """Add sensor noise of about `sigma` grey levels (RGB: correlated luma + chroma; grey: luma)."""
    if sigma <= 0:
        return img
    h, w = img.shape[:2]
    if img.ndim == 2:
        seed_cv2(rng)
        luma = np.empty((h, w), np.int16)
        cv2.randn(luma, 0, sigma)
        return cv2.add(img, luma, dtype=cv2.CV_8U)
    bank = _bank()
    if h > bank.shape[0] or w > bank.shape[1]:  # bigger than any photo: draw fresh noise
        seed_cv2(rng)
        noise = np.empty((h, w, 3), np.int16)
        cv2.randn(noise, (0, 0, 0), (sigma,) * 3)
        return cv2.add(img, noise, dtype=cv2.CV_8U)
    y = int(rng.integers(0, bank.shape[0] - h + 1))
    x = int(rng.integers(0, bank.shape[1] - w + 1))
    return cv2.addWeighted(img, 1.0, bank[y:y + h, x:x + w], sigma / _NOISE_BANK_SIGMA, 0.0, dtype=cv2.CV_8U)


def jpeg(img_rgb: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip (encode + decode) of an RGB or grey uint8 image."""
    if img_rgb.ndim == 2:
        ok, buf = cv2.imencode(".jpg", img_rgb, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def multiply_field(img: np.ndarray, field: np.ndarray, gain_one: float = 128.0) -> np.ndarray:
    """img * field, where `field` is a low-resolution float gain map (h, w) or (h, w, 3) upsampled."""
    h, w = img.shape[:2]
    f = np.clip(field * gain_one, 0, 255).astype(np.uint8)
    if f.shape[:2] != (h, w):
        f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
    if img.ndim == 3 and f.ndim == 2:
        f = cv2.merge([f, f, f])
    return cv2.multiply(img, f, scale=1.0 / gain_one)


def motion_kernel(rng, length: float) -> np.ndarray:
    n = int(np.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    ang = rng.uniform(0, np.pi)
    c = (n - 1) / 2
    dx, dy = np.cos(ang) * length / 2, np.sin(ang) * length / 2
    cv2.line(k, (int(round((c - dx) * 16)), int(round((c - dy) * 16))),
             (int(round((c + dx) * 16)), int(round((c + dy) * 16))), 1.0, 1, cv2.LINE_AA, shift=4)
    return k / k.sum()


def blur(img: np.ndarray, rng, sigma: float, motion: float = 0.0) -> np.ndarray:
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if motion > 1.0:
        img = cv2.filter2D(img, -1, motion_kernel(rng, motion))
    return img


# --- print and scanner tone ---------------------------------------------------------------------
def print_tone(page: np.ndarray, rng, paper_tint=None, saturation=None) -> np.ndarray:
    """A colour print on paper: paper tint, ink density, gamma and a slight colour shift."""
    if paper_tint is None:  # white to slightly warm paper
        white = rng.uniform(236, 253)
        paper_tint = np.array([white, white - rng.uniform(0, 5), white - rng.uniform(0, 16)])
    ink = rng.uniform(10, 55, 3)
    gamma = rng.uniform(0.8, 1.25)
    x = np.linspace(0, 1, 256)[:, None]
    lut = ink + (paper_tint - ink) * x ** gamma
    out = cv2.LUT(page, np.clip(lut, 0, 255).astype(np.uint8).reshape(256, 1, 3))
    sat = rng.uniform(0.75, 1.1) if saturation is None else saturation
    if abs(sat - 1) > 0.02:
        m = np.full((3, 3), (1 - sat) / 3, np.float32) + np.eye(3, dtype=np.float32) * sat
        m += rng.normal(0, 0.02, (3, 3)).astype(np.float32)  # printer colour shift
        out = cv2.transform(out, m / m.sum(1, keepdims=True))
    return out


def tone_curve_lut(rng, black: float, white: float, gamma: float, s_curve: float) -> np.ndarray:
    x = np.linspace(0, 1, 256)
    y = x ** gamma
    if s_curve:
        y = y + s_curve * (y - 0.5) * (1 - np.abs(2 * y - 1))  # contrast boost around mid grey
    return np.clip(black + (white - black) * np.clip(y, 0, 1), 0, 255).astype(np.uint8)


# --- surfaces -------------------------------------------------------------------------------------
def background(rng, width: int, height: int, kind: str | None = None) -> np.ndarray:
    """Low-resolution RGB uint8 texture of what lies around the paper (table, desk, cloth)."""
    kind = kind or rng.choice(["wood", "wood", "plain", "cloth", "granite"])
    if kind == "wood":
        img = _wood(rng, width, height)
    elif kind == "cloth":
        base = np.float32(rng.uniform(40, 220)) * rng.uniform(0.75, 1.15, 3).astype(np.float32)
        fine = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 0.8)
        img = base[None, None] * (1 + 0.12 * fine + 0.06 * fractal_noise(rng, width, height, 3, 2))[..., None]
    elif kind == "granite":
        base = np.float32(rng.uniform(60, 200)) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
        speck = (rng.random((height, width)) < 0.08).astype(np.float32) * rng.uniform(-0.5, 0.4)
        speck = cv2.GaussianBlur(speck, (0, 0), 0.7)
        img = base[None, None] * (1 + speck + 0.05 * fractal_noise(rng, width, height, 4, 3))[..., None]
    elif kind == "dark":
        base = np.array(rng.uniform(15, 60, 3), np.float32)
        img = base[None, None] * (1 + 0.25 * fractal_noise(rng, width, height, 2, 3))[..., None]
    else:  # plain desk, any colour
        base = np.array(rng.choice([(230, 230, 228), (60, 60, 62), (200, 190, 175), (150, 160, 170), (35, 35, 38)]), np.float32)
        base = base * rng.uniform(0.85, 1.1, 3)
        img = base[None, None] * (1 + 0.06 * fractal_noise(rng, width, height, 2, 4))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _wood(rng, width: int, height: int) -> np.ndarray:
    """Planks with long wavy grain lines and fibres, grain along x or y."""
    vertical = rng.random() < 0.5
    w, h = (height, width) if vertical else (width, height)
    base = np.array(rng.choice([(186, 140, 96), (150, 100, 62), (96, 62, 40), (205, 170, 125), (120, 105, 95),
                                (170, 120, 80)]), np.float32) * rng.uniform(0.85, 1.1, 3)
    # noise that is smooth along the grain (x) and fast across it (y)
    def streaks(cells_x, cells_y):
        g = rng.standard_normal((cells_y, cells_x)).astype(np.float32)
        return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    period = rng.uniform(0.01, 0.03) * h
    yy = np.arange(h, dtype=np.float32)[:, None]
    rings = np.sin(2 * np.pi * (yy / period + 1.2 * streaks(4, max(4, int(h / period / 3)))))
    fibres = streaks(max(2, w // 60), h // 2)
    plank_h = h * rng.uniform(0.15, 0.45)
    plank = np.floor((yy + rng.uniform(0, plank_h)) / plank_h).astype(int)
    plank_gain = 1 + 0.08 * rng.standard_normal(int(plank.max()) + 2).astype(np.float32)
    seam = np.abs(((yy + rng.uniform(0, plank_h)) % plank_h) - plank_h / 2) > plank_h / 2 - 1.2
    shade = (1 + 0.07 * rings + 0.05 * fibres + 0.05 * smooth_noise(rng, w, h, 3)) * plank_gain[plank]
    shade = shade * np.where(seam, np.float32(0.6), np.float32(1.0))
    img = base[None, None] * shade[..., None]
    return np.ascontiguousarray(img.transpose(1, 0, 2)) if vertical else img


def facet_shading(rng, width: int, height: int, n_facets: int, strength: float) -> np.ndarray:
    """(h, w) float gain of crumpled paper: flat facets (Voronoi cells of random seeds), each a
    plane tilted to the light its own way (a gain with its own level and gradient); the cell
    borders read as creases."""
    seeds = np.full((height, width), 255, np.uint8)
    seeds[rng.integers(0, height, n_facets), rng.integers(0, width, n_facets)] = 0
    sy, sx = np.nonzero(seeds == 0)  # raster order = label order (labels start at 1)
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    n = len(sx) + 1
    size = np.sqrt(width * height / max(n_facets, 1))
    level = np.r_[0, rng.normal(0, strength, n - 1)].astype(np.float32)
    gx = np.r_[0, rng.normal(0, strength / size, n - 1)].astype(np.float32)
    gy = np.r_[0, rng.normal(0, strength / size, n - 1)].astype(np.float32)
    cx = np.r_[0, sx].astype(np.float32)
    cy = np.r_[0, sy].astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 1 + level[labels] + gx[labels] * (xx - cx[labels]) + gy[labels] * (yy - cy[labels])
    return cv2.GaussianBlur(shade, (0, 0), 0.5)


def lighting(rng, width: int, height: int, strength: float = 1.0, shadows: int | None = None) -> np.ndarray:
    """Low-resolution (height, width, 3) float gain: exposure, gradient, vignette, soft shadows,
    colour temperature."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u = xx / width - 0.5
    v = yy / height - 0.5
    gain = np.full((height, width), rng.uniform(0.82, 1.08), np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    gain *= 1 + strength * rng.uniform(0.05, 0.3) * (np.cos(ang) * u + np.sin(ang) * v)
    gain *= 1 - strength * rng.uniform(0.0, 0.35) * (u * u + v * v) * 2
    gain *= 1 + strength * 0.06 * fractal_noise(rng, width, height, 2, 2)
    n_shadow = rng.choice([0, 0, 1, 1, 2]) if shadows is None else shadows
    for _ in range(n_shadow):
        mask = np.zeros((height, width), np.float32)
        # a hand / phone / head shadow: a blob entering from one side
        side = rng.integers(4)
        cx, cy = [(rng.uniform(0, 1), rng.uniform(-0.2, 0.1)), (rng.uniform(0.9, 1.2), rng.uniform(0, 1)),
                  (rng.uniform(0, 1), rng.uniform(0.9, 1.2)), (rng.uniform(-0.2, 0.1), rng.uniform(0, 1))][side]
        axes = (int(width * rng.uniform(0.15, 0.5)), int(height * rng.uniform(0.15, 0.5)))
        cv2.ellipse(mask, (int(cx * width), int(cy * height)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(width, height) * rng.uniform(0.02, 0.08))
        gain *= 1 - strength * rng.uniform(0.15, 0.45) * mask
    temp = rng.normal(0, 0.06)  # >0 warm (indoor bulbs), <0 cool (daylight / shade)
    cast = np.array([1 + temp, 1 + rng.normal(0, 0.015), 1 - temp], np.float32)
    return gain[..., None] * cast[None, None]


# --- stains (page space) --------------------------------------------------------------------------
def _blob(rng, size: int, roughness: float) -> np.ndarray:
    """A signed shape field of a blob in a (size, size) patch: > 0 inside, ~ distance units."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    r = np.hypot(xx - c, yy - c) / (size / 2)
    return 0.75 - r + roughness * fractal_noise(rng, size, size, cells=3, octaves=4)


def stain_field(rng, width: int, height: int, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """(absorbance (h, w, 3) float32, wetness (h, w) float32) of liquid stains at low resolution.

    Each stain darkens by a colour-specific absorbance, with a darker tide line at its rim;
    coffee-cup rings are thin broken annuli."""
    ab = np.zeros((height, width, 3), np.float32)
    wet = np.zeros((height, width), np.float32)
    colours = {
        "coffee": (0.25, 0.5, 0.85), "tea": (0.12, 0.28, 0.6), "water": (0.06, 0.08, 0.14),
        "dirt": (0.3, 0.33, 0.38), "wine": (0.3, 0.75, 0.55),
    }
    for _ in range(n):
        kind = rng.choice(["coffee", "coffee", "tea", "water", "water", "dirt", "wine"], p=[.2, .15, .15, .2, .15, .1, .05])
        col = np.array(colours[kind], np.float32) * rng.uniform(0.5, 1.3)
        size = int(min(width, height) * rng.uniform(0.12, 0.7))
        size = max(size, 16)
        x0 = int(rng.uniform(-0.2, 1.0) * width - size * 0.2)
        y0 = int(rng.uniform(-0.2, 1.0) * height - size * 0.2)
        if rng.random() < 0.3 and kind in ("coffee", "tea"):  # cup ring
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
            c = (size - 1) / 2
            r = np.hypot(xx - c, yy - c) / (size / 2)
            wobble = 0.02 * fractal_noise(rng, size, size, 3, 3)
            ring = np.exp(-(((r + wobble) - 0.85) / rng.uniform(0.015, 0.04)) ** 2)
            gaps = np.clip(0.6 + fractal_noise(rng, size, size, 4, 2), 0, 1)
            dens = ring * gaps + 0.08 * (r < 0.85) * np.clip(0.5 + 0.5 * fractal_noise(rng, size, size, 3, 3), 0, 1)
            wet_patch = np.zeros_like(r)
        else:
            f = _blob(rng, size, rng.uniform(0.15, 0.35))
            inside = np.clip(f / 0.03, 0, 1)
            tide = np.exp(-((f - 0.015) / rng.uniform(0.01, 0.025)) ** 2) * (f > -0.01)
            body = rng.uniform(0.2, 0.6) * (0.6 + 0.4 * np.clip(fractal_noise(rng, size, size, 4, 3), -1, 1))
            dens = inside * body + rng.uniform(0.5, 1.2) * tide
            wet_patch = inside
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + size, width), min(y0 + size, height)
        if xb <= xa or yb <= ya:
            continue
        sub = dens[ya - y0:yb - y0, xa - x0:xb - x0]
        ab[ya:yb, xa:xb] += sub[..., None] * col
        wet[ya:yb, xa:xb] = np.maximum(wet[ya:yb, xa:xb], wet_patch[ya - y0:yb - y0, xa - x0:xb - x0])
    return ab, wet


# --- mould (page space) ---------------------------------------------------------------------------
MOULD_COLOURS = np.array([
    (35, 45, 30), (50, 55, 45), (70, 80, 50), (95, 110, 70), (90, 70, 45), (60, 50, 40),
    (130, 120, 90), (180, 150, 110), (200, 200, 185), (60, 85, 90), (160, 120, 120), (30, 30, 30),
], np.float32)


def paint_mould(page: np.ndarray, rng, n_clusters: int) -> np.ndarray:
    """Mould on a uint8 RGB page: clusters of colonies of varied colour and size (dense dark
    core, concentric growth zones, fuzzy filamentous rim, satellite specks) over a faint diffuse
    discolouration, plus scattered foxing dots."""
    h, w = page.shape[:2]
    scale = min(h, w) / 1700.0
    # diffuse discoloured patches where the clusters grow, at 1/8 size
    lw, lh = -(-w // 8), -(-h // 8)
    patch = np.zeros((lh, lw), np.float32)
    centres = []
    for _ in range(n_clusters):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        spread = rng.uniform(30, 260) * scale
        centres.append((cx, cy, spread))
        cv2.circle(patch, (int(cx / 8), int(cy / 8)), max(1, int(spread * rng.uniform(0.8, 1.8) / 8)),
                   float(rng.uniform(0.05, 0.3)), -1)
    patch = cv2.GaussianBlur(patch, (0, 0), max(lw, lh) * 0.015) * np.clip(0.7 + 0.6 * fractal_noise(rng, lw, lh, 8, 3), 0, 2)
    tint = np.array(rng.choice([(0.06, 0.12, 0.3), (0.2, 0.1, 0.28), (0.12, 0.16, 0.2)]), np.float32)
    out = multiply_field(page, np.exp(-patch[..., None] * tint * 3), 255.0)
    for cx, cy, spread in centres:
        base_col = MOULD_COLOURS[rng.integers(len(MOULD_COLOURS))]
        for _ in range(int(rng.integers(5, 55))):
            radius = float(np.clip(rng.lognormal(np.log(8 * scale), 0.9), 1.5, 120 * scale))
            col = np.clip(base_col * rng.uniform(0.75, 1.25) + rng.normal(0, 10, 3), 0, 255)
            _paint_colony(out, rng, cx + rng.normal(0, spread), cy + rng.normal(0, spread), radius, col)
    n_fox = int(rng.integers(0, 400) * scale)  # foxing: tiny brownish dots all over
    for x, y in zip(rng.integers(0, w, n_fox), rng.integers(0, h, n_fox)):
        paper = out[y, x].astype(np.float32)
        colour = paper + rng.uniform(0.2, 0.6) * (np.array([120, 95, 60], np.float32) - paper)
        cv2.circle(out, (int(x), int(y)), int(rng.integers(1, 3)), tuple(float(v) for v in colour), -1, cv2.LINE_AA)
    return out


_GRAIN_STD = 0.116  # std of uniform noise (1/sqrt(12)) after a sigma-0.7 Gaussian blur


def _paint_colony(out: np.ndarray, rng, px: float, py: float, radius: float, col: np.ndarray) -> None:
    """One colony, alpha-blended into `out` (uint8) in place. Large colonies are modelled at a
    reduced scale and upsampled (they are fuzzy anyway), which keeps hundreds of colonies cheap."""
    h, w = out.shape[:2]
    size = int(radius * 4.5) + 6
    x0, y0 = int(px) - size // 2, int(py) - size // 2
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
    if xb <= xa or yb <= ya:
        return
    reduce = max(1, int(radius // 12))
    n = -(-size // reduce)
    rad = radius / reduce
    coords = (np.arange(n, dtype=np.float32) - (n - 1) / 2)
    dx = np.broadcast_to(coords[None, :], (n, n))
    dy = np.broadcast_to(coords[:, None], (n, n))
    mag, ang = cv2.cartToPolar(np.ascontiguousarray(dx), np.ascontiguousarray(dy))
    r = mag / np.float32(rad)
    # irregular outline: a random periodic radius profile looked up by angle
    t = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    profile = np.ones(256, np.float32)
    for k in (2, 3, 5, 8, 13):
        profile += np.float32(rng.uniform(0, 0.3 / np.sqrt(k))) * np.sin(k * t + rng.uniform(0, 6.3)).astype(np.float32)
    edge = profile.take((ang * np.float32(256 / (2 * np.pi))).astype(np.int32) & 255)
    grain = rng.random((n, n), dtype=np.float32)
    fine = (cv2.GaussianBlur(grain, (0, 0), 0.7) - np.float32(0.5)) * np.float32(1 / _GRAIN_STD)
    # filamentous rim: the edge frays by per-pixel noise; growth zones; darker centre
    body = np.clip((edge - r) * np.float32(1 / 0.15) + 0.5 * fine, 0, 1)
    zones = 1 - np.float32(rng.uniform(0, 0.25)) * (0.5 + 0.5 * np.cos(
        np.float32(2 * np.pi * rng.uniform(1.5, 3.5)) * (r + 0.15 * fine) + np.float32(rng.uniform(0, 6.3))))
    core = np.exp(-(r * np.float32(1 / rng.uniform(0.25, 0.5))) ** 2)
    dens = body * np.float32(rng.uniform(0.45, 0.9)) * zones * (0.75 + 0.25 * np.clip(fine, -1, 1))
    # satellite specks: sparse grains around the colony
    sat = (grain < 0.015 * np.exp(-np.maximum(r - edge, 0) / 0.6)) & (r > edge)
    alpha = np.minimum(np.maximum(dens, sat * np.float32(rng.uniform(0.4, 0.8))), 0.97)
    if reduce > 1:
        alpha = cv2.resize(alpha, (n * reduce, n * reduce), interpolation=cv2.INTER_LINEAR)
        core = cv2.resize(core, (n * reduce, n * reduce), interpolation=cv2.INTER_LINEAR)
    alpha = alpha[ya - y0:yb - y0, xa - x0:xb - x0, None]
    colour = col.astype(np.float32) * (1 - 0.45 * core[ya - y0:yb - y0, xa - x0:xb - x0, None])
    region = out[ya:yb, xa:xb].astype(np.float32)
    out[ya:yb, xa:xb] = np.clip(region + alpha * (colour - region), 0, 255).astype(np.uint8)


# --- creases, folds, tears (page space) ------------------------------------------------------------
def jagged_line(rng, p0, p1, step: float, jitter: float) -> np.ndarray:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    n = max(int(np.linalg.norm(p1 - p0) / step), 2)
    t = np.linspace(0, 1, n)[:, None]
    pts = p0 + (p1 - p0) * t
    d = p1 - p0
    nrm = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
    walk = np.cumsum(rng.normal(0, jitter, n))
    walk -= np.linspace(0, 1, n) * walk[-1]  # end where asked
    return pts + walk[:, None] * nrm + rng.normal(0, jitter * 0.3, (n, 2))


def crease_shading(rng, width: int, height: int, n_lines: int, scale: float) -> np.ndarray:
    """(h, w) float gain around 1: thin light/dark pairs of crumple creases."""
    dark = np.zeros((height, width), np.uint8)
    light = np.zeros((height, width), np.uint8)
    for _ in range(n_lines):
        p0 = rng.uniform([0, 0], [width, height])
        ang = rng.uniform(0, np.pi)
        length = rng.uniform(0.03, 0.35) * max(width, height)
        p1 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
        pts = jagged_line(rng, p0, p1, step=8 * scale, jitter=1.5 * scale)
        off = np.array([-np.sin(ang), np.cos(ang)]) * max(1.0, 1.2 * scale)
        val = int(rng.integers(40, 140))
        cv2.polylines(dark, [np.round(pts * 16).astype(np.int32)], False, val, 1, cv2.LINE_AA, shift=4)
        cv2.polylines(light, [np.round((pts + off) * 16).astype(np.int32)], False, val // 2, 1, cv2.LINE_AA, shift=4)
    g = 1.0 - dark.astype(np.float32) / 255 * 0.6 + light.astype(np.float32) / 255 * 0.4
    return cv2.GaussianBlur(g, (0, 0), 0.6 * max(scale, 1))
