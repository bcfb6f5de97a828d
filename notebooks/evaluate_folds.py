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
# # Out-of-fold evaluation
# Digitises the images of one fold's records of a competition-layout train folder (real, or made by
# `ecgdigit synth --split train`) with the weights trained WITHOUT that fold (or the no-weights
# default), and shows the SNR per image type, per fs and per lead, and the worst cases (image +
# predicted vs true trace of its worst lead).
#
# `papermill notebooks/evaluate_folds.ipynb out.ipynb -p data_dir data/train -p fold 0 -p weights runs/fold0`

# %% tags=["parameters"]
data_dir = "data/train"
folds_csv = ""  # train_folds.csv (id, fold); empty: make 5 folds grouped by record, written beside the data
fold = 0
weights = ""  # weights of the model trained without this fold; empty: the no-weights default
limit = 0  # the first N images of the fold only (debugging), 0 for all
workers = 1
output_dir = "evaluate_folds_out"
worst_cases = 3

# %%
from pathlib import Path

import pandas as pd

from ecgdigit import io
from ecgdigit.metric import score_breakdown
from ecgdigit.report import breakdown_tables, plot_score_report, plot_worst_cases
from ecgdigit.submit import run_submit
from ecgdigit.train.data import make_folds

data, out = Path(data_dir), Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
folds = pd.read_csv(folds_csv, dtype={"id": str}) if folds_csv else make_folds(data / "train.csv", out=out / "train_folds.csv")
records = folds.loc[folds["fold"] == fold, "id"].astype(str).tolist()
if not records:
    raise ValueError(f"fold {fold} holds no record (folds present: {sorted(folds['fold'].unique())})")
print(f"fold {fold}: {len(records)} record(s)")
result = run_submit(data, out / "oof_submission.parquet", weights=weights or None, workers=workers,
                    limit=limit or None, records=records)
solution = io.solution_from_train_folder(data, image_ids=list(result.image_types))
report = score_breakdown(solution, result.submission)
tables = breakdown_tables(report, result.image_types)
print(f"out-of-fold score: {report.score:.3f} dB over {len(report.per_image)} image(s); {len(result.failures)} fell back")

# %%
tables["type"]

# %%
tables["fs"]

# %%
tables["lead"]

# %%
tables["images"].to_csv(out / "oof_per_image.csv", index=False)
fig = plot_score_report(report, path=str(out / "oof_histogram.png"), title=f"fold {fold}")

# %%
paths = {e.image_id: e.path for e in io.list_train_images(data)}
fig = plot_worst_cases(report, solution, result.submission, paths, n=worst_cases, path=str(out / "worst_cases.png"))
