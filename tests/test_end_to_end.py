"""The product path at small scale: synth -> submit (with fallbacks) -> score, and digitize's files."""
import shutil

import numpy as np
import pandas as pd
import pytest

from ecgdigit import io
from ecgdigit.cli import main
from ecgdigit.layout import LEADS


@pytest.fixture(scope="module")
def test_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("comp")
    assert main(["synth", "--out", str(root), "--records", "1", "--types", "0001", "--split", "test",
                 "--seed", "11", "--fs", "500", "--no-labels"]) == 0
    return root


def test_submit_scores_a_clean_render(test_folder, tmp_path, capsys):
    out = tmp_path / "submission.parquet"
    assert main(["submit", "--input", str(test_folder), "--output", str(out), "--score"]) == 0
    printed = capsys.readouterr().out
    test_df = io.read_test_csv(test_folder / "test.csv")
    io.validate_submission(pd.read_parquet(out), test_df)
    assert "0 fell back" in printed
    score = float(printed.split("score: ")[1].split(" dB")[0])
    assert score > 15, printed  # the no-weights path reads a clean render (a flat fallback scores ~0 dB)
    # The same submission scored against an explicit solution file elsewhere gives the same figure.
    moved = tmp_path / "elsewhere_solution.csv"
    shutil.copy(test_folder / "solution.csv", moved)
    root = tmp_path / "no_solution"
    shutil.copytree(test_folder, root)
    (root / "solution.csv").unlink()
    assert main(["submit", "--input", str(root), "--output", str(tmp_path / "s2.csv"), "--solution", str(moved)]) == 0
    again = capsys.readouterr().out
    assert float(again.split("score: ")[1].split(" dB")[0]) == pytest.approx(score, abs=1e-6)
    # both group the images by the type test_meta.csv gives them
    assert "per group:" in printed and "per group:" in again and again.count("0001") == printed.count("0001")


