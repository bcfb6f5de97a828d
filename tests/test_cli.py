"""The console script: help, version, score, and clear one-line errors with exit codes."""
import json
import subprocess
import sys

import pytest

from ecgdigit import __version__
from ecgdigit.cli import main
from ecgdigit.metric import score
from helpers import noisy_solution_and_submission


def test_help_and_version():
    out = subprocess.run([sys.executable, "-m", "ecgdigit.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "score" in out.stdout and "Exit codes" in out.stdout
    out = subprocess.run([sys.executable, "-m", "ecgdigit.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"ecgdigit {__version__}"


def test_score_prints_score_and_table(tmp_path, capsys):
    solution, submission = noisy_solution_and_submission({"71": 500, "72": 250, "73": 1000})
    solution.to_csv(tmp_path / "solution.csv", index=False)
    submission.to_parquet(tmp_path / "submission.parquet", index=False)
    code = main(["score", "--solution", str(tmp_path / "solution.csv"), "--submission",
                 str(tmp_path / "submission.parquet"), "--per-lead", "--out", str(tmp_path / "per_image.csv")])
    printed = capsys.readouterr().out
    assert code == 0
    expected = score(solution, submission)
    assert f"score: {expected:.4f} dB over 3 image(s)" in printed
    assert "per lead" in printed and "aVR" in printed
    assert (tmp_path / "per_image.csv").read_text().count("\n") == 4


def test_score_errors_are_one_line(tmp_path, capsys):
    solution, submission = noisy_solution_and_submission({"81": 100})
    solution.to_csv(tmp_path / "solution.csv", index=False)
    submission.iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    code = main(["score", "--solution", str(tmp_path / "solution.csv"), "--submission", str(tmp_path / "short.csv")])
    err = capsys.readouterr().err
    assert code == 3 and err.startswith("ecgdigit: error: submission is missing 1 of") and err.count("\n") == 1
    code = main(["score", "--solution", str(tmp_path / "nope.csv"), "--submission", str(tmp_path / "short.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "solution not found" in err and "nope.csv" in err


def test_train_refuses_bad_decoder_channels(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--stage", "1", "--out-dir", str(tmp_path), "--decoder-channels", "128,ab"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--decoder-channels" in err and "'128,ab'" in err and "Traceback" not in err


def test_train_stage0_from_the_cli(tmp_path, capsys):
    out = tmp_path / "stage0"
    assert main(["train", "--stage", "0", "--backbone", "test_resnet", "--image-size", "128", "--epochs", "1",
                 "--samples-per-epoch", "2", "--batch-size", "2", "--val-samples", "1", "--workers", "0",
                 "--no-amp", "--lr", "1e-3", "--out-dir", str(out), "--decoder-channels", "16,8,8,8,8",
                 "--half-weights", str(tmp_path / "weights" / "stage0.pt")]) == 0
    printed = capsys.readouterr().out
    assert "best validation score" in printed and "(higher is better)" in printed
    assert (out / "best.pt").is_file() and (out / "log.csv").is_file()
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["decoder_channels"] == [16, 8, 8, 8, 8]
    # the shipped float16 weights are a stage-0 model the learned rectifier loads
    from ecgdigit.rectify.learned import load_stage_model

    assert tuple(load_stage_model(tmp_path / "weights", 0, device="cpu").config.decoder_channels) == (16, 8, 8, 8, 8)
