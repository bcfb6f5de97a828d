"""Synthetic data in the competition layout: CLI output, labels, reproducibility, on-the-fly samples."""
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgdigit.cli import main
from ecgdigit.io import (build_submission, list_test_images, list_train_images, read_record_csv, read_solution,
                         read_test_csv, read_train_csv, record_segments, solution_from_train_folder)
from ecgdigit.layout import KEYPOINT_NAMES, LEADS
from ecgdigit.metric import score
from ecgdigit.synth.dataset import SyntheticECGDataset
from ecgdigit.synth.labels import read_image_labels, read_record_labels
from ecgdigit.synth.traces import masks_to_record


def rows_from_solution(sol: pd.DataFrame) -> pd.DataFrame:
    """test.csv-like rows (id, lead, fs, number_of_rows) of a solution table."""
    parts = sol["id"].str.rsplit("_", n=2, expand=True)
    df = pd.DataFrame({"id": parts[0], "lead": parts[2], "fs": sol["fs"]})
    return df.groupby(["id", "lead"], sort=False).agg(fs=("fs", "first"), number_of_rows=("fs", "size")).reset_index()


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "train_run"
    assert main(["synth", "--out", str(out), "--records", "2", "--types", "0001,0003", "--split", "train",
                 "--seed", "7", "--fs", "500,256"]) == 0
    return out


def test_cli_writes_valid_train_layout(train_dir):
    train = read_train_csv(train_dir / "train.csv")
    assert len(train) == 2 and all(len(i) == 10 and i.isdigit() for i in train["id"].astype(str))
    assert set(train["fs"]) <= {500, 256}
    assert (train["sig_len"] == train["fs"] * 10).all()
    entries = list_train_images(train_dir)
    assert len(entries) == 4 and all(e.path.is_file() for e in entries)
    assert sorted(e.image_type for e in entries) == ["0001", "0001", "0003", "0003"]
    for rid, fs in zip(train["id"].astype(str), train["fs"]):
        rec = read_record_csv(train_dir / "train" / rid / f"{rid}.csv")
        assert list(rec.columns) == list(LEADS) and len(rec) == 10 * fs
        seg = record_segments(rec)
        assert len(seg["II"]) == 10 * fs
        assert all(len(seg[lead]) == int(2.5 * fs) for lead in LEADS if lead != "II")
        # I is printed in 0-2.5 s, aVR in 2.5-5 s: NaN elsewhere
        assert rec["I"].iloc[: int(2.5 * fs)].notna().all() and rec["I"].iloc[int(2.5 * fs):].isna().all()
        assert rec["aVR"].iloc[: int(2.5 * fs)].isna().all()
        # the CSV holds the labelled signal
        lab = read_record_labels(train_dir / "labels", rid)
        np.testing.assert_allclose(seg["V1"], lab["signals"][int(5 * fs):int(7.5 * fs), LEADS.index("V1")], atol=1e-6)
    sol = solution_from_train_folder(train_dir, types=["0001"])
    assert score(sol, sol[["id", "value"]], row_id_column_name="id", perfect_score=1e6) == pytest.approx(60.0)
    # label truth: the written canonical masks read back to the written record at >= 30 dB
    preds = {}
    for rid, fs, n in zip(train["id"].astype(str), train["fs"], train["sig_len"]):
        preds[f"{rid}-0001"] = masks_to_record(read_record_labels(train_dir / "labels", rid)["masks"], fs, n)
    sub = build_submission(rows_from_solution(sol), preds)
    assert score(sol, sub, row_id_column_name="id", perfect_score=1e6) >= 30.0


def test_same_seed_same_bytes(train_dir, tmp_path):
    again = tmp_path / "again"
    assert main(["synth", "--out", str(again), "--records", "2", "--types", "0001,0003", "--seed", "7",
                 "--fs", "500,256", "--workers", "2"]) == 0
    a, b = digest(train_dir), digest(again)
    assert a == b and len(a) >= 13  # images, record CSVs, train.csv and every label file
    other = tmp_path / "other"
    assert main(["synth", "--out", str(other), "--records", "1", "--types", "0001", "--seed", "8",
                 "--no-labels"]) == 0
    assert not (other / "labels").exists()
    assert set(read_train_csv(other / "train.csv")["id"]).isdisjoint(read_train_csv(train_dir / "train.csv")["id"])


