"""The gridless (layout-based) rectifier on pages our engine prints without a grid."""
from dataclasses import replace

import cv2
import numpy as np
import pytest

from ecgdigit import layout
from ecgdigit.rectify import rectify_to_canonical
from ecgdigit.rectify.api import PAGE_MASK_SOLIDITY, mask_solidity
from ecgdigit.rectify.gridless import _colourless_page_mask, _page_mask, rectify_gridless
from ecgdigit.synth.render import sample_style
from ecgdigit.synth.sample import make_sample, record_rng
from ecgdigit.train.stage01 import node_errors_mm, orient_points

SEED = 4242


def _gridless(index: int, image_type: str = "0001"):
    style = replace(sample_style(record_rng(SEED, index, 1)), grid="none")
    return make_sample(SEED, index, image_type, style=style)


@pytest.fixture(scope="module")
def clean():
    smp = _gridless(0)
    assert smp.page.style.grid == "none"
    return smp


def test_gridless_clean_render_rectified_upright_and_accurate(clean):
    r = rectify_gridless(clean.image)
    assert r.method == "gridless" and not r.rejected
    assert r.orientation == 0
    assert r.canonical.shape == (layout.CANONICAL_HEIGHT, layout.CANONICAL_WIDTH, 3)
    err = node_errors_mm(r.nodes, clean.grid_nodes, clean.image.shape[1], clean.image.shape[0])
    assert err.mean() < 0.6, err.mean()
    assert np.percentile(err, 95) < 1.2
    assert r.confidence > 0.5


@pytest.mark.parametrize("code", [1, 2, 5])
def test_turned_gridless_page_orientation_found(clean, code):
    image = layout.apply_orientation(clean.image, code)
    truth = orient_points(clean.grid_nodes, code, clean.image.shape[1], clean.image.shape[0])
    r = rectify_gridless(image)
    assert r.orientation == code
    err = node_errors_mm(r.nodes, truth, image.shape[1], image.shape[0])
    assert err.mean() < 0.8, err.mean()


def test_blank_page_rejected_with_reason():
    blank = np.full((850, 1100, 3), 250, np.uint8)
    r = rectify_gridless(blank)
    assert r.rejected and r.reason
    noise = np.random.default_rng(0).integers(0, 256, (850, 1100, 3)).astype(np.uint8)
    r = rectify_gridless(noise)
    assert r.confidence < 0.1 and r.reason


def test_classical_path_no_longer_rejects_gridless_page(clean):
    r = rectify_to_canonical(clean.image, method="classical")
    assert not r.rejected
    assert r.method == "gridless" and r.orientation == 0
    err = node_errors_mm(r.nodes, clean.grid_nodes, clean.image.shape[1], clean.image.shape[0])
    assert err.mean() < 0.6


def _on_table(image: np.ndarray, nodes: np.ndarray, pad: int = 120):
    """The page laid on a brownish table (so that a background shows around it), and its nodes."""
    h, w = image.shape[:2]
    canvas = np.empty((h + 2 * pad, w + 2 * pad, 3), np.uint8)
    canvas[:] = (120, 90, 60)
    canvas[pad:pad + h, pad:pad + w] = image
    return canvas, nodes + pad


