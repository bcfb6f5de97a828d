"""Stage 2 behind one call: canonical-frame image -> 4 band maps -> 12-lead record.

`TraceModel` wraps a trained checkpoint (nets.unet.load_model): it feeds the network the frame at
the width it was trained on (checkpoint config extra["image_width"], default full width), crops the
full-size frame to the 1696 x 4352 network crop, and returns maps at the input's size. Without
weights, `digitize_canonical` falls back to the classical extractor.
"""
from __future__ import annotations

from typing import Mapping, Optional, Union

import cv2
import numpy as np

from ecgdigit.layout import CANONICAL_HEIGHT, CANONICAL_WIDTH, NETWORK_CROP_HEIGHT, NETWORK_CROP_WIDTH


def predict_band_maps(model, image: np.ndarray, device: Optional[str] = None, amp: bool = True) -> np.ndarray:
    """float32 (4, H, W) sigmoid maps of a loaded stage-2 SegmentationModel for a canonical-frame
    RGB image (uint8 H x W x 3, any scale of the canonical frame)."""
    import torch

    dev = torch.device(device) if device else next(model.parameters()).device
    width = int(model.config.extra.get("image_width", CANONICAL_WIDTH))
    return _band_maps(model, image, dev, bool(amp and dev.type == "cuda"), width)


def _band_maps(model, image: np.ndarray, device, amp: bool, work_w: int) -> np.ndarray:
    return _band_maps_batch(model, [image], device, amp, work_w)[0]


def _network_input(image: np.ndarray, work_w: int) -> np.ndarray:
    """A canonical-frame image (any scale) resized to the network's width (and, at full width,
    cropped to the network crop): uint8 (h, w, 3)."""
    h, w = image.shape[:2]
    work_h = int(round(CANONICAL_HEIGHT * work_w / CANONICAL_WIDTH))
    x = image if (h, w) == (work_h, work_w) else cv2.resize(image, (work_w, work_h), interpolation=cv2.INTER_AREA)
    if work_w == CANONICAL_WIDTH:  # the full frame: the network crop carries every trace
        x = x[:NETWORK_CROP_HEIGHT, :NETWORK_CROP_WIDTH]
    return x


def _band_maps_batch(model, images, device, amp: bool, work_w: int):
    """One forward pass over all `images` (canonical frames, each of any scale) -> a list of
    float32 (4, H, W) maps, each at its own image's size."""
    import torch

    work_h = int(round(CANONICAL_HEIGHT * work_w / CANONICAL_WIDTH))
    x = np.stack([_network_input(im, work_w) for im in images])
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float().div_(255.0).to(device)
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        probs = model.predict_proba(t).float().cpu().numpy()
    out = []
    for image, p in zip(images, probs):
        h, w = image.shape[:2]
        full = np.zeros((p.shape[0], work_h, work_w), dtype=np.float32)
        full[:, :p.shape[1], :p.shape[2]] = p
        if (work_h, work_w) != (h, w):
            full = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in full])
        out.append(full)
    return out


class TraceModel:
    """A stage-2 network ready for inference on canonical-frame RGB images (uint8 H x W x 3)."""

    def __init__(self, checkpoint, device: Optional[str] = None, amp: bool = True):
        import torch

        from ecgdigit.nets.unet import load_model

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(checkpoint, map_location=self.device).to(self.device).eval()
        self.amp = amp and self.device.type == "cuda"
        self.width = int(self.model.config.extra.get("image_width", CANONICAL_WIDTH))

    def band_maps(self, image: np.ndarray) -> np.ndarray:
        """float32 (4, H, W) sigmoid maps for a canonical-frame image of any scale (H, W, 3)."""
        return _band_maps(self.model, image, self.device, self.amp, self.width)

    def band_maps_batch(self, images) -> list:
        """`band_maps` of several canonical-frame images in one forward pass (one GPU batch)."""
        return _band_maps_batch(self.model, list(images), self.device, self.amp, self.width)


def canonical_band_maps(image: np.ndarray, model: Union["TraceModel", str, None] = None) -> np.ndarray:
    """(4, H, W) band maps of a canonical-frame RGB image: from `model` (a TraceModel or a checkpoint
    path) or, without one, from the classical extractor."""
    if model is None:
        from ecgdigit.trace.classical import classical_band_maps

        return classical_band_maps(image)
    if not isinstance(model, TraceModel):
        model = TraceModel(model)
    return model.band_maps(image)


def digitize_canonical(image: np.ndarray, lead_lengths: Mapping[str, int], fs: Optional[float] = None,
                       model: Union[TraceModel, str, None] = None, extract_options=None) -> dict:
    """Canonical-frame RGB image -> record (lead -> mV array of lead_lengths[lead] values).

    `model`: a TraceModel, a checkpoint path, or None for the classical extractor (whose readings
    the Digitizer chooses between, see `ecgdigit.pipeline.read_most_consistent`).
    """
    from dataclasses import replace

    from ecgdigit.trace.extract import ExtractOptions, extract_record

    h, w = image.shape[:2]
    o = extract_options or ExtractOptions()
    if (h, w) not in ((CANONICAL_HEIGHT, CANONICAL_WIDTH), (NETWORK_CROP_HEIGHT, NETWORK_CROP_WIDTH)):
        o = replace(o, frame_scale=(w / CANONICAL_WIDTH, h / CANONICAL_HEIGHT))
    if model is None:  # the same choice as the Digitizer's between the classical readings
        from ecgdigit.pipeline import read_most_consistent
        from ecgdigit.trace.classical import band_map_variants

        return read_most_consistent(band_map_variants(image), lead_lengths, fs, o)[0]
    return extract_record(canonical_band_maps(image, model), lead_lengths, fs, o)
