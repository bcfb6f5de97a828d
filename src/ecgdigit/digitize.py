"""`ecgdigit digitize`: for people with their own scans and photos.

Per image it writes, under the output folder:
  {name}.csv          time column + the 12 leads at the requested fs (NaN where a lead is not printed)
  {name}.hea/.dat     the same as a WFDB record (wfdb package), physical units mV
  {name}_overlay.png  the extracted traces in colour over the rectified paper, lead names shown
  {name}.json         orientation, grid pitch found, per-lead confidence, Einthoven/Goldberger
                      consistency in dB (a ground-truth-free quality figure), timings
One image that fails is reported and skipped; the others are still written.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import pandas as pd

from ecgdigit.errors import EcgdigitError, InputError
from ecgdigit.layout import (CANONICAL_PX_PER_MV, LEADS, RECORD_SECONDS, STANDARD_3X4, default_lead_lengths,
                             mv_to_canonical_y, record_length, seconds_to_canonical_x, segment_start)
from ecgdigit.pipeline import Digitizer, DigitizeResult, write_report_json

# Distinct colours per printed row band (RGB), readable over red, blue or grey grids.
BAND_COLOURS = ((0, 90, 255), (0, 170, 0), (200, 0, 200), (255, 120, 0))


@dataclass
class DigitizeOutcome:
    image: str
    ok: bool
    message: str
    files: List[Path]


def record_table(record: Dict[str, np.ndarray], fs: float) -> pd.DataFrame:
    """The record on the full 10 s time axis: one column per lead, NaN outside its printed window."""
    n = record_length(fs)
    table = pd.DataFrame({"time_s": np.arange(n) / fs})
    for lead in LEADS:
        column = np.full(n, np.nan)
        values = np.asarray(record[lead], dtype=np.float64)
        placement = max(STANDARD_3X4.placements_of(lead), key=lambda p: p.duration)
        start = segment_start(placement, fs)
        stop = min(n, start + len(values))
        column[start:stop] = values[: stop - start]
        table[lead] = column
    return table


def draw_overlay(result: DigitizeResult, scale: float = 0.5) -> np.ndarray:
    """Rectified paper with the extracted traces drawn on it (RGB uint8, `scale` x canonical size)."""
    canvas = (result.canonical.astype(np.float32) * 0.6 + 255 * 0.4).astype(np.uint8)  # fade the paper
    fs = result.fs
    for p in STANDARD_3X4.placements:
        values = np.asarray(result.record[p.lead], dtype=np.float64)
        n = int(round(p.duration * fs))
        if p.lead == "II" and p.duration < RECORD_SECONDS:
            seg = values[segment_start(p, fs): segment_start(p, fs) + n]  # short II = part of the long one
        else:
            seg = values[:n]
        if len(seg) < 2:
            continue
        t = p.t_start + np.arange(len(seg)) / fs
        x = seconds_to_canonical_x(t)
        y = mv_to_canonical_y(seg, p.row)  # where the trace was found on the rectified paper
        pts = np.round(np.stack([x, y], axis=1) * 4).astype(np.int32)  # 2 fractional bits
        cv2.polylines(canvas, [pts], False, BAND_COLOURS[p.row % len(BAND_COLOURS)], 3, cv2.LINE_AA, shift=2)
        label = f"{p.lead} {result.lead_confidence.get(p.lead, 0):.2f}"
        cv2.putText(canvas, label, (int(x[0]) + 8, int(mv_to_canonical_y(0, p.row) - 0.9 * CANONICAL_PX_PER_MV)),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3, cv2.LINE_AA)
    if scale != 1.0:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return canvas


def write_overlay(result: DigitizeResult, path: Path) -> Path:
    if not cv2.imwrite(str(path), cv2.cvtColor(draw_overlay(result), cv2.COLOR_RGB2BGR)):
        raise InputError(f"{path}: could not write the overlay PNG")
    return path


def write_wfdb(table: pd.DataFrame, fs: float, name: str, out_dir: Path) -> List[Path]:
    import wfdb

    signals = table[list(LEADS)].to_numpy(dtype=np.float64)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(LEADS), sig_name=list(LEADS), p_signal=signals,
                fmt=["16"] * len(LEADS), write_dir=str(out_dir))
    return [out_dir / f"{name}.hea", out_dir / f"{name}.dat"]


def digitize_images(images: Sequence[str], out_dir: str, fs: float = 500.0, weights: Optional[str] = None,
                    device: str = "cpu", wfdb_records: bool = True, log=None,
                    rectifier: str = "auto", min_confidence: Optional[float] = None) -> List[DigitizeOutcome]:
    """Digitise each image and write its files; returns one outcome per image (failures included)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if fs <= 0:
        raise InputError(f"--fs must be positive, got {fs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    floor = {} if min_confidence is None else {"min_rectify_confidence": min_confidence}
    digitizer = Digitizer.from_weights(weights, device=device, rectify_method=rectifier, **floor)
    outcomes = []
    lengths = default_lead_lengths(fs)
    for image in images:
        name = Path(image).stem
        try:
            result = digitizer(image, fs=fs, lead_lengths=lengths)
            table = record_table(result.record, fs)
            files = [out / f"{name}.csv", out / f"{name}_overlay.png", out / f"{name}.json"]
            table.to_csv(files[0], index=False, float_format="%.4f")
            write_overlay(result, files[1])
            write_report_json(result, files[2], extra={"image": str(image)})
            if wfdb_records:
                files += write_wfdb(table, fs, name, out)
            outcomes.append(DigitizeOutcome(str(image), True, "ok", files))
        except EcgdigitError as exc:
            message = str(exc) if str(image) in str(exc) else f"{image}: {exc}"
            outcomes.append(DigitizeOutcome(str(image), False, message, []))
            log(message)
        except Exception as exc:  # a batch never dies on one image
            outcomes.append(DigitizeOutcome(str(image), False, f"{type(exc).__name__}: {exc}", []))
            log(f"{image}: unexpected failure: {type(exc).__name__}: {exc}")
    return outcomes
