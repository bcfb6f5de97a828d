"""Synthetic signals and canonical trace masks: shapes, physiology constraints, label truth."""
import numpy as np
import pandas as pd
import pytest

from ecgdigit.io import build_submission, solution_rows
from ecgdigit.io import test_rows_for_image as rows_for_image
from ecgdigit.layout import (CANONICAL_HEIGHT, CANONICAL_WIDTH, LEAD_INDEX, N_BANDS, STANDARD_3X4, record_length,
                             segment_length)
from ecgdigit.metric import score
from ecgdigit.synth.signals import sample_params, simulate_record
from ecgdigit.synth.traces import canonical_trace_paths, masks_to_record, placement_sample_range, render_band_masks


@pytest.mark.parametrize("fs", [250, 256, 500, 512, 1000, 1025, 333.3])
def test_record_shape_and_limb_lead_identities(fs):
    x = simulate_record(fs, 7)
    assert x.shape == (int(round(10 * fs)), 12)
    assert np.isfinite(x).all()
    i, ii, iii, avr, avl, avf = (x[:, LEAD_INDEX[k]] for k in ("I", "II", "III", "aVR", "aVL", "aVF"))
    np.testing.assert_allclose(ii, i + iii, atol=1e-12)
    np.testing.assert_allclose(avr + avl + avf, 0.0, atol=1e-12)


def test_records_vary_and_reproduce():
    a = simulate_record(500, 3)
    b = simulate_record(500, np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert not np.allclose(a, simulate_record(500, 4))
    peaks = [np.abs(simulate_record(500, s)).max() for s in range(40)]
    assert max(peaks) <= 5.2  # +-5 mV cap plus wander and noise
    assert max(peaks) > 2.5  # some tall complexes
    rates = [sample_params(np.random.default_rng(s)).heart_rate for s in range(200)]
    assert min(rates) < 50 and max(rates) > 130
    rhythms = {sample_params(np.random.default_rng(s)).rhythm for s in range(100)}
    assert rhythms == {"sinus", "af", "sinus_pvc"}


def test_options_override_and_heart_rate_shows_in_signal():
    x = simulate_record(500, 1, heart_rate=120, rhythm="sinus", rr_jitter=0.0, wander_mv=0.0, qrs_amplitude=2.0,
                        frontal_axis_deg=60, t_amplitude=0.1)
    lead = x[:, LEAD_INDEX["II"]]
    # R peaks: local maxima well above the rest
    thr = lead.mean() + 0.6 * (lead.max() - lead.mean())
    peaks = np.flatnonzero((lead[1:-1] > thr) & (lead[1:-1] >= lead[:-2]) & (lead[1:-1] > lead[2:]))
    assert 18 <= len(peaks) <= 22  # 120 bpm over 10 s
    with pytest.raises(TypeError):
        simulate_record(500, 1, not_an_option=3)


def test_masks_read_back_above_30_db_at_500_hz():
    fs = 500
    n = record_length(fs)
    truths, preds = [], []
    for seed in range(2):
        x = simulate_record(fs, seed)
        masks = render_band_masks(x, fs)
        assert masks.shape == (N_BANDS, CANONICAL_HEIGHT, CANONICAL_WIDTH) and masks.dtype == np.uint8
        # every band carries a trace
        assert all(masks[b].max() > 200 for b in range(N_BANDS))
        record_truth = {}
        for pl in STANDARD_3X4.placements:
            s, e = placement_sample_range(pl, fs, n)
            record_truth.setdefault(pl.lead, x[s:e, LEAD_INDEX[pl.lead]])
        record_truth["II"] = x[:, LEAD_INDEX["II"]]
        truths.append(solution_rows(record_truth, f"img{seed}", fs))
        preds.append((f"img{seed}", masks_to_record(masks, fs, n)))
    test_df = pd.concat([rows_for_image(i, fs) for i, _ in preds], ignore_index=True)
    sub = build_submission(test_df, dict(preds))
    db = score(pd.concat(truths, ignore_index=True), sub, row_id_column_name="id", perfect_score=1e6)
    assert db >= 30.0, db


def test_trace_paths_follow_layout():
    fs = 256
    x = simulate_record(fs, 5)
    paths = canonical_trace_paths(x, fs)
    assert [p.placement for p in paths] == list(STANDARD_3X4.placements)
    for p in paths:
        expected = record_length(fs) if p.placement.duration == 10 else segment_length(fs)
        assert p.stop - p.start == expected == len(p.xy)
        assert np.all(np.diff(p.xy[:, 0]) > 0)
