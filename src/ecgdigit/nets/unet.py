"""A timm encoder + U-Net decoder with coordinate channels: the one segmentation model of all stages.

The encoder is any timm model that supports `features_only=True` (ResNets, ConvNeXt V2, HRNet,
EfficientNets, timm's tiny `test_*` models). The decoder upsamples by 2 per block from the deepest
feature map, concatenating the encoder feature of the same stride and two coordinate channels
(x and y in [-1, 1] over the input, CoordConv) so the network knows which row band it looks at.
With `output_reduction=1` the head predicts at the full input resolution (stage 2: 4 sigmoid
channels, one per row band). Inputs of any size are padded to a multiple of the encoder's largest
stride and the output is cropped back.

Inputs are float images in [0, 1], (B, C, H, W); the model normalises them itself (ImageNet mean
and std) so that every caller feeds the same thing.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgdigit.nets.timm_import import import_timm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Backbones the project names (SPEC §4); any other timm name with features_only support works too.
KNOWN_BACKBONES: Tuple[str, ...] = (
    "resnet18", "resnet34", "efficientnet_b0", "efficientnetv2_rw_s", "convnextv2_tiny", "hrnet_w32",
    "test_resnet", "test_efficientnet", "test_convnext",
)


@dataclass
class SegmentationConfig:
    """Everything needed to rebuild a `SegmentationModel`; saved as JSON beside each checkpoint."""

    encoder_name: str = "resnet34"
    in_chans: int = 3
    n_classes: int = 4
    decoder_channels: Tuple[int, ...] = (256, 128, 64, 32, 16)
    coord_channels: bool = True
    output_reduction: int = 1  # 1 = full input resolution
    input_skip_channels: int = 16  # a small full-resolution conv on the image, 0 = none
    activation: str = "sigmoid"  # what `predict_proba` applies: sigmoid | softmax | none
    norm: str = "batch"  # batch | group
    normalize_input: bool = True
    n_aux_classes: int = 0  # > 0 adds a global classification head on the deepest feature
    encoder_weights: Optional[str] = None  # local timm weights file (never downloaded)
    extra: dict = field(default_factory=dict)  # free-form metadata (stage, training recipe, ...)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentationConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SegmentationConfig fields: {sorted(unknown)}")
        d = dict(d)
        if "decoder_channels" in d:
            d["decoder_channels"] = tuple(int(c) for c in d["decoder_channels"])
        return cls(**d)


def _norm(channels: int, kind: str) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = math.gcd(channels, 8) or 1
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str, kernel: int = 3):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
            _norm(cout, norm),
            nn.ReLU(inplace=True),
        )


def coordinate_channels(batch: int, height: int, width: int, stride: int, input_height: int, input_width: int,
                        device, dtype) -> torch.Tensor:
    """(B, 2, height, width): x and y of each pixel centre of a stride-`stride` feature map in [-1, 1].

    The coordinates are measured over the unpadded input (input_height x input_width), so the same
    image position gets the same value at every stride and padding only extends the range past 1.
    """
    ys = ((torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride) * (2.0 / input_height) - 1.0
    xs = ((torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride) * (2.0 / input_width) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0).to(dtype)
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int, coord: bool, norm: str):
        super().__init__()
        self.coord = coord
        self.conv1 = ConvNormAct(cin + cskip + (2 if coord else 0), cout, norm)
        self.conv2 = ConvNormAct(cout, cout, norm)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor], coords: Optional[torch.Tensor]) -> torch.Tensor:
        target = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=target, mode="nearest")
        parts = [x]
        if skip is not None:
            parts.append(skip)
        if self.coord and coords is not None:
            parts.append(coords)
        return self.conv2(self.conv1(torch.cat(parts, 1)))


class SegmentationModel(nn.Module):
    """timm encoder + U-Net decoder (+ coordinate channels) + 1x1 head; see the module docstring."""

    def __init__(self, encoder_name: str = "resnet34", in_chans: int = 3, n_classes: int = 4,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16), coord_channels: bool = True,
                 output_reduction: int = 1, input_skip_channels: int = 16, activation: str = "sigmoid",
                 norm: str = "batch", normalize_input: bool = True, n_aux_classes: int = 0,
                 encoder_weights: Optional[str] = None, extra: Optional[dict] = None,
                 config: Optional[SegmentationConfig] = None):
        super().__init__()
        if config is None:
            config = SegmentationConfig(encoder_name, in_chans, n_classes, tuple(decoder_channels), coord_channels,
                                        output_reduction, input_skip_channels, activation, norm, normalize_input,
                                        n_aux_classes, encoder_weights, dict(extra or {}))
        self.config = config
        c = config
        if c.activation not in ("sigmoid", "softmax", "none"):
            raise ValueError(f"activation must be sigmoid, softmax or none, got {c.activation!r}")
        if c.output_reduction < 1 or c.output_reduction & (c.output_reduction - 1):
            raise ValueError(f"output_reduction must be a power of 2, got {c.output_reduction}")
        timm = import_timm()
        kwargs = dict(features_only=True, in_chans=c.in_chans)
        if c.encoder_weights:
            weights = Path(c.encoder_weights)
            if not weights.is_file():
                raise FileNotFoundError(f"encoder weights file not found: {weights}")
            # timm loads a local file through the pretrained config: no download is attempted.
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
        else:
            kwargs.update(pretrained=False)
        self.encoder = timm.create_model(c.encoder_name, **kwargs)
        enc_channels: List[int] = list(self.encoder.feature_info.channels())
        enc_reductions: List[int] = list(self.encoder.feature_info.reduction())
        self.encoder_reductions = enc_reductions
        self.pad_multiple = max(enc_reductions)

        # One decoder block per halving of the stride, from the deepest feature to output_reduction.
        targets = []
        r = max(enc_reductions) // 2
        while r >= c.output_reduction:
            targets.append(r)
            r //= 2
        self.decoder_reductions = targets
        dec = list(c.decoder_channels)
        if len(dec) < len(targets):  # extend by halving, at least 8 channels
            while len(dec) < len(targets):
                dec.append(max(8, dec[-1] // 2))
        dec = dec[: len(targets)]
        self.decoder_out_channels = dec

        self.input_skip = None
        if c.input_skip_channels > 0 and c.output_reduction == 1:
            self.input_skip = ConvNormAct(c.in_chans, c.input_skip_channels, c.norm)

        blocks = []
        cin = enc_channels[-1]
        for target, cout in zip(targets, dec):
            if target in enc_reductions[:-1]:
                cskip = enc_channels[enc_reductions.index(target)]
            elif target == 1 and self.input_skip is not None:
                cskip = c.input_skip_channels
            else:
                cskip = 0
            blocks.append(DecoderBlock(cin, cskip, cout, c.coord_channels, c.norm))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        # When the deepest stride already equals output_reduction there is no decoder block.
        self.head = nn.Conv2d(cin, c.n_classes, 1)
        self.aux_head = nn.Linear(enc_channels[-1], c.n_aux_classes) if c.n_aux_classes > 0 else None
        if c.normalize_input:
            mean = torch.tensor(IMAGENET_MEAN if c.in_chans == 3 else [0.5] * c.in_chans).view(1, -1, 1, 1)
            std = torch.tensor(IMAGENET_STD if c.in_chans == 3 else [0.25] * c.in_chans).view(1, -1, 1, 1)
            self.register_buffer("input_mean", mean, persistent=False)
            self.register_buffer("input_std", std, persistent=False)

    def forward(self, x: torch.Tensor):
        """Logits (B, n_classes, H / r, W / r) for r = output_reduction; with an aux head, (logits, aux)."""
        b, _, h, w = x.shape
        if self.config.normalize_input:
            x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        m = self.pad_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            # After normalisation 0 is the mean colour: a neutral border.
            x = F.pad(x, (0, pw, 0, ph))
        feats = self.encoder(x)
        by_reduction = dict(zip(self.encoder_reductions, feats))
        if self.input_skip is not None:
            by_reduction[1] = self.input_skip(x)
        y = feats[-1]
        for target, block in zip(self.decoder_reductions, self.decoder):
            skip = by_reduction.get(target)
            coords = None
            if self.config.coord_channels:
                coords = coordinate_channels(b, x.shape[-2] // target, x.shape[-1] // target, target, h, w,
                                             y.device, y.dtype)
            y = block(y, skip, coords)
        logits = self.head(y)
        r = self.config.output_reduction
        oh, ow = -(-h // r), -(-w // r)
        logits = logits[..., :oh, :ow]
        if self.aux_head is not None:
            aux = self.aux_head(feats[-1].float().mean(dim=(2, 3)).to(feats[-1].dtype))
            return logits, aux
        return logits

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities with the configured activation (the aux output, if any, is dropped)."""
        out = self(x)
        logits = out[0] if isinstance(out, tuple) else out
        if self.config.activation == "sigmoid":
            return torch.sigmoid(logits.float())
        if self.config.activation == "softmax":
            return torch.softmax(logits.float(), dim=1)
        return logits.float()


