"""Time the competition metric on a synthetic solution of N images against a noisy copy.

    python bench/bench_metric.py [--images 1000] [--fs 500]

Prints the build and scoring times and the score (acceptance: 1,000 images at fs=500 < 60 s).
"""
import argparse
import time

import numpy as np
import pandas as pd

from ecgdigit.io import solution_rows
from ecgdigit.layout import LEADS, RHYTHM_LEAD, record_length, segment_length
from ecgdigit.metric import score_breakdown


def synthetic_tables(n_images: int, fs: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(record_length(fs)) / fs
    sols, subs = [], []
    for k in range(n_images):
        true, pred = {}, {}
        for j, lead in enumerate(LEADS):
            n = record_length(fs) if lead == RHYTHM_LEAD else segment_length(fs)
            x = np.sin(2 * np.pi * rng.uniform(0.8, 2.0) * t[:n] + j) + 0.2 * rng.standard_normal(n)
            true[lead] = x
            pred[lead] = np.roll(x, int(rng.integers(-20, 21))) + 0.5 + 0.1 * rng.standard_normal(n)
        sols.append(solution_rows(true, str(1_000_000_000 + k), fs))
        subs.append(solution_rows(pred, str(1_000_000_000 + k), fs)[["id", "value"]])
    return pd.concat(sols, ignore_index=True), pd.concat(subs, ignore_index=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--fs", type=float, default=500)
    args = ap.parse_args()
    t0 = time.perf_counter()
    solution, submission = synthetic_tables(args.images, args.fs)
    t1 = time.perf_counter()
    report = score_breakdown(solution, submission)
    t2 = time.perf_counter()
    print(f"images: {args.images}  fs: {args.fs:g}  rows: {len(solution):,}")
    print(f"build tables: {t1 - t0:.1f} s")
    print(f"score: {report.score:.3f} dB in {t2 - t1:.1f} s ({(t2 - t1) / args.images * 1000:.1f} ms/image)")


if __name__ == "__main__":
    main()
