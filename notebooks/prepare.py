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
# # Prepare a competition-layout folder for stage-2 training
# Rectifies every image of a train folder (the real Kaggle data, or `ecgdigit synth --split train`)
# to the canonical 4400 x 1700 frame once, and caches per image the canonical image, its map and
# confidence, and per record the 4-band target masks built from the ground-truth CSV
# (`ecgdigit.prepare`). Resumable; rejected images are listed with the reason in `rejected.csv`.
#
# `papermill notebooks/prepare.ipynb out.ipynb -p input_dir data/train_synth -p output_dir data/prepared`

# %% tags=["parameters"]
input_dir = "data/train"
output_dir = "data/prepared"
workers = 1
limit = 0  # the first N images only (debugging), 0 for all
rectifier = "classical"  # classical | learned (once weights exist)
overwrite = False

# %%
from pathlib import Path

import pandas as pd

from ecgdigit.prepare import prepare_folder

index = prepare_folder(input_dir, output_dir, workers=workers, limit=limit or None, rectifier=rectifier,
                       overwrite=overwrite)
rejected = pd.read_csv(Path(output_dir) / "rejected.csv")
print(f"prepared {len(index)} image(s), rejected {len(rejected)}")
index.groupby("type")["confidence"].describe() if len(index) else index

# %%
rejected
