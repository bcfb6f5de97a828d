"""Benchmark of the gridless (layout-based) rectifier on synthetic pages printed WITHOUT a grid.

For N records the engine's page style is drawn as usual and then forced to grid="none"; each
record is rendered as every image type. Per type it prints
- rectifier (`rectify_gridless` called directly): orientation accuracy, mean / 95th-percentile
  error of the rectified large-grid nodes in mm (nodes inside the image, correctly oriented,
  non-rejected images), share rejected, mean confidence, seconds per image;
- end to end with the no-weights `Digitizer()` (classical rectifier, which now falls back to the
  gridless one when it finds no grid): share of images the gridless rectifier served, share that
  fell back to flat lines, and the competition score (dB, mean linear SNR over the type's images).
  With --compare, also the same Digitizer with the gridless fallback switched off (the old
  behaviour), so the dB gained shows.
- confidence vs error: per confidence bin the pages and the wrong ones among them (orientation
  wrong or mean node error > 2 mm), so one sees whether the confidence tells (wrong readings
  should come out under 0.1, where the product refuses them); --pages-csv writes every page.

    PYTHONPATH=src python bench/bench_gridless.py --records 6 --seed 31000
    PYTHONPATH=src python bench/bench_gridless.py --records 4 --compare
    PYTHONPATH=src python bench/bench_gridless.py --records 6 --no-end-to-end   # rectifier only
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm import tqdm

from ecgdigit import metric
from ecgdigit.errors import EcgdigitError
from ecgdigit.io import solution_rows
from ecgdigit.rectify import api
from ecgdigit.rectify.gridless import rectify_gridless
from ecgdigit.synth.render import sample_style
from ecgdigit.synth.sample import make_sample, record_rng
from ecgdigit.synth.writer import plotted_segments
from ecgdigit.train.stage01 import node_errors_mm

# large-grid nodes of the trace area: 10 mm above the first baseline to 10 mm below the last, 0..10 s
TRACE_ROWS_J = (15, 41)
TRACE_COLS_I = (3, 53)
USABLE_CONFIDENCE = 0.1  # pipeline.MIN_RECTIFY_CONFIDENCE: below it the Digitizer writes flat lines
ALL_TYPES = ("0001", "0003", "0004", "0005", "0006", "0009", "0010", "0011", "0012")


def gridless_sample(seed: int, index: int, image_type: str):
    """Record `index` of run `seed` as `image_type`, its page printed without a grid."""
    style = replace(sample_style(record_rng(seed, index, 1)), grid="none")
    return make_sample(seed, index, image_type, style=style)


def digitize_record(digitizer, image, fs, truth):
    """The Digitizer's record (flat lines when it refuses the image) and the rectifier method used."""
    from ecgdigit.pipeline import fallback_record

    lengths = {lead: len(v) for lead, v in truth.items()}
    try:
        res = digitizer(image, fs=fs, lead_lengths=lengths)
        return res.record, res.rectification.method, False
    except EcgdigitError:
        return fallback_record(lengths), "-", True


def type_score(sols, subs) -> float:
    if not sols:
        return float("nan")
    return metric.score(pd.concat(sols, ignore_index=True), pd.concat(subs, ignore_index=True))


WRONG_MM = 2.0  # a reading this far off (mean node error) or wrongly oriented is wrong
CONF_BINS = (0.0, 0.1, 0.3, 0.6, 1.01)


def is_wrong(rec) -> bool:
    return (not rec["orient_ok"]) or (rec["err"].size > 0 and float(rec["err"].mean()) > WRONG_MM)


