#!/usr/bin/env bash
# Train the learned rectifier's stage 0 (orientation + lead labels) and stage 1 (grid nodes) side by
# side on ONE GPU machine. The synthetic engine renders every page on the CPU cores, which are the
# bottleneck (a page costs about 0.8 s of one core; the GPU waits), so the two runs share the cores:
# WORKERS0 + WORKERS1 + 2 main processes = the machine's cores. Fresh pages every epoch.
#
#   bench/train_rectifier_gpu.sh OUT_DIR TIME_LIMIT_S [WORKERS0] [WORKERS1]
#
# Writes OUT_DIR/stage{0,1}/ (best.pt, last.pt, log.csv, curves.png), OUT_DIR/stage{0,1}.log and the
# float16 weights OUT_DIR/weights/stage{0,1}.pt (the folder `--weights` of the learned rectifier).
# The one-cycle schedule is sized to end with the time limit: by default one epoch per ~115 s
# (stage 0, 800 pages on 6 workers) and ~110 s (stage 1, 900 pages on 8 workers), as measured on a
# 16-core H100 machine (docs/BENCHMARKS.md). Sizes come from the environment too (smoke runs):
# EPOCHS0/1, SAMPLES0/1, BATCH0/1, SIZE0/1 (0: the stage's default input size), VAL, BACKBONE, DECODER.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR TIME_LIMIT_S [WORKERS0] [WORKERS1]}
limit=${2:?usage: $0 OUT_DIR TIME_LIMIT_S [WORKERS0] [WORKERS1]}
w0=${3:-6}
w1=${4:-8}
epochs0=${EPOCHS0:-$(( limit / 115 > 1 ? limit / 115 : 1 ))}
epochs1=${EPOCHS1:-$(( limit / 110 > 1 ? limit / 110 : 1 ))}
mkdir -p "$out/weights"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}src PYTHONUNBUFFERED=1
common=(--backbone "${BACKBONE:-resnet18}" --decoder-channels "${DECODER:-128,64,32,16}" --lr 1e-3
        --val-samples "${VAL:-96}" --time-limit-s "$limit")
"${PYTHON:-python3}" -m ecgdigit.cli train --stage 0 --out-dir "$out/stage0" "${common[@]}" --workers "$w0" \
    --epochs "$epochs0" --samples-per-epoch "${SAMPLES0:-800}" --batch-size "${BATCH0:-16}" \
    --image-size "${SIZE0:-0}" --seed 100 --half-weights "$out/weights/stage0.pt" > "$out/stage0.log" 2>&1 &
p0=$!
"${PYTHON:-python3}" -m ecgdigit.cli train --stage 1 --out-dir "$out/stage1" "${common[@]}" --workers "$w1" \
    --epochs "$epochs1" --samples-per-epoch "${SAMPLES1:-900}" --batch-size "${BATCH1:-8}" \
    --image-size "${SIZE1:-0}" --seed 200 --half-weights "$out/weights/stage1.pt" > "$out/stage1.log" 2>&1 &
p1=$!
rc=0
wait $p0 || rc=$?
wait $p1 || rc=$?
echo "done rc=$rc" > "$out/done"
exit $rc
