"""Synthetic engine speed: images per second per core for every image type.

One process, one thread (cv2, BLAS), so the figure is per core: images per CPU-second of this
process (process_time, robust to other load on the machine), with wall-clock ms beside it. An image
= signals + clean page + degradation + labels in image pixels (the on-the-fly training path, no file
writing); PNG encoding is timed separately.
Usage: PYTHONPATH=src python bench/bench_synth.py [--n 12] [--types 0001,0003]
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ecgdigit.io import IMAGE_TYPES  # noqa: E402
from ecgdigit.synth.sample import make_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="images per type")
    ap.add_argument("--types", default=",".join(IMAGE_TYPES))
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    types = [t for t in args.types.split(",") if t]
    make_sample(args.seed, 10 ** 6, "0001")  # warm caches (fonts) before timing
    rates = {}
    print(f"{'type':>6} {'img/s/core':>11} {'cpu ms':>8} {'wall ms':>8} {'+png ms':>8}  size")
    for t in types:
        times, walls, png = [], [], []
        shape = None
        for k in tqdm(range(args.n), desc=t, leave=False):
            c0, t0 = time.process_time(), time.perf_counter()
            s = make_sample(args.seed, k, t)
            times.append(time.process_time() - c0)
            walls.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cv2.imencode(".png", s.image[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
            png.append(time.perf_counter() - t0)
            shape = s.image.shape
        ms = 1000 * float(np.mean(times))
        rates[t] = 1000.0 / ms
        print(f"{t:>6} {rates[t]:11.2f} {ms:8.1f} {1000 * np.mean(walls):8.1f} {1000 * np.mean(png):8.1f}  "
              f"{shape[1]}x{shape[0]}")
    print(f"average over {len(rates)} type(s): {np.mean(list(rates.values())):.2f} images/s per core "
          f"(0001: {rates.get('0001', float('nan')):.2f})")


if __name__ == "__main__":
    main()
