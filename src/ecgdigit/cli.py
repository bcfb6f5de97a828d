"""The `ecgdigit` console script: small argument parsers in front of library entry functions.

Exit codes: 0 success; 1 unexpected failure; 2 bad input (missing or unreadable file, wrong
folder layout); 3 an invalid submission or solution table; 4 some images of a `digitize` batch
could not be digitised (the others were written). Errors ecgdigit expects are printed
as one line, `ecgdigit: error: ...`; set ECGDIGIT_DEBUG=1 to see the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ecgdigit import __version__
from ecgdigit.errors import EcgdigitError


def _comma_list(text: str) -> List[str]:
    """'0001, 0003,' -> ['0001', '0003'] (the --types / --fs lists)."""
    return [t.strip() for t in text.split(",") if t.strip()]


# ---------------------------------------------------------------------------------------------
# score
# ---------------------------------------------------------------------------------------------
def _add_score(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score a submission against a solution with the competition metric",
        description="Score a submission (id,value) against a solution (id,fs,value) or a "
        "competition-layout train folder, and print the score and a per-image table.",
    )
    p.add_argument("--solution", required=True,
                   help="solution .csv/.parquet (id, fs, value) or a folder with train.csv and train/")
    p.add_argument("--submission", required=True, help="submission .csv/.parquet (id, value)")
    p.add_argument("--cap", type=float, default=None,
                   help="perfect-score cap of the per-image SNR (default 1e6, the final metric; "
                   "384 reproduces the early copies)")
    p.add_argument("--per-lead", action="store_true", help="also print the mean SNR of each lead")
    p.add_argument("--out", default=None, help="write the per-image table to this CSV")
    p.add_argument("--rows", type=int, default=20, help="how many per-image rows to print (worst first)")
    p.set_defaults(func=_run_score)


def _run_score(args) -> int:
    from ecgdigit.metric import DEFAULT_PERFECT_SCORE, format_report, score_breakdown
    from ecgdigit.io import read_solution, read_submission

    solution = read_solution(args.solution)
    submission = read_submission(args.submission)
    cap = DEFAULT_PERFECT_SCORE if args.cap is None else args.cap
    report = score_breakdown(solution, submission, perfect_score=cap)
    print(format_report(report, rows=args.rows, per_lead=args.per_lead))
    if args.out:
        report.per_image.to_csv(args.out, index=False)
        print(f"per-image table written to {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the README's main job: synthesise, digitise and score a small test set",
                       description="Render a small synthetic test set of mixed image types, digitise it with "
                       "`submit`, print the per-type SNR and write overlays to look at. With --metric-lesson: "
                       "show what the competition metric forgives and what it punishes.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--records", type=int, default=3, help="records to render, each in every type (default 3: about 1.5 min on 2 cores)")
    p.add_argument("--types", default=",".join(("0001", "0003", "0004", "0011", "0005", "0006")))
    p.add_argument("--weights", default=None, help="weights folder (default: no-weights path)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=31337)
    p.add_argument("--metric-lesson", action="store_true",
                   help="instead: score a submission carrying one typical digitisation error per image")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from ecgdigit.demo import run_demo, run_metric_lesson

    if args.metric_lesson:
        run_metric_lesson(args.out, seed=args.seed)
    else:
        run_demo(args.out, records=args.records, types=_comma_list(args.types), seed=args.seed, weights=args.weights,
                 workers=args.workers)
    return 0


# ---------------------------------------------------------------------------------------------
# synth
# ---------------------------------------------------------------------------------------------
def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="render synthetic ECG images with exact labels in the competition folder layout",
        description="Simulate 12-lead records, print them on paper, degrade them into the competition "
        "image types and write train/ (train.csv, train/{id}/{id}.csv, train/{id}/{id}-{type}.png) or "
        "test/ (test.csv, test/{id}.png, solution.csv) plus exact labels under labels/.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--records", type=int, required=True, help="number of records")
    p.add_argument("--types", default="0001", help="comma-separated image types, e.g. 0001,0003,0005")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--fs", default=None,
                   help="comma-separated sampling rates to draw from (default: 250,256,500,512,1000,1025)")
    from ecgdigit.layout import LAYOUTS, PAPER_SIZES

    p.add_argument("--layout", default="3x4+II", help=f"paper layout ({', '.join(LAYOUTS)})")
    p.add_argument("--paper", default="letter", help=f"paper size ({', '.join(PAPER_SIZES)})")
    p.add_argument("--dpi", type=float, default=200.0)
    p.add_argument("--no-labels", action="store_true", help="skip the labels/ folder")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    from ecgdigit.errors import InputError
    from ecgdigit.synth.sample import COMPETITION_FS
    from ecgdigit.synth.writer import generate_dataset

    try:
        fs = COMPETITION_FS if args.fs is None else tuple(float(v) for v in _comma_list(args.fs))
    except ValueError:
        raise InputError(f"--fs must be comma-separated numbers, got {args.fs!r}") from None
    types = _comma_list(args.types)
    out = generate_dataset(args.out, args.records, types, args.split, args.seed, workers=args.workers,
                           fs_choices=fs, layout=args.layout, paper=args.paper, dpi=args.dpi,
                           labels=not args.no_labels)
    print(f"wrote {args.records} record(s) x {len(types)} type(s) ({args.split}) to {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------
def _channel_list(text: str) -> tuple:
    """'128,64,32,16' -> (128, 64, 32, 16): positive widths, or a one-line argparse error."""
    try:
        widths = tuple(int(c) for c in _comma_list(text))
    except ValueError:
        widths = ()
    if not widths or min(widths) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return widths


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a stage model: 0 orientation + labels, 1 grid nodes, 2 traces (same loop as notebooks/train.ipynb)",
        description="Train stage 0 (orientation + lead-label keypoints), stage 1 (grid nodes + indices) or "
        "stage 2 (trace segmentation) on the on-the-fly synthetic generator or a synthetic competition-layout "
        "folder; keeps best.pt (best validation figure) and last.pt (resume).",
    )
    p.add_argument("--stage", type=int, choices=(0, 1, 2), default=2)
    p.add_argument("--out-dir", required=True, help="run folder (checkpoints, log.csv, curves.png)")
    p.add_argument("--backbone", default="resnet34")
    p.add_argument("--data", default="synthetic",
                   help="'synthetic' (on the fly), a synth train folder with labels/, or a folder from notebooks/prepare")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--samples-per-epoch", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--image-width", type=int, default=4400, help="stage 2: canonical frame scaled to this width")
    p.add_argument("--image-size", type=int, default=0, help="stages 0/1: input size (0: the stage's default)")
    p.add_argument("--column-ce-weight", type=float, default=0.5)
    p.add_argument("--val-samples", type=int, default=32)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--decoder-channels", type=_channel_list, default=(),
                   help="comma-separated U-Net decoder widths, e.g. 128,64,32,16 (default 256,128,64,32,16)")
    p.add_argument("--time-limit-s", type=float, default=0.0,
                   help="stop after the epoch during which this many seconds have passed (0: no limit)")
    p.add_argument("--seed", type=int, default=0, help="synthetic run seed of the training pages")
    p.add_argument("--half-weights", default=None,
                   help="also write best.pt's weights as float16 (about half the size, for a Kaggle dataset) here")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from ecgdigit.train.loop import TrainConfig, train

    cfg = TrainConfig(stage=args.stage, image_size=args.image_size, backbone=args.backbone, data=args.data,
                      epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, batch_size=args.batch_size,
                      grad_accum=args.grad_accum, lr=args.lr, image_width=args.image_width,
                      column_ce_weight=args.column_ce_weight, val_samples=args.val_samples, workers=args.workers,
                      fold=args.fold, amp=not args.no_amp, resume=args.resume, out_dir=args.out_dir,
                      time_limit_s=args.time_limit_s, seed=args.seed,
                      **({"decoder_channels": args.decoder_channels} if args.decoder_channels else {}))
    result = train(cfg)
    if args.half_weights:
        from ecgdigit.nets.unet import save_half_weights

        print(f"float16 weights -> {save_half_weights(result['best'], args.half_weights)}")
    figure = (f"{result['best_score_db']:.2f} dB" if "best_score_db" in result
              else f"{result['best_score']:.4f} (higher is better)")
    print(f"best validation score {figure} -> {result['best']}")
    return 0


# ---------------------------------------------------------------------------------------------
# submit
# ---------------------------------------------------------------------------------------------
def _add_model_arguments(p) -> None:
    """--weights / --device, shared by the commands that digitise."""
    p.add_argument("--weights", default=None,
                   help="weights folder: stage-2 weights (stage2.pt, stage2/best.pt or a run's best.pt) and/or "
                   "stage-0 + stage-1 weights for the learned rectifier (default: the no-weights path)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--rectifier", default="auto", choices=("auto", "classical", "learned"),
                   help="auto: learned when --weights holds stage-0 + stage-1 weights, else classical")


def _add_submit(sub) -> None:
    p = sub.add_parser(
        "submit", help="digitise a competition folder into a submission",
        description="Digitise DIR/test/{id}.png as DIR/test.csv asks (or every image of a train layout, "
        "scored per type with --score) and write a validated submission. An image that fails gets a "
        "flat fallback and is reported; the others are never lost.")
    p.add_argument("--input", required=True, help="competition folder: test.csv + test/, or train.csv + train/")
    p.add_argument("--output", default="submission.parquet", help="submission .parquet or .csv")
    _add_model_arguments(p)
    p.add_argument("--workers", type=int, default=1, help="worker processes (CPU)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="images per stage-2 forward pass (raise it on a GPU; no effect on the classical tracer)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (debugging)")
    p.add_argument("--overlays", default=None, help="also write an overlay PNG per image into this folder")
    p.add_argument("--score", action="store_true",
                   help="train layout or a test folder with solution.csv: score the submission, per type")
    p.add_argument("--solution", default=None,
                   help="score the submission against this competition-format solution CSV (implies --score)")
    p.set_defaults(func=_run_submit)


def _run_submit(args) -> int:
    from pathlib import Path

    from ecgdigit.submit import run_submit, score_submit_result

    result = run_submit(args.input, args.output, weights=args.weights, device=args.device, rectifier=args.rectifier,
                        workers=args.workers, limit=args.limit, overlay_dir=args.overlays, batch_size=args.batch_size)
    print(f"{result.n_images} image(s) in {result.seconds:.1f} s ({result.n_images / max(result.seconds, 1e-9):.2f} img/s); "
          f"{len(result.failures)} fell back; submission: {result.output}")
    if args.score or args.solution:
        print(score_submit_result(result, Path(args.input), args.solution))
    return 0


# ---------------------------------------------------------------------------------------------
# digitize
# ---------------------------------------------------------------------------------------------
def _add_digitize(sub) -> None:
    p = sub.add_parser(
        "digitize", help="digitise your own ECG images (CSV, WFDB, overlay, JSON report per image)",
        description="Per image: a CSV (time + 12 leads at --fs), a WFDB record, an overlay PNG of the "
        "extracted traces on the rectified paper, and a JSON quality report. Exit code 4 when some "
        "images could not be digitised (the others are written).")
    p.add_argument("images", nargs="+", help="image files (png, jpg, bmp, tif, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fs", type=float, default=500.0, help="sampling rate of the output (default 500)")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="refuse pages whose rectification confidence is below this (default 0.1; lower it to "
                   "read doubtful pages anyway and judge the overlay yourself)")
    _add_model_arguments(p)
    p.add_argument("--no-wfdb", action="store_true", help="skip the WFDB records")
    p.set_defaults(func=_run_digitize)


def _run_digitize(args) -> int:
    from ecgdigit.digitize import digitize_images

    outcomes = digitize_images(args.images, args.out, fs=args.fs, weights=args.weights, device=args.device,
                               rectifier=args.rectifier, min_confidence=args.min_confidence,
                               wfdb_records=not args.no_wfdb)
    ok = sum(o.ok for o in outcomes)
    print(f"digitised {ok} of {len(outcomes)} image(s) into {args.out}")
    return 0 if ok == len(outcomes) else 4


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgdigit",
        description="Digitise images of paper ECGs into 12-lead signals (PhysioNet ECG image "
        "digitisation competition format).",
        epilog="Exit codes: 0 ok, 1 unexpected failure, 2 bad input, 3 invalid submission/solution, "
        "4 some images of a digitize batch failed (the others were written).",
    )
    parser.add_argument("--version", action="version", version=f"ecgdigit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # One _add_<command> per subcommand; each sets `func` to a thin _run_<command>.
    _add_score(sub)
    _add_demo(sub)
    _add_synth(sub)
    _add_submit(sub)
    _add_digitize(sub)
    _add_train(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except EcgdigitError as exc:
        if os.environ.get("ECGDIGIT_DEBUG"):
            raise
        print(f"ecgdigit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ecgdigit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
