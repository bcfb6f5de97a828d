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


def _to_uint8(img: np.ndarray, path: str) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8) if img.max() > 255 else img.astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        finite = img[np.isfinite(img)]
        if finite.size == 0:
            raise InputError(f"{path}: image holds no finite pixel values")
        hi = 1.0 if finite.max() <= 1.0 else float(finite.max())
        return np.clip(np.nan_to_num(img) / hi * 255.0, 0, 255).astype(np.uint8)
    raise InputError(f"{path}: unsupported pixel type {img.dtype}")


def _to_rgb(img: np.ndarray, path: str) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim != 3:
        raise InputError(f"{path}: unsupported image shape {img.shape}")
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:  # composite on white paper: transparent areas are blank paper, not black ink
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        rgb = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB).astype(np.float32)
        return (rgb * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    raise InputError(f"{path}: unsupported number of channels ({channels})")


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
        img = _decode_with_pillow(path)
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE_PX:
        raise InputError(f"{path}: image is only {w} x {h} px, too small to hold a readable ECG "
                         f"(needs at least {MIN_SIDE_PX} px on each side)")
    rgb = _to_rgb(_to_uint8(img, path), path)
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
    if arr.ndim == 3 and arr.shape[2] in (3, 4):  # Pillow gives RGB(A); the converters expect BGR(A)
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    if arr.dtype == np.int32:
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
    return arr
