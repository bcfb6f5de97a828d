"""The rectifier interface shared by the classical and (later) learned implementations.

A method finds the page's large-grid nodes in the input image: for every node (j, i) of the
letter grid (plus a margin ring of `NODE_MARGIN` nodes around it, so that the canonical frame's
edges interpolate rather than extrapolate) its image position in ORIGINAL pixels. Everything
after that is shared here: the dense canonical->image map is interpolated from that node field
(bicubic in node index, evaluated on a coarse mesh, upsampled with cv2.resize) and the canonical
image is made by ONE cv2.remap of the original full-resolution image.

Bad input policy: arrays that are not images at all (wrong dimensions, no pixels, non-numeric)
raise `ecgdigit.errors.InputError`. Images that are images but not usable ECG pages (too small,
blank, no grid, no traces) do NOT raise: they come back with `confidence == 0.0` and a readable
`reason`, and a fallback map that stretches the whole image onto the page, so a batch run can
list them and go on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
from scipy import ndimage

from ecgdigit import layout
from ecgdigit.errors import InputError
from ecgdigit.image_io import to_rgb_uint8

N_ROWS = layout.LETTER.grid_horizontal_lines  # 44 horizontal lines j
N_COLS = layout.LETTER.grid_vertical_lines  # 57 vertical lines i
NODE_MARGIN = 2  # extra node rings carried around the page grid for interpolation at the frame edges
DENSE_MAP_STEP = 4  # coarse mesh step (canonical px) before cv2.resize up to the full frame


@dataclass
class Rectification:
    canonical: np.ndarray  # uint8 (1700, 4400, 3) RGB, one cv2.remap of the original image
    map_x: np.ndarray  # float32 (1700, 4400): image x of each canonical pixel
    map_y: np.ndarray  # float32 (1700, 4400): image y of each canonical pixel
    orientation: int  # layout orientation code of the input (0 = upright)
    nodes: np.ndarray  # (44, 57, 2) float64 image px (x, y) of large-grid node (j, i)
    node_found: np.ndarray  # (44, 57) bool: detected (True) or modelled (False)
    confidence: float  # 0..1; 0 means rejected, see `reason`
    reason: str = ""  # why the confidence is low / the image was rejected ("" when fine)
    timings: Dict[str, float] = field(default_factory=dict)  # seconds per stage
    method: str = "classical"

    @property
    def rejected(self) -> bool:
        return self.confidence <= 0.0


def as_rgb_uint8(image) -> np.ndarray:
    """Any reasonable image array (RGB order) -> contiguous uint8 RGB (H, W, 3); see
    `ecgdigit.image_io.to_rgb_uint8`. Not an image -> InputError."""
    return to_rgb_uint8(image, "rectify")


def canonical_mesh(step: int = DENSE_MAP_STEP) -> Tuple[np.ndarray, np.ndarray, Tuple[int, int]]:
    """Canonical (x, y) of a coarse mesh whose cv2.resize by `step` lands on the full frame.

    cv2.resize (INTER_LINEAR) samples source pixel (X + 0.5) / step - 0.5 for destination X, so
    coarse pixel c stands for canonical x = (c + 0.5) * step - 0.5.
    """
    w = layout.CANONICAL_WIDTH // step
    h = layout.CANONICAL_HEIGHT // step
    xs = (np.arange(w) + 0.5) * (layout.CANONICAL_WIDTH / w) - 0.5
    ys = (np.arange(h) + 0.5) * (layout.CANONICAL_HEIGHT / h) - 0.5
    cx, cy = np.meshgrid(xs, ys)
    return cx, cy, (w, h)


def dense_map_from_nodes(node_field: np.ndarray, margin: int = NODE_MARGIN,
                         step: int = DENSE_MAP_STEP) -> Tuple[np.ndarray, np.ndarray]:
    """Node field (44 + 2m, 57 + 2m, 2) image px of nodes j = -m.., i = -m.. -> full dense map.

    The map is bicubic in node index (a node's neighbourhood is about flat, so this follows
    perspective and curl closely), evaluated on a coarse mesh and upsampled by cv2.resize.
    """
    cx, cy, (w, h) = canonical_mesh(step)
    x_mm, y_mm = layout.canonical_to_mm(cx, cy)
    fi = x_mm / layout.LARGE_GRID_MM + margin
    fj = y_mm / layout.LARGE_GRID_MM + margin
    coords = np.stack([fj.ravel(), fi.ravel()])
    out = []
    for c in range(2):
        v = ndimage.map_coordinates(node_field[:, :, c].astype(np.float64), coords, order=3, mode="nearest")
        out.append(cv2.resize(v.reshape(h, w).astype(np.float32), (layout.CANONICAL_WIDTH, layout.CANONICAL_HEIGHT),
                              interpolation=cv2.INTER_LINEAR))
    return out[0], out[1]


def remap_to_canonical(image_rgb: np.ndarray, map_x: np.ndarray, map_y: np.ndarray,
                       interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """THE one resampling of the original image (white outside it, like paper)."""
    return cv2.remap(image_rgb, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(255, 255, 255))


def fallback_node_field(shape: Tuple[int, int], margin: int = NODE_MARGIN) -> np.ndarray:
    """Node field that assumes the image is exactly an upright letter page (used on rejection)."""
    h, w = shape
    jj, ii = np.meshgrid(np.arange(-margin, N_ROWS + margin), np.arange(-margin, N_COLS + margin), indexing="ij")
    x_mm, y_mm = layout.grid_node_mm(jj, ii)
    x = (x_mm / layout.LETTER.width_mm) * w - 0.5
    y = (y_mm / layout.LETTER.height_mm) * h - 0.5
    return np.stack([x, y], axis=-1)


def rejected_rectification(image_rgb: np.ndarray, reason: str, timings: Dict[str, float], method: str,
                           interpolation: int = cv2.INTER_LINEAR, orientation: int = 0) -> Rectification:
    """A confidence-0 Rectification with `reason` and the whole-image fallback map (see the module
    docstring's bad-input policy)."""
    return build_rectification(image_rgb, fallback_node_field(image_rgb.shape[:2], NODE_MARGIN),
                               np.zeros((N_ROWS, N_COLS), bool), orientation, 0.0, reason, timings, method,
                               interpolation)


def too_small_reason(image_rgb: np.ndarray, min_side: int) -> str:
    """The rejection reason for an image with a side under `min_side` px ("" when it is large enough)."""
    h, w = image_rgb.shape[:2]
    return f"image too small ({w} x {h} px; need at least {min_side} px a side)" if min(h, w) < min_side else ""


def largest_bright_region(blur: np.ndarray, min_fraction: float, max_fraction: float = 0.93,
                          within: Optional[np.ndarray] = None):
    """The page candidate in a smoothed uint8 brightness image: the largest Otsu-bright region with
    its holes filled, as a bool mask; None when it covers more than `max_fraction` of the image
    (a scan: the page is everything) or less than `min_fraction` (too little to be a page).
    `within` (bool mask): the threshold is Otsu's of the pixels under it, and the region lies there."""
    if within is None:
        _, bright = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        thr, _ = cv2.threshold(blur[within].reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        bright = (blur > thr) & within
    n, lab, stats, _ = cv2.connectedComponentsWithStats((bright > 0).astype(np.uint8), connectivity=4)
    if n <= 1:
        return None
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = ndimage.binary_fill_holes(lab == big)
    return mask if min_fraction <= float(mask.mean()) <= max_fraction else None


PAGE_MASK_SOLIDITY = 0.9  # a page mask less solid than this is not the whole page


def mask_solidity(mask: np.ndarray) -> float:
    """Area of a one-region bool mask over that of its convex hull: near 1 for a page (a
    quadrilateral, gently curled), lower for a region cut ragged by shading, stains or tint."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    hull_area = cv2.contourArea(cv2.convexHull(max(contours, key=cv2.contourArea)))
    return float(mask.sum()) / max(hull_area, 1.0)


BORDER_COLOUR_LIGHTNESS_WEIGHT = 0.3  # lightness counts this much against chroma (light falls unevenly on a table)
BORDER_COLOUR_CONTRAST = 8.0  # a page stands this far (Lab units) from the background around it ...
BORDER_COLOUR_SOLIDITY = 0.95  # ... as a region this solid (a sheet, not a shadow or a lit patch)
BORDER_COLOUR_LONG_SIDE = 256  # the mask is found on a copy this large


def border_colour_page_mask(rgb: np.ndarray, min_fraction: float, max_fraction: float = 0.93) -> Optional[np.ndarray]:
    """The page of a photo as the solid region whose colour differs from the image border's (the
    table or background around it), as a bool mask of `rgb`'s size; None when no such region is
    found. For a sheet on a background as bright as itself (a lit pink or grey cloth), where a
    brightness threshold joins the sheet to the background's highlights: the two differ in hue.
    Lightness is down-weighted (`BORDER_COLOUR_LIGHTNESS_WEIGHT`): uneven light changes it most."""
    h, w = rgb.shape[:2]
    s = BORDER_COLOUR_LONG_SIDE / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) \
        if s < 1 else rgb
    small = cv2.GaussianBlur(small, (0, 0), 2.0)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    e = max(1, min(small.shape[:2]) // 64)  # border strip
    border = np.concatenate([lab[:e].reshape(-1, 3), lab[-e:].reshape(-1, 3),
                             lab[:, :e].reshape(-1, 3), lab[:, -e:].reshape(-1, 3)])
    diff = lab - np.median(border, axis=0)
    diff[..., 0] *= BORDER_COLOUR_LIGHTNESS_WEIGHT
    dist = np.sqrt((diff ** 2).sum(axis=2))
    top = float(np.percentile(dist, 99))
    if top < BORDER_COLOUR_CONTRAST:
        return None
    mask = largest_bright_region(np.clip(dist * (255.0 / top), 0, 255).astype(np.uint8), min_fraction, max_fraction)
    if mask is None or mask_solidity(mask) < BORDER_COLOUR_SOLIDITY:
        return None
    if float(np.median(dist[mask])) - float(np.median(dist[~mask])) < BORDER_COLOUR_CONTRAST:
        return None
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


PORTRAIT_ELONGATION = 1.15  # a page mask this much longer than wide (a Letter sheet: 1.29) has a clear long axis
PORTRAIT_MAX_TILT_DEG = 30.0  # ... and it is upright-portrait when that axis is this close to vertical


def page_mask_is_portrait(mask: Optional[np.ndarray]) -> bool:
    """True when a page mask is clearly longer than wide with its long axis near vertical: the
    landscape page in it is turned by 90 or 270 degrees, whatever its content looks like (from
    the mask's second moments; False for no mask or a roundish one)."""
    if mask is None or not mask.any():
        return False
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    spread = np.hypot(2.0 * m["mu11"], m["mu20"] - m["mu02"])
    big, small = (m["mu20"] + m["mu02"] + spread) / 2.0, (m["mu20"] + m["mu02"] - spread) / 2.0
    if small <= 0 or np.sqrt(big / small) < PORTRAIT_ELONGATION:
        return False
    long_axis_deg = 0.5 * np.degrees(np.arctan2(2.0 * m["mu11"], m["mu20"] - m["mu02"]))  # from the x axis
    return abs(abs(long_axis_deg) - 90.0) <= PORTRAIT_MAX_TILT_DEG


def build_rectification(image_rgb: np.ndarray, node_field: np.ndarray, found: np.ndarray, orientation: int,
                        confidence: float, reason: str, timings: Dict[str, float], method: str,
                        interpolation: int = cv2.INTER_LINEAR) -> Rectification:
    import time

    t0 = time.perf_counter()
    map_x, map_y = dense_map_from_nodes(node_field)
    timings["dense_map"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    canonical = remap_to_canonical(image_rgb, map_x, map_y, interpolation)
    timings["remap"] = time.perf_counter() - t0
    m = NODE_MARGIN
    nodes = node_field[m:m + N_ROWS, m:m + N_COLS].astype(np.float64).copy()
    return Rectification(canonical=canonical, map_x=map_x, map_y=map_y, orientation=int(orientation),
                         nodes=nodes, node_found=found.astype(bool), confidence=float(np.clip(confidence, 0.0, 1.0)),
                         reason=reason, timings=timings, method=method)


# Below this confidence a page's geometry is not worth reading (the Digitizer refuses it, see
# ecgdigit.pipeline): on 36 dev images (seed 6100) the 3 images under 0.1 scored -13.1, -9.5 and
# -2.6 dB, a flat fallback +0.5 dB. A classical result under it also means "no usable grid": on
# pages printed without one the classical rectifier either rejects ("no periodic grid", "too few
# grid nodes") or locks onto scanner/screen texture with a near-zero confidence.
USABLE_CONFIDENCE = 0.1


# The reason for a page printed in another layout (trace rows where the competition layout has
# blank paper), given by the classical rectifier (its grid was found, so no other reading is
# tried) and by the gridless one: its leads would be read from the wrong rows.
FOREIGN_LAYOUT_REASON = "trace rows where the 3x4+II layout has none"


def foreign_layout_reason(n_rows: int) -> str:
    return (f"{FOREIGN_LAYOUT_REASON} ({n_rows} trace rows): another printed layout than 3x4+II, "
            f"whose leads would be read wrong")


def _grid_not_found(result: Rectification) -> bool:
    """The classical result says there is no usable grid (and not that the image is too small, or
    that the page is printed in another layout)."""
    if result.reason.startswith("image too small") or FOREIGN_LAYOUT_REASON in result.reason:
        return False
    return result.confidence < USABLE_CONFIDENCE


def rectify_to_canonical(image: np.ndarray, *, method: str = "classical", weights=None, **options) -> Rectification:
    """Rectify `image` (RGB or grayscale array, any size/orientation) to the canonical frame.

    method "classical": no weights, see `ecgdigit.rectify.classical`. Options are passed on to
    the method (classical: `interpolation` (cv2 flag), `work_px_per_box`). When it finds no usable
    grid, the layout-based `ecgdigit.rectify.gridless` rectifier is tried and wins if it is usable
    (confidence >= USABLE_CONFIDENCE) and more confident (its result has method "gridless"), or
    when it finds the page printed in another layout (its refusal then says so); otherwise the
    classical result (and its reason) stands.
    method "learned": `ecgdigit.rectify.learned.rectify_learned(image, weights=weights, **options)`
    (imported only when asked for, so the classical path needs no torch).
    Raises InputError for arrays that are not images; unusable pages give confidence 0 + reason.
    """
    if method == "classical":
        from ecgdigit.rectify.classical import rectify_classical

        result = rectify_classical(image, **options)
        if _grid_not_found(result):
            # pages printed without a grid: read the geometry from the trace layout instead
            from ecgdigit.rectify.gridless import rectify_gridless

            gridless = rectify_gridless(image, interpolation=options.get("interpolation", cv2.INTER_LINEAR))
            if gridless.confidence >= USABLE_CONFIDENCE and gridless.confidence > result.confidence:
                return gridless
            if FOREIGN_LAYOUT_REASON in gridless.reason:  # its refusal says more than "no grid"
                return gridless
        return result
    if method == "learned":
        from ecgdigit.rectify.learned import rectify_learned

        return rectify_learned(image, weights=weights, **options)
    raise InputError(f"rectify: unknown method {method!r} (expected 'classical' or 'learned')")
