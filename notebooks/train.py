# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train a stage model: 0 (orientation + lead labels), 1 (grid nodes) or 2 (traces)
# A thin shell over `ecgdigit.train.loop.train` (one loop for all stages: AdamW + one-cycle cosine,
# AMP on CUDA, gradient accumulation, resume, CSV log + curves, checkpoint + config JSON beside it).
# - `stage=2`: a timm encoder + CoordConv U-Net predicts the 4 band maps of the canonical frame; the
#   checkpoint kept is the one with the best validation score in competition dB (model -> extraction
#   -> metric).
# - `stage=0`: the whole image (long side `image_size`, default 512) -> orientation (8 codes) + the
#   13 lead-label marker maps; kept by validation orientation accuracy (marker error in mm breaks ties).
# - `stage=1`: the upright image (canvas width `image_size`, default 1024) -> grid-node heatmap +
#   (row, column) index maps; kept by the validation mean node error in mm after the full decode + fit.
#
# Run with papermill, e.g.
# `papermill notebooks/train.ipynb out.ipynb -p stage 1 -p backbone resnet34 -p epochs 30 -p out_dir runs/s1`
# (a CPU machine: `-p workers 0 -p threads 1 -p cache_items True -p amp False`, smaller `image_size`
# and `decoder_channels`, see docs/BENCHMARKS.md for the settings of the first CPU-trained rectifier).
#
# The learned rectifier reads a weights folder holding `stage0/` and `stage1/` run folders (their
# `best.pt` + `best.json`): train with `out_dir=WEIGHTS/stage0` and `out_dir=WEIGHTS/stage1`, then
# `rectify_to_canonical(image, method="learned", weights=WEIGHTS)`.
#
# Data: `synthetic` (on-the-fly generator, no files) or a folder written by `ecgdigit synth`
# (train split, with labels/). Multi-GPU: `jupyter nbconvert --to script` this notebook and launch
# it with `torchrun --nproc_per_node N train.py` (DistributedDataParallel switches on by itself).
# The GPU recipe used for the reference stage-2 model is the default below (full canonical width,
# batch 2, AdamW 1e-4, one-cycle cosine, fp16, BCE pos_weight 10 + column cross-entropy).

# %% tags=["parameters"]
stage = 2
backbone = "resnet34"
data = "synthetic"
types = ""  # comma-separated image types; empty: all nine
epochs = 30
samples_per_epoch = 2000
batch_size = 2
grad_accum = 1
lr = 1e-4
fold = 0
image_width = 4400  # stage 2: canonical frame scaled to this width
image_size = 0  # stages 0/1: input size; 0 for the stage default (512 or 1024)
amp = True
workers = 4
out_dir = ""  # empty: runs/stage{stage}
resume = False
column_ce_weight = 0.5
val_samples = 32
max_steps = 0  # 0 for no limit
seed = 0
encoder_weights = ""  # optional local timm weights file
decoder_channels = ""  # comma-separated U-Net decoder widths; empty: the default (256,128,64,32,16)
cache_items = False  # stages 0/1: keep rendered items in memory so later epochs skip the engine (workers=0)
time_limit_s = 0.0  # > 0: stop after the epoch during which this many seconds have passed
threads = 0  # > 0: torch and OpenCV CPU threads (a shared CPU machine: 1); 0 leaves them
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
    workers=int(workers), out_dir=out_dir or f"runs/stage{int(stage)}", resume=bool(resume), column_ce_weight=float(column_ce_weight),
    val_samples=int(val_samples), max_steps=int(max_steps) or None, seed=int(seed),
    encoder_weights=encoder_weights or None, image_size=int(image_size),
    cache_items=bool(cache_items), time_limit_s=float(time_limit_s), threads=int(threads),
    **({"decoder_channels": tuple(int(c) for c in str(decoder_channels).split(",") if c.strip())}
       if str(decoder_channels).strip() else {}),
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
if show_examples and cfg.stage == 2:
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

# %% [markdown]
# ## Stages 0 / 1: one validation image with the model's answer

# %%
if show_examples and cfg.stage in (0, 1):
    import matplotlib.pyplot as plt
    import numpy as np

    from ecgdigit.nets.unet import load_model
    from ecgdigit.rectify import learned
    from ecgdigit.train import stage01

    plt.imshow(plt.imread(result["curves"]))
    plt.axis("off")
    plt.show()
    model = load_model(result["best"])
    src = stage01.make_source("synthetic", 1, int(seed) + 1_000_003, cfg.types or None)[0]
    fig, ax = plt.subplots(figsize=(10, 7))
    if cfg.stage == 0:
        out = learned.run_stage0(model, src["image"])
        ax.imshow(src["image"])
        ax.plot(out.keypoints[:, 0], out.keypoints[:, 1], "r+", ms=14, mew=2)
        ax.set_title(f"orientation: predicted {out.orientation}, true {src['orientation']}")
    else:
        canvas, _, _ = learned.stage1_canvas(src["image"], int(src["orientation"]), stage01.STAGE1_SIZE
                                             if not cfg.image_size else int(cfg.image_size))
        fit, n_named = learned.stage1_fit(model, canvas)
        ax.imshow(canvas)
        if fit is not None:
            nodes = fit.nodes
            ax.plot(nodes[..., 0].ravel(), nodes[..., 1].ravel(), "r.", ms=2)
            ax.plot(nodes[fit.found][:, 0], nodes[fit.found][:, 1], "c.", ms=2)
        ax.set_title(f"{n_named} nodes named; fitted nodes red, detected cyan")
    ax.axis("off")
    plt.show()
