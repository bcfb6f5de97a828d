"""Data preparation: canonical images, maps and masks cached per image/record; resumable; rejects listed."""
from pathlib import Path

import numpy as np
import pandas as pd
import papermill

from ecgdigit.cli import main
from ecgdigit.prepare import read_masks_png, record_masks

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_prepare_notebook_caches_and_resumes(tmp_path):
    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--records", "1", "--types", "0001", "--split", "train",
                 "--seed", "5", "--fs", "256", "--no-labels"]) == 0
    record_id = pd.read_csv(data / "train.csv", dtype={"id": str})["id"].item()
    (data / "train" / record_id / f"{record_id}-0003.png").write_bytes(b"not a png")  # a bad image
    out = tmp_path / "prepared"
    params = dict(input_dir=str(data), output_dir=str(out), workers=1, limit=0)
    papermill.execute_notebook(str(NOTEBOOKS / "prepare.ipynb"), str(tmp_path / "p.ipynb"), parameters=params,
                               progress_bar=False, kernel_name="python3", cwd=str(tmp_path))
    index = pd.read_csv(out / "index.csv", dtype={"image_id": str})
    rejected = pd.read_csv(out / "rejected.csv", dtype={"image_id": str})
    assert list(index["image_id"]) == [f"{record_id}-0001"] and index["confidence"].item() > 0
    assert list(rejected["image_id"]) == [f"{record_id}-0003"] and "cannot decode" in rejected["reason"].item()
    masks = read_masks_png(out / "masks" / f"{record_id}.png")
    assert masks.shape == (4, 1700, 4400) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks, record_masks(data / "train" / record_id / f"{record_id}.csv"))
    assert (masks > 0).any(axis=1).mean(axis=1).min() > 0.85  # every band traced across the page
    with np.load(out / "maps" / f"{record_id}-0001.npz") as z:
        assert z["map_x"].shape == (107, 275) and int(z["orientation"]) == 0
    canonical = out / "canonical" / f"{record_id}-0001.png"
    stamp = canonical.stat().st_mtime_ns
    papermill.execute_notebook(str(NOTEBOOKS / "prepare.ipynb"), str(tmp_path / "p2.ipynb"), parameters=params,
                               progress_bar=False, kernel_name="python3", cwd=str(tmp_path))
    assert canonical.stat().st_mtime_ns == stamp  # resumed: the prepared image was not redone


def test_prepared_folder_feeds_stage2_training(tmp_path):
    """Real-data route: prepare (rectify + cache) -> PreparedTraceDataset items aligned with the truth."""
    from ecgdigit.prepare import prepare_folder
    from ecgdigit.train.data import PreparedTraceDataset, trace_dataset

    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--records", "1", "--types", "0001", "--split", "train",
                 "--seed", "8", "--fs", "500", "--no-labels"]) == 0
    prepare_folder(data, tmp_path / "prep", progress=False)
    dataset = trace_dataset(tmp_path / "prep", width=1100)
    assert isinstance(dataset, PreparedTraceDataset) and len(dataset) == 1
    item = dataset[0]
    assert tuple(item["image"].shape) == (3, 425, 1100) and tuple(item["masks"].shape) == (4, 425, 1100)
    # the cached masks sit on the rectified trace: ink is darker under the masks than elsewhere
    ink = 1 - item["image"].mean(0).numpy()
    on = item["masks"].numpy().max(0) > 0.3
    assert ink[on].mean() > 2 * ink[~on].mean()
    assert item["fs"] == 500 and item["signals"].shape == (5000, 12)
