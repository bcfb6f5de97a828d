"""Network building blocks shared by the stages: timm encoders, U-Net decoders, heads.

`from ecgdigit.nets import load_model` works; torch is imported only when such a name is used.
"""
_LAZY = ("SegmentationModel", "SegmentationConfig", "build_model", "load_model", "save_model", "KNOWN_BACKBONES")


def __getattr__(name):
    if name in _LAZY:
        from ecgdigit.nets import unet

        return getattr(unet, name)
    raise AttributeError(f"module 'ecgdigit.nets' has no attribute {name!r}")
