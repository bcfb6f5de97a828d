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


def add_noise(img: np.ndarray, rng, sigma: float, chroma: float = 0.3) -> np.ndarray:
    """Add Gaussian noise (luma sigma in grey levels, plus `chroma` times as much per channel)."""
    if sigma <= 0:
        return img
    seed_cv2(rng)
    h, w = img.shape[:2]
    luma = np.empty((h, w), np.int16)
    cv2.randn(luma, 0, sigma)
    if img.ndim == 2:
        return cv2.add(img, luma, dtype=cv2.CV_8U)
    if chroma > 0:
        small = np.empty((h // 2 + 1, w // 2 + 1, 3), np.int16)
        cv2.randn(small, (0, 0, 0), (sigma * chroma,) * 3)
        noise = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        noise += luma[..., None]
    else:
        noise = cv2.merge([luma, luma, luma])
    return cv2.add(img, noise, dtype=cv2.CV_8U)


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
    if paper_tint is None:
        paper_tint = np.array([rng.uniform(238, 252), rng.uniform(234, 250), rng.uniform(222, 246)])
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
        base = np.array(rng.choice([(186, 140, 96), (150, 100, 62), (96, 62, 40), (205, 170, 125), (120, 105, 95)]), np.float32)
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        v = -xx * np.sin(ang) + yy * np.cos(ang)
        period = rng.uniform(0.012, 0.04) * max(width, height)
        warp = fractal_noise(rng, width, height, cells=3, octaves=3) * period * 2.0
        grain = np.sin(2 * np.pi * (v + warp) / period)
        fine = smooth_noise(rng, width, height, cells=max(width, height) / 3.0)
        shade = 1 + 0.10 * grain + 0.05 * fine + 0.08 * fractal_noise(rng, width, height, 2, 2)
        img = base[None, None] * shade[..., None]
    elif kind == "cloth":
        base = np.array(rng.uniform(40, 220, 3), np.float32)
        fine = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 0.8)
        img = base[None, None] * (1 + 0.12 * fine + 0.06 * fractal_noise(rng, width, height, 3, 2))[..., None]
    elif kind == "granite":
        base = np.array(rng.uniform(60, 200, 3), np.float32)
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
    """Mould colonies on a uint8 RGB page: clusters of fuzzy, irregular spots of varied colour and
    size, with satellite specks and a faint discoloured halo."""
    out = page.astype(np.float32)
    h, w = page.shape[:2]
    scale = min(h, w) / 1700.0
    for _ in range(n_clusters):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        spread = rng.uniform(40, 350) * scale
        base_col = MOULD_COLOURS[rng.integers(len(MOULD_COLOURS))]
        n_col = int(rng.integers(3, 40))
        for _ in range(n_col):
            radius = float(np.clip(rng.lognormal(np.log(10 * scale), 0.8), 2, 120 * scale))
            px = cx + rng.normal(0, spread)
            py = cy + rng.normal(0, spread)
            col = np.clip(base_col * rng.uniform(0.75, 1.25) + rng.normal(0, 12, 3), 0, 255)
            _paint_colony(out, rng, px, py, radius, col)
    # foxing: a scatter of tiny brownish dots over the whole page
    n_fox = int(rng.integers(0, 400) * scale)
    if n_fox:
        fox = np.zeros((h, w), np.float32)
        xs = rng.integers(0, w, n_fox)
        ys = rng.integers(0, h, n_fox)
        for x, y in zip(xs, ys):
            cv2.circle(fox, (int(x), int(y)), int(rng.integers(1, 3)), float(rng.uniform(0.2, 0.7)), -1, cv2.LINE_AA)
        fox = cv2.GaussianBlur(fox, (0, 0), 0.8)[..., None]
        out = out * (1 - fox) + fox * np.array([120, 95, 60], np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _paint_colony(out: np.ndarray, rng, px: float, py: float, radius: float, col: np.ndarray) -> None:
    h, w = out.shape[:2]
    size = int(radius * 5) + 4
    x0, y0 = int(px) - size // 2, int(py) - size // 2
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
    if xb <= xa or yb <= ya:
        return
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    dx, dy = xx - c, yy - c
    r = np.hypot(dx, dy) / radius
    theta = np.arctan2(dy, dx)
    edge = 1.0
    for k in (3, 5, 7, 11):
        edge = edge + rng.uniform(0, 0.25 / np.sqrt(k)) * np.sin(k * theta + rng.uniform(0, 6.3))
    speck = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), max(radius * 0.08, 0.6))
    speck = (speck - speck.mean()) / (speck.std() + 1e-6)
    core = np.clip((edge - r) / 0.25 + 0.3 * speck, 0, 1)
    dens = core * rng.uniform(0.55, 0.95) * (1 - 0.35 * np.exp(-(r / 0.35) ** 2) * (rng.random() < 0.4))
    halo = np.exp(-np.maximum(r - edge, 0) / 0.5) * (r > edge * 0.9) * rng.uniform(0.05, 0.2)
    # satellite specks: sparse dots around the colony
    sat = (rng.random((size, size)) < 0.02 * np.exp(-np.maximum(r - edge, 0) / 0.7)).astype(np.float32)
    sat = cv2.GaussianBlur(sat, (0, 0), max(radius * 0.05, 0.5)) * 3
    alpha = np.clip(dens + halo + sat * (r > edge), 0, 0.97)[ya - y0:yb - y0, xa - x0:xb - x0, None]
    region = out[ya:yb, xa:xb]
    region *= 1 - alpha
    region += alpha * col


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
