"""Stage 2: from the canonical-frame image to the 12-lead record.

targets (training masks and column targets), model (network inference: predict_band_maps,
TraceModel, digitize_canonical), classical (weight-free band maps), tracking (DP over candidate
runs), extract (band maps -> record), postprocess (lead II fusion, limb-lead constraints),
evaluation (truth records and metric scoring).
"""
