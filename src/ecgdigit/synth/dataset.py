"""On-the-fly synthetic samples for training: endless fresh images without files.

`SyntheticECGDataset` is a map-style dataset (works with torch.utils.data.DataLoader, no torch
import needed here): item k is rendered deterministically from (seed, k), so DataLoader workers need
no shared state and an epoch is reproducible. Items are dicts of numpy arrays; pass `transform`
to turn them into tensors or crops. `mode="canonical"` gives the stage-2 view: the image resampled
into the canonical frame through the exact mapping, with its band masks.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ecgdigit.io import IMAGE_TYPES
from ecgdigit.layout import CANONICAL_HEIGHT, CANONICAL_WIDTH, DEFAULT_DPI, LETTER, STANDARD_3X4, PaperLayout, PaperSize
from ecgdigit.synth.sample import COMPETITION_FS, MESH_STEP, canonical_view, make_sample, record_rng


class SyntheticECGDataset:
    """`length` samples; sample k = record `offset` + k of run `seed`, of a type drawn from `types`.

    `set_epoch(e)` moves the window to records e * length .. (e + 1) * length - 1, so that a training
    loop draws fresh pages every epoch (still deterministic in (seed, epoch, k)).

    mode "image": keys image (H, W, 3) uint8, keypoints (13, 2), grid_nodes (n_h, n_v, 2),
      orientation, canonical_mesh (ny, nx, 2) + mesh_step, signals (n, 12), fs, image_type, index.
    mode "canonical": keys image (height, width, 3) uint8 in the canonical frame, masks
      (n_bands, height, width) uint8, signals, fs, image_type, index (width/height default to the
      full 4400 x 1700 frame; smaller sizes scale it).
    """

    def __init__(self, length: int, seed: int = 0, types: Sequence[str] = IMAGE_TYPES, *,
                 mode: str = "image", fs_choices: Sequence[float] = COMPETITION_FS,
                 layout: PaperLayout = STANDARD_3X4, paper: PaperSize = LETTER, dpi: float = DEFAULT_DPI,
                 canonical_size: tuple = (CANONICAL_WIDTH, CANONICAL_HEIGHT),
                 transform: Optional[Callable[[dict], object]] = None):
        if mode not in ("image", "canonical"):
            raise ValueError(f"mode must be 'image' or 'canonical', got {mode!r}")
        if not types:
            raise ValueError("types must not be empty")
        self.length = int(length)
        self.seed = int(seed)
        self.types = tuple(types)
        self.mode = mode
        self.fs_choices = tuple(fs_choices)
        self.layout, self.paper, self.dpi = layout, paper, dpi
        self.canonical_size = tuple(canonical_size)
        self.transform = transform
        self.offset = 0

    def set_epoch(self, epoch: int) -> None:
        self.offset = int(epoch) * self.length

    def __len__(self) -> int:
        return self.length

    def image_type(self, index: int) -> str:
        record = self.offset + int(index)
        return self.types[int(record_rng(self.seed, record, 3).integers(len(self.types)))]

    def sample(self, index: int):
        """The full SynthSample of item `index` (page, warp and all labels)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        return make_sample(self.seed, self.offset + int(index), self.image_type(index), fs_choices=self.fs_choices,
                           layout=self.layout, paper=self.paper, dpi=self.dpi)

    def __getitem__(self, index: int):
        s = self.sample(int(index))
        item = {"signals": s.signals.astype(np.float32), "fs": np.float32(s.fs), "image_type": s.image_type,
                "index": int(index)}
        if self.mode == "image":
            item.update(image=s.image, keypoints=s.keypoints.astype(np.float32),
                        grid_nodes=s.grid_nodes.astype(np.float32), orientation=int(s.orientation),
                        canonical_mesh=s.canonical_mesh.astype(np.float32), mesh_step=MESH_STEP)
        else:
            w, h = self.canonical_size
            image, masks = canonical_view(s, w, h)
            item.update(image=image, masks=masks)
        return self.transform(item) if self.transform is not None else item
