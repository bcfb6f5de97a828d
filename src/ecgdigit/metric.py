"""The competition metric (SPEC §2), vectorised, with per-image and per-lead breakdowns.

For each image and lead: centre label and prediction on their means, cross-correlate, take the
lag with the highest correlation among |lag| <= int(0.2 * fs) (ties: smallest |lag|), shift the
prediction by it (NaN padding), remove the constant vertical offset that minimises the squared
error over the finite overlap, turn padding into 0, and sum `label**2` (signal) and
`(label - aligned)**2` (noise). Per image, snr = sum signal / sum noise over the 12 leads
(`perfect_score` when noise is 0, capped at `perfect_score`, 0 when the signal is 0). The score is
10 * log10 of the mean LINEAR snr over images, floored at -perfect_score.

All series of equal length are processed together: the correlation over the allowed lags comes
from one batched FFT, the vertical offset from its closed form (the mean residual, which is what
the reference's scalar minimiser converges to).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ecgdigit.errors import SubmissionError
from ecgdigit.layout import LEADS, RECORD_SECONDS, RHYTHM_LEAD

MAX_TIME_SHIFT_S = 0.2
PERFECT_SCORE_EARLY = 384.0  # cap of the early metric copies (25.84 dB); the published examples use it
PERFECT_SCORE_FINAL = 1e6  # cap of the final metric
DEFAULT_PERFECT_SCORE = PERFECT_SCORE_FINAL
# Correlations within this relative distance of the maximum count as ties (FFT round-off).
_TIE_RTOL = 1e-10


@dataclass
class ScoreReport:
    """Result of `score_breakdown`: the score and the tables behind it."""

    score: float  # dB
    per_image: pd.DataFrame  # image_id, fs, n_rows, snr, snr_db, capped
    per_lead: pd.DataFrame  # image_id, lead, n, lag, offset, p_signal, p_noise, snr_db (capped like images)
    perfect_score: float

    @property
    def lead_table(self) -> pd.DataFrame:
        """Mean per-lead SNR in dB over images (12 rows), the usual error-study table."""
        t = self.per_lead.groupby("lead", sort=False, observed=True).agg(
            snr_db_mean=("snr_db", "mean"), snr_db_median=("snr_db", "median"),
            p_signal=("p_signal", "sum"), p_noise=("p_noise", "sum"))
        t["pooled_snr_db"] = _to_db(t["p_signal"] / t["p_noise"].replace(0, np.nan))
        return t.reindex([lead for lead in LEADS if lead in t.index])


def _capped_ratio(signal: np.ndarray, noise: np.ndarray, perfect_score: float) -> np.ndarray:
    """signal / noise as the metric caps it: perfect_score when noise is 0, 0 when signal is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(noise == 0, perfect_score, np.where(signal == 0, 0.0, np.minimum(signal / noise, perfect_score)))


def _to_db(ratio):
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(ratio)


