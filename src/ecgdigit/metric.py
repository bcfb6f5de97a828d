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
    per_lead: pd.DataFrame  # image_id, lead, n, lag, offset, p_signal, p_noise, snr_db
    perfect_score: float

    @property
    def lead_table(self) -> pd.DataFrame:
        """Mean per-lead SNR in dB over images (12 rows), the usual error-study table."""
        t = self.per_lead.groupby("lead", sort=False, observed=True).agg(
            snr_db_mean=("snr_db", "mean"), snr_db_median=("snr_db", "median"),
            p_signal=("p_signal", "sum"), p_noise=("p_noise", "sum"))
        t["pooled_snr_db"] = _to_db(t["p_signal"] / t["p_noise"].replace(0, np.nan))
        return t.reindex([lead for lead in LEADS if lead in t.index])


def _to_db(ratio):
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(ratio)


def _split_ids(ids: pd.Series, what: str) -> pd.DataFrame:
    parts = ids.astype(str).str.rsplit("_", n=2, expand=True)
    if parts.shape[1] != 3 or parts.isna().any().any():
        bad = ids[parts.isna().any(axis=1)].iloc[0] if parts.shape[1] == 3 else ids.iloc[0]
        raise SubmissionError(f"{what}: id {bad!r} is not of the form '<image>_<row>_<lead>'")
    rows = pd.to_numeric(parts[1], errors="coerce")
    if rows.isna().any():
        raise SubmissionError(f"{what}: id {ids[rows.isna()].iloc[0]!r} has a non-integer row number")
    unknown = ~parts[2].isin(LEADS)
    if unknown.any():
        raise SubmissionError(f"{what}: id {ids[unknown].iloc[0]!r} names an unknown lead "
                              f"(expected one of {', '.join(LEADS)})")
    return pd.DataFrame({"image_id": parts[0].values, "row": rows.astype(np.int64).values,
                         "lead": parts[2].values})


def _check_table(df: pd.DataFrame, what: str, row_id_column_name: str, needs_fs: bool) -> None:
    if not isinstance(df, pd.DataFrame):
        raise SubmissionError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    needed = [row_id_column_name, "value"] + (["fs"] if needs_fs else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise SubmissionError(f"{what} has no column {', '.join(map(repr, missing))} "
                              f"(columns: {', '.join(map(str, df.columns))})")
    values = pd.to_numeric(df["value"], errors="coerce")
    if values.isna().any():
        first = df.loc[values.isna(), row_id_column_name].iloc[0]
        raise SubmissionError(f"{what} has {int(values.isna().sum())} NaN or non-numeric value(s), "
                              f"first at id {first!r}")
    inf = ~np.isfinite(values.to_numpy(dtype=np.float64))
    if inf.any():
        first = df.loc[inf, row_id_column_name].iloc[0]
        raise SubmissionError(f"{what} has {int(inf.sum())} infinite value(s), first at id {first!r}")
    dup = df[row_id_column_name].duplicated()
    if dup.any():
        raise SubmissionError(f"{what} has {int(dup.sum())} duplicated id(s), first {df.loc[dup, row_id_column_name].iloc[0]!r}")


def _merge(solution: pd.DataFrame, submission: pd.DataFrame, row_id_column_name: str) -> pd.DataFrame:
    sub = submission[[row_id_column_name, "value"]]
    merged = solution[[row_id_column_name, "fs", "value"]].merge(
        sub, on=row_id_column_name, how="left", suffixes=("_true", "_pred"), indicator=True)
    missing = merged["_merge"] != "both"
    if missing.any():
        ids = merged.loc[missing, row_id_column_name]
        raise SubmissionError(f"submission is missing {int(missing.sum())} of the {len(merged)} expected "
                              f"rows, first {ids.iloc[0]!r}")
    keys = _split_ids(merged[row_id_column_name], "solution")
    out = pd.concat([keys, merged[["fs", "value_true", "value_pred"]].reset_index(drop=True)], axis=1)
    out["value_true"] = out["value_true"].astype(np.float64)
    out["value_pred"] = out["value_pred"].astype(np.float64)
    return out


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
    _check_table(solution, "solution", row_id_column_name, needs_fs=True)
    _check_table(submission, "submission", row_id_column_name, needs_fs=False)
    data = _merge(solution, submission, row_id_column_name)
    data.sort_values(["image_id", "lead", "row"], inplace=True, kind="stable")

    fs_per_image = data.groupby("image_id", sort=True)["fs"].agg(["nunique", "first"])
    varying = fs_per_image.index[fs_per_image["nunique"] != 1]
    if len(varying):
        raise SubmissionError(f"image {varying[0]!r}: sampling frequency varies within the image")
    counts = data.groupby(["image_id", "lead"], sort=True).size().unstack("lead")
    absent = counts.columns.symmetric_difference(LEADS).tolist()
    if absent or counts.isna().any().any():
        where = counts.index[counts.isna().any(axis=1)]
        img = where[0] if len(where) else counts.index[0]
        lead = absent[0] if absent else counts.columns[counts.loc[img].isna()][0]
        raise SubmissionError(f"image {img!r}: solution has no rows for lead {lead}")
    fs = fs_per_image["first"].astype(np.float64)
    n_rhythm = counts[RHYTHM_LEAD].astype(np.int64)
    # The reference metric checks fs == int(len(II) / 10).
    bad = (n_rhythm // int(RECORD_SECONDS)) != fs.reindex(n_rhythm.index)
    if bad.any():
        img = bad.index[bad.to_numpy()][0]
        raise SubmissionError(f"image {img!r}: lead II has {int(n_rhythm[img])} rows, expected fs*10 = "
                              f"{int(round(fs[img] * RECORD_SECONDS))} (fs = {fs[img]:g})")

    # Series boundaries: rows are sorted by (image, lead, row), so each series is contiguous.
    series = data.groupby(["image_id", "lead"], sort=False).size()
    lengths = series.to_numpy()
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    series_fs = fs.reindex(series.index.get_level_values("image_id")).to_numpy()
    max_shift = (series_fs * MAX_TIME_SHIFT_S).astype(np.int64)
    true_all = data["value_true"].to_numpy()
    pred_all = data["value_pred"].to_numpy()

    n = len(series)
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
        "image_id": series.index.get_level_values("image_id"),
        "lead": series.index.get_level_values("lead"),
        "n": lengths, "lag": lag, "offset": offset, "p_signal": p_signal, "p_noise": p_noise,
    })
    per_lead["snr_db"] = _to_db(per_lead["p_signal"] / per_lead["p_noise"].where(per_lead["p_noise"] > 0))
    per_lead["lead"] = pd.Categorical(per_lead["lead"], categories=list(LEADS), ordered=True)
    per_lead.sort_values(["image_id", "lead"], inplace=True)
    per_lead.reset_index(drop=True, inplace=True)

    sums = per_lead.groupby("image_id", sort=True, observed=True)[["p_signal", "p_noise"]].sum()
    sig, noi = sums["p_signal"].to_numpy(), sums["p_noise"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(noi == 0, perfect_score, np.where(sig == 0, 0.0, np.minimum(sig / noi, perfect_score)))
    per_image = pd.DataFrame({
        "image_id": sums.index, "fs": fs.reindex(sums.index).to_numpy(),
        "n_rows": series.groupby(level="image_id").sum().reindex(sums.index).to_numpy(),
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
