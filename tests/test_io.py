"""Competition I/O: expected rows, submission building/validation/writing, solutions from folders."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgdigit import io
from ecgdigit.errors import InputError, SubmissionError
from ecgdigit.layout import LEADS, STANDARD_3X4, record_length, segment_length, segment_start
from ecgdigit.metric import score

EXTERNAL = Path(__file__).resolve().parents[1].parent / "shared" / "external"


def make_test_df(fs_by_image):
    return pd.concat([io.test_rows_for_image(i, fs) for i, fs in fs_by_image.items()], ignore_index=True)


def fake_predictions(test_df, rng):
    lengths = io.expected_lengths(test_df)
    return {i: {lead: rng.standard_normal(n) for lead, n in leads.items()} for i, leads in lengths.items()}


def test_expected_rows_respect_number_of_rows():
    test_df = make_test_df({"11": 500, "22": 1025})
    assert test_df.loc[(test_df.id == "22") & (test_df.lead == "II"), "number_of_rows"].item() == 10250
    assert test_df.loc[(test_df.id == "22") & (test_df.lead == "V1"), "number_of_rows"].item() == segment_length(1025)
    # a given count always wins over a recomputed one
    test_df.loc[(test_df.id == "22") & (test_df.lead == "V1"), "number_of_rows"] = 2563
    ids = io.expected_submission_ids(test_df)
    assert ids.is_unique and len(ids) == test_df["number_of_rows"].sum()
    assert "22_2562_V1" in set(ids) and "22_0_II" in set(ids) and "11_4999_II" in set(ids)


def test_submission_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    test_df = make_test_df({"101": 250, "202": 500})
    preds = fake_predictions(test_df, rng)
    sub = io.build_submission(test_df, preds)
    for name in ("submission.parquet", "submission.csv"):
        path = io.write_submission(sub, tmp_path / name, test_df)
        back = io.read_submission(path)
        io.validate_submission(back, test_df)
        np.testing.assert_allclose(back["value"].to_numpy(), sub["value"].to_numpy())

    bad = dict(preds, **{"202": dict(preds["202"], II=preds["202"]["II"][:-1])})
    with pytest.raises(SubmissionError, match="image 202: lead II has 4999 values, test.csv asks for 5000"):
        io.build_submission(test_df, bad)
    with pytest.raises(SubmissionError, match="no prediction for image 202"):
        io.build_submission(test_df, {"101": preds["101"]})
    nan = sub.copy()
    nan.loc[7, "value"] = np.nan
    with pytest.raises(SubmissionError, match=r"NaN.*101_7_I"):
        io.write_submission(nan, tmp_path / "x.parquet", test_df)
    with pytest.raises(SubmissionError, match=r"missing 1 of .*'101_3_I'"):
        io.validate_submission(sub.drop(index=3), test_df)
    with pytest.raises(InputError, match="must end in .parquet or .csv"):
        io.write_submission(sub, tmp_path / "x.txt")


def write_train_folder(root: Path, records):
    """A competition-layout train folder from {id: (fs, record)} (NaN outside plotted windows)."""
    (root / "train").mkdir(parents=True)
    pd.DataFrame([(i, fs, record_length(fs)) for i, (fs, _) in records.items()],
                 columns=["id", "fs", "sig_len"]).to_csv(root / "train.csv", index=False)
    for i, (fs, full) in records.items():
        df = pd.DataFrame(np.nan, index=range(record_length(fs)), columns=list(LEADS))
        for p in STANDARD_3X4.placements:
            a = segment_start(p, fs)
            b = a + int(round(p.duration * fs))
            df.loc[a:b - 1, p.lead] = full[a:b, LEADS.index(p.lead)]
        (root / "train" / i).mkdir()
        df.to_csv(root / "train" / i / f"{i}.csv", index=False)
        for image_type in ("0001", "0003"):
            (root / "train" / i / f"{i}-{image_type}.png").write_bytes(b"")


def test_solution_from_train_folder_scores_itself(tmp_path):
    rng = np.random.default_rng(2)
    records = {"3001": (500, rng.standard_normal((5000, 12))), "3002": (256, rng.standard_normal((2560, 12)))}
    write_train_folder(tmp_path, records)
    assert io.find_competition_split(tmp_path) == "train"
    entries = io.list_train_images(tmp_path)
    assert [e.image_id for e in entries] == ["3001-0001", "3001-0003", "3002-0001", "3002-0003"]
    solution = io.solution_from_train_folder(tmp_path, types=["0001"])
    assert set(solution["id"].str.split("_").str[0]) == {"3001-0001", "3002-0001"}
    n_3002 = (solution["id"].str.startswith("3002-0001_")).sum()
    assert n_3002 == 2560 + 11 * 640  # lead II whole, every other lead its 2.5 s window
    assert score(solution, solution[["id", "value"]], perfect_score=384) == pytest.approx(10 * np.log10(384))


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not a competition folder"):
        io.find_competition_split(tmp_path)
    with pytest.raises(InputError, match="train.csv not found"):
        io.read_train_csv(tmp_path / "train.csv")
    (tmp_path / "test.csv").write_text("id,lead,fs\n1,II,500\n")
    with pytest.raises(InputError, match="missing column.*number_of_rows"):
        io.read_test_csv(tmp_path / "test.csv")


@pytest.mark.skipif(not EXTERNAL.is_dir(), reason="shared/external is not beside this checkout")
def test_reads_external_competition_folder():
    solution = io.solution_from_train_folder(EXTERNAL)
    images = solution["id"].str.rsplit("_", n=2).str[0].unique()
    assert len(images) == 12
    assert score(solution, solution[["id", "value"]], perfect_score=384) == pytest.approx(10 * np.log10(384))
