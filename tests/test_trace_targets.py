"""Training targets agree with the masks and with the signal they come from."""
import numpy as np

from ecgdigit.layout import mv_to_canonical_y, seconds_to_canonical_x
from ecgdigit.synth.signals import simulate_record
from ecgdigit.synth.traces import read_masks
from ecgdigit.trace.targets import band_masks, column_centres, crop_targets, gaussian_column_targets


def test_column_centres_match_mask_readback_and_signal():
    fs = 500
    sig = simulate_record(fs, np.random.default_rng(5))
    masks = band_masks(sig, fs)
    assert masks.dtype == np.uint8 and masks.shape == (4, 1700, 4400)
    y, valid = column_centres(sig, fs)
    assert y.shape == (4, 4400) and valid.shape == (4, 4400)
    # Rhythm strip covers ~0..10 s; row bands have 4 segments with 1-sample gaps between them.
    assert 3900 <= valid[3].sum() <= 3925
    # Where the trace is flat-ish, the mask's centroid agrees with the column centre.
    read = read_masks(masks)
    flat = valid & np.isfinite(read) & (np.abs(np.gradient(y, axis=1)) < 0.3)
    assert np.median(np.abs(read[flat] - y[flat])) < 0.15
    # Spot check against the signal itself: lead II (rhythm) at t = 5 s.
    col = int(round(float(seconds_to_canonical_x(5.0))))
    assert abs(y[3, col] - mv_to_canonical_y(sig[2500, 1], 3)) < 1.0


def test_gaussian_targets_normalised_and_centred():
    y = np.array([[10.3, 20.0, 0.0]], dtype=np.float32)
    valid = np.array([[True, True, False]])
    g = gaussian_column_targets(y, valid, height=40, sigma=1.5)
    assert g.shape == (1, 40, 3)
    np.testing.assert_allclose(g[0].sum(axis=0), [1, 1, 0], atol=1e-6)
    centre = (g[0] * np.arange(40)[:, None]).sum(axis=0)
    np.testing.assert_allclose(centre[:2], [10.3, 20.0], atol=1e-3)


def test_scaled_and_cropped_targets():
    fs = 250
    sig = simulate_record(fs, np.random.default_rng(6))
    masks = band_masks(sig, fs, height=425, width=1100)
    y, valid = column_centres(sig, fs, height=425, width=1100)
    m, yc, vc = crop_targets(masks, y, valid, 424, 1088)
    assert m.shape == (4, 424, 1088) and yc.shape == vc.shape == (4, 1088)
    read = read_masks(m)
    ok = vc & np.isfinite(read) & (np.abs(np.gradient(yc, axis=1)) < 0.3)
    assert ok.sum() > 1000
    assert np.median(np.abs(read[ok] - yc[ok])) < 0.2
