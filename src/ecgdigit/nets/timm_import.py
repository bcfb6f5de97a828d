"""Import timm on every machine ecgdigit runs on.

timm imports torchvision. On a CPU-only torch (this project's CI and dev machines) the only
torchvision wheels on PyPI are CUDA builds whose compiled extension cannot load; torchvision then
fails at import while registering fake kernels for its `nms`/`qnms` ops. Declaring those two op
schemas first lets the pure-Python parts that timm uses import. Where the extension loads (Kaggle,
GPU machines) nothing is changed.
"""
from __future__ import annotations

import importlib.util
import os
import sys

_shim_library = None  # keeps the op definitions alive


def _declare_torchvision_ops_if_extension_missing() -> None:
    global _shim_library
    if "torchvision" in sys.modules or _shim_library is not None:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    import torch

    extension = os.path.join(os.path.dirname(spec.origin), "_C.so")
    try:
        torch.ops.load_library(extension)
        return
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _shim_library = lib


def import_timm():
    """Return the `timm` module (see the module docstring for why this wrapper exists)."""
    _declare_torchvision_ops_if_extension_missing()
    import timm

    return timm
