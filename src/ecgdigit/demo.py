"""`ecgdigit demo`, the README's main job, in two parts.

`run_demo`: the product end to end on a small synthetic test set of mixed image types made by
the engine: `submit` with the no-weights default, scored per type, overlays written.

`run_metric_lesson` (`ecgdigit demo --metric-lesson`): what the competition metric forgives and
what it punishes. It synthesises records, writes a submission in which each image carries ONE
typical digitisation error (baseline offset, time shift, gain error, time-scale error, noise,
...) and prints the per-image SNR next to the error (SPEC §2: offsets and small shifts are
forgiven; amplitude and time-scale errors are not).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pandas as pd

from ecgdigit import io
from ecgdigit.layout import LEADS, STANDARD_3X4, segment_start
from ecgdigit.metric import format_report, score_breakdown
from ecgdigit.report import plot_score_report
from ecgdigit.synth.signals import simulate_record

Error = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _time_scale(x: np.ndarray, factor: float) -> np.ndarray:
    t = np.arange(len(x))
    return np.column_stack([np.interp(t * factor, t, lead) for lead in x.T])


# Each error acts on the full 10 s record (samples x 12 leads), as a digitiser's would.
ERRORS: Dict[str, Error] = {
    "exact copy": lambda x, fs, rng: x,
    "baseline offset +0.4 mV": lambda x, fs, rng: x + 0.4,
    "time shift 60 ms": lambda x, fs, rng: np.roll(x, int(0.06 * fs), axis=0),
    "white noise 0.03 mV": lambda x, fs, rng: x + rng.normal(0, 0.03, x.shape),
    "gain error 5%": lambda x, fs, rng: x * 1.05,
    "time scale error 1%": lambda x, fs, rng: _time_scale(x, 1.01),
    "lost 0.5 s of each segment": lambda x, fs, rng: np.where((np.arange(len(x)) % int(2.5 * fs) < int(0.5 * fs))[:, None], 0.0, x),
    "rows 1 and 2 swapped": lambda x, fs, rng: x[:, [1, 0, 2, 4, 3, 5, 7, 6, 8, 10, 9, 11]],
}


def _plotted(record: np.ndarray, fs: float) -> io.Record:
    """The samples of each lead the competition layout shows (lead II whole, others 2.5 s)."""
    out = {}
    for p in STANDARD_3X4.placements:
        a = segment_start(p, fs)
        b = a + int(round(p.duration * fs))
        seg = record[a:b, LEADS.index(p.lead)]
        if p.lead not in out or len(seg) > len(out[p.lead]):
            out[p.lead] = seg
    return out


def run_metric_lesson(out_dir: str = "demo_out", fs: float = 500, seed: int = 2025) -> pd.DataFrame:
    """Write solution.csv / submission.csv / per_image.csv / snr_histogram.png under out_dir and
    return the per-image table (image id, error, SNR dB)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sols, subs, names = [], [], {}
    for k, (name, error) in enumerate(ERRORS.items()):
        image_id = str(4_000_000_000 + k)
        true = simulate_record(fs, rng)
        sols.append(io.solution_rows(_plotted(true, fs), image_id, fs))
        subs.append(io.solution_rows(_plotted(error(true, fs, rng), fs), image_id, fs)[["id", "value"]])
        names[image_id] = name
    solution, submission = pd.concat(sols, ignore_index=True), pd.concat(subs, ignore_index=True)
    solution.to_csv(out / "solution.csv", index=False)
    submission.to_csv(out / "submission.csv", index=False)
    report = score_breakdown(solution, submission)
    table = report.per_image.assign(error=report.per_image["image_id"].map(names))
    table[["image_id", "error", "snr_db"]].to_csv(out / "per_image.csv", index=False)
    plot_score_report(report, path=str(out / "snr_histogram.png"), title="ecgdigit demo: one error per image")

    print(format_report(report, rows=0))
    print("\nper image (one digitisation error each):")
    print(table[["image_id", "error", "snr_db"]].to_string(index=False, float_format=lambda v: f"{v:8.2f}"))
    print(f"\nwritten: {out / 'solution.csv'}, {out / 'submission.csv'}, {out / 'per_image.csv'}, "
          f"{out / 'snr_histogram.png'}")
    print(f"score them again with: ecgdigit score --solution {out / 'solution.csv'} "
          f"--submission {out / 'submission.csv'} --per-lead")
    return table


DEMO_TYPES = ("0001", "0003", "0004", "0011", "0005", "0006")


def run_demo(out_dir: str = "demo_out", records: int = 3, types=DEMO_TYPES, seed: int = 31337,
             weights=None, workers: int = 1) -> str:
    """Synthesise a small test set, digitise it, score it per type, write overlays; returns the report."""
    from ecgdigit.submit import run_submit, score_submit_result
    from ecgdigit.synth.writer import generate_dataset

    out = Path(out_dir)
    data = out / "testset"
    print(f"1/3 rendering {records} record(s) x {len(types)} image types into {data} ...")
    generate_dataset(data, records, types, "test", seed, fs_choices=(500.0,), labels=False)
    print("2/3 digitising with the " + ("given weights" if weights else "no-weights default (classical rectifier "
                                        "+ classical trace extractor)") + " ...")
    result = run_submit(data, out / "submission.csv", weights=weights, workers=workers,
                        overlay_dir=str(out / "overlays"), log=lambda msg: print(f"  {msg}"))
    report = score_submit_result(result, data)
    print(report)
    print(f"\n{result.n_images} image(s), {result.seconds / max(result.n_images, 1):.1f} s per image, "
          f"{len(result.failures)} fell back to a flat record")
    print(f"\n3/3 look at: {out / 'overlays'}/*_overlay.png (extracted traces in colour over the rectified "
          f"paper), {out / 'submission.csv'}, the tables above; the images are in {data / 'test'} "
          f"(image type per id in {data / 'test_meta.csv'}).")
    return report
