"""Degradations that turn a clean rendered page into each competition image type (SPEC §1).

    degrade(page_rgb, image_type, rng) -> DegradedImage(image, orientation, warp)

`warp.forward` maps page pixels (x, y) to output-image pixels exactly (every geometric step:
skew, perspective, lens, paper curl / wrinkles / folds, crop, resize and the orientation turn);
`warp.backward` maps output pixels back to the page.

Types (randomised per call):
- 0001 the page itself, identity warp.
- 0003 / 0004 colour print scanned in colour / black-and-white: paper tint and ink tone of the
  print, skew <= 2 deg and shift on a scanner lid, scan height 1640-1665 px, blur, tone curve
  (BW: sometimes near a threshold), dust streaks, noise, JPEG 55-92; 3% turned by 180 deg.
- 0005 phone photo of a print: tilted pinhole camera (perspective), radial lens distortion,
  paper sag/curl (smooth displacement), table texture (wood, desk, cloth, granite) with the sheet's
  drop shadow, uneven light + soft shadows + colour temperature, defocus / motion blur,
  sharpening, noise, JPEG; 4032 x 3024 or 3024 x 4032; 11% turned by 90/180/270 deg.
- 0006 phone photo of a laptop screen: the page in a viewer window on a screen of a common
  resolution, screen tone (lifted blacks, bluish white), bezel and keyboard deck, RGB sub-pixel
  grid sampled by the camera (moire), glare and ambient veil, perspective, lens, noise, JPEG.
- 0009 photo of a stained / soaked print: coffee, tea, water, wine and dirt stains with tide
  lines and cup rings, yellowing, ink bleed where wet, cockling and wrinkles (displacement and
  shading), plus the 0005 photo.
- 0010 photo of a badly damaged print: folds (kink, shading, crease line, rubbed-off ink),
  crumple facets and creases, tears and missing pieces (the table shows through), wrinkles,
  dirt, worn edges, plus the 0005 photo.
- 0011 / 0012 colour / black-and-white scan of a mouldy print: clusters of colonies (dark
  cores, growth zones, fuzzy rims, satellite specks) over diffuse discolouration, foxing dots,
  plus the 0003 / 0004 scan.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgdigit.io import IMAGE_TYPES  # the competition's image types: one list for the whole package

from .recipes import RECIPES
from .warp import Warp


@dataclass
class DegradedImage:
    image: np.ndarray  # uint8 (H, W, 3) RGB, the final image file content
    orientation: int  # layout orientation code 0..7 applied (0 = upright)
    warp: Warp  # page pixel -> output image pixel geometry


def degrade(page_rgb: np.ndarray, image_type: str, rng: np.random.Generator) -> DegradedImage:
    """Make an image of competition type `image_type` from the clean page `page_rgb` (uint8 RGB).

    All randomness comes from `rng` (a Generator, or a seed): same state, same bytes. Cost on one
    core: scans ~0.1 s, photos 0.25-0.4 s at 4032 x 3024 (see the module docs of `recipes`).
    """
    rng = np.random.default_rng(rng)
    image_type = str(image_type)
    if image_type not in IMAGE_TYPES:
        raise ValueError(f"unknown image type {image_type!r}; valid types: {', '.join(IMAGE_TYPES)}")
    page = np.asarray(page_rgb)
    if page.dtype != np.uint8 or page.ndim != 3 or page.shape[2] != 3:
        raise ValueError(f"page_rgb must be a uint8 (H, W, 3) RGB array, got {page.dtype} {page.shape}")
    if image_type == "0001":
        return DegradedImage(page, 0, Warp([], (page.shape[1], page.shape[0])))
    page = np.ascontiguousarray(page)
    image, code, warp = RECIPES[image_type](page, rng)
    return DegradedImage(np.ascontiguousarray(image), int(code), warp)


__all__ = ["degrade", "DegradedImage", "Warp", "IMAGE_TYPES"]
