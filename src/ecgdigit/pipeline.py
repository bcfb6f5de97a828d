"""The Digitizer: one image -> one 12-lead record, keeping the intermediates for reports.

    rectify (stage 0 + 1, one remap to the canonical frame)
      -> band maps (stage 2: a trained model, or the classical extractor without weights)
      -> extract + post-process (mV, per-lead lengths)

Built from a weights folder (`Digitizer.from_weights(DIR)`) or from the no-weights defaults
(`Digitizer()`), which need nothing but this package. A weights folder may hold any of: a stage-2
checkpoint (traces) and stage-0 + stage-1 checkpoints (the learned rectifier); what it lacks falls
back to the classical path.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ecgdigit.errors import EcgdigitError, InputError
from ecgdigit.image_io import load_image
from ecgdigit.layout import CANONICAL_WIDTH, STANDARD_3X4, default_lead_lengths, seconds_to_canonical_x
from ecgdigit.rectify import Rectification, rectify_to_canonical
from ecgdigit.rectify.api import USABLE_CONFIDENCE
from ecgdigit.trace.extract import ExtractOptions, extract_record

# A weights folder holds stage2.pt (+ stage2.json beside it) or stage2/best.pt; a stage-2 training run
# folder's best.pt also works. Stage 0/1 names: ecgdigit.rectify.learned.WEIGHT_NAMES.
STAGE2_WEIGHTS_NAMES = ("stage2.pt", "stage2/best.pt", "best.pt")
RECTIFIERS = ("auto", "classical", "learned")


@dataclass
class DigitizeResult:
    """A record and what led to it."""

    record: Dict[str, np.ndarray]  # lead -> mV, each of the requested length
    fs: float
    rectification: Rectification
    band_maps: np.ndarray  # (4, H, W) float32 probabilities in the canonical frame
    lead_confidence: Dict[str, float]  # mean per-column trace confidence over each lead's window
    timings: Dict[str, float] = field(default_factory=dict)  # seconds per stage
    tracer: str = "classical"

    @property
    def canonical(self) -> np.ndarray:
        return self.rectification.canonical

    def consistency_db(self) -> Dict[str, float]:
        """Ground-truth-free quality: how well Einthoven (II = I + III) and Goldberger
        (aVR + aVL + aVF = 0) hold, as signal/residual power in dB over the windows both exist."""
        return lead_consistency_db(self.record, self.fs)


MIN_RECTIFY_CONFIDENCE = USABLE_CONFIDENCE  # pages less certain than this get a flat fallback


class Digitizer:
    """Turn ECG images into 12-lead records.

    tracer "classical" (default, no weights) or "model" (a stage-2 checkpoint, `weights`).
    """

    def __init__(self, weights: Optional[Union[str, Path]] = None, device: str = "cpu",
                 rectify_method: str = "auto", extract_options: Optional[ExtractOptions] = None,
                 min_rectify_confidence: float = MIN_RECTIFY_CONFIDENCE):
        if rectify_method not in RECTIFIERS:
            raise InputError(f"rectifier must be one of {', '.join(RECTIFIERS)}, got {rectify_method!r}")
        self.weights = None if weights is None else Path(weights)
        if self.weights is not None and not self.weights.exists():
            raise InputError(f"{self.weights}: weights folder not found")
        self.min_rectify_confidence = float(min_rectify_confidence)
        self.extract_options = extract_options or ExtractOptions()
        self.device = device
        self.model = None
        self.tracer = "classical"
        has_rectifier = self.weights is not None and _has_rectifier_weights(self.weights)
        if rectify_method == "auto":
            rectify_method = "learned" if has_rectifier else "classical"
        if rectify_method == "learned" and not has_rectifier:
            raise InputError(f"{self.weights}: the learned rectifier needs stage-0 and stage-1 weights "
                             "(stage0.pt + stage1.pt or stage0/best.pt + stage1/best.pt)")
        self.rectify_method = rectify_method
        if self.weights is not None:
            found = _stage2_in(self.weights)
            if found is None and not has_rectifier:
                raise InputError(f"{self.weights}: no weights in this folder (expected stage-2 weights: "
                                 f"{' or '.join(STAGE2_WEIGHTS_NAMES)}; and/or stage-0 + stage-1 weights)")
            if found is not None:
                from ecgdigit.trace.model import TraceModel

                self.model = TraceModel(found, device=device)
                self.tracer = "model"

    @classmethod
    def from_weights(cls, weights_dir: Optional[Union[str, Path]], **kwargs) -> "Digitizer":
        return cls(weights=weights_dir, **kwargs)

    def band_maps(self, canonical: np.ndarray) -> np.ndarray:
        """(4, H, W) float32 trace probabilities for a canonical-frame RGB image."""
        from ecgdigit.trace.model import canonical_band_maps

        return canonical_band_maps(canonical, self.model)

    def __call__(self, image: Union[str, Path, np.ndarray], fs: float = 500.0,
                 lead_lengths: Optional[Mapping[str, int]] = None) -> DigitizeResult:
        timings: Dict[str, float] = {}
        rect = self._rectify(image, timings)
        t = time.perf_counter()
        maps = self._band_map_candidates(rect.canonical)
        timings["trace"] = time.perf_counter() - t
        return self._extract(rect, maps, fs, lead_lengths, timings)

    def digitize_batch(self, images: Sequence[Union[str, Path, np.ndarray]], fs: Union[float, Sequence[float]] = 500.0,
                       lead_lengths: Union[None, Mapping[str, int], Sequence[Optional[Mapping[str, int]]]] = None
                       ) -> List[Union[DigitizeResult, Exception]]:
        """Digitise several images, with ONE stage-2 forward pass over all those that rectified (a GPU
        batch; the classical tracer reads them one by one). `fs` and `lead_lengths` are one value for
        all or one per image. Each item is the image's DigitizeResult or the exception that stopped it:
        one bad image never loses the others."""
        n = len(images)
        fss = list(fs) if isinstance(fs, (list, tuple, np.ndarray)) else [fs] * n
        lengths = list(lead_lengths) if isinstance(lead_lengths, (list, tuple)) else [lead_lengths] * n
        if len(fss) != n or len(lengths) != n:
            raise InputError(f"digitize_batch: {n} images but {len(fss)} fs and {len(lengths)} lead-length entries")
        out: List[Union[DigitizeResult, Exception, None]] = [None] * n
        rects: Dict[int, Rectification] = {}
        timings: Dict[int, Dict[str, float]] = {k: {} for k in range(n)}
        for k, image in enumerate(images):
            try:
                rects[k] = self._rectify(image, timings[k])
            except Exception as exc:  # noqa: BLE001 - reported per image
                out[k] = exc
        ready = sorted(rects)
        t = time.perf_counter()
        try:
            if self.model is not None and ready:
                maps = {k: [m] for k, m in zip(ready, self.model.band_maps_batch([rects[k].canonical for k in ready]))}
            else:
                maps = {k: self._band_map_candidates(rects[k].canonical) for k in ready}
        except Exception as exc:  # noqa: BLE001 - a failed forward fails this batch's images, not the run
            for k in ready:
                out[k] = exc
            return out
        per_image = (time.perf_counter() - t) / max(len(ready), 1)
        for k in ready:
            timings[k]["trace"] = per_image
            try:
                out[k] = self._extract(rects[k], maps[k], fss[k], lengths[k], timings[k])
            except Exception as exc:  # noqa: BLE001
                out[k] = exc
        return out

    def _rectify(self, image: Union[str, Path, np.ndarray], timings: Dict[str, float]) -> Rectification:
        """Load and rectify; raises EcgdigitError when the page cannot be read with enough confidence."""
        t0 = time.perf_counter()
        if isinstance(image, (str, Path)):
            image = load_image(image).image
        timings["load"] = time.perf_counter() - t0
        t = time.perf_counter()
        learned = dict(weights=self.weights, device=self.device) if self.rectify_method == "learned" else {}
        rect = rectify_to_canonical(image, method=self.rectify_method, **learned)
        timings["rectify"] = time.perf_counter() - t
        if rect.rejected:
            raise EcgdigitError(f"no ECG page found ({rect.reason or 'rectifier rejected the image'})")
        if rect.confidence < self.min_rectify_confidence:
            raise EcgdigitError(f"page geometry too uncertain to read (rectification confidence "
                                f"{rect.confidence:.3f} < {self.min_rectify_confidence}; {rect.reason or 'no reason given'})")
        return rect

    def _band_map_candidates(self, canonical: np.ndarray) -> List[np.ndarray]:
        """The stage-2 model's band maps, or the classical extractor's readings (two when it cannot
        tell whether the grid lines should be removed)."""
        if self.model is not None:
            return [self.band_maps(canonical)]
        from ecgdigit.trace.classical import band_map_variants

        return band_map_variants(canonical)

    def _extract(self, rect: Rectification, candidates: List[np.ndarray], fs: float,
                 lead_lengths: Optional[Mapping[str, int]], timings: Dict[str, float]) -> DigitizeResult:
        """Extract the record of each candidate reading and keep the most self-consistent one
        (Einthoven + Goldberger residuals in dB: a reading that followed grid lines breaks them)."""
        if lead_lengths is None:
            lead_lengths = default_lead_lengths(fs)
        t = time.perf_counter()
        record, maps = read_most_consistent(candidates, lead_lengths, fs, self.extract_options)
        timings["extract"] = time.perf_counter() - t
        return DigitizeResult(record=record, fs=float(fs), rectification=rect, band_maps=maps,
                              lead_confidence=lead_confidence(maps), timings=timings, tracer=self.tracer)


def read_most_consistent(candidates: Sequence[np.ndarray], lead_lengths: Mapping[str, int], fs: float,
                         options: Optional[ExtractOptions] = None):
    """(record, band maps) of the candidate reading whose record best keeps Einthoven and Goldberger
    (the sum of `lead_consistency_db`): a reading that followed grid lines or another row breaks them."""
    best = None
    for maps in candidates:
        record = extract_record(maps, lead_lengths, fs, options or ExtractOptions())
        quality = sum(lead_consistency_db(record, fs).values()) if len(candidates) > 1 else 0.0
        if best is None or quality > best[0]:
            best = (quality, record, maps)
    return best[1], best[2]


def _stage2_in(folder: Path) -> Optional[Path]:
    """The stage-2 checkpoint in `folder` (or `folder` itself when it is a file); None if absent."""
    if folder.is_file():
        return folder
    return next((folder / n for n in STAGE2_WEIGHTS_NAMES if (folder / n).is_file()), None)


def _has_rectifier_weights(folder: Path) -> bool:
    from ecgdigit.rectify.learned import WEIGHT_NAMES

    return folder.is_dir() and all(any((folder / n).is_file() for n in WEIGHT_NAMES[s]) for s in (0, 1))


def stage2_checkpoint(weights: Union[str, Path]) -> Path:
    """The stage-2 checkpoint of a weights folder (or the file itself)."""
    path = Path(weights)
    found = _stage2_in(path)
    if found is None and path.is_dir():
        raise InputError(f"{path}: no stage-2 weights in this folder (expected {' or '.join(STAGE2_WEIGHTS_NAMES)})")
    if found is None:
        raise InputError(f"{path}: stage-2 weights not found")
    return found


def lead_confidence(maps: np.ndarray) -> Dict[str, float]:
    """Mean over each lead's time window of the per-column peak probability of its band."""
    h, w = maps.shape[1:]
    sx = w / CANONICAL_WIDTH
    peak = maps.max(axis=1)  # (4, W)
    out: Dict[str, List[float]] = {}
    for p in STANDARD_3X4.placements:
        a, b = (int(round(seconds_to_canonical_x(t) * sx)) for t in (p.t_start, p.t_end))
        out.setdefault(p.lead, []).append(float(np.mean(peak[p.row, max(a, 0):min(b, w)])) if b > a else 0.0)
    return {lead: float(np.mean(v)) for lead, v in out.items()}


