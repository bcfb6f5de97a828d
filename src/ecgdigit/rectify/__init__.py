"""Stage 0 + 1: bring any ECG image (render, scan, photo; any of the 8 orientations) to the
canonical 4400 x 1700 frame of `ecgdigit.layout` with ONE remap from the original pixels.

Entry point: `rectify_to_canonical(image, method="classical")` -> `Rectification`.
"""
from ecgdigit.rectify.api import Rectification, as_rgb_uint8, dense_map_from_nodes, rectify_to_canonical

__all__ = ["Rectification", "rectify_to_canonical", "as_rgb_uint8", "dense_map_from_nodes"]
