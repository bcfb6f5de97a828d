"""Labels of degraded (warped, possibly rotated) images land on what the image shows (pixel checks)."""
import numpy as np
import pytest

from ecgdigit.layout import KEYPOINT_NAMES
from ecgdigit.synth.render import PageStyle
from ecgdigit.synth.sample import canonical_view, make_sample


STYLE = PageStyle(grid="red", grid_large_rgb=(220, 0, 0), grid_small_rgb=(250, 200, 200), grid_large_width_px=2.0,
                  grid_small_strength=0.5, trace_rgb=(0, 0, 0), label_rgb=(0, 0, 230), trace_width_px=1.5,
                  label_size_mm=4.5, header=False, calibration=False)


def sample_at(img, xy):
    h, w = img.shape[:2]
    xy = np.asarray(xy)
    ok = np.isfinite(xy).all(axis=1) & (xy[:, 0] >= 1) & (xy[:, 1] >= 1) & (xy[:, 0] <= w - 2) & (xy[:, 1] <= h - 2)
    x, y = np.round(xy[ok]).astype(int).T
    return img[y, x].astype(int)


@pytest.mark.parametrize("image_type,seed,turned", [("0003", 2, False), ("0005", 5, False), ("0011", 3, True)])
def test_nodes_keypoints_and_mesh_follow_the_warp(image_type, seed, turned, monkeypatch):
    if turned:  # force the 180-degree scan turn so that the labels are checked on a rotated image
        from ecgdigit.synth.degrade import recipes

        monkeypatch.setattr(recipes, "P_TURN_SCAN", 1.0)
    s = make_sample(seed, 0, image_type, fs=500, style=STYLE)
    assert (s.orientation != 0) == turned
    img = s.image
    redness = lambda px: px[:, 0] - (px[:, 1] + px[:, 2]) / 2  # noqa: E731
    nodes = s.grid_nodes
    centres = (nodes[:-1, :-1] + nodes[1:, 1:]) / 2  # centres of the large squares, through the warp
    on = redness(sample_at(img, nodes.reshape(-1, 2)))
    off = redness(sample_at(img, centres.reshape(-1, 2)))
    assert len(on) > 500
    assert np.median(on) > np.median(off) + 40, (np.median(on), np.median(off))

    blueness = img[:, :, 2].astype(int) - img[:, :, 0].astype(int)
    pitch = np.median(np.linalg.norm(np.diff(nodes, axis=1), axis=-1))  # large square in image px
    r = int(round(pitch * 0.5))
    h, w = blueness.shape
    hits = 0
    for (x, y) in s.keypoints:
        x, y = int(round(x)), int(round(y))
        if r <= x < w - r and r <= y < h - r:
            hits += (blueness[y - r:y + r, x - r:x + r] > 30).sum() > 10
    assert hits >= len(KEYPOINT_NAMES) - 1  # a keypoint may be cut off by the photo frame

    canon, masks = canonical_view(s, 2200, 850)
    on_trace = masks.max(axis=0) > 200
    dark = canon.min(axis=2).astype(int) < np.median(canon.min(axis=2)) - 50
    # the masks sit on the ink (dark) and the rest of the frame is mostly not ink (mould, text aside)
    assert np.mean(dark[on_trace]) > 0.7
    assert np.mean(dark[on_trace]) - np.mean(dark[~on_trace]) > 0.45
