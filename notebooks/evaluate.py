# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Evaluate a submission
# Scores a submission against a solution with the competition metric (`ecgdigit.metric`) and
# shows the per-image and per-lead breakdown and a histogram of per-image SNR.
#
# `papermill notebooks/evaluate.ipynb out.ipynb -p solution_path S -p submission_path P`
# where S is a solution table (id, fs, value) or a competition train folder.

# %% tags=["parameters"]
solution_path = "solution.csv"
submission_path = "submission.parquet"
perfect_score = 1e6  # 384 reproduces the early copies of the metric
output_dir = "evaluate_out"
worst_rows = 20

# %%
from pathlib import Path

from ecgdigit.io import read_solution, read_submission
from ecgdigit.metric import format_report, score_breakdown
from ecgdigit.report import plot_score_report

out = Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
report = score_breakdown(read_solution(solution_path), read_submission(submission_path), perfect_score=perfect_score)
print(format_report(report, rows=worst_rows, per_lead=True))

# %%
report.per_image.sort_values("snr_db").to_csv(out / "per_image.csv", index=False)
report.per_lead.to_csv(out / "per_lead.csv", index=False)
report.lead_table

# %%
fig = plot_score_report(report, path=str(out / "snr_histogram.png"))
