"""Stage-2 training on tiny inputs: the loss falls, checkpoints load back, runs resume."""
import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from ecgdigit.nets.unet import SegmentationModel, load_model  # noqa: E402
from ecgdigit.train.data import SyntheticTraceDataset, collate, make_folds  # noqa: E402
from ecgdigit.train.loop import TrainConfig, train  # noqa: E402
from ecgdigit.train.losses import column_ce_loss, stage2_loss  # noqa: E402

WIDTH = 176  # canonical frame scaled to 176 x 68


def test_loss_falls_on_generator_batch():
    torch.manual_seed(0)
    ds = SyntheticTraceDataset(2, seed=3, width=WIDTH, types=["0001", "0003"])
    batch = collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 68, WIDTH) and batch["masks"].shape == (2, 4, 68, WIDTH)
    model = SegmentationModel("test_resnet", decoder_channels=(32, 16, 16, 8, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, parts = stage2_loss(model(batch["image"]), batch, pos_weight=10.0, column_ce_weight=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert set(parts) == {"bce", "col_ce"}
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])


def test_column_ce_prefers_the_true_row():
    h, w = 32, 5
    col_y = torch.full((1, 1, w), 10.0)
    valid = torch.ones((1, 1, w), dtype=torch.bool)
    right = torch.full((1, 1, h, w), -5.0)
    right[:, :, 10] = 5.0
    wrong = torch.full((1, 1, h, w), -5.0)
    wrong[:, :, 20] = 5.0
    assert column_ce_loss(right, col_y, valid) < column_ce_loss(wrong, col_y, valid)
    assert float(column_ce_loss(wrong, col_y, torch.zeros_like(valid))) == 0.0


def test_train_loop_writes_loadable_checkpoint_and_resumes(tmp_path):
    cfg = TrainConfig(backbone="test_resnet", epochs=2, samples_per_epoch=2, batch_size=2, lr=2e-3, image_width=WIDTH,
                      workers=0, out_dir=str(tmp_path / "run"), val_samples=1, types=("0001",),
                      decoder_channels=(16, 16, 8, 8, 8), column_ce_weight=0.1)
    res = train(cfg, progress=False)
    log = pd.read_csv(res["log"])
    assert list(log["epoch"]) == [1, 2] and np.isfinite(log["val_score_db"]).all()
    assert (tmp_path / "run" / "curves.png").is_file()
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["backbone"] == "test_resnet"
    model = load_model(res["best"])
    assert model.config.encoder_name == "test_resnet" and model.config.extra["stage"] == 2
    with torch.no_grad():
        assert model(torch.rand(1, 3, 68, WIDTH)).shape == (1, 4, 68, WIDTH)
    # Resume: one more epoch continues from the saved step, keeping the log.
    cfg3 = TrainConfig(**{**cfg.__dict__, "epochs": 3, "resume": True})
    res3 = train(cfg3, progress=False)
    assert list(pd.read_csv(res3["log"])["epoch"]) == [1, 2, 3]
    assert res3["steps"] == 3


def test_make_folds_groups_records(tmp_path):
    df = pd.DataFrame({"id": [f"r{k}" for k in range(20)], "fs": [250, 500] * 10, "sig_len": [2500, 5000] * 10})
    df.to_csv(tmp_path / "train.csv", index=False)
    folds = make_folds(tmp_path / "train.csv", n_folds=4, seed=1, out=tmp_path / "train_folds.csv")
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3]
    assert folds["id"].is_unique and len(folds) == 20
    assert pd.read_csv(tmp_path / "train_folds.csv").shape == (20, 3)
    # each fold gets both sampling rates
    assert (folds.groupby("fold")["fs"].nunique() == 2).all()


def test_trace_model_wrapper_and_classical_fallback(tmp_path):
    from ecgdigit.nets.unet import save_model
    from ecgdigit.trace.evaluation import score_records, truth_record
    from ecgdigit.layout import default_lead_lengths
    from ecgdigit.trace.model import TraceModel, digitize_canonical

    item = SyntheticTraceDataset(1, seed=9, width=WIDTH, types=["0001"])[0]
    image = (item["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    model = SegmentationModel("test_resnet", decoder_channels=(16, 8, 8, 8, 8), extra={"image_width": WIDTH}).eval()
    ckpt = save_model(model, tmp_path / "m.pt")
    tm = TraceModel(str(ckpt), device="cpu")
    maps = tm.band_maps(image)
    assert maps.shape == (4, 68, WIDTH) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    fs = item["fs"]
    lengths = default_lead_lengths(fs)
    rec = digitize_canonical(image, lengths, fs, model=tm)
    assert {k: len(v) for k, v in rec.items()} == lengths
    # No weights: the classical extractor (scored on full frames in test_trace_classical.py).
    from dataclasses import replace

    from ecgdigit.trace.classical import classical_band_maps
    from ecgdigit.trace.extract import ExtractOptions, extract_record

    classical = digitize_canonical(image, lengths, fs)
    direct = extract_record(classical_band_maps(image), lengths, fs,
                            replace(ExtractOptions(), frame_scale=(WIDTH / 4400, 68 / 1700)))
    assert all(np.allclose(classical[k], direct[k]) for k in lengths)
    truth = truth_record(item["signals"].numpy().astype(np.float64), fs, lengths)
    assert np.isfinite(score_records([truth], [rec], [fs]).score)


def test_set_cpu_threads_limits_torch_and_opencv():
    import cv2

    from ecgdigit.train.loop import set_cpu_threads

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        torch.set_num_threads(2)
        cv2.setNumThreads(2)
        set_cpu_threads(1)
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
