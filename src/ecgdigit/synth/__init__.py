"""Synthetic ECG image engine: signals -> canonical traces -> paper page -> degraded image, with labels.

Modules: `signals` (12-lead records), `traces` (canonical polylines and band masks), `render`
(the paper page), `degrade` (the image types), `sample` (one image with labels in image pixels and
its canonical view), `labels` (label files), `writer` (competition folder layout, `ecgdigit synth`),
`dataset` (on-the-fly samples for DataLoader workers).

The main entry points are importable from here; all but the signal simulator load lazily.
"""
from ecgdigit.synth.signals import SignalParams, sample_params, simulate_record  # noqa: F401

_LAZY = {
    "render_page": "ecgdigit.synth.render",
    "PageStyle": "ecgdigit.synth.render",
    "render_band_masks": "ecgdigit.synth.traces",
    "canonical_trace_paths": "ecgdigit.synth.traces",
    "make_sample": "ecgdigit.synth.sample",
    "canonical_view": "ecgdigit.synth.sample",
    "generate_dataset": "ecgdigit.synth.writer",
    "SyntheticECGDataset": "ecgdigit.synth.dataset",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ecgdigit.synth' has no attribute {name!r}")