def confidence_table(recs) -> None:
    """How well the confidence tells right from wrong: per confidence bin, the pages, the wrong ones
    (orientation wrong or mean node error > WRONG_MM), and the right ones' median mean error."""
    recs = [r for r in recs if not r["rejected"]]
    print(f"\nconfidence vs error ({len(recs)} non-rejected pages; wrong = orientation wrong or mean > {WRONG_MM} mm)")
    print(f"{'confidence':>12} {'pages':>6} {'wrong':>6} {'wrong%':>7} {'med mm right':>13}")
    for lo, hi in zip(CONF_BINS[:-1], CONF_BINS[1:]):
        sel = [r for r in recs if lo <= r["conf"] < hi]
        wrong = [r for r in sel if is_wrong(r)]
        right = [float(r["err"].mean()) for r in sel if not is_wrong(r) and r["err"].size]
        print(f"{f'{lo:.1f}-{min(hi, 1.0):.1f}':>12} {len(sel):6d} {len(wrong):6d} "
              f"{(len(wrong) / len(sel) * 100 if sel else float('nan')):7.1f} "
              f"{(np.median(right) if right else float('nan')):13.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(ALL_TYPES))
    ap.add_argument("--records", type=int, default=6, help="gridless records per type")
    ap.add_argument("--seed", type=int, default=31000, help="synthetic run seed (not one used in tests)")
    ap.add_argument("--no-end-to-end", action="store_true", help="rectifier figures only")
    ap.add_argument("--compare", action="store_true",
                    help="also run the Digitizer without the gridless fallback (the old behaviour)")
    ap.add_argument("--pages-csv", default="", help="write one row per page (type, record, errors, confidence, reason)")
    args = ap.parse_args()
    types = [t for t in args.types.split(",") if t]
    digitizer = None
    if not args.no_end_to_end:
        from ecgdigit.pipeline import Digitizer

        digitizer = Digitizer()
    rows = defaultdict(list)
    sols, subs, subs_old = defaultdict(list), defaultdict(list), defaultdict(list)
    for t, k in tqdm([(t, k) for t in types for k in range(args.records)], desc="gridless pages"):
        smp = gridless_sample(args.seed, k, t)
        image = smp.image
        t0 = time.perf_counter()
        r = rectify_gridless(image)
        sec = time.perf_counter() - t0
        err = node_errors_mm(r.nodes, smp.grid_nodes, image.shape[1], image.shape[0])
        # the nodes of the trace area (rows' bands, 0..10 s): the ones the digitised signals depend on
        sub = (slice(TRACE_ROWS_J[0], TRACE_ROWS_J[1] + 1), slice(TRACE_COLS_I[0], TRACE_COLS_I[1] + 1))
        err_rows = node_errors_mm(r.nodes[sub], smp.grid_nodes[sub], image.shape[1], image.shape[0])
        rec = dict(type=t, record=k, orient_ok=r.orientation == smp.orientation, err=err, err_rows=err_rows,
                   rejected=r.rejected, conf=r.confidence, seconds=sec, reason=r.reason)
        if r.orientation != smp.orientation or (not r.rejected and err.mean() > 2.0):
            tqdm.write(f"  {t} #{k}: orientation {smp.orientation} -> {r.orientation}, mean err {err.mean():.2f} mm, "
                       f"conf {r.confidence:.2f} {r.reason}")
        if digitizer is not None:
            truth = plotted_segments(smp.signals, smp.fs, smp.layout)
            image_id = f"{k}-{t}"
            sol = solution_rows(truth, image_id, smp.fs)
            record, method, fell_back = digitize_record(digitizer, image, smp.fs, truth)
            sols[t].append(sol)
            subs[t].append(pd.DataFrame({"id": sol["id"], "value": solution_rows(record, image_id, smp.fs)["value"]}))
            rec.update(method=method, fell_back=fell_back)
            if args.compare:
                grid_not_found = api._grid_not_found
                api._grid_not_found = lambda result: False  # the classical rectifier alone
                try:
                    old, _, _ = digitize_record(digitizer, image, smp.fs, truth)
                finally:
                    api._grid_not_found = grid_not_found
                old_values = solution_rows(old, image_id, smp.fs)["value"]
                subs_old[t].append(pd.DataFrame({"id": sol["id"], "value": old_values}))
        rows[t].append(rec)

    print(f"\ngridless pages, seed {args.seed}, {args.records} records per type")
    hdr = (f"{'type':>6} {'n':>3} {'orient%':>8} {'mean mm':>8} {'med mm':>7} {'p95 mm':>8} {'rows mm':>8} "
           f"{'reject%':>8} "
           f"{'conf':>5} {'usable%':>8} {'use mm':>7} {'s/img':>6}"
           + ("" if digitizer is None else f" {'gridless%':>9} {'flat%':>6} {'dB':>7}")
           + (f" {'dB old':>7}" if args.compare else ""))
    print(hdr)
    print("-" * len(hdr))
    all_sols, all_subs, all_old = [], [], []
    for t, recs in rows.items():
        ok = np.mean([r["orient_ok"] for r in recs]) * 100
        errs = np.concatenate([r["err"] for r in recs if r["orient_ok"] and not r["rejected"]] or [np.array([np.nan])])
        errs_rows = np.concatenate([r["err_rows"] for r in recs if r["orient_ok"] and not r["rejected"]]
                                   or [np.array([np.nan])])
        usable = [r for r in recs if r["conf"] >= USABLE_CONFIDENCE]
        errs_use = np.concatenate([r["err"] for r in usable if r["orient_ok"]] or [np.array([np.nan])])
        line = (f"{t:>6} {len(recs):3d} {ok:8.1f} {np.nanmean(errs):8.3f} {np.nanmedian(errs):7.3f} "
                f"{np.nanpercentile(errs, 95):8.3f} {np.nanmean(errs_rows):8.3f} "
                f"{np.mean([r['rejected'] for r in recs]) * 100:8.1f} {np.mean([r['conf'] for r in recs]):5.2f} "
                f"{len(usable) / len(recs) * 100:8.1f} {np.nanmean(errs_use):7.3f} "
                f"{np.mean([r['seconds'] for r in recs]):6.2f}")
        if digitizer is not None:
            line += (f" {np.mean([r['method'] == 'gridless' for r in recs]) * 100:9.1f}"
                     f" {np.mean([r['fell_back'] for r in recs]) * 100:6.1f} {type_score(sols[t], subs[t]):7.2f}")
            all_sols += sols[t]
            all_subs += subs[t]
        if args.compare:
            line += f" {type_score(sols[t], subs_old[t]):7.2f}"
            all_old += subs_old[t]
        print(line)
    confidence_table([r for recs in rows.values() for r in recs])
    if args.pages_csv:
        pd.DataFrame([dict(type=r["type"], record=r["record"], orient_ok=r["orient_ok"], rejected=r["rejected"],
                           mean_mm=float(r["err"].mean()) if r["err"].size else np.nan, conf=r["conf"],
                           seconds=r["seconds"], reason=r["reason"]) for recs in rows.values() for r in recs]
                     ).to_csv(args.pages_csv, index=False)
    if digitizer is not None:
        line = (f"{'all':>6} {sum(len(v) for v in rows.values()):3d} {'':>8} {'':>8} {'':>7} {'':>8} {'':>8} {'':>8} "
                f"{'':>5} {'':>8} {'':>7} {'':>6} {'':>9} {'':>6} {type_score(all_sols, all_subs):7.2f}")
        if args.compare:
            line += f" {type_score(all_sols, all_old):7.2f}"
        print(line)
    print("(node errors over correctly oriented, non-rejected images, whole page and 'rows': the trace area\n"
          " j 15..41, i 3..53 only; 'usable%': confidence >= 0.1 (what the Digitizer reads), 'use mm': their\n"
          " mean node error when correctly oriented; 'gridless%': images the end-to-end\n"
          " classical path served with the gridless rectifier; 'flat%': images the Digitizer refused (flat lines);\n"
          " dB: competition score of the type's images; 'dB old': without the gridless fallback)")


if __name__ == "__main__":
    main()
