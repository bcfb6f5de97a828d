"""Network building blocks shared by the stages: timm encoders, U-Net decoders, heads.

Importing this package does not import torch; use `ecgdigit.nets.unet` for the model itself.
"""