def test_one_bad_image_never_loses_the_others(test_folder, tmp_path, capsys):
    root = tmp_path / "comp"
    shutil.copytree(test_folder, root)
    test_df = io.read_test_csv(root / "test.csv")
    good = test_df["id"].iloc[0]
    extra = pd.concat([io.test_rows_for_image("1111111111", 500), io.test_rows_for_image("2222222222", 100)])
    pd.concat([test_df, extra]).to_csv(root / "test.csv", index=False)
    (root / "test" / "2222222222.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # corrupt; 1111 is missing
    out = tmp_path / "sub.csv"
    assert main(["submit", "--input", str(root), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 fell back" in captured.out
    assert "1111111111.png: file not found" in captured.err and "2222222222.png: cannot decode image" in captured.err
    sub = pd.read_csv(out, dtype={"id": str})
    io.validate_submission(sub, pd.read_csv(root / "test.csv", dtype={"id": str}))
    assert sub["id"].str.startswith("2222222222_").sum() == 1000 + 11 * 250  # fs = 100: unusual rates work
    assert sub.loc[sub["id"].str.startswith(good + "_"), "value"].std() > 0.01  # the good image was digitised


def test_digitize_writes_csv_wfdb_overlay_report(test_folder, tmp_path, capsys):
    image = next((test_folder / "test").glob("*.png"))
    code = main(["digitize", str(image), str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "out"), "--fs", "250"])
    assert code == 4  # one of two images failed, the other is written
    out = tmp_path / "out"
    table = pd.read_csv(out / f"{image.stem}.csv")
    assert list(table.columns) == ["time_s", *LEADS] and len(table) == 2500
    assert table["II"].notna().all() and table["V1"].notna().sum() == 625
    import wfdb

    rec = wfdb.rdrecord(str(out / image.stem))
    assert rec.fs == 250 and rec.sig_name == list(LEADS)
    np.testing.assert_allclose(rec.p_signal[:, 1], table["II"].to_numpy(), atol=0.01)
    import json

    report = json.loads((out / f"{image.stem}.json").read_text())
    assert report["orientation"] == 0 and set(report["lead_confidence"]) == set(LEADS)
    assert report["consistency"]["einthoven_db"] > 0  # I + III follows II better than nothing
    assert (out / f"{image.stem}_overlay.png").stat().st_size > 10_000
    assert "missing.jpg: file not found" in capsys.readouterr().err


def test_photo_without_ecg_is_rejected_clearly(tmp_path, capsys):
    import cv2

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:900, 0:1200]
    photo = np.dstack([(xx / 5) % 255, (yy / 4) % 255, 128 + 60 * np.sin(xx / 50.0)]).astype(np.uint8)
    photo = cv2.GaussianBlur(photo, (0, 0), 3) + rng.integers(0, 20, photo.shape, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "holiday.jpg"), photo)
    assert main(["digitize", str(tmp_path / "holiday.jpg"), "--out", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert "holiday.jpg" in err and "Traceback" not in err and err.count("\n") == 1
    assert "rectification confidence" in err or "no ECG page found" in err
    if "rectification confidence" in err:  # a user may lower the floor and judge the overlay
        assert main(["digitize", str(tmp_path / "holiday.jpg"), "--out", str(tmp_path / "forced"),
                     "--min-confidence", "0", "--no-wfdb"]) == 0
        assert (tmp_path / "forced" / "holiday_overlay.png").is_file()


def test_weights_path_runs_a_stage2_model(test_folder, tmp_path, capsys):
    """--weights: the band maps come from a (here untrained, tiny) stage-2 network."""
    import json

    import torch

    from ecgdigit.nets.unet import SegmentationModel, save_model

    torch.manual_seed(0)
    model = SegmentationModel("test_resnet", n_classes=4, decoder_channels=(16, 8, 8, 8, 8),
                              extra={"stage": 2, "image_width": 1100}).eval()
    save_model(model, tmp_path / "weights" / "best.pt")
    out = tmp_path / "sub.parquet"
    assert main(["submit", "--input", str(test_folder), "--output", str(out), "--weights", str(tmp_path / "weights")]) == 0
    io.validate_submission(pd.read_parquet(out), io.read_test_csv(test_folder / "test.csv"))
    image = next((test_folder / "test").glob("*.png"))
    assert main(["digitize", str(image), "--out", str(tmp_path / "d"), "--weights", str(tmp_path / "weights"),
                 "--no-wfdb"]) == 0
    assert json.loads((tmp_path / "d" / f"{image.stem}.json").read_text())["tracer"] == "model"
    assert main(["submit", "--input", str(test_folder), "--output", str(out), "--weights", str(tmp_path)]) == 2
    assert "no weights in this folder (expected stage-2 weights" in capsys.readouterr().err


def test_batched_stage2_reads_like_one_by_one_and_keeps_bad_images_apart(test_folder, tmp_path, capsys):
    """digitize_batch: one forward pass over the images that rectified gives the same records as one
    call per image; an image that fails (missing file) comes back as its error, the others are kept.
    `submit --batch-size` goes through it and still writes a valid submission with the fallback."""
    import torch

    from ecgdigit.errors import InputError
    from ecgdigit.nets.unet import SegmentationModel, save_model
    from ecgdigit.pipeline import Digitizer

    torch.manual_seed(1)
    model = SegmentationModel("test_resnet", n_classes=4, decoder_channels=(16, 8, 8, 8, 8),
                              extra={"stage": 2, "image_width": 550}).eval()
    save_model(model, tmp_path / "weights" / "best.pt")
    digitizer = Digitizer(tmp_path / "weights")
    image = next((test_folder / "test").glob("*.png"))
    turned = tmp_path / "turned.png"
    import cv2

    cv2.imwrite(str(turned), cv2.rotate(cv2.imread(str(image)), cv2.ROTATE_180))
    results = digitizer.digitize_batch([image, tmp_path / "missing.png", turned], fs=[500, 500, 250])
    assert isinstance(results[1], InputError) and "missing.png" in str(results[1])
    for path, fs, got in ((image, 500, results[0]), (turned, 250, results[2])):
        alone = digitizer(path, fs=fs)
        assert got.fs == fs and got.rectification.orientation == alone.rectification.orientation
        for lead in LEADS:
            assert len(got.record[lead]) == len(alone.record[lead])
            np.testing.assert_allclose(got.record[lead], alone.record[lead], atol=1e-3)  # float noise of a batched forward, amplified by sub-pixel peaks

    root = tmp_path / "comp"
    shutil.copytree(test_folder, root)
    test_df = io.read_test_csv(root / "test.csv")
    pd.concat([test_df, io.test_rows_for_image("1111111111", 500)]).to_csv(root / "test.csv", index=False)
    out = tmp_path / "sub.csv"
    assert main(["submit", "--input", str(root), "--output", str(out), "--weights", str(tmp_path / "weights"),
                 "--batch-size", "2"]) == 0
    assert "1 fell back" in capsys.readouterr().out
    io.validate_submission(pd.read_csv(out, dtype={"id": str}), pd.read_csv(root / "test.csv", dtype={"id": str}))
    assert main(["submit", "--input", str(root), "--output", str(out), "--batch-size", "0"]) == 2
    assert "batch size must be at least 1" in capsys.readouterr().err


def test_uncertain_geometry_is_refused_not_read(test_folder):
    """An image whose rectification confidence is under the Digitizer's floor is refused with the
    figure in the message (submit then writes a flat fallback, which scores better than wrong traces)."""
    from ecgdigit.errors import EcgdigitError
    from ecgdigit.pipeline import Digitizer

    path = next((test_folder / "test").glob("*.png"))
    result = Digitizer()(path, fs=500)
    conf = result.rectification.confidence
    assert 0.1 <= conf <= 1.0
    with pytest.raises(EcgdigitError, match="rectification confidence"):
        Digitizer(min_rectify_confidence=conf + 1e-3)(path, fs=500)
