"""DistributedDataParallel: the training loop under `torchrun --nproc_per_node 2` (gloo on CPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch.distributed.run")

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = """
import json, os, sys
from ecgdigit.train.loop import TrainConfig, train

out = sys.argv[1]
cfg = TrainConfig(stage=2, backbone="test_resnet", epochs=1, samples_per_epoch=4, batch_size=1, lr=1e-3,
                  image_width=176, workers=0, out_dir=out, val_samples=1, types=("0001",),
                  decoder_channels=(16, 16, 8, 8, 8), max_steps=2, device="cpu")
res = train(cfg, progress=False)
with open(os.path.join(out, "rank%d.json" % res["rank"]), "w") as f:
    json.dump(res, f)
"""


def test_torchrun_two_ranks_train_in_step(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           str(script), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert all(r["steps"] == 2 for r in ranks)
    # the ranks start from different seeds; DDP broadcasts rank 0's weights and averages gradients
    assert ranks[0]["param_checksum"] == pytest.approx(ranks[1]["param_checksum"], rel=1e-9, abs=1e-9)
    assert (out / "best.pt").is_file() and (out / "best.json").is_file() and (out / "log.csv").is_file()
    from ecgdigit.nets.unet import load_model

    assert load_model(out / "best.pt").config.extra["stage"] == 2
