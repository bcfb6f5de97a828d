"""Synthetic ECG image engine: signals -> canonical traces -> paper page -> degraded image, with labels.

Modules: `signals` (12-lead records), `traces` (canonical polylines and 4-band masks), `render`
(the paper page), `degrade` (image types), `labels`/`dataset` (exact labels, on-the-fly samples),
`writer` (competition folder layout).
"""
from ecgdigit.synth.signals import SignalParams, sample_params, simulate_record  # noqa: F401
