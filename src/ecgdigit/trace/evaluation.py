"""Scoring extracted records against the signals they were drawn from (competition metric)."""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ecgdigit.layout import LEAD_INDEX, RECORD_SECONDS, STANDARD_3X4, PaperLayout


def truth_record(signals: np.ndarray, fs: float, lead_lengths: Mapping[str, int],
                 layout: PaperLayout = STANDARD_3X4) -> Dict[str, np.ndarray]:
    """The ground truth a competition record keeps for each lead: the samples it prints.

    A lead asking for (nearly) the whole record gets samples 0..n-1; any other lead the n samples
    from the start of its shortest placement. `signals` is (n_samples, 12) in LEADS order.
    """
    from ecgdigit.synth.traces import placement_sample_range

    signals = np.asarray(signals, dtype=np.float64)
    full = int(round(RECORD_SECONDS * fs))
    out = {}
    for lead, n in lead_lengths.items():
        n = int(n)
        col = signals[:, LEAD_INDEX[lead]]
        if n >= 0.9 * full:
            start = 0
        else:
            pls = layout.placements_of(lead)
            start = placement_sample_range(min(pls, key=lambda p: p.duration), fs, len(col))[0]
        v = col[start:start + n]
        if len(v) < n:  # never expected; keep the length contract
            v = np.concatenate([v, np.full(n - len(v), v[-1] if len(v) else 0.0)])
        out[lead] = v
    return out


def score_records(truths: Sequence[Mapping[str, np.ndarray]], predictions: Sequence[Mapping[str, np.ndarray]],
                  fs: Sequence[float], image_ids: Optional[Sequence[str]] = None, perfect_score: float = 1e6):
    """ScoreReport (ecgdigit.metric) of predicted records against true ones."""
    from ecgdigit.io import solution_rows
    from ecgdigit.metric import score_breakdown

    ids = list(image_ids) if image_ids is not None else [str(k) for k in range(len(truths))]
    sol = pd.concat([solution_rows(t, i, f) for t, i, f in zip(truths, ids, fs)], ignore_index=True)
    sub = pd.concat([solution_rows(p, i, f)[["id", "value"]] for p, i, f in zip(predictions, ids, fs)],
                    ignore_index=True)
    return score_breakdown(sol, sub, perfect_score=perfect_score)
