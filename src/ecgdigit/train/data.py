"""Stage-2 training data: canonical-frame images with their band masks and column targets.

Sources:
- "synthetic": the on-the-fly generator (`ecgdigit.synth.dataset.SyntheticECGDataset`, canonical
  mode); item k is deterministic in (seed, k), so no files and no shared state between workers.
- a folder in the competition layout written by `ecgdigit synth` (train split, with `labels/`):
  each image is brought into the canonical frame through its stored canonical mesh, the masks are
  drawn from the stored signals. Real competition folders have no such labels; their images need
  the rectifier (stages 0-1) first.

Every item is a dict of torch tensors: image (3, h, w) float in [0, 1], masks (4, h, w) float in
[0, 1], col_y / col_valid (4, w) column targets, plus fs, signals (n, 12) and index for validation.
Sizes: the canonical frame scaled to `width` x round(1700 * width / 4400).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ecgdigit.errors import InputError
from ecgdigit.layout import CANONICAL_HEIGHT, CANONICAL_WIDTH


def frame_size(width: int) -> tuple:
    """(width, height) of the canonical frame scaled to `width` pixels wide."""
    return int(width), int(round(CANONICAL_HEIGHT * width / CANONICAL_WIDTH))


def _to_item(image: np.ndarray, masks: np.ndarray, signals: np.ndarray, fs: float, index: int, image_type: str) -> dict:
    import torch

    from ecgdigit.trace.targets import column_centres

    h, w = image.shape[:2]
    col_y, col_valid = column_centres(signals.astype(np.float64), float(fs), height=h, width=w)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0),
        "masks": torch.from_numpy(masks.astype(np.float32) / 255.0),
        "col_y": torch.from_numpy(col_y),
        "col_valid": torch.from_numpy(col_valid),
        "signals": torch.from_numpy(signals.astype(np.float32)),
        "fs": float(fs),
        "index": int(index),
        "image_type": image_type,
    }


class SyntheticTraceDataset:
    """On-the-fly synthetic stage-2 samples at a scaled canonical size (see module docstring)."""

    def __init__(self, length: int, seed: int = 0, width: int = CANONICAL_WIDTH, types: Optional[Sequence[str]] = None,
                 fs_choices: Optional[Sequence[float]] = None):
        from ecgdigit.io import IMAGE_TYPES
        from ecgdigit.synth.dataset import SyntheticECGDataset
        from ecgdigit.synth.sample import COMPETITION_FS

        self.size = frame_size(width)
        self.base = SyntheticECGDataset(length, seed=seed, types=tuple(types or IMAGE_TYPES), mode="canonical",
                                        fs_choices=tuple(fs_choices or COMPETITION_FS), canonical_size=self.size)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        it = self.base[index]
        return _to_item(it["image"], it["masks"], it["signals"], it["fs"], index, it["image_type"])


def labelled_train_entries(root: Path, types: Optional[Sequence[str]], record_ids: Optional[Sequence[str]],
                           purpose: str, hint: str = "") -> list:
    """Images of a synthetic competition-layout train folder that has the labels/ `ecgdigit synth`
    writes, optionally only `types` and `record_ids`; a clear InputError otherwise."""
    from ecgdigit.io import list_train_images

    if not (root / "labels").is_dir():
        raise InputError(f"{root}: no labels/ folder; {purpose} from a folder needs the labels written by "
                         f"`ecgdigit synth`{hint}")
    entries = list_train_images(root, types)
    if record_ids is not None:
        wanted = set(map(str, record_ids))
        entries = [e for e in entries if e.record_id in wanted]
    if not entries:
        raise InputError(f"{root}: no training images found")
    return entries


def read_rgb(path) -> np.ndarray:
    """uint8 RGB pixels of an image file, at full size (training keeps the label geometry exact)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: cannot read image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FolderTraceDataset:
    """Images of a synthetic competition-layout train folder (with labels/), in the canonical frame."""

    def __init__(self, root, width: int = CANONICAL_WIDTH, types: Optional[Sequence[str]] = None,
                 record_ids: Optional[Sequence[str]] = None):
        self.root = Path(root)
        self.size = frame_size(width)
        self.entries = labelled_train_entries(self.root, types, record_ids, "stage-2 training",
                                              " (real images must be rectified first)")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        import cv2

        from ecgdigit.synth.labels import read_image_labels, read_record_labels
        from ecgdigit.synth.sample import dense_map
        from ecgdigit.synth.traces import render_band_masks

        e = self.entries[index]
        image = read_rgb(e.path)
        lab = read_image_labels(self.root / "labels", e.image_id)
        rec = read_record_labels(self.root / "labels", e.record_id)
        w, h = self.size
        mx, my = dense_map(lab["canonical_mesh"], int(lab["mesh_step"]), w, h)
        canon = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))
        signals, fs = rec["signals"], float(rec["fs"])
        masks = render_band_masks(signals, fs, width=w, height=h)
        return _to_item(canon, masks, signals, fs, index, e.image_type or "")


