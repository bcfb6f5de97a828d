"""CPU seconds per image of the stage-2 model forward on the 1696 x 4352 network crop.

For each small backbone: build the SegmentationModel (random weights: speed does not depend on
them), run `--warmup` then `--repeats` forwards of one image under torch.inference_mode, and print
the median wall time, the thread count and the parameter count. Extraction time (maps -> record)
is printed once for comparison.

Run: PYTHONPATH=src python bench/bench_trace_speed.py [--backbones resnet18 efficientnet_b0 ...]
     [--threads 2] [--height 1696 --width 4352]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from ecgdigit.layout import NETWORK_CROP_HEIGHT, NETWORK_CROP_WIDTH
from ecgdigit.nets.unet import SegmentationModel

DEFAULT_BACKBONES = ("resnet18", "efficientnet_b0", "resnet34", "convnextv2_tiny")


def time_forward(name: str, height: int, width: int, warmup: int, repeats: int) -> tuple:
    model = SegmentationModel(name, n_classes=4).eval()
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.rand(1, 3, height, width)
    times = []
    with torch.inference_mode():
        for k in tqdm(range(warmup + repeats), desc=name, leave=False):
            t = time.perf_counter()
            model(x)
            if k >= warmup:
                times.append(time.perf_counter() - t)
    return float(np.median(times)), n_params


def time_extraction(height: int, width: int) -> float:
    from ecgdigit.synth.signals import simulate_record
    from ecgdigit.layout import default_lead_lengths
    from ecgdigit.trace.extract import extract_record
    from ecgdigit.trace.targets import band_masks

    sig = simulate_record(500, np.random.default_rng(0))
    maps = band_masks(sig, 500).astype(np.float32)[:, :height, :width] / 255.0
    t = time.perf_counter()
    extract_record(maps, default_lead_lengths(500), 500)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--height", type=int, default=NETWORK_CROP_HEIGHT)
    ap.add_argument("--width", type=int, default=NETWORK_CROP_WIDTH)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"model forward, 1 image {args.height}x{args.width}, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(f"{'backbone':20s} {'s/image':>8} {'params (M)':>11}")
    for name in args.backbones:
        sec, n = time_forward(name, args.height, args.width, args.warmup, args.repeats)
        print(f"{name:20s} {sec:8.2f} {n / 1e6:11.1f}", flush=True)
    print(f"extraction (maps -> 12-lead record, 500 Hz): {time_extraction(args.height, args.width):.2f} s")


if __name__ == "__main__":
    main()
