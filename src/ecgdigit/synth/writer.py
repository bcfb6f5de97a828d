"""Write synthetic data in the exact competition layout (SPEC §1), with labels beside it.

train split: train.csv, train/{id}/{id}.csv (NaN where not plotted), train/{id}/{id}-{type}.png,
             labels/{id}.npz (record) and labels/{id}-{type}.npz/.json (image).
test split:  test.csv, test/{image}.png, solution.csv (id, fs, value), test_meta.csv (image id ->
             record id, type), labels/{record}.npz and labels/{image}.npz/.json.
Ids are random 10-digit integers drawn from the seed; the same seed gives the same bytes.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from ecgdigit.errors import EcgdigitError, InputError
from ecgdigit.io import IMAGE_TYPES, solution_rows, test_rows_for_image
from ecgdigit.layout import LAYOUTS, LEAD_INDEX, LEADS, PAPER_SIZES, STANDARD_3X4, PaperLayout
from ecgdigit.synth.labels import write_image_labels, write_record_labels
from ecgdigit.synth.sample import COMPETITION_FS, choose_fs, record_rng, sample_from_signals
from ecgdigit.synth.signals import simulate_record_with_params
from ecgdigit.synth.traces import placement_sample_range

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


@dataclass(frozen=True)
class SynthConfig:
    out: str
    records: int
    types: Tuple[str, ...] = ("0001",)
    split: str = "train"
    seed: int = 0
    fs_choices: Tuple[float, ...] = COMPETITION_FS
    layout: str = STANDARD_3X4.name
    paper: str = "letter"
    dpi: float = 200.0
    labels: bool = True


def draw_ids(seed: int, n: int, stream: int) -> List[str]:
    """`n` distinct random 10-digit ids (no leading zero) from (seed, stream)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1D5, int(stream)])
    ids: List[str] = []
    seen = set()
    while len(ids) < n:
        for v in rng.integers(10 ** 9, 10 ** 10, size=n - len(ids)):
            s = str(int(v))
            if s not in seen:
                seen.add(s)
                ids.append(s)
    return ids


def plotted_record(signals: np.ndarray, fs: float, layout: PaperLayout) -> np.ndarray:
    """The record as the competition stores it: NaN except where a lead is printed."""
    out = np.full_like(signals, np.nan)
    for pl in layout.placements:
        s, e = placement_sample_range(pl, fs, signals.shape[0])
        col = LEAD_INDEX[pl.lead]
        out[s:e, col] = signals[s:e, col]
    return out


def plotted_segments(signals: np.ndarray, fs: float, layout: PaperLayout) -> Dict[str, np.ndarray]:
    """Per lead, the samples a submission must give (its printed span; the longest where repeated)."""
    seg = {}
    for pl in layout.placements:
        s, e = placement_sample_range(pl, fs, signals.shape[0])
        if pl.lead not in seg or e - s > len(seg[pl.lead]):
            seg[pl.lead] = signals[s:e, LEAD_INDEX[pl.lead]]
    return seg


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]), PNG_PARAMS):
        raise EcgdigitError(f"{path}: could not write image")


def _render_record(job) -> dict:
    cfg, k, record_id, image_ids = job
    layout = LAYOUTS[cfg.layout]
    paper = PAPER_SIZES[cfg.paper]
    out = Path(cfg.out)
    sig_rng = record_rng(cfg.seed, k, 0)
    fs = choose_fs(sig_rng, cfg.fs_choices)
    signals, params = simulate_record_with_params(fs, sig_rng)
    labels_dir = out / "labels"
    if cfg.labels:
        write_record_labels(labels_dir, record_id, signals, fs, layout, params)
    result = {"record_id": record_id, "fs": fs, "n": signals.shape[0], "images": []}
    if cfg.split == "train":
        folder = out / "train" / record_id
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(plotted_record(signals, fs, layout), columns=list(LEADS)).to_csv(
            folder / f"{record_id}.csv", index=False, float_format="%.6f")
    segments = plotted_segments(signals, fs, layout)
    for image_type, image_id in zip(cfg.types, image_ids):
        sample = sample_from_signals(signals, fs, image_type, record_rng(cfg.seed, k, 1),
                                     record_rng(cfg.seed, k, 2, image_type), record_id=record_id,
                                     layout=layout, paper=paper, dpi=cfg.dpi, signal_params=params)
        if cfg.split == "train":
            _write_png(out / "train" / record_id / f"{image_id}.png", sample.image)
        else:
            _write_png(out / "test" / f"{image_id}.png", sample.image)
            result["images"].append({
                "test": test_rows_for_image(image_id, fs, {lead: len(segments[lead]) for lead in LEADS}),
                "solution": solution_rows(segments, image_id, fs),
                "meta": (image_id, record_id, image_type, fs),
            })
        if cfg.labels:
            write_image_labels(labels_dir, image_id, sample)
    return result


