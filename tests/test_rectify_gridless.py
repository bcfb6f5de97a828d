"""The gridless (layout-based) rectifier on pages our engine prints without a grid."""
from dataclasses import replace

import numpy as np
import pytest

from ecgdigit import layout
from ecgdigit.rectify import rectify_to_canonical
from ecgdigit.rectify.gridless import rectify_gridless
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
