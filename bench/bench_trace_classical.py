"""Classical (weight-free) stage 2 per image type, on canonical-frame views of synthetic images.

Each synthetic image is brought into the canonical frame through its exact mapping (a perfect
rectifier), then `trace.classical.classical_extract` -> competition score per type (dB, the
mean of linear SNRs as the metric does) and the per-image median.

Run: PYTHONPATH=src python bench/bench_trace_classical.py [--per-type 3] [--types 0001 0003 ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from ecgdigit.io import IMAGE_TYPES
from ecgdigit.synth.dataset import SyntheticECGDataset
from ecgdigit.trace.classical import classical_extract
from ecgdigit.trace.evaluation import score_records, truth_record
from ecgdigit.layout import default_lead_lengths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-type", type=int, default=3)
    ap.add_argument("--types", nargs="+", default=list(IMAGE_TYPES))
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    t0 = time.time()
    print(f"classical extractor on perfect canonical views, {args.per_type} images per type")
    print(f"{'type':>6} {'score dB':>9} {'median image dB':>16} {'s/image':>8}")
    all_t, all_p, all_f = [], [], []
    for image_type in args.types:
        ds = SyntheticECGDataset(args.per_type, seed=args.seed, types=[image_type], mode="canonical")
        truths, preds, fss, secs = [], [], [], []
        for k in tqdm(range(len(ds)), desc=image_type, leave=False):
            it = ds[k]
            fs = float(it["fs"])
            lengths = default_lead_lengths(fs)
            t = time.time()
            preds.append(classical_extract(it["image"], lengths, fs))
            secs.append(time.time() - t)
            truths.append(truth_record(it["signals"].astype(np.float64), fs, lengths))
            fss.append(fs)
        rep = score_records(truths, preds, fss)
        all_t += truths
        all_p += preds
        all_f += fss
        print(f"{image_type:>6} {rep.score:9.2f} {np.median(rep.per_image['snr_db']):16.2f} {np.mean(secs):8.2f}",
              flush=True)
    print(f"{'all':>6} {score_records(all_t, all_p, all_f).score:9.2f}")
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
