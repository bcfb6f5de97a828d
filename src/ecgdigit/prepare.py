"""Data preparation (`notebooks/prepare`): rectify every image of a competition-layout folder once
and cache what stage-2 training reads, so training on real (or synthetic) folders reads ready inputs.

Output folder:
  canonical/{image_id}.png   the canonical 4400 x 1700 RGB image (one remap from the original)
  maps/{image_id}.npz        map_x/map_y every MAP_STEP canonical px (float32), grid nodes,
                             node_found, orientation, confidence
  masks/{record_id}.png      the 4-band target masks of the record (RGBA, channel k = band k, uint8,
                             sub-pixel anti-aliased) built from the ground-truth CSV
  index.csv                  one row per prepared image (image_id, record_id, type, fs, confidence)
  rejected.csv               images the rectifier rejected or could not read, with the reason
  prepared.json              where the ground truth lives (the input folder) and the rectifier used
Resumable: an image whose files exist is skipped unless `overwrite`.
"""
from __future__ import annotations

import json
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from ecgdigit import io
from ecgdigit.errors import EcgdigitError, InputError
from ecgdigit.layout import LEADS

MAP_STEP = 16  # canonical px between stored map samples (the map is smooth; 60 KB instead of 60 MB)
INDEX_COLUMNS = ["image_id", "record_id", "type", "fs", "confidence", "orientation"]


@dataclass(frozen=True)
class PrepareJob:
    image_id: str
    record_id: str
    image_type: str
    path: str
    fs: float
    out: str
    rectifier: str
    overwrite: bool


def ground_truth_signals(record_csv: Path) -> np.ndarray:
    """(n, 12) mV of a ground-truth CSV with the unplotted NaN filled from the nearest sample.

    Masks and targets only use each lead's plotted window; the fill keeps a stray NaN sample at a
    window edge (e.g. 2562.5 samples at 1025 Hz) from becoming a wild line.
    """
    return io.read_record_csv(record_csv)[list(LEADS)].ffill().bfill().fillna(0.0).to_numpy()


def record_masks(record_csv: Path) -> np.ndarray:
    """(4, 1700, 4400) uint8 band masks drawn from a ground-truth CSV (NaN where not plotted)."""
    from ecgdigit.layout import RECORD_SECONDS
    from ecgdigit.synth.traces import render_band_masks

    signals = ground_truth_signals(record_csv)
    return render_band_masks(signals, len(signals) / RECORD_SECONDS)


def _write_masks(masks: np.ndarray, path: Path) -> None:
    rgba = np.ascontiguousarray(np.moveaxis(masks[[2, 1, 0, 3]], 0, -1))  # cv2 writes BGRA
    if not cv2.imwrite(str(path), rgba):
        raise InputError(f"{path}: could not write the mask PNG")


def read_masks_png(path: Path) -> np.ndarray:
    """Inverse of the mask cache: (4, H, W) uint8."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        raise InputError(f"{path}: not a 4-band mask PNG")
    return np.moveaxis(img, -1, 0)[[2, 1, 0, 3]]


def _prepare_one(job: PrepareJob) -> Tuple[str, Optional[dict], Optional[str]]:
    from ecgdigit.image_io import load_image
    from ecgdigit.rectify import rectify_to_canonical

    out = Path(job.out)
    canonical_path = out / "canonical" / f"{job.image_id}.png"
    map_path = out / "maps" / f"{job.image_id}.npz"
    if not job.overwrite and canonical_path.exists() and map_path.exists():
        with np.load(map_path) as z:
            return job.image_id, dict(confidence=float(z["confidence"]), orientation=int(z["orientation"])), None
    try:
        image = load_image(job.path).image
        rect = rectify_to_canonical(image, method=job.rectifier)
        if rect.rejected:
            return job.image_id, None, rect.reason or "rejected by the rectifier"
        cv2.imwrite(str(canonical_path), cv2.cvtColor(rect.canonical, cv2.COLOR_RGB2BGR))
        np.savez_compressed(map_path, map_x=rect.map_x[::MAP_STEP, ::MAP_STEP], map_y=rect.map_y[::MAP_STEP, ::MAP_STEP],
                            step=MAP_STEP, nodes=rect.nodes, node_found=rect.node_found,
                            orientation=rect.orientation, confidence=rect.confidence)
        return job.image_id, dict(confidence=rect.confidence, orientation=rect.orientation), None
    except EcgdigitError as exc:
        return job.image_id, None, str(exc)
    except Exception as exc:  # one bad image never stops the preparation of the others
        return job.image_id, None, f"{type(exc).__name__}: {exc}"


def prepare_folder(input_dir, output_dir, workers: int = 1, limit: Optional[int] = None,
                   rectifier: str = "classical", overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Prepare a train-layout folder (see the module docstring); returns the index table."""
    input_dir, out = Path(input_dir), Path(output_dir)
    if io.find_competition_split(input_dir) != "train":
        raise InputError(f"{input_dir}: prepare needs a train layout (train.csv + train/) with ground truth")
    for sub in ("canonical", "maps", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    train = io.read_train_csv(input_dir / "train.csv")
    fs_by_record = dict(zip(train["id"].astype(str), train["fs"].astype(float)))
    entries = io.list_train_images(input_dir)[: limit or None]
    records = sorted({e.record_id for e in entries})
    for record_id in tqdm(records, desc="masks", unit="record", disable=not progress):
        path = out / "masks" / f"{record_id}.png"
        if overwrite or not path.exists():
            _write_masks(record_masks(input_dir / "train" / record_id / f"{record_id}.csv"), path)
    jobs = [PrepareJob(e.image_id, e.record_id, e.image_type or "", str(e.path), fs_by_record[e.record_id],
                       str(out), rectifier, overwrite) for e in entries]
    rows: List[dict] = []
    rejected: List[dict] = []
    bar = tqdm(total=len(jobs), desc="rectify", unit="img", disable=not progress)
    by_id = {j.image_id: j for j in jobs}

    def collect(result):
        image_id, info, reason = result
        j = by_id[image_id]
        if info is None:
            rejected.append(dict(image_id=image_id, path=j.path, reason=reason))
        else:
            rows.append(dict(image_id=image_id, record_id=j.record_id, type=j.image_type, fs=j.fs, **info))
        bar.update(1)

    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap_unordered(_prepare_one, jobs):
                collect(result)
    else:
        for job in jobs:
            collect(_prepare_one(job))
    bar.close()
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS).sort_values("image_id").reset_index(drop=True)
    index.to_csv(out / "index.csv", index=False)
    # Training reads the ground truth from the source folder (see train.data.PreparedTraceDataset).
    (out / "prepared.json").write_text(json.dumps({"input_dir": str(input_dir.resolve()), "rectifier": rectifier}))
    pd.DataFrame(rejected, columns=["image_id", "path", "reason"]).to_csv(out / "rejected.csv", index=False)
    return index