def _init_worker() -> None:
    cv2.setNumThreads(1)


def generate_dataset(out, records: int, types: Sequence[str] = ("0001",), split: str = "train", seed: int = 0,
                     workers: int = 1, fs_choices: Sequence[float] = COMPETITION_FS, layout: str = STANDARD_3X4.name,
                     paper: str = "letter", dpi: float = 200.0, labels: bool = True, progress: bool = True) -> Path:
    """Render `records` records x `types` into `out` in the competition layout; returns `out`.

    Train: one record folder per record with every type. Test: every (record, type) pair becomes its
    own test image with its own id.
    """
    types = tuple(str(t) for t in types)
    unknown = [t for t in types if t not in IMAGE_TYPES]
    if unknown:
        raise InputError(f"unknown image type(s) {unknown}; known: {', '.join(IMAGE_TYPES)}")
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    if records < 1:
        raise InputError(f"records must be at least 1, got {records}")
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if paper not in PAPER_SIZES:
        raise InputError(f"unknown paper {paper!r}; known: {', '.join(PAPER_SIZES)}")
    if len(set(types)) != len(types) or not types:
        raise InputError(f"types must be distinct and non-empty, got {types}")
    cfg = SynthConfig(str(out), int(records), types, split, int(seed), tuple(float(f) for f in fs_choices),
                      layout, paper, float(dpi), bool(labels))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / split).mkdir(exist_ok=True)
    n_ids = records * (1 if split == "train" else 1 + len(types))
    all_ids = draw_ids(seed, n_ids, 0)
    record_ids = all_ids[:records]
    if split == "train":
        image_ids = [[f"{r}-{t}" for t in types] for r in record_ids]
    else:  # each (record, type) pair is its own test image
        flat = all_ids[records:]
        image_ids = [flat[k * len(types):(k + 1) * len(types)] for k in range(records)]
    jobs = [(cfg, k, record_ids[k], image_ids[k]) for k in range(records)]
    bar = tqdm(total=records, desc=f"synth {split}", unit="record", disable=not progress)
    results = []
    if workers > 1:
        # spawn, not fork: a fork taken while cv2/BLAS threads hold locks can deadlock the children;
        # an executor (unlike multiprocessing.Pool) raises instead of hanging when a worker dies
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            for res in pool.map(_render_record, jobs):
                results.append(res)
                bar.update(1)
    else:
        for job in jobs:
            results.append(_render_record(job))
            bar.update(1)
    bar.close()

    if split == "train":
        pd.DataFrame({"id": [r["record_id"] for r in results], "fs": [_fs_out(r["fs"]) for r in results],
                      "sig_len": [r["n"] for r in results]}).to_csv(out / "train.csv", index=False)
    else:
        images = [im for r in results for im in r["images"]]
        test_df = pd.concat([im["test"] for im in images], ignore_index=True)
        test_df["fs"] = test_df["fs"].map(_fs_out)
        test_df.to_csv(out / "test.csv", index=False)
        sol = pd.concat([im["solution"] for im in images], ignore_index=True)
        sol["fs"] = sol["fs"].map(_fs_out)
        sol.to_csv(out / "solution.csv", index=False, float_format="%.6f")
        pd.DataFrame([im["meta"] for im in images], columns=["id", "record_id", "type", "fs"]).assign(
            fs=lambda d: d["fs"].map(_fs_out)).to_csv(out / "test_meta.csv", index=False)
    return out


def _fs_out(fs: float):
    """Write whole rates as integers, as the competition CSVs do."""
    return int(fs) if float(fs).is_integer() else float(fs)
