"""The weight-free extractor on a clean synthetic render in the canonical frame."""
import numpy as np
import pytest

from ecgdigit.layout import CANONICAL_BASELINES_Y
from ecgdigit.synth.dataset import SyntheticECGDataset
from ecgdigit.trace.classical import classical_band_maps, classical_extract, ink_map
from ecgdigit.trace.evaluation import score_records, truth_record
from ecgdigit.layout import default_lead_lengths
from ecgdigit.trace.extract import ExtractOptions, band_columns


@pytest.fixture(scope="module")
def clean_item():
    return SyntheticECGDataset(1, seed=7, types=["0001"], mode="canonical")[0]


def test_ink_map_separates_trace_from_grid(clean_item):
    ink = ink_map(clean_item["image"])
    masks = clean_item["masks"].max(axis=0)
    on_trace = ink[masks >= 200]
    off_trace = ink[(masks == 0)]
    assert np.median(on_trace) > 0.7  # masks and image lines are both anti-aliased, thin here
    assert np.percentile(off_trace, 90) < 0.05  # paper and most of the grid are 0
    assert np.percentile(off_trace, 95) < 0.35 * np.median(on_trace)  # the darkest grid lines stay well under ink


def test_band_maps_follow_their_own_rows(clean_item):
    maps = classical_band_maps(clean_item["image"])
    assert maps.shape == (4, 1700, 4400) and maps.dtype == np.float32
    y, _ = band_columns(maps, ExtractOptions())
    for band, base in enumerate(CANONICAL_BASELINES_Y):
        inside = y[band, 300:4100]
        assert np.isfinite(inside).mean() > 0.95
        assert abs(np.nanmedian(inside) - base) < 40  # the median sample sits near the baseline


def test_clean_render_scores(clean_item):
    fs = float(clean_item["fs"])
    lengths = default_lead_lengths(fs)
    rec = classical_extract(clean_item["image"], lengths, fs)
    truth = truth_record(clean_item["signals"].astype(np.float64), fs, lengths)
    score = score_records([truth], [rec], [fs]).score
    assert score >= 15.0, score


def test_grid_lines_darker_than_the_trace_are_removed_not_followed():
    """A faint trace on a dark, axis-aligned grid (canonical frame): without grid removal the
    tracker follows grid lines; removing what every row/column shares recovers the trace."""
    import cv2

    from ecgdigit.layout import CANONICAL_BASELINES_Y, CANONICAL_HEIGHT, CANONICAL_PX_PER_MV, CANONICAL_WIDTH
    from ecgdigit.trace.classical import ClassicalOptions, classical_band_maps
    from ecgdigit.trace.extract import ExtractOptions, band_columns

    h, w = CANONICAL_HEIGHT, CANONICAL_WIDTH
    img = np.full((h, w, 3), 235, np.uint8)
    for y in np.arange(0, h, 7.9 * 5):
        img[int(y)] = 90  # dark horizontal grid lines
    for x in np.arange(0, w, 15.7 * 5):
        img[:, int(x)] = 90
    xs = np.arange(w)
    truth = {}
    for band, base in enumerate(CANONICAL_BASELINES_Y):
        y = base - 0.6 * CANONICAL_PX_PER_MV * np.sin(xs / (60.0 + 15 * band))
        truth[band] = y
        pts = np.stack([xs, y], 1).astype(np.int32)[None]
        cv2.polylines(img, pts, False, (165, 165, 165), 2, lineType=cv2.LINE_AA)  # faint grey trace
    cols = slice(300, 4100)
    errs = {}
    for remove in (False, None):
        maps = classical_band_maps(img, ClassicalOptions(remove_grid_lines=remove))
        y, _ = band_columns(maps, ExtractOptions())
        errs[remove] = np.nanmedian(np.abs(y[:3, cols] - np.stack([truth[b][cols] for b in range(3)])))
    assert errs[None] < 1.5 and errs[False] > 3 * errs[None], errs
