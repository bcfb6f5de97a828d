"""Record-level corrections after extraction: lead II fusion and soft limb-lead constraints.

Offsets between leads are forgiven by the metric, so every comparison here is made on
mean-removed signals and every correction is a zero-offset change.

- Lead II is printed twice: 2.5 s in row 2 and 10 s in the rhythm strip. Over the overlap the two
  independent traces are averaged (weights long : short = 1.35 : 1 by default, times per-sample
  confidence), after matching their offsets; where they part, the one that keeps II = I + III wins.
- Einthoven: II = I + III (column 1, 0-2.5 s). Goldberger: aVR + aVL + aVF = 0 (column 2,
  2.5-5 s), and with II from the rhythm strip also aVF - aVR = 1.5 II. The leads are moved by the
  minimum-norm correction that satisfies the constraints, only when their residual is already
  small relative to the signal (`consistency_gate`) and, per sample, clipped (`residual_clip_mv`),
  so a wrong trace does not spread its error to the good ones.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ecgdigit.layout import RECORD_SECONDS, STANDARD_3X4, PaperLayout


def _requested_range(lead: str, n: int, segs: Sequence, full_length: int) -> Tuple[int, int]:
    """Record sample indices a lead asking for n values covers."""
    if n >= 0.9 * full_length or not segs:
        return 0, n
    shortest = min(segs, key=lambda s: len(s.mv))
    return shortest.start, shortest.start + n


def _gather(segs, lo: int, hi: int, weights: Mapping[int, float], use_confidence: bool) -> np.ndarray:
    """Weighted blend of the segments over [lo, hi); segment offsets matched to the longest one."""
    n = hi - lo
    if not segs:
        return np.zeros(n)
    ref = max(segs, key=lambda s: len(s.mv))
    acc = np.zeros(n)
    wsum = np.zeros(n)
    ref_vals = np.full(n, np.nan)
    a, b = max(ref.start, lo), min(ref.start + len(ref.mv), hi)
    if b > a:
        ref_vals[a - lo:b - lo] = ref.mv[a - ref.start:b - ref.start]
    for s in segs:
        a, b = max(s.start, lo), min(s.start + len(s.mv), hi)
        if b <= a:
            continue
        v = s.mv[a - s.start:b - s.start].copy()
        if s is not ref:
            both = np.isfinite(ref_vals[a - lo:b - lo])
            if both.any():  # median: a stretch where one reading lost the trace must not shift the rest
                v += np.median(ref_vals[a - lo:b - lo][both] - v[both])
        w = weights.get(id(s), 1.0) * (np.clip(s.confidence[a - s.start:b - s.start], 1e-3, 1.0)
                                         if use_confidence else 1.0)
        acc[a - lo:b - lo] += w * v
        wsum[a - lo:b - lo] += w
    out = np.full(n, np.nan)
    ok = wsum > 0
    out[ok] = acc[ok] / wsum[ok]
    if not ok.any():
        return np.zeros(n)
    # Samples no segment reaches (a lead asking for a few more rows than printed): hold the edge.
    first, last = np.flatnonzero(ok)[[0, -1]]
    out[:first] = out[first]
    out[last + 1:] = out[last]
    inner = ~np.isfinite(out)
    if inner.any():
        idx = np.arange(n)
        out[inner] = np.interp(idx[inner], idx[~inner], out[~inner])
    return out


def weigh_lead_ii_by_einthoven(segs: Mapping[str, list], fs: float, disagree_mv: float,
                               window_s: float = 0.04) -> Dict[str, list]:
    """Lead II is printed twice; where its two readings part (one lost the trace, e.g. baseline
    wander carried it into the next row), the one that keeps II = I + III wins the fusion: the
    other's per-sample confidence drops to ~0 there. Acts only where the other reading agrees."""
    two = list(segs.get("II", []))
    if len(two) != 2 or not segs.get("I") or not segs.get("III"):
        return dict(segs)
    lead_i, lead_iii = segs["I"][0], segs["III"][0]
    lo = max(lead_i.start, lead_iii.start, *(s.start for s in two))
    hi = min(lead_i.start + len(lead_i.mv), lead_iii.start + len(lead_iii.mv), *(s.start + len(s.mv) for s in two))
    if hi - lo < 8:
        return dict(segs)
    expected = lead_i.mv[lo - lead_i.start:hi - lead_i.start] + lead_iii.mv[lo - lead_iii.start:hi - lead_iii.start]
    k = max(1, int(round(window_s * fs)))
    dev = []
    for s in two:
        d = s.mv[lo - s.start:hi - s.start] - expected
        dev.append(np.convolve(np.abs(d - np.median(d)), np.ones(k) / k, mode="same"))
    out = dict(segs)
    new = []
    for s, mine, other in zip(two, dev, dev[::-1]):
        lost = (mine > disagree_mv) & (other <= disagree_mv)
        if lost.any():
            conf = s.confidence.copy()
            conf[lo - s.start:hi - s.start][lost] *= 1e-3
            s = replace(s, confidence=conf)
        new.append(s)
    out["II"] = new
    return out