def test_lens_distorted_photo_read_through_lens_term(clean):
    """A strong barrel distortion (k1 = -0.06 about the image centre, as phone lenses do) bends the
    rows; the lens term straightens them (a homography alone is millimetres off at the corners)."""
    from ecgdigit.synth.degrade.warp import RadialLens

    image, nodes = _on_table(clean.image, clean.grid_nodes)
    h, w = image.shape[:2]
    lens = RadialLens(center=((w - 1) / 2, (h - 1) / 2), norm=float(np.hypot(w, h)) / 2, k1=-0.06, k2=0.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    src = lens.backward(np.stack([xx.ravel(), yy.ravel()], 1))  # recorded pixel -> ideal pixel
    warped = cv2.remap(image, src[:, 0].reshape(h, w).astype(np.float32), src[:, 1].reshape(h, w).astype(np.float32),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    truth = lens.forward(nodes.reshape(-1, 2)).reshape(nodes.shape)
    r = rectify_gridless(warped)
    assert r.orientation == 0 and r.confidence > 0.1, r.reason
    err = node_errors_mm(r.nodes, truth, w, h)
    assert err.mean() < 0.8, err.mean()  # 1.04 mm without the lens term


def test_pen_strokes_past_two_row_ends_are_dropped(clean):
    """Pen strokes carrying on from two rows' 10 s ends (a scribble, a stain's edge) extend those
    rows' ink runs; the two ends are dropped as off the page's similarity map instead of
    stretching time (kept, they cost 0.3 mm and nearly all the confidence)."""
    image = clean.image.copy()
    h, w = image.shape[:2]
    px_per_mm = w / layout.LETTER.width_mm
    x_end = layout.seconds_to_mm(layout.RECORD_SECONDS) * px_per_mm
    for row in (1, 2):
        y = layout.STANDARD_3X4.baselines_y_mm[row] * px_per_mm
        cv2.line(image, (int(x_end + 0.5 * px_per_mm), int(y + 0.5 * px_per_mm)),
                 (int(x_end + 12 * px_per_mm), int(y - px_per_mm)), (30, 30, 30), 2, cv2.LINE_AA)
    r = rectify_gridless(image)
    assert r.orientation == 0
    err = node_errors_mm(r.nodes, clean.grid_nodes, w, h)
    assert err.mean() < 0.15, err.mean()
    assert r.confidence > 0.3, r.reason


def test_gridless_reading_of_another_printed_layout_is_refused_with_its_reason():
    """A photo of a 12x1 page (seed 5100, its grid not found) was read by the gridless path as
    3x4+II at confidence 0.88: every lead from the wrong row. Its trace rows where the layout has
    none now hold it under the usable confidence, and the refusal names them."""
    from ecgdigit.rectify.api import FOREIGN_LAYOUT_REASON, USABLE_CONFIDENCE

    smp = make_sample(5100, 0, "0005", layout=layout.LAYOUTS["12x1"])
    r = rectify_to_canonical(smp.image)
    assert r.method == "gridless" and r.confidence < USABLE_CONFIDENCE, (r.method, r.confidence, r.reason)
    assert FOREIGN_LAYOUT_REASON in r.reason, r.reason


def test_wandering_rows_are_found_by_their_coverage():
    """A gridless scan (bench seed 10001, 0003 #10) whose rows wander by millimetres: the ink
    profile splits the rhythm row and peaks on a text line, and the rows were read one row too low
    (35.6 mm off at confidence 0.75). The coverage profile (ink running across the page) finds the
    four rows."""
    smp = make_sample(10001, 10, "0003")
    assert smp.page.style.grid == "none" and smp.orientation == 0
    r = rectify_gridless(smp.image)
    err = node_errors_mm(r.nodes, smp.grid_nodes, smp.image.shape[1], smp.image.shape[0])
    assert r.orientation == 0 and err.mean() < 0.6 and r.confidence >= 0.5, (err.mean(), r.confidence, r.reason)


def test_tinted_sheet_is_read_whole():
    """A photo of a yellowed gridless sheet, turned (bench seed 10003, 0009 #9): the bright,
    colourless region was a ragged third of the page (the tint counts as colour), the ink outside
    it was dropped and no row could be followed, so the page was refused. The plainly bright
    region, which covers more, is the page now."""
    smp = make_sample(10003, 9, "0009")
    assert smp.page.style.grid == "none" and smp.orientation == 1
    work = cv2.resize(smp.image, (1050, 1400), interpolation=cv2.INTER_AREA)
    assert mask_solidity(_colourless_page_mask(work)) < PAGE_MASK_SOLIDITY  # what broke the reading
    mask = _page_mask(work)
    assert mask.mean() > 0.5 and mask_solidity(mask) >= PAGE_MASK_SOLIDITY
    r = rectify_gridless(smp.image)
    err = node_errors_mm(r.nodes, smp.grid_nodes, smp.image.shape[1], smp.image.shape[0])
    assert r.orientation == 1 and err.mean() < 1.0 and r.confidence >= 0.5, (err.mean(), r.confidence, r.reason)
