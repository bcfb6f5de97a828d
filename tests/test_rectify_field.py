"""The classical rectifier's confidence checks that the grid node field is sound (found over the
page, not extrapolated far), on pages of our synthetic engine."""
import numpy as np
import pytest

from ecgdigit.rectify.api import USABLE_CONFIDENCE
from ecgdigit.rectify.classical import field_soundness, rectify_classical
from ecgdigit.synth.sample import make_sample
from ecgdigit.train.stage01 import node_errors_mm


@pytest.fixture(scope="module")
def clean():
    smp = make_sample(9100, 0, "0001")
    return smp, rectify_classical(smp.image)


def test_clean_page_field_sound_and_confident(clean):
    smp, r = clean
    h, w = smp.image.shape[:2]
    factor, share, far = field_soundness(r.nodes, r.node_found, w, h)
    assert factor == 1.0 and share > 0.6 and far == 0.0
    assert r.confidence >= 0.8, r.reason
    assert "unsound" not in r.reason
    assert node_errors_mm(r.nodes, smp.grid_nodes, w, h).mean() < 0.2


def test_field_found_on_a_strip_only_is_unsound(clean):
    """The same nodes, but only a strip of them counted as found: the rest of the page would be
    extrapolated from it, which the factor refuses; half the page found is still usable."""
    smp, r = clean
    h, w = smp.image.shape[:2]
    strip = r.node_found.copy()
    strip[:, :40] = False  # only the right 17 of 57 columns
    factor, share, far = field_soundness(r.nodes, strip, w, h)
    assert share < 0.36 and far > 0.5 and factor == 0.0
    half = r.node_found.copy()
    half[:, ::2] = False  # every other column: nothing far from a found node
    factor_half, share_half, far_half = field_soundness(r.nodes, half, w, h)
    assert far_half == 0.0 and 0.0 < factor_half <= 1.0
    assert factor_half > factor
    # no node in view at all
    assert field_soundness(r.nodes + 10 * max(w, h), r.node_found, w, h)[0] == 0.0


def test_folded_print_with_broken_field_not_usable():
    """A damaged print (type 0010: folds, tears, missing pieces) whose grid model holds a third of
    the page: the extrapolated rest is millimetres off, so the page must not pass as usable."""
    smp = make_sample(9100, 5, "0010")
    r = rectify_classical(smp.image)
    h, w = smp.image.shape[:2]
    err = node_errors_mm(r.nodes, smp.grid_nodes, w, h).mean()
    assert err < 0.6 or r.confidence < USABLE_CONFIDENCE, (err, r.confidence, r.reason)
    if err > 2.0:  # the field is broken here today (4.2 mm): the reason names it
        assert "node field unsound" in r.reason
