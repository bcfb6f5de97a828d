"""Notebooks: every .py/.ipynb pair is in sync, and each notebook runs under papermill on tiny inputs."""
from pathlib import Path

import jupytext
import pandas as pd
import papermill
import pytest

from ecgdigit.metric import score
from helpers import noisy_solution_and_submission

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _code(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("script", sorted(NOTEBOOKS.glob("*.py")), ids=lambda p: p.stem)
def test_notebook_pair_in_sync(script):
    paired = script.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} missing: run `make notebooks`"
    ipynb = jupytext.read(paired)
    assert _code(jupytext.read(script)) == _code(ipynb), f"{script.name} and {paired.name} differ: run `make notebooks`"
    assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code"), f"{paired.name} has outputs"
    assert any("parameters" in c.metadata.get("tags", []) for c in ipynb.cells), f"{paired.name} has no parameters cell"


def test_evaluate_notebook_runs(tmp_path):
    solution, submission = noisy_solution_and_submission({"91": 100, "92": 250})
    solution.to_csv(tmp_path / "solution.csv", index=False)
    submission.to_csv(tmp_path / "submission.csv", index=False)
    out = tmp_path / "out"
    papermill.execute_notebook(
        str(NOTEBOOKS / "evaluate.ipynb"), str(tmp_path / "evaluate_out.ipynb"),
        parameters=dict(solution_path=str(tmp_path / "solution.csv"), submission_path=str(tmp_path / "submission.csv"),
                        perfect_score=384, output_dir=str(out)),
        progress_bar=False, kernel_name="python3", cwd=str(tmp_path))
    assert (out / "snr_histogram.png").stat().st_size > 1000
    assert len((out / "per_image.csv").read_text().splitlines()) == 3
    text = (tmp_path / "evaluate_out.ipynb").read_text()
    assert f"score: {score(solution, submission, perfect_score=384):.4f} dB" in text


def test_evaluate_folds_notebook_runs(tmp_path):
    from ecgdigit.cli import main

    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--records", "2", "--types", "0001", "--split", "train",
                 "--seed", "3", "--fs", "250", "--no-labels"]) == 0
    ids = pd.read_csv(data / "train.csv", dtype={"id": str})["id"].tolist()
    pd.DataFrame({"id": ids, "fold": [0, 1]}).to_csv(tmp_path / "folds.csv", index=False)
    out = tmp_path / "out"
    papermill.execute_notebook(
        str(NOTEBOOKS / "evaluate_folds.ipynb"), str(tmp_path / "ef.ipynb"),
        parameters=dict(data_dir=str(data), folds_csv=str(tmp_path / "folds.csv"), fold=1, output_dir=str(out)),
        progress_bar=False, kernel_name="python3", cwd=str(tmp_path))
    per_image = pd.read_csv(out / "oof_per_image.csv", dtype={"image_id": str})
    assert list(per_image["image_id"]) == [f"{ids[1]}-0001"]  # only the held-out fold's record
    assert (out / "worst_cases.png").stat().st_size > 5000 and (out / "oof_histogram.png").exists()
    assert "out-of-fold score:" in (tmp_path / "ef.ipynb").read_text()
