"""build_kernel.py: one self-contained offline notebook that gives the same submission as `ecgdigit submit`."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest

from ecgdigit import io
from ecgdigit.cli import main
from ecgdigit.metric import score

ROOT = Path(__file__).resolve().parents[1]


def load_builder():
    spec = importlib.util.spec_from_file_location("build_kernel", ROOT / "build_kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metadata_is_what_the_kaggle_cli_reads(tmp_path):
    bk = load_builder()
    folder = bk.build("ecgdigit-test", "someone", out_root=tmp_path, gpu=False)
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    assert meta["id"] == "someone/ecgdigit-test" and len(meta["title"]) >= 5
    assert meta["enable_internet"] == "false" and meta["enable_gpu"] == "false"
    assert meta["competition_sources"] == ["physionet-ecg-image-digitization"]
    assert (folder / meta["code_file"]).stat().st_size < bk.MAX_NOTEBOOK_BYTES
    bk.validate_kernel_metadata(meta, folder)
    with pytest.raises(bk.BuildError, match="title must be at least 5"):
        bk.validate_kernel_metadata(dict(meta, title="abc"), folder)
    with pytest.raises(bk.BuildError, match="enable_internet must be true or false"):
        bk.validate_kernel_metadata(dict(meta, enable_internet="maybe"), folder)
    with pytest.raises(bk.BuildError, match="code_file"):
        bk.validate_kernel_metadata(dict(meta, code_file="nope.ipynb"), folder)
    with pytest.raises(bk.BuildError, match="no stage-2 weights in this folder"):
        bk.copy_weights(tmp_path, "someone")


def test_built_notebook_runs_offline_and_matches_submit(tmp_path):
    data = tmp_path / "comp"
    assert main(["synth", "--out", str(data), "--records", "1", "--types", "0001", "--split", "test",
                 "--seed", "23", "--fs", "250", "--no-labels"]) == 0
    folder = load_builder().build("ecgdigit-offline", "someone", out_root=tmp_path / "kernels", gpu=False)
    run_dir = tmp_path / "run"  # no src/ anywhere near: the notebook must bring its own sources
    run_dir.mkdir()
    executed = papermill.execute_notebook(
        str(folder / "ecgdigit-offline.ipynb"), str(run_dir / "out.ipynb"),
        parameters=dict(input_dir=str(data), device="cpu", workers=1), progress_bar=False,
        kernel_name="python3", cwd=str(run_dir))
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "loaded from the bundle" in printed
    kernel_sub = pd.read_parquet(run_dir / "submission.parquet")
    io.validate_submission(kernel_sub, io.read_test_csv(data / "test.csv"))
    assert main(["submit", "--input", str(data), "--output", str(tmp_path / "cli.parquet")]) == 0
    cli_sub = pd.read_parquet(tmp_path / "cli.parquet")
    solution = io.read_solution(data / "solution.csv")
    assert score(solution, kernel_sub) == pytest.approx(score(solution, cli_sub), abs=1e-9)
    np.testing.assert_allclose(kernel_sub["value"].to_numpy(), cli_sub["value"].to_numpy(), atol=1e-9)


def test_kaggle_cli_is_installed_and_knows_kernels_push():
    import shutil
    import subprocess
    import sys

    kaggle = shutil.which("kaggle") or str(Path(sys.executable).parent / "kaggle")
    out = subprocess.run([kaggle, "kernels", "push", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--path" in out.stdout
