"""The competition metric: published examples, error messages, agreement with a plain reference."""
import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.signal

from ecgdigit.errors import SubmissionError
from ecgdigit.layout import LEADS
from ecgdigit.metric import PERFECT_SCORE_EARLY, score, score_breakdown

# The metric's published example (fs = 1, image 343; SPEC §2).
EXAMPLE_LEADS = ["I"] * 3 + ["III"] * 3 + ["aVR"] * 3 + ["aVL"] * 3 + ["aVF"] * 3 + ["V1"] * 3 + ["V2"] * 3 \
    + ["V3"] * 3 + ["V4"] * 3 + ["V5"] * 3 + ["V6"] * 3 + ["II"] * 12
EXAMPLE_ROWS = [0, 1, 2] * 11 + list(range(12))
EXAMPLE_VALUES = [0.1, 0.3, 0.4, 0.6, 0.6, 0.4, 0.2, 0.3, 0.4, 0.5, 0.2, 0.7, 0.2, 0.3, 0.4, 0.8, 0.6, 0.7, 0.2, 0.3,
                  -0.1, 0.5, 0.6, 0.7, 0.2, 0.9, 0.4, 0.5, 0.6, 0.7, 0.1, 0.3, 0.4, 0.6, 0.6, 0.4, 0.2, 0.3, 0.4, 0.5,
                  0.2, 0.7, 0.2, 0.3, 0.4]


def example_solution():
    ids = [f"343_{r}_{lead}" for r, lead in zip(EXAMPLE_ROWS, EXAMPLE_LEADS)]
    return pd.DataFrame({"id": ids, "fs": 1, "value": EXAMPLE_VALUES})


def test_published_examples():
    solution = example_solution()
    submission = solution[["id", "value"]].copy()
    assert round(score(solution, submission, "id", perfect_score=PERFECT_SCORE_EARLY), 4) == 25.8433
    submission.loc[0, "value"] = 0.9
    assert round(score(solution, submission, "id", perfect_score=PERFECT_SCORE_EARLY), 4) == 13.6291
    submission.loc[4, "value"] = 0.3
    assert round(score(solution, submission, "id", perfect_score=PERFECT_SCORE_EARLY), 4) == 13.0576


def test_zero_signal_gives_floor():
    solution = example_solution().assign(value=0.0)
    submission = example_solution()[["id", "value"]]
    assert score(solution, submission, perfect_score=PERFECT_SCORE_EARLY) == -PERFECT_SCORE_EARLY


def test_errors_name_the_problem():
    solution = example_solution()
    sub = solution[["id", "value"]].copy()
    nan = sub.copy()
    nan.loc[5, "value"] = np.nan
    with pytest.raises(SubmissionError, match=r"NaN.*343_2_III"):
        score(solution, nan)
    inf = sub.copy()
    inf.loc[0, "value"] = np.inf
    with pytest.raises(SubmissionError, match="infinite"):
        score(solution, inf)
    with pytest.raises(SubmissionError, match=r"missing 1 .*343_1_I'"):
        score(solution, sub.drop(index=1))
    short_ii = solution[~solution["id"].isin(["343_9_II", "343_10_II", "343_11_II"])]
    with pytest.raises(SubmissionError, match=r"lead II has 9 rows, expected fs\*10 = 10"):
        score(short_ii, sub)
    mixed = solution.copy()
    mixed.loc[3, "fs"] = 2
    with pytest.raises(SubmissionError, match="sampling frequency varies"):
        score(mixed, sub)


def reference_image_snr(true: dict, pred: dict, fs: float, cap: float) -> float:
    """A direct, unvectorised reading of SPEC §2 for cross-checking."""
    sig = noi = 0.0
    for lead in LEADS:
        lab, p = np.asarray(true[lead], float), np.asarray(pred[lead], float)
        corr = scipy.signal.correlate(lab - lab.mean(), p - p.mean(), mode="full", method="direct")
        lags = scipy.signal.correlation_lags(len(lab), len(p), mode="full")
        ok = np.abs(lags) <= int(0.2 * fs)
        best = corr[ok].max()
        cands = np.flatnonzero(ok & np.isclose(corr, best, rtol=1e-12, atol=1e-12))
        lag = lags[min(cands, key=lambda i: abs(lags[i]))]
        aligned = np.full(len(lab), np.nan)
        for n in range(len(lab)):
            if 0 <= n - lag < len(p):
                aligned[n] = p[n - lag]
        v = scipy.optimize.minimize_scalar(lambda s: np.nansum((lab - (aligned - s)) ** 2), method="brent").x
        aligned = np.nan_to_num(aligned - v, nan=0.0)
        sig += np.sum(lab ** 2)
        noi += np.sum((lab - aligned) ** 2)
    return cap if noi == 0 else (0.0 if sig == 0 else min(sig / noi, cap))


def random_case(rng, image_id, fs):
    t = np.arange(int(10 * fs)) / fs
    true, pred = {}, {}
    for k, lead in enumerate(LEADS):
        n = int(10 * fs) if lead == "II" else int(2.5 * fs)
        x = np.sin(2 * np.pi * (1.1 + 0.1 * k) * t[:n]) + 0.3 * rng.standard_normal(n)
        shift = int(rng.integers(-int(0.3 * fs), int(0.3 * fs) + 1))
        true[lead] = x
        pred[lead] = np.roll(x, shift) * rng.uniform(0.8, 1.2) + rng.normal(0, 0.2) + 0.1 * rng.standard_normal(n)
    return true, pred


def test_vectorised_matches_reference():
    rng = np.random.default_rng(0)
    from ecgdigit.io import solution_rows
    sols, subs, refs = [], [], []
    for k, fs in enumerate([50, 64, 100, 50]):
        true, pred = random_case(rng, str(k), fs)
        sols.append(solution_rows(true, f"img{k}", fs))
        subs.append(solution_rows(pred, f"img{k}", fs)[["id", "value"]])
        refs.append(reference_image_snr(true, pred, fs, 1e6))
    report = score_breakdown(pd.concat(sols), pd.concat(subs), perfect_score=1e6)
    got = report.per_image.set_index("image_id")["snr"]
    np.testing.assert_allclose(got.loc[[f"img{k}" for k in range(4)]].to_numpy(), refs, rtol=1e-6)
    assert report.score == pytest.approx(10 * np.log10(np.mean(refs)), abs=1e-6)
    assert list(report.lead_table.index) == list(LEADS)
    assert len(report.per_lead) == 4 * 12


def test_missing_lead_and_duplicates_are_named():
    solution = example_solution()
    sub = solution[["id", "value"]]
    with pytest.raises(SubmissionError, match="no rows for lead V6"):
        score(solution[~solution["id"].str.endswith("_V6")], sub)
    with pytest.raises(SubmissionError, match=r"duplicated id.*343_0_I'"):
        score(solution, pd.concat([sub, sub.iloc[:1]]))
    with pytest.raises(SubmissionError, match="unknown lead"):
        score(solution, pd.concat([sub, pd.DataFrame({"id": ["343_0_V7"], "value": [0.0]})]))
