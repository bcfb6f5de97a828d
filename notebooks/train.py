# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train the stage-2 trace model
# A thin shell over `ecgdigit.train.loop.train`: a timm encoder + CoordConv U-Net predicts the 4 band
# maps of the canonical frame; the checkpoint kept is the one with the best validation score in
# competition dB (model -> extraction -> metric). Run with papermill, e.g.
#
# `papermill notebooks/train.ipynb out.ipynb -p backbone resnet34 -p epochs 30 -p out_dir runs/r34`
#
# Data: `synthetic` (on-the-fly generator, no files) or a folder written by `ecgdigit synth`
# (train split, with labels/). Multi-GPU: `jupyter nbconvert --to script` this notebook and launch
# it with `torchrun --nproc_per_node N train.py` (DistributedDataParallel switches on by itself).
# The GPU recipe used for the reference model is the default below (full canonical width, batch 2,
# AdamW 1e-4, one-cycle cosine, fp16, BCE pos_weight 10 + column cross-entropy).

# %% tags=["parameters"]
stage = 2
backbone = "resnet34"
data = "synthetic"
types = ""  # comma-separated image types, "" = all nine
epochs = 30
samples_per_epoch = 2000
batch_size = 2
grad_accum = 1
lr = 1e-4
fold = 0
image_width = 4400
amp = True
workers = 4
out_dir = "runs/stage2"
resume = False
column_ce_weight = 0.5
val_samples = 32
max_steps = 0  # 0 = no limit
seed = 0
encoder_weights = ""  # optional local timm weights file
show_examples = True

# %%
import sys
from pathlib import Path

try:
    import ecgdigit  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path.cwd().parent / "src") if Path.cwd().name == "notebooks" else str(Path.cwd() / "src"))

from ecgdigit.train.loop import TrainConfig, train

cfg = TrainConfig(
    stage=int(stage), backbone=backbone, data=data,
    types=tuple(t.strip() for t in str(types).split(",") if t.strip()),
    epochs=int(epochs), samples_per_epoch=int(samples_per_epoch), batch_size=int(batch_size),
    grad_accum=int(grad_accum), lr=float(lr), fold=int(fold), image_width=int(image_width), amp=bool(amp),
    workers=int(workers), out_dir=out_dir, resume=bool(resume), column_ce_weight=float(column_ce_weight),
    val_samples=int(val_samples), max_steps=int(max_steps) or None, seed=int(seed),
    encoder_weights=encoder_weights or None,
)
print(cfg)

# %%
result = train(cfg)
result

# %% [markdown]
# ## Curves and one validation example

# %%
import pandas as pd

log = pd.read_csv(result["log"])
log.tail()

# %%
if show_examples:
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from ecgdigit.layout import CANONICAL_HEIGHT, CANONICAL_WIDTH
    from ecgdigit.nets.unet import load_model
    from ecgdigit.train.data import SyntheticTraceDataset

    plt.imshow(plt.imread(result["curves"]))
    plt.axis("off")
    plt.show()
    model = load_model(result["best"])
    item = SyntheticTraceDataset(1, seed=int(seed) + 1_000_003, width=int(image_width))[0]
    with torch.no_grad():
        probs = model.predict_proba(item["image"][None])[0].numpy()
    fig, axes = plt.subplots(2, 1, figsize=(14, 7))
    axes[0].imshow(item["image"].permute(1, 2, 0).numpy())
    axes[0].set_title("canonical image")
    axes[1].imshow(probs.max(axis=0), cmap="magma")
    axes[1].set_title("predicted band maps (max over bands)")
    for a in axes:
        a.axis("off")
    plt.show()
