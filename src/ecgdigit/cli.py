"""The `ecgdigit` console script: small argument parsers in front of library entry functions.

Exit codes: 0 success; 1 unexpected failure; 2 bad input (missing or unreadable file, wrong
folder layout); 3 an invalid submission or solution table. Errors ecgdigit expects are printed
as one line, `ecgdigit: error: ...`; set ECGDIGIT_DEBUG=1 to see the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ecgdigit import __version__
from ecgdigit.errors import EcgdigitError


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
    p = sub.add_parser("demo", help="the README's main job: a small worked example with results to look at",
                       description="Synthesise a few records, score a submission carrying one typical "
                       "digitisation error per image, and print what the metric makes of each.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--fs", type=float, default=500, help="sampling rate of the records (default 500)")
    p.add_argument("--seed", type=int, default=2025)
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from ecgdigit.demo import run_demo

    run_demo(args.out, fs=args.fs, seed=args.seed)
    return 0


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgdigit",
        description="Digitise images of paper ECGs into 12-lead signals (PhysioNet ECG image "
        "digitisation competition format).",
        epilog="Exit codes: 0 ok, 1 unexpected failure, 2 bad input, 3 invalid submission/solution.",
    )
    parser.add_argument("--version", action="version", version=f"ecgdigit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # One _add_<command> per subcommand; each sets `func` to a thin _run_<command>.
    _add_score(sub)
    _add_demo(sub)
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
