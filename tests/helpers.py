"""Small builders shared by tests (tables made by our own code, never hard-coded results)."""
import numpy as np
import pandas as pd

from ecgdigit import io


def noisy_solution_and_submission(fs_by_image, noise=0.1, seed=0):
    """A solution of smooth random signals and a submission equal to it plus noise and an offset."""
    rng = np.random.default_rng(seed)
    sols, subs = [], []
    for image_id, fs in fs_by_image.items():
        lengths = io.expected_lengths(io.test_rows_for_image(image_id, fs))[image_id]
        true = {lead: np.cumsum(rng.standard_normal(n)) * 0.05 for lead, n in lengths.items()}
        pred = {lead: v + 0.3 + noise * rng.standard_normal(len(v)) for lead, v in true.items()}
        sols.append(io.solution_rows(true, image_id, fs))
        subs.append(io.solution_rows(pred, image_id, fs)[["id", "value"]])
    return pd.concat(sols, ignore_index=True), pd.concat(subs, ignore_index=True)
