"""The shared segmentation model: every named backbone builds, any input size comes back whole."""
import json

import pytest

torch = pytest.importorskip("torch")

from ecgdigit.nets.timm_import import import_timm  # noqa: E402
from ecgdigit.nets.unet import (  # noqa: E402
    KNOWN_BACKBONES, SegmentationConfig, SegmentationModel, build_model, config_path_for, load_model, save_half_weights,
    save_model,
)

SMALL = ("test_resnet", "test_efficientnet", "test_convnext", "resnet18", "efficientnet_b0")
BIG = ("resnet34", "convnextv2_tiny", "hrnet_w32", "efficientnetv2_rw_s")


@pytest.mark.parametrize("name", SMALL)
def test_small_backbones_full_resolution_output(name):
    torch.manual_seed(0)
    model = SegmentationModel(name, n_classes=4, decoder_channels=(32, 16, 16, 8, 8)).eval()
    x = torch.rand(1, 3, 50, 70)  # not a multiple of 32: padded inside, cropped back
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 4, 50, 70)
    assert torch.isfinite(y).all()
    p = model.predict_proba(x)
    assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0


@pytest.mark.parametrize("name", BIG)
def test_big_backbones_build_as_feature_extractors(name):
    # A full forward of these on CPU costs seconds each; the encoder build proves the name works.
    timm = import_timm()
    enc = timm.create_model(name, features_only=True, pretrained=False)
    assert max(enc.feature_info.reduction()) == 32
    assert set(BIG) <= set(KNOWN_BACKBONES)


@pytest.mark.parametrize("name", BIG)
def test_big_backbones_forward_64(name):
    model = SegmentationModel(name, decoder_channels=(32, 16, 16, 8, 8)).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 4, 64, 64)


def test_coordinates_tell_rows_apart():
    # Two identical blank inputs, the model must still be able to output position-dependent maps:
    # with coord channels, rows of a constant image differ; without, interior rows are identical.
    torch.manual_seed(0)
    x = torch.full((1, 3, 64, 64), 0.5)
    with_coords = SegmentationModel("test_resnet", decoder_channels=(16, 8, 8, 8, 8)).eval()
    without = SegmentationModel("test_resnet", decoder_channels=(16, 8, 8, 8, 8), coord_channels=False).eval()
    with torch.no_grad():
        a = with_coords(x)[0, 0]
        b = without(x)[0, 0]
    assert float((a[20] - a[40]).abs().max()) > 1e-4
    assert float((b[20] - b[40]).abs().max()) < 1e-5


def test_lower_output_reduction_and_aux_head():
    model = SegmentationModel("test_resnet", n_classes=14, output_reduction=4, n_aux_classes=8).eval()
    with torch.no_grad():
        seg, aux = model(torch.rand(2, 3, 100, 130))
    assert seg.shape == (2, 14, 25, 33)  # ceil(100 / 4), ceil(130 / 4)
    assert aux.shape == (2, 8)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = SegmentationModel("test_efficientnet", in_chans=3, n_classes=4, decoder_channels=(16, 8, 8, 8, 8),
                              extra={"stage": 2}).eval()
    # Move BN statistics away from defaults so that a lost buffer would show.
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    model.eval()
    ckpt = save_model(model, tmp_path / "ckpt" / "model.pt")
    cfg = json.loads(config_path_for(ckpt).read_text())
    assert cfg["encoder_name"] == "test_efficientnet" and cfg["extra"] == {"stage": 2}
    loaded = load_model(ckpt)
    x = torch.rand(1, 3, 40, 90)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)
    assert build_model(cfg).config == SegmentationConfig.from_dict(cfg)


def test_half_weights_load_back_close_to_the_float32_model(tmp_path):
    torch.manual_seed(2)
    model = SegmentationModel("test_resnet", n_classes=3, decoder_channels=(16, 8, 8, 8, 8), extra={"stage": 1}).eval()
    ckpt = save_model(model, tmp_path / "run" / "best.pt", {"optimizer": {"lots": torch.zeros(4096)}})
    half = save_half_weights(ckpt, tmp_path / "weights" / "stage1.pt")
    stored = torch.load(half, weights_only=False)
    dtypes = {v.dtype for v in stored["model"].values()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert "optimizer" not in stored and config_path_for(half).is_file()
    assert half.stat().st_size < 0.6 * ckpt.stat().st_size
    loaded = load_model(half)
    assert loaded.config.extra == {"stage": 1}
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ref, got = model(x), loaded(x)
    assert next(loaded.parameters()).dtype == torch.float32
    assert torch.allclose(ref, got, atol=2e-2 * float(ref.abs().max())) and not torch.equal(ref, got)


def test_unknown_config_field_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        SegmentationConfig.from_dict({"encoder_name": "test_resnet", "bogus": 1})


def test_local_encoder_weights_file_is_used(tmp_path):
    timm = import_timm()
    torch.manual_seed(3)
    src = timm.create_model("test_resnet", pretrained=False)
    weights = tmp_path / "test_resnet.pth"
    torch.save(src.state_dict(), weights)
    model = SegmentationModel("test_resnet", encoder_weights=str(weights))
    conv = model.encoder.conv1 if hasattr(model.encoder, "conv1") else None
    src_first = next(v for k, v in src.state_dict().items() if k.endswith("weight"))
    enc_first = next(v for k, v in model.encoder.state_dict().items() if k.endswith("weight"))
    assert torch.equal(src_first, enc_first), conv
    with pytest.raises(FileNotFoundError):
        SegmentationModel("test_resnet", encoder_weights=str(tmp_path / "missing.pth"))
