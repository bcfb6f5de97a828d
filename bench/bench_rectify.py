"""Benchmark of the rectifier on a fresh synthetic set (and optionally the external renders).

Per image type: orientation accuracy, mean / 95th-percentile error of the rectified large-grid
nodes in mm (nodes inside the image; pixel error divided by the local px/mm of the true nodes),
share of images rejected (confidence 0), mean confidence, and CPU seconds per image per stage.

    PYTHONPATH=src python bench/bench_rectify.py --records 10 --seed 9100
    PYTHONPATH=src python bench/bench_rectify.py --external /work/shared/external --records 0
    PYTHONPATH=src python bench/bench_rectify.py --photo-speed   # one 4032 x 3024 photo, 1 thread
    PYTHONPATH=src python bench/bench_rectify.py --rectifier learned --weights runs/stage01

Acceptance (issue 4, classical): mean node error <= 0.2 mm on 0001/0003/0004/0011/0012,
<= 0.6 mm on 0005/0006/0009/0010; orientation right on >= 99 %.
"""
from __future__ import annotations

import argparse
import glob
import os
import time
from collections import defaultdict

import cv2
import numpy as np
from tqdm import tqdm

from ecgdigit import layout
from ecgdigit.rectify import rectify_to_canonical
from ecgdigit.rectify.api import USABLE_CONFIDENCE
from ecgdigit.train.stage01 import node_errors_mm, orient_points

BAD_READING_MM = 2.0  # a usable page read this far off (mean over its nodes) is a wrong reading
ALL_TYPES = ("0001", "0003", "0004", "0005", "0006", "0009", "0010", "0011", "0012")


def read_node_errors(recs) -> np.ndarray:
    """The node errors (mm) of the correctly oriented, non-rejected pages of `recs` (NaN if none)."""
    return np.concatenate([r["err"] for r in recs if r["orient_ok"] and not r["rejected"]] or [np.array([np.nan])])


def print_table(rows, title):
    print(f"\n{title}")
    hdr = (f"{'type':>6} {'n':>4} {'orient%':>8} {'grid o%':>8} {'mean mm':>8} {'p95 mm':>8} {'grid mm':>8} "
           f"{'grid p95':>8} {'reject%':>8} {'grid rj%':>8} {'use%':>6} {'use o%':>7} {'use mm':>7} {'bad use':>7} {'conf':>5} "
           f"{'s/img':>6}  stages (s)")
    print(hdr)
    print("-" * len(hdr) + "-" * 40)
    for name, recs in rows.items():
        n = len(recs)
        ok = np.mean([r["orient_ok"] for r in recs]) * 100
        with_grid = [r["orient_ok"] for r in recs if r.get("grid", True)]
        ok_grid = np.mean(with_grid) * 100 if with_grid else np.nan
        errs = read_node_errors(recs)
        rej = np.mean([r["rejected"] for r in recs]) * 100
        gridded = [r for r in recs if r.get("grid", True)]
        errs_g = read_node_errors(gridded)
        rej_g = np.mean([r["rejected"] for r in gridded]) * 100 if gridded else np.nan
        conf = np.mean([r["conf"] for r in recs])
        # what the pipeline goes on with (below the bar it falls back): its orientation must be
        # right, and a usable page read wrong (> BAD_READING_MM) misleads the user
        usable = [r for r in recs if not r["rejected"] and r["conf"] >= USABLE_CONFIDENCE]
        use = len(usable) / n * 100
        use_ok = np.mean([r["orient_ok"] for r in usable]) * 100 if usable else np.nan
        bad_use = sum(1 for r in usable if not r["orient_ok"] or np.mean(r["err"]) > BAD_READING_MM)
        errs_u = read_node_errors(usable)
        tot = np.mean([r["seconds"] for r in recs])
        stages = defaultdict(list)
        for r in recs:
            for k, v in r["timings"].items():
                stages[k].append(v)
        st = " ".join(f"{k}={np.mean(v):.2f}" for k, v in stages.items())
        print(f"{name:>6} {n:4d} {ok:8.1f} {ok_grid:8.1f} {np.nanmean(errs):8.3f} {np.nanpercentile(errs, 95):8.3f} "
              f"{np.nanmean(errs_g):8.3f} {np.nanpercentile(errs_g, 95):8.3f} {rej:8.1f} {rej_g:8.1f} "
              f"{use:6.1f} {use_ok:7.1f} {np.nanmean(errs_u):7.3f} {bad_use:7d} {conf:5.2f} {tot:6.2f}  {st}")
    print("(node errors over correctly oriented, non-rejected images; wrong orientation counts in orient%;\n"
          " 'grid o%', 'grid mm', 'grid p95', 'grid rj%': the same over pages printed with a grid only -\n"
          " synth draws 8% gridless pages);\n"
          f" 'use%': pages the pipeline goes on with (confidence >= {USABLE_CONFIDENCE}, below it falls back),\n"
          f" 'use o%': orientation right among them, 'use mm': their mean node error (right orientation),\n"
          f" 'bad use': of them, wrong orientation or mean error > {BAD_READING_MM} mm")