def lead_consistency_db(record: Mapping[str, np.ndarray], fs: float) -> Dict[str, float]:
    """Einthoven and Goldberger residuals of a digitised record, in dB (higher is better)."""
    def window(lead):
        x = np.asarray(record[lead], dtype=np.float64)
        return x - np.mean(x)

    out = {}
    n = min(len(record["I"]), len(record["III"]))
    ii = np.asarray(record["II"], dtype=np.float64)[:n]  # lead II is the whole 10 s; I, III start at 0
    e = (window("I")[:n] + window("III")[:n]) - (ii - ii.mean())
    out["einthoven_db"] = _ratio_db(np.sum((ii - ii.mean()) ** 2), np.sum(e ** 2))
    m = min(len(record[k]) for k in ("aVR", "aVL", "aVF"))
    g = window("aVR")[:m] + window("aVL")[:m] + window("aVF")[:m]
    sig = sum(np.sum(window(k)[:m] ** 2) for k in ("aVR", "aVL", "aVF")) / 3
    out["goldberger_db"] = _ratio_db(sig, np.sum(g ** 2))
    return out


def _ratio_db(signal: float, noise: float) -> float:
    if noise <= 0:
        return float("inf")
    if signal <= 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def fallback_record(lead_lengths: Mapping[str, int]) -> Dict[str, np.ndarray]:
    """What an image that could not be digitised submits: flat zero traces (0 dB at worst)."""
    return {lead: np.zeros(int(n)) for lead, n in lead_lengths.items()}


def write_report_json(result: DigitizeResult, path: Union[str, Path], extra: Optional[dict] = None) -> None:
    rect = result.rectification
    report = {
        "fs": result.fs, "tracer": result.tracer, "orientation": rect.orientation,
        "rectify_confidence": rect.confidence, "rectify_reason": rect.reason,
        "grid_nodes_found": int(rect.node_found.sum()),
        "lead_confidence": result.lead_confidence, "consistency": result.consistency_db(),
        "timings_s": result.timings,
    }
    nodes = rect.nodes
    if np.isfinite(nodes).all():
        d = np.linalg.norm(np.diff(nodes, axis=1), axis=-1)
        report["grid_pitch_px"] = float(np.median(d))
    report.update(extra or {})
    Path(path).write_text(json.dumps(report, indent=2, default=float))


__all__ = ["Digitizer", "DigitizeResult", "fallback_record", "lead_confidence", "lead_consistency_db", "read_most_consistent",
           "stage2_checkpoint", "write_report_json"]
