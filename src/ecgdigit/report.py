"""Plots for score reports: pictures that say more than the tables."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ecgdigit.metric import ScoreReport


def plot_score_report(report: ScoreReport, path: Optional[str] = None, title: str = ""):
    """Histogram of per-image SNR (dB) and per-lead mean SNR; saved to `path` when given.

    Returns the matplotlib figure.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_hist, ax_lead) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
    snr_db = report.per_image["snr_db"].replace(-np.inf, np.nan).dropna()
    ax_hist.hist(snr_db, bins=min(40, max(5, len(snr_db) // 3)), color="tab:blue", alpha=0.8)
    ax_hist.axvline(report.score, color="tab:red", ls="--", label=f"score {report.score:.2f} dB")
    ax_hist.set_xlabel("per-image SNR (dB)")
    ax_hist.set_ylabel("images")
    ax_hist.legend()
    leads = report.lead_table
    ax_lead.bar(leads.index.astype(str), leads["snr_db_mean"], color="tab:green", alpha=0.8)
    ax_lead.set_ylabel("mean SNR over images (dB)")
    ax_lead.set_title("per lead")
    fig.suptitle(title or f"{len(report.per_image)} images, cap {report.perfect_score:g}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
