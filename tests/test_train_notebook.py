"""notebooks/train.ipynb runs end to end under papermill on tiny parameters."""
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


def test_train_notebook_runs_and_checkpoint_loads(tmp_path):
    from ecgdigit.nets.unet import load_model

    out_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "train.ipynb"), str(tmp_path / "train_out.ipynb"),
        parameters=dict(backbone="test_resnet", epochs=1, samples_per_epoch=2, batch_size=2, image_width=176,
                        workers=0, val_samples=1, out_dir=str(out_dir), amp=False, types="0001",
                        column_ce_weight=0.1, show_examples=False, lr=1e-3),
        cwd=str(ROOT), kernel_name="python3", progress_bar=False)
    model = load_model(out_dir / "best.pt")
    assert model.config.encoder_name == "test_resnet"
    assert (out_dir / "log.csv").is_file() and (out_dir / "best.json").is_file()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 68, 176)).shape == (1, 4, 68, 176)
