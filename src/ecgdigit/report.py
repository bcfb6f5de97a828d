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


def breakdown_tables(report: ScoreReport, image_types=None) -> dict:
    """Score (dB of the mean linear SNR) per image type, per lead and per fs."""
    images = report.per_image.copy()
    images["type"] = images["image_id"].map(image_types or {}).fillna("?")

    def pooled(df, by):
        g = df.groupby(by)["snr"].agg(["count", "mean"])
        g["score_db"] = 10 * np.log10(g["mean"].clip(lower=1e-12))
        return g[["count", "score_db"]]

    return {"type": pooled(images, "type"), "fs": pooled(images, "fs"),
            "lead": report.lead_table[["snr_db_mean", "snr_db_median", "pooled_snr_db"]],
            "images": images.sort_values("snr_db")}


def plot_worst_cases(report: ScoreReport, solution, submission, image_paths: dict, n: int = 3,
                     path: Optional[str] = None):
    """For the n worst images: the image, and for its worst lead the true vs predicted trace.

    `solution` / `submission` are the metric's tables; `image_paths` maps image id -> file.
    """
    import cv2
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    worst = report.per_image.sort_values("snr_db").head(n)
    fig, axes = plt.subplots(len(worst), 2, figsize=(14, 3.2 * max(len(worst), 1)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2]})
    sol = solution.set_index("id")["value"]
    sub = submission.set_index("id")["value"]
    for row, (_, img) in zip(axes, worst.iterrows()):
        image_id = img["image_id"]
        leads = report.per_lead[report.per_lead["image_id"] == image_id].sort_values("snr_db")
        lead = leads.iloc[0]
        picture = cv2.imread(str(image_paths.get(image_id, "")), cv2.IMREAD_REDUCED_COLOR_4)
        if picture is not None:
            row[0].imshow(picture[:, :, ::-1])
        row[0].set_title(f"{image_id}: {img['snr_db']:.1f} dB")
        row[0].axis("off")
        ids = [f"{image_id}_{k}_{lead['lead']}" for k in range(int(lead["n"]))]
        t = np.arange(len(ids)) / img["fs"]
        true = sol.reindex(ids).to_numpy()
        pred = sub.reindex(ids).to_numpy()
        row[1].plot(t, true - np.mean(true), label="truth", color="black", lw=1)
        row[1].plot(t, pred - np.mean(pred), label="prediction", color="tab:red", lw=1, alpha=0.8)
        row[1].set_title(f"worst lead {lead['lead']}: {lead['snr_db']:.1f} dB (lag {int(lead['lag'])} samples)")
        row[1].set_xlabel("s (from the lead's first sample)")
        row[1].set_ylabel("mV (centred)")
        row[1].legend(loc="upper right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig
