"""End-to-end benchmark: a fresh synthetic test set -> `submit` -> SNR per image type.

    python bench/bench_end_to_end.py [--records 10] [--types 0001,...] [--seed 777001] [--weights DIR] [--workers 1]

Prints SNR per type and overall, CPU seconds per image and peak memory (RSS) of this process
tree. Seeds 777000+ are reserved for this benchmark (never used in development or training).
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

from ecgdigit.io import IMAGE_TYPES
from ecgdigit.submit import run_submit, score_submit_result
from ecgdigit.synth.writer import generate_dataset


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10)
    ap.add_argument("--types", default=",".join(IMAGE_TYPES))
    ap.add_argument("--seed", type=int, default=777001)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=None, help="keep the test set and submission here")
    args = ap.parse_args()
    types = [t for t in args.types.split(",") if t]
    out = Path(args.out or tempfile.mkdtemp(prefix="ecgdigit_bench_"))
    t0 = time.perf_counter()
    generate_dataset(out / "testset", args.records, types, "test", args.seed, labels=False, workers=args.workers)
    t1 = time.perf_counter()
    cpu0 = time.process_time()
    result = run_submit(out / "testset", out / "submission.parquet", weights=args.weights, workers=args.workers)
    cpu = time.process_time() - cpu0
    print(score_submit_result(result, out / "testset"))
    peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(f"\nimages: {result.n_images} ({args.records} records x {len(types)} types), render {t1 - t0:.0f} s")
    print(f"digitise: {result.seconds:.0f} s wall, {result.seconds / result.n_images:.2f} s/image wall, "
          f"{cpu / result.n_images:.2f} s/image CPU (main process), peak RSS {peak_mb:.0f} MB, "
          f"{len(result.failures)} fell back")


if __name__ == "__main__":
    main()