class _ParsedIds:
    """Row ids '<image>_<row>_<lead>' parsed into integer codes with pyarrow's vectorised kernels
    (scoring a 1,000-image solution means parsing ~19 million ids)."""

    def __init__(self, ids: pd.Series, what: str, images: Optional[pa.Array] = None):
        arr = pa.array(ids.astype(str).to_numpy(), type=pa.string())
        parts = pc.split_pattern(arr, pattern="_", max_splits=2, reverse=True)
        bad = np.flatnonzero(pc.list_value_length(parts).to_numpy(zero_copy_only=False) != 3)
        if len(bad):
            raise SubmissionError(f"{what}: id {ids.iloc[bad[0]]!r} is not of the form '<image>_<row>_<lead>'")
        image = pc.list_element(parts, 0)
        try:
            self.row = pc.cast(pc.list_element(parts, 1), pa.int64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            rows = pd.to_numeric(pd.Series(pc.list_element(parts, 1).to_pandas()), errors="coerce")
            raise SubmissionError(f"{what}: id {ids.iloc[int(np.flatnonzero(rows.isna())[0])]!r} "
                                  "has a non-integer row number") from None
        lead = pc.index_in(pc.list_element(parts, 2), value_set=pa.array(LEADS))
        unknown = np.flatnonzero(pc.is_null(lead).to_numpy(zero_copy_only=False))
        if len(unknown):
            raise SubmissionError(f"{what}: id {ids.iloc[unknown[0]]!r} names an unknown lead "
                                  f"(expected one of {', '.join(LEADS)})")
        self.lead = lead.to_numpy(zero_copy_only=False).astype(np.int64)
        if images is None:
            encoded = pc.dictionary_encode(image)
            self.images = encoded.dictionary
            self.image = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        else:  # codes into another table's image dictionary; -1 for images it does not have
            self.images = images
            self.image = pc.fill_null(pc.index_in(image, value_set=images), -1).to_numpy(
                zero_copy_only=False).astype(np.int64)

    def keys(self, row_span: int) -> np.ndarray:
        """One sortable int64 per row, ordering by (image, lead, row)."""
        return (self.image * len(LEADS) + self.lead) * row_span + self.row


def _checked_values(df: pd.DataFrame, what: str, row_id_column_name: str, needs_fs: bool) -> np.ndarray:
    """Column and value checks; returns the values as float64."""
    if not isinstance(df, pd.DataFrame):
        raise SubmissionError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    needed = [row_id_column_name, "value"] + (["fs"] if needs_fs else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise SubmissionError(f"{what} has no column {', '.join(map(repr, missing))} "
                              f"(columns: {', '.join(map(str, df.columns))})")
    values = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=np.float64)
    nan = np.isnan(values)
    if nan.any():
        first = df[row_id_column_name].iloc[int(np.flatnonzero(nan)[0])]
        raise SubmissionError(f"{what} has {int(nan.sum())} NaN or non-numeric value(s), first at id {first!r}")
    inf = ~np.isfinite(values)
    if inf.any():
        first = df[row_id_column_name].iloc[int(np.flatnonzero(inf)[0])]
        raise SubmissionError(f"{what} has {int(inf.sum())} infinite value(s), first at id {first!r}")
    return values


def _sorted_unique(keys: np.ndarray, ids: pd.Series, what: str):
    """argsort of `keys`, raising on a duplicated id."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    dup = np.flatnonzero(sk[1:] == sk[:-1])
    if len(dup):
        raise SubmissionError(f"{what} has {len(dup)} duplicated id(s), first {ids.iloc[int(order[dup[0] + 1])]!r}")
    return order, sk


def _lead_powers(label: np.ndarray, pred: np.ndarray, max_shift: np.ndarray):
    """Signal/noise power of B series of length L at once.

    label, pred: (B, L) float64; max_shift: (B,) int. Returns p_signal, p_noise, lag, offset (B,).
    """
    n_series, length = label.shape
    lab_c = label - label.mean(axis=1, keepdims=True)
    pred_c = pred - pred.mean(axis=1, keepdims=True)
    max_lag = int(min(max_shift.max(initial=0), length - 1))
    if max_lag > 0:
        # Circular correlation equals the linear one for |lag| <= max_lag when nfft >= L + max_lag.
        nfft = int(2 ** np.ceil(np.log2(length + max_lag)))
        spec = np.fft.rfft(lab_c, nfft, axis=1) * np.conj(np.fft.rfft(pred_c, nfft, axis=1))
        circ = np.fft.irfft(spec, nfft, axis=1)
        lags = np.arange(-max_lag, max_lag + 1)
        corr = circ[:, lags % nfft]  # corr[:, k] = sum_n lab_c[n] * pred_c[n - lags[k]]
        allowed = np.abs(lags)[None, :] <= max_shift[:, None]
        corr = np.where(allowed, corr, -np.inf)
        best = corr.max(axis=1, keepdims=True)
        tol = _TIE_RTOL * np.maximum(np.abs(best), np.abs(corr).max(axis=1, keepdims=True, initial=0.0)) + 1e-300
        is_max = allowed & (corr >= best - tol)
        # Among the maxima the smallest |lag| wins; order candidates by |lag| (then negative first).
        order = np.argsort(np.abs(lags) * 2 + (lags > 0), kind="stable")
        first = np.argmax(is_max[:, order], axis=1)
        lag = lags[order][first]
    else:
        lag = np.zeros(n_series, dtype=np.int64)

    # aligned[n] = pred[n - lag], NaN (invalid) outside.
    idx = np.arange(length)[None, :] - lag[:, None]
    valid = (idx >= 0) & (idx < length)
    aligned = np.take_along_axis(pred, np.clip(idx, 0, length - 1), axis=1)
    n_valid = valid.sum(axis=1)
    resid = np.where(valid, aligned - label, 0.0)
    offset = np.divide(resid.sum(axis=1), n_valid, out=np.zeros(n_series), where=n_valid > 0)
    aligned = aligned - offset[:, None]
    noise_terms = np.where(valid, label - aligned, label)  # NaN padding counts as a prediction of 0
    p_signal = np.einsum("ij,ij->i", label, label)
    p_noise = np.einsum("ij,ij->i", noise_terms, noise_terms)
    return p_signal, p_noise, lag, offset


def score_breakdown(solution: pd.DataFrame, submission: pd.DataFrame, row_id_column_name: str = "id",
                    perfect_score: float = DEFAULT_PERFECT_SCORE) -> ScoreReport:
    """Score `submission` against `solution` and return per-image and per-lead tables.

    solution: columns `id`, `fs`, `value`; submission: `id`, `value`. Raises SubmissionError (with
    the id concerned) on NaN/inf values, duplicated or missing ids, fs varying within an image,
    lead II not holding 10*fs rows, or an image lacking one of the 12 leads.
    """
    true_values = _checked_values(solution, "solution", row_id_column_name, needs_fs=True)
    pred_values = _checked_values(submission, "submission", row_id_column_name, needs_fs=False)
    sol_ids, sub_ids = solution[row_id_column_name], submission[row_id_column_name]
    sol = _ParsedIds(sol_ids, "solution")
    sub = _ParsedIds(sub_ids, "submission", images=sol.images)
    row_span = int(max(sol.row.max(initial=0), sub.row.max(initial=0))) + 1
    order, sol_keys = _sorted_unique(sol.keys(row_span), sol_ids, "solution")
    sub_order, sub_keys = _sorted_unique(sub.keys(row_span), sub_ids, "submission")
    # Rows of the submission for each solution row (extra submission rows are ignored, as Kaggle does).
    pos = np.clip(np.searchsorted(sub_keys, sol_keys), 0, max(len(sub_keys) - 1, 0))
    found = (sub_keys[pos] == sol_keys) if len(sub_keys) else np.zeros(len(sol_keys), bool)
    if not found.all():
        first = sol_ids.iloc[int(order[np.flatnonzero(~found)[0]])]
        raise SubmissionError(f"submission is missing {int((~found).sum())} of the {len(sol_keys)} expected "
                              f"rows, first {first!r}")
    true_all = true_values[order]
    pred_all = pred_values[sub_order[pos]]
    image_codes = sol.image[order]
    lead_codes = sol.lead[order]
    fs_rows = pd.to_numeric(solution["fs"], errors="coerce").to_numpy(dtype=np.float64)[order]
    image_names = np.asarray(sol.images.to_pylist(), dtype=object)

    # Series = runs of equal (image, lead); rows inside are sorted by row number.
    series_key = image_codes * len(LEADS) + lead_codes
    starts = np.flatnonzero(np.r_[True, series_key[1:] != series_key[:-1]])
    lengths = np.diff(np.r_[starts, len(series_key)])
    s_image, s_lead = image_codes[starts], lead_codes[starts]
    fs_lo = np.minimum.reduceat(fs_rows, starts)
    fs_hi = np.maximum.reduceat(fs_rows, starts)
    n_images = len(image_names)
    img_lo = np.full(n_images, np.inf)
    img_hi = np.full(n_images, -np.inf)
    np.minimum.at(img_lo, s_image, fs_lo)
    np.maximum.at(img_hi, s_image, fs_hi)
    if (img_lo != img_hi).any() or np.isnan(fs_rows).any():
        img = image_names[int(np.flatnonzero((img_lo != img_hi) | np.isnan(img_lo))[0])]
        raise SubmissionError(f"image {img!r}: sampling frequency varies within the image (or is not a number)")
    image_fs = img_lo
    n_leads = np.bincount(s_image, minlength=n_images)
    if (n_leads != len(LEADS)).any():
        k = int(np.flatnonzero(n_leads != len(LEADS))[0])
        have = set(s_lead[s_image == k].tolist())
        lead = next(LEADS[j] for j in range(len(LEADS)) if j not in have)
        raise SubmissionError(f"image {image_names[k]!r}: solution has no rows for lead {lead}")
    rhythm = s_lead == LEADS.index(RHYTHM_LEAD)
    n_rhythm = np.zeros(n_images, dtype=np.int64)
    n_rhythm[s_image[rhythm]] = lengths[rhythm]
    # The reference metric checks fs == int(len(II) / 10).
    bad = (n_rhythm // int(RECORD_SECONDS)) != image_fs
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise SubmissionError(f"image {image_names[k]!r}: lead II has {int(n_rhythm[k])} rows, expected fs*10 = "
                              f"{int(round(image_fs[k] * RECORD_SECONDS))} (fs = {image_fs[k]:g})")
    max_shift = (image_fs[s_image] * MAX_TIME_SHIFT_S).astype(np.int64)

    n = len(starts)
    p_signal = np.empty(n)
    p_noise = np.empty(n)
    lag = np.empty(n, dtype=np.int64)
    offset = np.empty(n)
    for length in np.unique(lengths):
        sel = np.flatnonzero(lengths == length)
        index = starts[sel, None] + np.arange(length)[None, :]
        # Chunk to bound memory (rfft of 2x padded series).
        chunk = max(1, int(4e6 // max(length, 1)))
        for k in range(0, len(sel), chunk):
            part = sel[k:k + chunk]
            ps, pn, lg, off = _lead_powers(true_all[index[k:k + chunk]], pred_all[index[k:k + chunk]],
                                           max_shift[part])
            p_signal[part], p_noise[part], lag[part], offset[part] = ps, pn, lg, off

    per_lead = pd.DataFrame({
        "image_id": image_names[s_image], "lead": np.asarray(LEADS, dtype=object)[s_lead],
        "n": lengths, "lag": lag, "offset": offset, "p_signal": p_signal, "p_noise": p_noise,
    })
    per_lead["snr_db"] = _to_db(_capped_ratio(p_signal, p_noise, perfect_score))

    sig = np.bincount(s_image, weights=p_signal, minlength=n_images)
    noi = np.bincount(s_image, weights=p_noise, minlength=n_images)
    snr = _capped_ratio(sig, noi, perfect_score)
    per_image = pd.DataFrame({
        "image_id": image_names, "fs": image_fs,
        "n_rows": np.bincount(s_image, weights=lengths, minlength=n_images).astype(np.int64),
        "snr": snr, "snr_db": _to_db(snr), "capped": snr >= perfect_score,
    })
    mean_snr = float(np.mean(snr)) if len(snr) else 0.0
    total = max(float(_to_db(mean_snr)), -perfect_score) if mean_snr > 0 else -perfect_score
    return ScoreReport(score=total, per_image=per_image, per_lead=per_lead, perfect_score=perfect_score)


def score(solution: pd.DataFrame, submission: pd.DataFrame, row_id_column_name: str = "id",
          perfect_score: float = DEFAULT_PERFECT_SCORE) -> float:
    """The competition score in dB (see the module docstring and SPEC §2)."""
    return score_breakdown(solution, submission, row_id_column_name, perfect_score).score


def format_report(report: ScoreReport, rows: int = 20, per_lead: bool = False,
                  group: Optional[Dict[str, str]] = None) -> str:
    """Human-readable summary: the score, the worst images first, optionally the lead table.

    `group` maps image_id -> a group name (e.g. image type) to add a per-group table.
    """
    lines = [f"score: {report.score:.4f} dB over {len(report.per_image)} image(s) "
             f"(cap {report.perfect_score:g})"]
    table = report.per_image.sort_values("snr_db")
    if group is not None and len(table):
        g = report.per_image.assign(group=report.per_image["image_id"].map(group))
        by = g.groupby("group")["snr"].agg(["count", "mean"])
        by["score_db"] = _to_db(by["mean"])
        lines += ["", "per group:", by[["count", "score_db"]].to_string(float_format=lambda v: f"{v:.2f}")]
    if rows and len(table):
        shown = table.head(rows)
        lines += ["", f"per image (worst {len(shown)} of {len(table)}):",
                  shown[["image_id", "fs", "snr_db", "capped"]].to_string(index=False, float_format=lambda v: f"{v:.2f}")]
    if per_lead:
        lines += ["", "per lead (dB):", report.lead_table[["snr_db_mean", "snr_db_median", "pooled_snr_db"]]
                  .to_string(float_format=lambda v: f"{v:.2f}")]
    return "\n".join(lines)
