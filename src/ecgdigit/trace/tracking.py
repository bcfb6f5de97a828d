"""Column-wise path tracking over candidate runs: which lit run of each column is THE trace.

A column of a probability (or darkness) map may hold several runs of high pixels: the trace, a
neighbouring row's trace that crosses into the band, speckle, text. An ink line drawn without
lifting the pen lights runs that touch or overlap in adjacent columns, however steep it is, so a
dynamic programme (Viterbi) over the candidate runs with a cost for the vertical GAP between
consecutive runs (not for the move itself: QRS strokes are steep) follows the trace through
crossings. A "no trace here" state lets the path skip columns where the trace is faint; the
position it left from is carried along so that re-entry still pays for a jump.

Costs: unary weight * -log(peak) per run, `gap_cost` for a column without the trace,
`jump_cost` per pixel of vertical gap beyond `slope_allowance` px per skipped column.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass
class TrackOptions:
    candidate_threshold: float = 0.15  # a run is pixels >= this (absolute)
    max_candidates: int = 6  # strongest runs kept per column
    jump_cost: float = 0.1  # per pixel of vertical gap between consecutive runs
    gap_prob: float = 0.1  # a skipped column costs -log(gap_prob)
    slope_allowance: float = 25.0  # px per skipped column before a gap costs
    prior_y: Optional[float] = None  # optional preferred y (e.g. the band baseline) ...
    prior_cost: float = 0.0  # ... and its cost per pixel of distance ...
    prior_cap: Optional[float] = None  # ... counted up to this many pixels (None: no cap)
    saturation: float = 1.0  # runs peaking at or above this all count as sure ink


def column_runs(p: np.ndarray, threshold: float, max_candidates: int):
    """Candidate runs per column: arrays (W, K) of top, bottom (inclusive), peak; NaN/-1 where absent."""
    h, w = p.shape
    high = (p >= threshold).T  # (W, H)
    d = np.diff(high.astype(np.int8), axis=1, prepend=0, append=0)  # (W, H + 1)
    sc, sr = np.nonzero(d == 1)
    ec, er = np.nonzero(d == -1)  # er: exclusive end row
    top = np.full((w, max_candidates), -1, dtype=np.int64)
    bottom = np.full((w, max_candidates), -1, dtype=np.int64)
    peak = np.zeros((w, max_candidates), dtype=np.float64)
    if len(sc) == 0:
        return top, bottom, peak
    flat = np.ascontiguousarray(p.T).ravel()
    flat = np.concatenate([flat, [0.0]])
    starts = sc * h + sr
    ends = ec * h + er
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    run_peak = np.maximum.reduceat(flat, bounds)[0::2]
    # Rank runs within each column by peak, keep the strongest max_candidates.
    order = np.lexsort((-run_peak, sc))
    sc_o = sc[order]
    first_of_col = np.searchsorted(sc_o, sc_o, side="left")
    rank = np.arange(len(sc_o)) - first_of_col
    keep = rank < max_candidates
    o = order[keep]
    col, k = sc[o], rank[keep]
    top[col, k] = sr[o]
    bottom[col, k] = er[o] - 1
    peak[col, k] = run_peak[o]
    return top, bottom, peak


def _gap(top_a, bottom_a, top_b, bottom_b):
    """Vertical distance between intervals [top_a, bottom_a] and [top_b, bottom_b] (0 if touching)."""
    return np.maximum(0.0, np.maximum(top_b - bottom_a - 1, top_a - bottom_b - 1))


def track_runs(p: np.ndarray, options: Optional[TrackOptions] = None,
               penalty: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The chosen run per column: (top, bottom) int arrays (W,), -1 where the path skips the column.

    `penalty` (same shape as p, optional): an extra cost for a run whose centre lies on that pixel,
    e.g. where lead labels are printed, so that the path goes there only when nothing else continues it.
    """
    o = options or TrackOptions()
    top, bottom, peak = column_runs(p, o.candidate_threshold, o.max_candidates)
    w, k = top.shape
    present = top >= 0
    unary = np.where(present, -np.log(np.clip(peak / o.saturation, 1e-6, 1.0)), np.inf)
    if penalty is not None:
        centre_row = np.clip((top + bottom) // 2, 0, p.shape[0] - 1)
        unary = unary + np.where(present, penalty[centre_row, np.arange(w)[:, None]], 0.0)
    if o.prior_y is not None and o.prior_cost > 0:
        centre = 0.5 * (top + bottom)
        distance = np.abs(centre - o.prior_y)
        if o.prior_cap is not None:
            distance = np.minimum(distance, o.prior_cap)
        unary = unary + np.where(present, o.prior_cost * distance, 0.0)
    gap_unary = -np.log(o.gap_prob)
    # States 0..k-1: runs; state k: no trace (carries the last run it came from).
    cost = np.concatenate([unary[0], [gap_unary]])
    back = np.zeros((w, k + 1), dtype=np.int64)
    last_top = np.full(k + 1, -1.0)
    last_bot = np.full(k + 1, -1.0)
    last_top[:k], last_bot[:k] = top[0], bottom[0]
    skipped = np.zeros(k + 1)
    last_top[k] = last_bot[k] = np.nan
    for c in range(1, w):
        # Previous state's reference interval: its own run, or for "no trace" the carried one.
        ref_top, ref_bot = last_top, last_bot
        gaps = _gap(ref_top[:, None], ref_bot[:, None], top[c][None, :], bottom[c][None, :])
        allowance = o.slope_allowance * skipped[:, None]
        gaps = np.maximum(0.0, gaps - allowance)
        gaps = np.where(np.isnan(gaps), 0.0, gaps)  # nothing seen yet: free entry
        trans = cost[:, None] + o.jump_cost * gaps  # (k + 1, k)
        best_prev = np.argmin(trans, axis=0)
        run_cost = trans[best_prev, np.arange(k)] + unary[c]
        gap_prev = int(np.argmin(cost))
        gap_cost = cost[gap_prev] + gap_unary
        new_cost = np.concatenate([run_cost, [gap_cost]])
        back[c, :k] = best_prev
        back[c, k] = gap_prev
        # Carried interval for the "no trace" state.
        new_top = np.concatenate([top[c].astype(np.float64), [last_top[gap_prev]]])
        new_bot = np.concatenate([bottom[c].astype(np.float64), [last_bot[gap_prev]]])
        new_skipped = np.concatenate([np.zeros(k), [skipped[gap_prev] + 1]])
        cost, last_top, last_bot, skipped = new_cost, new_top, new_bot, new_skipped
        cost = np.where(np.isfinite(cost), cost, np.inf)
        cost -= cost[np.isfinite(cost)].min()  # keep numbers small
    state = int(np.argmin(cost))
    chosen = np.empty(w, dtype=np.int64)
    for c in range(w - 1, -1, -1):
        chosen[c] = state
        state = back[c, state]
    out_top = np.full(w, -1, dtype=np.int64)
    out_bot = np.full(w, -1, dtype=np.int64)
    run = chosen < k
    cols = np.flatnonzero(run)
    out_top[cols] = top[cols, chosen[cols]]
    out_bot[cols] = bottom[cols, chosen[cols]]
    return out_top, out_bot


def keep_tracked(p: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """`p` with everything outside the tracked run of each column set to 0."""
    rows = np.arange(p.shape[0])[:, None]
    keep = (rows >= top[None, :]) & (rows <= bottom[None, :]) & (top[None, :] >= 0)
    return np.where(keep, p, 0).astype(p.dtype, copy=False)
