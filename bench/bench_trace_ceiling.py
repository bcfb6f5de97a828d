"""Representation ceiling of stage 2 and the gain of each extraction switch, in competition dB.

(a) Ceiling: true anti-aliased masks of synthetic records -> extraction -> SNR, per fs, on the
    1696 x 4352 network crop (full canonical resolution) and on a half-width frame for contrast.
(b) Switch gains: each ExtractOptions switch turned off (or set to the seed's choice) against the
    default, on true masks and on "network-like" maps: the masks drawn from signals with smooth
    per-lead position errors (two independent drawings so the two lead-II traces disagree),
    blurred, leaking into neighbouring bands, with dropped column spans and speckle.

Run: PYTHONPATH=src python bench/bench_trace_ceiling.py [--records 8] [--fs 250 500 1000]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import cv2
import numpy as np
from tqdm import tqdm

from ecgdigit.layout import CANONICAL_HEIGHT, CANONICAL_PX_PER_MV, NETWORK_CROP_HEIGHT, NETWORK_CROP_WIDTH
from ecgdigit.synth.signals import simulate_record
from ecgdigit.trace.evaluation import score_records, truth_record
from ecgdigit.layout import default_lead_lengths
from ecgdigit.trace.extract import ExtractOptions, extract_record
from ecgdigit.trace.targets import band_masks

SWITCHES = {
    "default": {},
    "seed choices (all)": "seed",
    "estimator=argmax": dict(estimator="argmax"),
    "estimator=run": dict(estimator="run"),
    "estimator=run, no snap": dict(estimator="run", extremum_snap=False),
    "no DP tracking": dict(tracking=False),
    "threshold 0.15 (seed)": dict(threshold=0.15),
    "threshold 0.3": dict(threshold=0.3),
    "resample=pchip": dict(resample="pchip"),
    "resample=linear": dict(resample="linear"),
    "resample=fft_row (seed)": dict(resample="fft_row"),
    "gap_fill=linear": dict(gap_fill="linear"),
    "no lead II fusion": dict(fuse_lead_ii=False),
    "no Einthoven": dict(einthoven=False),
    "no Goldberger": dict(goldberger=False),
    "Goldberger w/o II term": dict(augmented_with_ii=False),
    "no constraints": dict(einthoven=False, goldberger=False),
    "constraints ungated": dict(consistency_gate=np.inf, residual_clip_mv=np.inf),
}


def smooth_noise(rng, n, std, corr_samples):
    """Low-pass Gaussian noise of standard deviation `std` and correlation length `corr_samples`."""
    white = rng.normal(0, 1, n + 4 * corr_samples)
    k = np.exp(-0.5 * (np.arange(-2 * corr_samples, 2 * corr_samples + 1) / max(corr_samples, 1)) ** 2)
    out = np.convolve(white, k / np.sqrt((k ** 2).sum()), mode="valid")[:n]
    return out * std


def network_like_maps(sig, fs, rng, height, width, pos_std_px=0.6):
    """Probability maps with the kinds of errors a trained network makes (see module docstring)."""
    def perturbed():
        noise = np.stack([smooth_noise(rng, len(sig), pos_std_px / CANONICAL_PX_PER_MV, max(int(0.02 * fs), 1))
                          for _ in range(sig.shape[1])], axis=1)
        return band_masks(sig + noise, fs, height=height, width=width, line_width=2)

    a, b = perturbed(), perturbed()
    maps = np.concatenate([a[:3], b[3:]]).astype(np.float32) / 255.0
    out = np.empty_like(maps)
    for k in range(4):
        out[k] = cv2.GaussianBlur(maps[k], (0, 0), sigmaX=1.0, sigmaY=1.5)
    out /= max(out.max(), 1e-6)
    out *= 0.9
    leak = out.copy()
    for k in range(4):  # traces that cross into a neighbour band are partly seen there
        if k > 0:
            out[k] = np.maximum(out[k], 0.35 * leak[k - 1])
        if k < 3:
            out[k] = np.maximum(out[k], 0.35 * leak[k + 1])
    for _ in range(30):  # dropped spans (faint ink, stains): peaks fall under the threshold
        k, c, w = rng.integers(0, 4), rng.integers(0, width - 40), rng.integers(3, 30)
        out[k, :, c:c + w] *= rng.uniform(0.03, 0.3)
    speckle = (rng.random(out.shape) < 5e-5) * rng.uniform(0.2, 0.6, out.shape)
    return np.maximum(out, speckle.astype(np.float32))


def run(fs, records, maps_kind, options, width, seed=0):
    lengths = default_lead_lengths(fs)
    truths, preds = {k: [] for k in options}, {k: [] for k in options}
    for i in tqdm(range(records), desc=f"{maps_kind} fs={fs} w={width}", leave=False):
        rng = np.random.default_rng(seed + i)
        sig = simulate_record(fs, rng)
        f = width / NETWORK_CROP_WIDTH  # 1 = full canonical resolution, 0.5 = half
        full_w, full_h = int(round(4400 * f)), int(round(CANONICAL_HEIGHT * f))
        if maps_kind == "true":
            maps = band_masks(sig, fs, height=full_h, width=full_w)
        else:
            maps = network_like_maps(sig, fs, rng, full_h, full_w)
        maps = maps[:, :int(round(NETWORK_CROP_HEIGHT * f)), :width]
        truth = truth_record(sig, fs, lengths)
        for name, o in options.items():
            o = replace(o, frame_scale=(full_w / 4400, full_h / CANONICAL_HEIGHT))
            truths[name].append(truth)
            preds[name].append(extract_record(maps, lengths, fs, o))
    return {name: score_records(truths[name], preds[name], [fs] * records).score for name in options}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=8)
    ap.add_argument("--fs", type=float, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--switch-fs", type=float, default=500)
    ap.add_argument("--skip-switches", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    base = ExtractOptions()
    print("(a) representation ceiling: true masks -> extraction -> competition score (dB)")
    print(f"{'fs':>6} {'4352 px (full)':>15} {'2176 px (half)':>15} {'seed choices @4352':>19}")
    for fs in args.fs:  # tqdm writes to stderr, the tables to stdout
        full = run(fs, args.records, "true", {"default": base, "seed": base.seed()}, NETWORK_CROP_WIDTH)
        half = run(fs, args.records, "true", {"default": base}, NETWORK_CROP_WIDTH // 2)
        print(f"{fs:6g} {full['default']:15.2f} {half['default']:15.2f} {full['seed']:19.2f}", flush=True)
    if not args.skip_switches:
        opts = {k: (base.seed() if v == "seed" else replace(base, **v)) for k, v in SWITCHES.items()}
        print(f"\n(b) switch gains at fs={args.switch_fs:g}, {args.records} records, 4352 px: score (dB) and "
              f"change vs default")
        res_true = run(args.switch_fs, args.records, "true", opts, NETWORK_CROP_WIDTH)
        res_net = run(args.switch_fs, args.records, "network-like", opts, NETWORK_CROP_WIDTH, seed=1000)
        print(f"{'variant':28s} {'true masks':>11} {'delta':>7} {'net-like':>9} {'delta':>7}")
        for k in SWITCHES:
            print(f"{k:28s} {res_true[k]:11.2f} {res_true[k] - res_true['default']:+7.2f} "
                  f"{res_net[k]:9.2f} {res_net[k] - res_net['default']:+7.2f}")
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