def assemble_record(segs: Mapping[str, list], lead_lengths: Mapping[str, int], fs: float, fuse_lead_ii: bool = True,
                    long_weight: float = 1.35, short_weight: float = 1.0) -> Tuple[Dict[str, np.ndarray], Dict[str, int]]:
    """Lead -> values (exactly lead_lengths[lead]) and lead -> first record sample index."""
    full_length = int(round(RECORD_SECONDS * fs))
    record, starts = {}, {}
    for lead, n in lead_lengths.items():
        n = int(n)
        lead_segs = list(segs.get(lead, []))
        lo, hi = _requested_range(lead, n, lead_segs, full_length)
        if lead_segs and len(lead_segs) > 1:
            longest = max(lead_segs, key=lambda s: len(s.mv))
            if not fuse_lead_ii:
                lead_segs = [longest] if n >= 0.9 * full_length else [min(lead_segs, key=lambda s: len(s.mv))]
            weights = {id(s): (long_weight if s is longest else short_weight) for s in lead_segs}
            record[lead] = _gather(lead_segs, lo, hi, weights, use_confidence=True)
        else:
            record[lead] = _gather(lead_segs, lo, hi, {}, use_confidence=False)
        starts[lead] = lo
    return record, starts


def soft_project(leads: Sequence[np.ndarray], constraints: np.ndarray, gate: float, clip_mv: float) -> Tuple[List[np.ndarray], bool]:
    """Move equally-trusted leads by the minimum-norm change that makes `constraints @ x = 0`.

    leads: k arrays of one length (same sample times); constraints: (m, k). Applied only if
    rms(residual) / rms(leads) < gate; the per-sample residual is clipped to +-clip_mv first.
    Returns the corrected leads and whether the correction was applied.
    """
    x = np.stack([np.asarray(v, dtype=np.float64) for v in leads])  # (k, n)
    xc = x - x.mean(axis=1, keepdims=True)
    a = np.asarray(constraints, dtype=np.float64)
    r = a @ xc  # (m, n)
    scale = np.sqrt(np.mean(xc ** 2)) + 1e-12
    if not np.isfinite(gate) or np.sqrt(np.mean(r ** 2)) / scale < gate:
        r = np.clip(r, -clip_mv, clip_mv)
        correction = a.T @ np.linalg.solve(a @ a.T, r)  # (k, n)
        return list(x - correction), True
    return list(x), False


# Second column: aVR + aVL + aVF = 0 and, with II from the rhythm strip, aVF - aVR = 1.5 II.
AUGMENTED_WITH_II = ("aVR", "aVL", "aVF", "II")
GOLDBERGER_WITH_II = np.array([[1.0, 1.0, 1.0, 0.0], [-1.0, 0.0, 1.0, -1.5]])


