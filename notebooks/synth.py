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
# # Synthetic ECG images
# Renders records into the competition layout (train or test split) with exact labels under
# `labels/`, like `ecgdigit synth`. Run with papermill, e.g.
# `papermill notebooks/synth.ipynb out.ipynb -p out_dir /tmp/synth -p records 10 -p types 0001,0003`.

# %% tags=["parameters"]
out_dir = "synth_out"
records = 4
types = "0001"
split = "train"
seed = 0
workers = 1
fs = "250,256,500,512,1000,1025"
layout = "3x4+II"
paper = "letter"
dpi = 200.0
show_examples = True

# %%
from pathlib import Path

from ecgdigit.synth.writer import generate_dataset

type_list = [t.strip() for t in str(types).split(",") if t.strip()]
fs_list = [float(v) for v in str(fs).split(",") if v.strip()]
out = generate_dataset(out_dir, int(records), type_list, split, int(seed), workers=int(workers), fs_choices=fs_list,
                       layout=layout, paper=paper, dpi=float(dpi))
print("written to", Path(out).resolve())

# %%
if show_examples:
    import matplotlib.pyplot as plt
    from PIL import Image

    images = sorted(Path(out).glob("train/*/*.png" if split == "train" else "test/*.png"))[: len(type_list)]
    fig, axes = plt.subplots(1, len(images), figsize=(6 * len(images), 5), squeeze=False)
    for ax, path in zip(axes[0], images):
        ax.imshow(Image.open(path))
        ax.set_title(path.name)
        ax.axis("off")
    plt.show()
