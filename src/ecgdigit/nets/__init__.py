"""Network building blocks shared by the stages: timm encoders, U-Net decoders, heads."""