def test_cli_writes_valid_test_layout(tmp_path):
    out = tmp_path / "test_run"
    assert main(["synth", "--out", str(out), "--records", "2", "--types", "0001", "--split", "test",
                 "--seed", "1", "--fs", "1025"]) == 0
    test_df = read_test_csv(out / "test.csv")
    assert len(test_df) == 24 and set(test_df["lead"]) == set(LEADS)
    rows = test_df.set_index(["id", "lead"])["number_of_rows"]
    image_id = str(test_df["id"].iloc[0])
    assert rows[(image_id, "II")] == 10250 and rows[(image_id, "V4")] == 2562
    assert all(e.path.is_file() for e in list_test_images(out))
    sol = read_solution(out / "solution.csv")
    assert len(sol) == test_df["number_of_rows"].sum()
    assert score(sol, sol[["id", "value"]], row_id_column_name="id", perfect_score=1e6) == pytest.approx(60.0)
    meta = pd.read_csv(out / "test_meta.csv", dtype={"id": str, "record_id": str, "type": str})
    assert set(meta["id"]) == set(test_df["id"].astype(str)) and set(meta["type"]) == {"0001"}


def test_bad_arguments_are_reported(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "x"), "--records", "1", "--types", "0002"]) == 2
    assert "0002" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "x"), "--records", "1", "--fs", "abc"]) == 2


def test_label_files_match_the_image(train_dir):
    rid = str(read_train_csv(train_dir / "train.csv")["id"].iloc[0])
    lab = read_image_labels(train_dir / "labels", f"{rid}-0001")
    import cv2
    img = cv2.imread(str(train_dir / "train" / rid / f"{rid}-0001.png"))[:, :, ::-1]
    assert tuple(lab["image_size"]) == (img.shape[1], img.shape[0])
    assert lab["keypoints"].shape == (len(KEYPOINT_NAMES), 2) and lab["grid_nodes"].shape == (44, 57, 2)
    assert int(lab["orientation"]) == 0
    # traces: the path points are on dark ink
    xy = np.concatenate([p["xy"] for p in lab["paths"]])
    xy = xy[(xy[:, 1] >= 0) & (xy[:, 1] < img.shape[0] - 0.5)]
    ink = img[np.round(xy[:, 1]).astype(int), np.round(xy[:, 0]).astype(int)].min(axis=1).astype(int)
    paper = int(np.median(img.min(axis=2)))
    assert np.mean(ink < paper - 60) > 0.9
    # the mesh maps canonical grid node (j, i) to the labelled node
    from ecgdigit.layout import grid_node_canonical
    cx, cy = grid_node_canonical(19, 3)
    step = int(lab["mesh_step"])
    ix, iy = cx / step, cy / step
    m = lab["canonical_mesh"].astype(np.float64)
    i0, j0 = int(ix), int(iy)
    fx, fy = ix - i0, iy - j0
    interp = (m[j0, i0] * (1 - fx) * (1 - fy) + m[j0, i0 + 1] * fx * (1 - fy)
              + m[j0 + 1, i0] * (1 - fx) * fy + m[j0 + 1, i0 + 1] * fx * fy)
    np.testing.assert_allclose(interp, lab["grid_nodes"][19, 3], atol=0.01)
    rec = read_record_labels(train_dir / "labels", rid)
    assert rec["masks"].shape == (4, 1700, 4400) and rec["masks"].max() > 200


def test_dataset_items_are_deterministic_and_canonical_view_aligns():
    ds = SyntheticECGDataset(4, seed=3, types=["0001"], dpi=100)
    a, b = ds[1], ds[1]
    assert np.array_equal(a["image"], b["image"]) and a["image"].shape == (850, 1100, 3)
    assert not np.array_equal(ds[2]["signals"][:100], a["signals"][:100])
    with pytest.raises(IndexError):
        ds[4]
    cds = SyntheticECGDataset(2, seed=3, types=["0001"], mode="canonical", dpi=100, canonical_size=(1100, 425))
    item = cds[0]
    assert item["image"].shape == (425, 1100, 3) and item["masks"].shape == (4, 425, 1100)
    # the trace masks fall on dark ink of the canonical image
    on = item["masks"].max(axis=0) > 200
    assert on.sum() > 1000
    assert np.mean(item["image"][on].min(axis=1) < 160) > 0.85


def keep_list(batch):
    return batch


def test_dataset_in_torch_dataloader_workers():
    torch = pytest.importorskip("torch")
    ds = SyntheticECGDataset(4, seed=5, types=["0001"], dpi=50)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=keep_list)
    items = [it for batch in loader for it in batch]
    assert [it["index"] for it in items] == [0, 1, 2, 3]
    for it in items:  # workers render exactly what the main process renders
        assert np.array_equal(it["image"], ds[it["index"]]["image"])
