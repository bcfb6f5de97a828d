"""Degradations that turn a clean rendered page into each competition image type (SPEC §1).

    degrade(page_rgb, image_type, rng) -> DegradedImage(image, orientation, warp)

`warp.forward` maps page pixels (x, y) to output-image pixels exactly (every geometric step:
skew, perspective, lens, paper curl / wrinkles / folds, crop, resize and the orientation turn);
`warp.backward` maps output pixels back to the page.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .recipes import RECIPES
from .warp import Warp

IMAGE_TYPES = ("0001", "0003", "0004", "0005", "0006", "0009", "0010", "0011", "0012")


@dataclass
class DegradedImage:
    image: np.ndarray  # uint8 (H, W, 3) RGB, the final image file content
    orientation: int  # layout orientation code 0..7 applied (0 = upright)
    warp: Warp  # page pixel -> output image pixel geometry


def degrade(page_rgb: np.ndarray, image_type: str, rng: np.random.Generator) -> DegradedImage:
    """Make an image of competition type `image_type` from the clean page `page_rgb` (uint8 RGB)."""
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
