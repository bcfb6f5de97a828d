"""Reading user images robustly: any common format, depth and channel count -> RGB uint8.

Bad files give an InputError naming the file and the problem (never a traceback from inside
OpenCV or numpy). Very large images are downscaled to a bounded pixel count: the canonical frame
is 4400 x 1700, so about 40 MP keeps every useful detail while memory stays bounded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from ecgdigit.errors import InputError

MIN_SIDE_PX = 200  # below this a page of 12 leads cannot be read at all
MAX_PIXELS = 40_000_000


@dataclass
class LoadedImage:
    image: np.ndarray  # uint8 (H, W, 3) RGB
    path: str
    original_size: tuple  # (width, height) of the file
    scale: float  # image = original * scale (1.0 unless downscaled)


def to_rgb_uint8(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Any pixel array in RGB channel order -> contiguous uint8 (H, W, 3) RGB.

    Grey (H, W) / (H, W, 1), RGB, RGBA (composited on white: transparent areas are blank paper,
    not black ink); uint8, bool, uint16 (16-bit scans; values that never pass 255 are kept as
    they are), other integers (clipped) and floats (0..1 scaled by 255, larger ranges clipped).
    `what` names the image in errors.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected a numpy image array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(f"{what}: image of shape {image.shape} is neither grayscale nor RGB(A)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{what}: image of shape {image.shape} has no pixels")
    if image.dtype == np.uint8:
        out = image
    elif image.dtype == np.bool_:
        out = image.astype(np.uint8) * 255
    elif image.dtype == np.uint16:
        out = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8) if image.max() > 255 else image.astype(np.uint8)
    elif np.issubdtype(image.dtype, np.integer):
        out = np.clip(image, 0, 255).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        img = np.nan_to_num(image.astype(np.float32))
        if img.max(initial=0.0) <= 1.0:
            img = img * 255.0
        out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    else:
        raise InputError(f"{what}: pixel type {image.dtype} is not supported")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 4:
        alpha = out[:, :, 3:4].astype(np.float32) / 255.0
        out = (out[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)


def load_image(path: Union[str, os.PathLike], max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read `path` into an RGB uint8 array (EXIF orientation applied for JPEGs)."""
    path = str(path)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: file not found")
    if not p.is_file():
        raise InputError(f"{path}: not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is not None and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        # IMREAD_UNCHANGED ignores the EXIF orientation phones write; decode again honouring it.
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        img = _decode_with_pillow(path)  # RGB(A) already
    elif img.ndim == 3 and img.shape[2] in (3, 4):  # OpenCV decodes BGR(A)
        img = img[:, :, [2, 1, 0, 3][: img.shape[2]]]
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE_PX:
        raise InputError(f"{path}: image is only {w} x {h} px, too small to hold a readable ECG "
                         f"(needs at least {MIN_SIDE_PX} px on each side)")
    rgb = to_rgb_uint8(img, path)
    scale = 1.0
    if h * w > max_pixels:
        scale = float(np.sqrt(max_pixels / (h * w)))
        rgb = cv2.resize(rgb, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return LoadedImage(np.ascontiguousarray(rgb), path, (w, h), scale)


def _decode_with_pillow(path: str) -> np.ndarray:
    """Second chance for files OpenCV cannot decode (e.g. some TIFF/GIF variants)."""
    try:
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("RGB", "RGBA", "L", "I;16", "I", "F"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except Exception as exc:  # Pillow raises many kinds for corrupt data
        raise InputError(f"{path}: cannot decode image - corrupt, truncated or not an image ({exc})") from None
    if arr.dtype == np.int32:
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
    return arr
