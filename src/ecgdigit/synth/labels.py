"""Label files written next to the competition layout (never inside it).

Per image, `labels/{image_id}.npz` (image_id = "{record}-{type}"; for a test split the test id):
  keypoints (13, 2), keypoint_names, grid_nodes (n_h, n_v, 2), orientation, image_size (w, h),
  canonical_mesh (ny, nx, 2) with mesh_step (image xy of canonical (step*ix, step*iy); dense by
  bilinear interpolation, see synth.sample.dense_map), page_from_canonical (3x3), and the per-lead
  pixel paths: path_xy (total, 2) float32 cut by path_offsets, with path_lead, path_row,
  path_column, path_start, path_stop. A JSON twin holds the scalars and the page style.
Per record, `labels/{record}.npz`: signals (n, 12) mV (the full record), fs, and masks: the
  4-band canonical trace masks (uint8, 4400 x 1700, anti-aliased), shared by all its images;
  `labels/{record}.json`: the signal parameters (rate, rhythm, QRS width, T shape, noise...).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ecgdigit.errors import InputError
from ecgdigit.layout import KEYPOINT_NAMES, LEADS
from ecgdigit.synth.sample import MESH_STEP, SynthSample
from ecgdigit.synth.traces import render_band_masks


def image_label_arrays(sample: SynthSample) -> Dict[str, np.ndarray]:
    paths = sample.lead_paths
    lengths = [len(p.xy) for p in paths]
    return {
        "keypoints": sample.keypoints.astype(np.float64),
        "keypoint_names": np.array(KEYPOINT_NAMES),
        "grid_nodes": sample.grid_nodes.astype(np.float64),
        "orientation": np.int64(sample.orientation),
        "image_size": np.array([sample.image.shape[1], sample.image.shape[0]], dtype=np.int64),
        "canonical_mesh": sample.canonical_mesh.astype(np.float32),
        "mesh_step": np.int64(MESH_STEP),
        "page_from_canonical": sample.page.page_from_canonical,
        "path_xy": np.concatenate([p.xy for p in paths]).astype(np.float32),
        "path_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "path_lead": np.array([p.lead for p in paths]),
        "path_row": np.array([p.placement.row for p in paths], dtype=np.int64),
        "path_column": np.array([p.placement.column for p in paths], dtype=np.int64),
        "path_start": np.array([p.start for p in paths], dtype=np.int64),
        "path_stop": np.array([p.stop for p in paths], dtype=np.int64),
    }


def image_label_json(sample: SynthSample, image_id: str) -> dict:
    return {
        "image_id": image_id,
        "record_id": sample.record_id,
        "image_type": sample.image_type,
        "fs": sample.fs,
        "orientation": sample.orientation,
        "image_size": [int(sample.image.shape[1]), int(sample.image.shape[0])],
        "layout": sample.layout.name,
        "paper": sample.page.paper.name,
        "dpi": sample.page.dpi,
        "keypoints": {n: [float(v) for v in xy] for n, xy in zip(KEYPOINT_NAMES, sample.keypoints)
                      if np.isfinite(xy).all()},
        "style": asdict(sample.page.style),
        "header_lines": list(sample.page.header_lines),
    }


def write_image_labels(folder: Path, image_id: str, sample: SynthSample) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{image_id}.npz", **image_label_arrays(sample))
    (folder / f"{image_id}.json").write_text(json.dumps(image_label_json(sample, image_id), indent=1))


def write_record_labels(folder: Path, record_id: str, signals: np.ndarray, fs: float, layout,
                        params=None) -> None:
    """labels/{record}.npz (signals, fs, masks) and, with `params` (SignalParams), labels/{record}.json."""
    folder.mkdir(parents=True, exist_ok=True)
    masks = render_band_masks(signals, fs, layout=layout)
    np.savez_compressed(folder / f"{record_id}.npz", signals=signals, fs=np.float64(fs), masks=masks,
                        leads=np.array(LEADS))
    if params is not None:
        info = {"record_id": record_id, "fs": fs, "layout": layout.name, "signal_params": params.as_dict()}
        (folder / f"{record_id}.json").write_text(json.dumps(info, indent=1))


def _load(path: Path) -> Dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: label file not found")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_image_labels(folder, image_id: str) -> Dict[str, object]:
    """The arrays of labels/{image_id}.npz, plus `paths`: a list of dicts (lead, row, column, start, stop, xy)."""
    d = _load(Path(folder) / f"{image_id}.npz")
    off = d["path_offsets"]
    d["paths"] = [dict(lead=str(d["path_lead"][k]), row=int(d["path_row"][k]), column=int(d["path_column"][k]),
                       start=int(d["path_start"][k]), stop=int(d["path_stop"][k]),
                       xy=d["path_xy"][off[k]:off[k + 1]]) for k in range(len(off) - 1)]
    return d


def read_record_labels(folder, record_id: str) -> Dict[str, np.ndarray]:
    """signals, fs and the canonical band masks of a record."""
    return _load(Path(folder) / f"{record_id}.npz")


def read_image_json(folder, image_id: str) -> Optional[dict]:
    path = Path(folder) / f"{image_id}.json"
    return json.loads(path.read_text()) if path.is_file() else None