def box_offset(pred, truth, width, height):
    """Mean node error as a shift in page boxes (di along time, dj down the page): a wrong
    absolute anchor shows as a whole number."""
    from ecgdigit.train.stage01 import visible

    vis = visible(truth, width, height)
    vis[-1, :] = False
    vis[:, -1] = False
    if not vis.any():
        return np.nan, np.nan
    d = (pred - truth)[vis]
    ex = (truth[:-1, 1:] - truth[:-1, :-1])[vis[:-1, :-1]].mean(axis=0)  # one box along i
    ey = (truth[1:, :-1] - truth[:-1, :-1])[vis[:-1, :-1]].mean(axis=0)  # one box along j
    di, dj = np.linalg.solve(np.stack([ex, ey], axis=1), d.mean(axis=0))
    return float(di), float(dj)


def run_synthetic(types, records, seed, all_orientations, rectify):
    from ecgdigit.synth.sample import make_sample

    rows = defaultdict(list)
    jobs = [(t, k) for t in types for k in range(records)]
    for t, k in tqdm(jobs, desc="rectify synthetic"):
        smp = make_sample(seed, k, t)
        image, truth, code = smp.image, smp.grid_nodes, smp.orientation
        if all_orientations:  # extra rotation/mirror on top of what the degradation did
            extra = int(np.random.default_rng([seed, k, 99]).integers(8))
            if extra:
                if code != 0:
                    extra = 0  # keep codes composable: only turn upright samples
                else:
                    truth = orient_points(truth, extra, image.shape[1], image.shape[0])
                    image = layout.apply_orientation(image, extra)
                    code = extra
        t0 = time.perf_counter()
        r = rectify(image)
        sec = time.perf_counter() - t0
        err = node_errors_mm(r.nodes, truth, image.shape[1], image.shape[0])
        rows[t].append(dict(orient_ok=r.orientation == code, err=err, rejected=r.rejected, conf=r.confidence,
                            seconds=sec, timings=r.timings, grid=smp.page.style.grid != "none", record=k,
                            orientation=code, read_orientation=r.orientation, reason=r.reason))
        if r.orientation != code or r.rejected or err.mean() > 1.0:
            di, dj = box_offset(r.nodes, truth, image.shape[1], image.shape[0])
            tqdm.write(f"  {t} #{k} (grid {smp.page.style.grid}): orientation {code} -> {r.orientation}, "
                       f"mean err {err.mean():.2f} mm (boxes di {di:+.2f} dj {dj:+.2f}), "
                       f"{'REJECTED ' if r.rejected else ''}"
                       f"conf {r.confidence:.2f} {r.reason}")
    return rows