def build_model(config: Union[SegmentationConfig, dict]) -> SegmentationModel:
    if isinstance(config, dict):
        config = SegmentationConfig.from_dict(config)
    return SegmentationModel(config=config)


def config_path_for(checkpoint: Union[str, Path]) -> Path:
    """The JSON config file that sits beside a checkpoint: `model.pt` -> `model.json`."""
    return Path(checkpoint).with_suffix(".json")


def save_model(model: SegmentationModel, path: Union[str, Path], extra_state: Optional[dict] = None) -> Path:
    """Write the weights to `path` and the config as JSON beside it; returns the checkpoint path.

    The saved config has `encoder_weights=None`: the checkpoint already holds every weight, so
    loading never needs the original pretrained file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model
    cfg = dataclasses.replace(module.config, encoder_weights=None)
    state = {"model": module.state_dict(), "config": cfg.to_dict()}
    if extra_state:
        state.update(extra_state)
    torch.save(state, path)
    config_path_for(path).write_text(json.dumps(cfg.to_dict(), indent=2))
    return path


def save_half_weights(checkpoint: Union[str, Path], path: Union[str, Path]) -> Path:
    """Write `checkpoint`'s model weights alone, floats as float16, to `path` (config JSON beside it).

    For shipping (a Kaggle dataset, a file size limit): half the size of the float32 weights and
    without the optimiser state; `load_model` reads it back as a float32 model (rounding the
    weights to float16 changes outputs by about 1e-3 of their scale)."""
    checkpoint, path = Path(checkpoint), Path(path)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    weights = state["model"] if "model" in state else state
    half = {k: v.half() if torch.is_floating_point(v) else v for k, v in weights.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    config = state.get("config")
    if config is None and config_path_for(checkpoint).is_file():
        config = json.loads(config_path_for(checkpoint).read_text())
    torch.save({"model": half, "config": config}, path)
    if config is not None:
        config_path_for(path).write_text(json.dumps(config, indent=2))
    return path


def load_model(path: Union[str, Path], map_location="cpu", eval_mode: bool = True) -> SegmentationModel:
    """Rebuild a model from the JSON config beside `path` and load its weights."""
    path = Path(path)
    if not path.is_file():
        from ecgdigit.errors import InputError

        raise InputError(f"{path}: checkpoint file not found")
    cfg_file = config_path_for(path)
    state = torch.load(path, map_location=map_location, weights_only=False)
    if cfg_file.is_file():
        cfg = SegmentationConfig.from_dict(json.loads(cfg_file.read_text()))
    else:  # the checkpoint carries a copy of its config
        cfg = SegmentationConfig.from_dict(state["config"])
    cfg.encoder_weights = None
    model = SegmentationModel(config=cfg)
    model.load_state_dict(state["model"] if "model" in state else state)
    if eval_mode:
        model.eval()
    return model