class PreparedTraceDataset:
    """Images of a folder written by `ecgdigit.prepare` (notebooks/prepare): the cached canonical
    image, the record's cached 4-band masks, and the ground truth from the source train folder. This
    is how real competition images (rectified by stage 0 + 1) are trained on."""

    def __init__(self, root, width: int = CANONICAL_WIDTH, types: Optional[Sequence[str]] = None,
                 record_ids: Optional[Sequence[str]] = None):
        import json

        import pandas as pd

        self.root = Path(root)
        self.size = frame_size(width)
        if not (self.root / "prepared.json").is_file() or not (self.root / "index.csv").is_file():
            raise InputError(f"{self.root}: not a prepared folder (run notebooks/prepare first)")
        self.source = Path(json.loads((self.root / "prepared.json").read_text())["input_dir"])
        index = pd.read_csv(self.root / "index.csv", dtype={"image_id": str, "record_id": str, "type": str})
        if types:
            index = index[index["type"].isin(set(types))]
        if record_ids is not None:
            index = index[index["record_id"].isin(set(map(str, record_ids)))]
        if index.empty:
            raise InputError(f"{self.root}: no prepared images to train on")
        self.index = index.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:
        import cv2

        from ecgdigit.prepare import ground_truth_signals, read_masks_png

        row = self.index.iloc[index]
        path = self.root / "canonical" / f"{row['image_id']}.png"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{path}: cannot read the prepared image")
        masks = read_masks_png(self.root / "masks" / f"{row['record_id']}.png")
        w, h = self.size
        if (w, h) != (image.shape[1], image.shape[0]):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            masks = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) for m in masks])
        signals = ground_truth_signals(self.source / "train" / row["record_id"] / f"{row['record_id']}.csv")
        return _to_item(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), masks, signals, float(row["fs"]), index,
                        str(row["type"]))


def trace_dataset(root, width: int = CANONICAL_WIDTH, types: Optional[Sequence[str]] = None,
                  record_ids: Optional[Sequence[str]] = None):
    """The folder dataset for `root`: a prepared folder (real or synthetic images, rectified by the
    pipeline) or a synthetic train folder with labels/ (rectified by its exact labels)."""
    if (Path(root) / "prepared.json").is_file():
        return PreparedTraceDataset(root, width, types, record_ids)
    return FolderTraceDataset(root, width, types, record_ids)


def collate(items: list) -> dict:
    """Batch tensors of equal size; signals (different lengths) and scalars stay lists."""
    import torch

    out = {}
    for key in ("image", "masks", "col_y", "col_valid"):
        out[key] = torch.stack([it[key] for it in items])
    for key in ("signals", "fs", "index", "image_type"):
        out[key] = [it[key] for it in items]
    return out


def make_folds(train_csv, n_folds: int = 5, seed: int = 0, out=None):
    """Assign every record of train.csv to a fold (grouped by record id, balanced by fs).

    Returns the DataFrame (id, fs, fold); writes it to `out` (e.g. train_folds.csv) when given.
    """
    import pandas as pd

    from ecgdigit.io import read_train_csv

    df = read_train_csv(train_csv).copy()
    rng = np.random.default_rng(seed)
    df["fold"] = -1
    for _, group in df.groupby("fs"):
        idx = group.index.to_numpy().copy()
        rng.shuffle(idx)
        start = int(rng.integers(n_folds))
        df.loc[idx, "fold"] = (np.arange(len(idx)) + start) % n_folds
    df["fold"] = df["fold"].astype(int)
    df = df[["id", "fs", "fold"]]
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False)
    return pd.DataFrame(df)