def run_external(folder, rectify):
    """ecg-image-kit renders (README geometry: grid from the page's top-left, 200 dpi)."""
    rows = defaultdict(list)
    px_per_mm = layout.mm_to_pixels(1.0, 200)
    for path in tqdm(sorted(glob.glob(os.path.join(folder, "train", "*", "*.png"))), desc="rectify external"):
        variant = os.path.basename(path)[-8:-4]
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        t0 = time.perf_counter()
        r = rectify(image)
        sec = time.perf_counter() - t0
        # the kit's traces start at grid line 3 (x = 15 mm) and its row-1 baseline is at 708.3 px,
        # i.e. horizontal line 0 sits at y = 708.3 - 89.05 mm (layout baseline) in pixels
        y0 = 708.3 - layout.STANDARD_3X4.baselines_y_mm[0] * px_per_mm
        jj, ii = np.meshgrid(np.arange(44), np.arange(57), indexing="ij")
        truth = np.stack([ii * 5 * px_per_mm, y0 + jj * 5 * px_per_mm], axis=-1)
        geometry_known = variant not in ("0105", "0106")  # rotated+cropped / traces start at line 2
        err = node_errors_mm(r.nodes, truth, image.shape[1], image.shape[0]) if geometry_known else np.array([np.nan])
        rows[variant].append(dict(orient_ok=r.orientation == 0, err=err, rejected=r.rejected, conf=r.confidence,
                                  seconds=sec, timings=r.timings))
        tqdm.write(f"  {os.path.basename(path)}: orientation {r.orientation}, conf {r.confidence:.2f}, "
                   f"found {int(r.node_found.sum())}, mean err {np.nanmean(err):.3f} mm {r.reason}")
    return rows


def photo_speed(rectify, types=("0005", "0006", "0009", "0010")):
    """Time 4032 x 3024 synthetic photos (one per photo type) on ONE CPU thread (cv2, torch, BLAS)."""
    import contextlib

    from ecgdigit.synth.sample import make_sample

    cv2.setNumThreads(1)
    try:  # the learned rectifier runs torch: one thread too
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        one_blas = threadpool_limits(1)
    except ImportError:  # numpy/scipy BLAS threads: set OMP_NUM_THREADS=1 instead
        one_blas = contextlib.nullcontext()
    print("\n4032 x 3024 photos, 1 thread:")
    with one_blas:
        for k, t in enumerate(types):
            img = make_sample(424242, k, t).image
            if img.shape[1] < img.shape[0]:
                img = np.ascontiguousarray(np.rot90(img))
            img = cv2.resize(img, (4032, 3024)) if img.shape[:2] != (3024, 4032) else img
            if k == 0:
                rectify(img)  # warm-up (imports, template)
            t0 = time.perf_counter()
            r = rectify(img)
            sec = time.perf_counter() - t0
            print(f"  {t}: {sec:5.2f} s (confidence {r.confidence:.2f}) stages: "
                  + " ".join(f"{k_}={v:.2f}" for k_, v in r.timings.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(ALL_TYPES))
    ap.add_argument("--records", type=int, default=10, help="records per type")
    ap.add_argument("--seed", type=int, default=9100, help="synthetic run seed (not one used in tests)")
    ap.add_argument("--all-orientations", action="store_true",
                    help="also turn upright samples into a random one of the 8 orientation codes")
    ap.add_argument("--external", default=None, help="folder of ecg-image-kit renders (its README geometry)")
    ap.add_argument("--photo-speed", action="store_true",
                    help="also time one 4032 x 3024 photo on one CPU thread (cv2 / torch / BLAS)")
    ap.add_argument("--rectifier", choices=("classical", "learned"), default="classical")
    ap.add_argument("--weights", default=None, help="checkpoint folder of the learned rectifier")
    ap.add_argument("--pages-csv", default="", help="write one row per synthetic page (type, record, orientation, "
                                                    "confidence, node errors, reason)")
    args = ap.parse_args()

    def rectify(image):
        return rectify_to_canonical(image, method=args.rectifier, weights=args.weights)
    if args.records > 0:
        rows = run_synthetic(args.types.split(","), args.records, args.seed, args.all_orientations, rectify)
        print_table(rows, f"{args.rectifier} rectifier, synthetic, seed {args.seed}, {args.records} records per type"
                          + (", random extra orientation" if args.all_orientations else ""))
        if args.pages_csv:
            import pandas as pd

            pd.DataFrame([dict(type=t, record=r["record"], orientation=r["orientation"],
                               read_orientation=r["read_orientation"], confidence=r["conf"], rejected=r["rejected"],
                               mean_mm=float(np.mean(r["err"])), p95_mm=float(np.percentile(r["err"], 95)),
                               seconds=r["seconds"], grid=r["grid"], reason=r["reason"])
                          for t, recs in rows.items() for r in recs]).to_csv(args.pages_csv, index=False)
            print(f"pages: {args.pages_csv}")
    if args.external:
        print_table(run_external(args.external, rectify), f"external renders in {args.external} (0105/0106: orientation only)")
    if args.photo_speed:
        photo_speed(rectify)


if __name__ == "__main__":
    main()
