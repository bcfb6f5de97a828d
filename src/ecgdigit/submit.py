"""Batch digitisation of a competition folder into a submission (`ecgdigit submit`).

Works on the test layout (test.csv + test/{id}.png: exactly the rows test.csv asks for) and on a
train layout (every image train/{id}/{id}-{type}.png, scored per type when a solution is asked
for). One image that fails never loses the others: it gets a flat fallback record, is logged
with the reason, and is counted.
"""
from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd
from tqdm import tqdm

from ecgdigit import io
from ecgdigit.errors import EcgdigitError, InputError

_worker_digitizer = None
_worker_overlay_dir: Optional[Path] = None


@dataclass
class SubmitResult:
    submission: pd.DataFrame
    output: Optional[Path]
    failures: List[Tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    seconds: float = 0.0
    n_images: int = 0
    image_types: Dict[str, Optional[str]] = field(default_factory=dict)  # image id -> type (train layout)


def _init_worker(weights, device, threads: Optional[int] = None, overlay_dir: Optional[Path] = None,
                 rectifier: str = "auto"):
    """Build this process's Digitizer once; worker processes use one thread each."""
    global _worker_digitizer, _worker_overlay_dir
    _worker_overlay_dir = overlay_dir
    if threads is not None:
        import cv2

        cv2.setNumThreads(threads)
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
    from ecgdigit.pipeline import Digitizer

    _worker_digitizer = Digitizer.from_weights(weights, device=device, rectify_method=rectifier)


def _digitize_jobs(jobs):
    """[(image_id, path, fs, lead_lengths), ...] -> [(image_id, record, error or None), ...], with one
    stage-2 forward pass over the whole list (see Digitizer.digitize_batch)."""
    from ecgdigit.pipeline import fallback_record

    results = _worker_digitizer.digitize_batch([j[1] for j in jobs], fs=[j[2] for j in jobs],
                                               lead_lengths=[j[3] for j in jobs])
    out = []
    for (image_id, _, _, lengths), result in zip(jobs, results):
        if isinstance(result, Exception):  # a missing file is an InputError, an unreadable page an EcgdigitError
            error = str(result) if isinstance(result, EcgdigitError) else f"{type(result).__name__}: {result}"
            out.append((image_id, fallback_record(lengths), error))
            continue
        if _worker_overlay_dir is not None:
            try:
                from ecgdigit.digitize import write_overlay

                write_overlay(result, _worker_overlay_dir / f"{image_id}_overlay.png")
            except Exception as exc:  # noqa: BLE001 - the record still counts
                print(f"{image_id}: overlay not written ({type(exc).__name__}: {exc})", file=sys.stderr)
        out.append((image_id, result.record, None))
    return out


def _collect(done, records, failures, bar) -> None:
    for image_id, record, error in done:
        records[image_id] = record
        if error:
            failures.append((image_id, error))
    bar.update(len(done))


def plan_jobs(input_dir: Path, limit: Optional[int] = None, records: Optional[Sequence[str]] = None):
    """(test_df, jobs, image_types) for a test or train folder (train: optionally only `records`)."""
    split = io.find_competition_split(input_dir)
    if split == "test":
        test_df = io.read_test_csv(input_dir / "test.csv")
        entries = io.list_test_images(input_dir, test_df)
        if limit:
            entries = entries[:limit]
            test_df = test_df[test_df["id"].astype(str).isin({e.image_id for e in entries})]
        fs = test_df.groupby(test_df["id"].astype(str))["fs"].first()
        lengths = io.expected_lengths(test_df)
        jobs = [(e.image_id, str(e.path), float(fs[e.image_id]), lengths[e.image_id]) for e in entries]
        return test_df, jobs, {e.image_id: None for e in entries}
    train = io.read_train_csv(input_dir / "train.csv")
    fs_by_record = dict(zip(train["id"].astype(str), train["fs"].astype(float)))
    entries = io.list_train_images(input_dir)
    if records is not None:
        wanted = {str(r) for r in records}
        entries = [e for e in entries if e.record_id in wanted]
    if limit:
        entries = entries[:limit]
    test_df = pd.concat([io.test_rows_for_image(e.image_id, fs_by_record[e.record_id]) for e in entries],
                        ignore_index=True) if entries else pd.DataFrame(columns=list(io.TEST_COLUMNS))
    lengths = io.expected_lengths(test_df)
    jobs = [(e.image_id, str(e.path), fs_by_record[e.record_id], lengths[e.image_id]) for e in entries]
    return test_df, jobs, {e.image_id: e.image_type for e in entries}


def run_submit(input_dir, output: Optional[str] = "submission.parquet", weights: Optional[str] = None,
               device: str = "cpu", workers: int = 1, limit: Optional[int] = None,
               progress: bool = True, log=None, overlay_dir: Optional[str] = None,
               records: Optional[Sequence[str]] = None, rectifier: str = "auto", batch_size: int = 1) -> SubmitResult:
    """Digitise every image of `input_dir` and write a validated submission to `output`
    (and, with `overlay_dir`, an overlay PNG per digitised image). `batch_size` images share one
    stage-2 forward pass (worth raising on a GPU; the classical tracer reads images one by one)."""
    input_dir = Path(input_dir)
    if int(batch_size) < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    batch_size = int(batch_size)
    if overlay_dir is not None:
        overlay_dir = Path(overlay_dir)
        overlay_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    test_df, jobs, image_types = plan_jobs(input_dir, limit, records)
    if not jobs:
        raise InputError(f"{input_dir}: no images to digitise")
    t0 = time.perf_counter()
    records, failures = {}, []
    bar = tqdm(total=len(jobs), desc="digitise", unit="img", disable=not progress)
    batches = [jobs[k:k + batch_size] for k in range(0, len(jobs), batch_size)]
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")  # fork after torch/OpenCV threads can deadlock
        with ctx.Pool(workers, initializer=_init_worker, initargs=(weights, device, 1, overlay_dir, rectifier)) as pool:
            for done in pool.imap(_digitize_jobs, batches):
                _collect(done, records, failures, bar)
    else:
        _init_worker(weights, device, None, overlay_dir, rectifier)
        for batch in batches:
            _collect(_digitize_jobs(batch), records, failures, bar)
    bar.close()
    for image_id, reason in failures:
        log(f"fallback for {image_id}: {reason}")
    submission = io.build_submission(test_df, records)
    out = io.write_submission(submission, output, test_df) if output else None
    return SubmitResult(submission, out, failures, time.perf_counter() - t0, len(jobs), image_types)


def _rows_of_images(solution: pd.DataFrame, image_ids) -> pd.DataFrame:
    """The rows of a solution table (ids `{image}_{row}_{lead}`) that belong to `image_ids`."""
    return solution[solution["id"].str.rsplit("_", n=2).str[0].isin(set(image_ids))]


def _test_meta_types(input_dir: Path) -> Dict[str, str]:
    """image id -> type of a test folder, from the test_meta.csv `ecgdigit synth --split test` writes
    beside test.csv (the competition's test folder has none: then no per-type table)."""
    meta = input_dir / "test_meta.csv"
    if not meta.is_file():
        return {}
    m = pd.read_csv(meta, dtype={"id": str, "type": str})
    return dict(zip(m["id"], m["type"].str.zfill(4)))


def score_submit_result(result: SubmitResult, input_dir: Path, solution_path: Optional[Path] = None) -> str:
    """Score a submit run against its folder's truth: a train layout's CSVs, or solution.csv beside
    test.csv (as `ecgdigit synth --split test` writes it), or an explicit competition-format
    `solution_path`. Per image type where types are known."""
    from ecgdigit.metric import format_report, score_breakdown

    input_dir = Path(input_dir)
    split = io.find_competition_split(input_dir)
    types = result.image_types if split == "train" else _test_meta_types(input_dir)
    if solution_path is not None:
        solution = _rows_of_images(io.read_solution(Path(solution_path)), result.image_types)
        if solution.empty:
            raise InputError(f"{solution_path}: no rows for the {len(result.image_types)} digitised image(s)")
    elif split == "train":
        solution = io.solution_from_train_folder(input_dir, image_ids=list(result.image_types))
    else:
        if not (input_dir / "solution.csv").is_file():
            raise InputError(f"{input_dir}: no solution.csv to score a test folder against")
        solution = _rows_of_images(io.read_solution(input_dir / "solution.csv"), result.image_types)
    report = score_breakdown(solution, result.submission)
    return format_report(report, rows=10, per_lead=True, group=types or None)