def replace_outlier_lead(leads: Sequence[np.ndarray], constraints: np.ndarray, candidates: Sequence[int],
                         others_gate: float, ratio: float) -> Tuple[List[np.ndarray], Optional[int]]:
    """One lead read off the wrong trace ruins its image's score; the limb leads are redundant, so
    a lead that the others (consistent among themselves) contradict is replaced by their prediction.

    For each candidate j: x_j* = least-squares solution of `constraints @ x = 0` for lead j given
    the others; the others agree if the residual left is below `others_gate` x rms(leads), and j is
    an outlier if rms(x_j - x_j*) > `ratio` x rms(x_j*). Only the worst such lead is replaced
    (offset kept). Returns the leads and the index replaced (None if none).
    """
    x = np.stack([np.asarray(v, dtype=np.float64) for v in leads])
    xc = x - x.mean(axis=1, keepdims=True)
    a = np.asarray(constraints, dtype=np.float64)
    scale = np.sqrt(np.mean(xc ** 2)) + 1e-12
    best, best_score, best_pred = None, 0.0, None
    for j in candidates:
        aj = a[:, j]
        rest = a @ xc - np.outer(aj, xc[j])  # constraints' value without lead j
        pred = -(aj @ rest) / max(float(aj @ aj), 1e-12)
        left = rest + np.outer(aj, pred)
        if np.sqrt(np.mean(left ** 2)) / scale >= others_gate:
            continue
        off = np.sqrt(np.mean((xc[j] - pred) ** 2)) / (np.sqrt(np.mean(pred ** 2)) + 1e-12)
        if off > ratio and off > best_score:
            best, best_score, best_pred = j, off, pred
    out = list(x)
    if best is not None:
        out[best] = best_pred + x[best].mean()
    return out, best


def _window(record, starts, lead, lo, hi):
    s = starts[lead]
    return s <= lo and hi <= s + len(record[lead])


def apply_limb_constraints(record: Dict[str, np.ndarray], starts: Mapping[str, int], fs: float,
                           einthoven: bool = True, goldberger: bool = True, augmented_with_ii: bool = True,
                           gate: float = 0.35, clip_mv: float = 0.15,
                           layout: PaperLayout = STANDARD_3X4, replace_outliers: bool = False,
                           others_gate: float = 0.25, outlier_ratio: float = 0.6) -> Dict[str, bool]:
    """Soft Einthoven / Goldberger corrections in place; returns which ones were applied."""
    applied = {}
    need = {"I", "II", "III", "aVR", "aVL", "aVF"}
    if not need <= set(record):
        return applied

    def span(lead):
        return starts[lead], starts[lead] + len(record[lead])

    def run(name, leads, a, correct):
        """Apply `correct(parts, a) -> (new parts, applied, label)` over the leads' common window."""
        lo = max(span(lead)[0] for lead in leads)
        hi = min(span(lead)[1] for lead in leads)
        if hi - lo < 8:
            return
        parts = [record[lead][lo - starts[lead]:hi - starts[lead]] for lead in leads]
        new, ok, label = correct(parts, a)
        applied[name + label] = ok
        if ok:
            for lead, v in zip(leads, new):
                record[lead][lo - starts[lead]:hi - starts[lead]] = v

    def soft(parts, a):
        new, ok = soft_project(parts, a, gate, clip_mv)
        return new, ok, ""

    def outlier(parts, a):
        new, j = replace_outlier_lead(parts, a, [0, 1, 2], others_gate, outlier_ratio)
        return new, j is not None, "_" + (AUGMENTED_WITH_II[j] if j is not None else "none")

    if einthoven:
        # II - I - III = 0
        run("einthoven", ["I", "II", "III"], np.array([[-1.0, 1.0, -1.0]]), soft)
    if replace_outliers and goldberger and augmented_with_ii:
        run("outlier", list(AUGMENTED_WITH_II), GOLDBERGER_WITH_II, outlier)
    if goldberger:
        if augmented_with_ii:
            run("goldberger", list(AUGMENTED_WITH_II), GOLDBERGER_WITH_II, soft)
        else:
            run("goldberger", ["aVR", "aVL", "aVF"], np.array([[1.0, 1.0, 1.0]]), soft)
    return applied


def postprocess_record(segs: Mapping[str, list], lead_lengths: Mapping[str, int], fs: float, options,
                       layout: PaperLayout = STANDARD_3X4) -> Dict[str, np.ndarray]:
    """Assemble each lead at its requested length, fuse lead II, apply the soft constraints."""
    o = options
    if o.fuse_lead_ii and o.einthoven:
        segs = weigh_lead_ii_by_einthoven(segs, fs, o.lead_ii_disagree_mv)
    record, starts = assemble_record(segs, lead_lengths, fs, o.fuse_lead_ii, o.lead_ii_long_weight,
                                     o.lead_ii_short_weight)
    apply_limb_constraints(record, starts, fs, o.einthoven, o.goldberger, o.augmented_with_ii,
                           o.consistency_gate, o.residual_clip_mv, layout, o.replace_outlier_lead,
                           o.outlier_others_gate, o.outlier_ratio)
    for lead in record:
        record[lead] = np.nan_to_num(np.asarray(record[lead], dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return record
