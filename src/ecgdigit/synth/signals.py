"""Synthetic 12-lead ECG signals from a beat-by-beat cardiac dipole model.

Each beat is a handful of waves (P, septal Q, R, S, optional late QRS component, T, U); every wave
is an asymmetric Gaussian in time carrying a 3-D dipole direction (a vectorcardiogram). The dipole
is projected to leads I, II and V1..V6 with the Dower inverse transform (published coefficients),
per-lead noise, baseline wander and mains hum are added to those eight independent leads, and the
other four limb leads are derived from I and II. Einthoven (II = I + III) and Goldberger
(aVR + aVL + aVF = 0) therefore hold exactly, as they do in real recordings.

Variety that matters for digitisation is sampled per record (`sample_params`): heart rate 40-180,
sinus arrhythmia, atrial fibrillation, premature ventricular beats, wide and tall QRS (up to about
+-5 mV), inverted and flat T waves, baseline wander, noise and 50/60 Hz hum.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Dict, Tuple, Union

import numpy as np

from ecgdigit.layout import LEADS

# Dower inverse transform, Frank X (right->left), Y (head->feet), Z (front->back) -> I, II, V1..V6.
_DOWER = np.array([
    [0.632, -0.235, 0.059],   # I
    [0.235, 1.066, -0.132],   # II
    [-0.515, 0.157, -0.917],  # V1
    [0.044, 0.164, -1.387],   # V2
    [0.882, 0.098, -1.277],   # V3
    [1.213, 0.127, -0.601],   # V4
    [1.125, 0.127, -0.086],   # V5
    [0.831, 0.076, 0.230],    # V6
])
_N_INDEPENDENT = _DOWER.shape[0]
RHYTHMS = ("sinus", "af", "sinus_pvc")
T_MODES = ("normal", "inverted", "flat", "biphasic")


@dataclass(frozen=True)
class SignalParams:
    """Everything that shapes one simulated record; `sample_params` draws it, keywords override it."""

    heart_rate: float = 70.0  # beats per minute (mean)
    rhythm: str = "sinus"  # one of RHYTHMS
    rr_jitter: float = 0.02  # relative beat-to-beat RR spread (AF uses much more)
    pvc_rate: float = 0.0  # probability that a beat is a premature ventricular complex
    frontal_axis_deg: float = 60.0  # mean QRS axis in the frontal plane
    qrs_amplitude: float = 1.4  # dipole magnitude of the main R wave (mV-ish)
    qrs_width: float = 1.0  # multiplier of the QRS wave widths (>= 1.5: bundle-branch-block-like)
    pr_interval: float = 0.16  # s, P peak to R peak
    qtc: float = 0.41  # s, Bazett-corrected QT
    p_amplitude: float = 0.15
    t_amplitude: float = 0.35
    t_mode: str = "normal"  # one of T_MODES
    u_amplitude: float = 0.0
    precordial_gain_spread: float = 0.15  # per-lead random gain of V1..V6 (electrode placement)
    wander_mv: float = 0.1  # baseline wander amplitude
    noise_mv: float = 0.01  # white noise standard deviation
    hum_mv: float = 0.0  # mains hum amplitude
    hum_hz: float = 50.0
    max_abs_mv: float = 5.0  # records are scaled down so no lead exceeds this

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def sample_params(rng: np.random.Generator, **overrides) -> SignalParams:
    """Draw the parameters of one record; keyword arguments fix any field of SignalParams."""
    rhythm = RHYTHMS[rng.choice(3, p=[0.7, 0.15, 0.15])]
    hr = float(np.clip(rng.lognormal(np.log(75), 0.3), 40, 180))
    if rng.random() < 0.08:  # some extreme rates, both ends
        hr = float(rng.uniform(40, 55) if rng.random() < 0.5 else rng.uniform(130, 180))
    wide = rng.random() < 0.18
    tall = rng.random() < 0.15
    t_mode = T_MODES[rng.choice(4, p=[0.65, 0.17, 0.12, 0.06])]
    axis = float(rng.normal(50, 30)) if rng.random() < 0.85 else float(rng.uniform(-120, 200))
    params = SignalParams(
        heart_rate=hr,
        rhythm=rhythm,
        rr_jitter=float(rng.uniform(0.15, 0.3)) if rhythm == "af" else float(rng.uniform(0.0, 0.05)),
        pvc_rate=float(rng.uniform(0.08, 0.3)) if rhythm == "sinus_pvc" else 0.0,
        frontal_axis_deg=axis,
        qrs_amplitude=float(rng.uniform(2.5, 4.5) if tall else rng.uniform(0.6, 2.0)),
        qrs_width=float(rng.uniform(1.5, 2.6) if wide else rng.uniform(0.8, 1.2)),
        pr_interval=float(rng.uniform(0.11, 0.24)),
        qtc=float(rng.uniform(0.36, 0.48)),
        p_amplitude=float(rng.uniform(0.05, 0.25)),
        t_amplitude=float(rng.uniform(0.1, 0.7)),
        t_mode=t_mode,
        u_amplitude=float(rng.uniform(0.0, 0.08)) if rng.random() < 0.3 else 0.0,
        precordial_gain_spread=float(rng.uniform(0.05, 0.3)),
        wander_mv=float(rng.exponential(0.12)),
        noise_mv=float(np.clip(rng.lognormal(np.log(0.004), 0.5), 0.0, 0.015)),
        hum_mv=float(rng.uniform(0.0, 0.02)) if rng.random() < 0.15 else 0.0,
        hum_hz=50.0 if rng.random() < 0.5 else 60.0,
    )
    unknown = set(overrides) - set(params.as_dict())
    if unknown:
        raise TypeError(f"unknown signal option(s): {sorted(unknown)}")
    return replace(params, **overrides)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-9)


def _beat_times(p: SignalParams, rng: np.random.Generator, t0: float, t1: float):
    """R-peak times covering [t0, t1] and a flag per beat: True for a premature ventricular beat."""
    rr_mean = 60.0 / p.heart_rate
    resp_hz = rng.uniform(0.15, 0.35)
    resp_phase = rng.uniform(0, 2 * np.pi)
    resp_depth = rng.uniform(0.0, 0.05) if p.rhythm != "af" else 0.0
    times, pvc = [], []
    t = t0 + rng.uniform(0, rr_mean)  # nominal time of the next sinus beat
    while t < t1:
        is_pvc = p.rhythm == "sinus_pvc" and len(pvc) > 0 and not pvc[-1] and rng.random() < p.pvc_rate
        # a premature beat comes 25-45 % of an RR early; the next sinus beat keeps its nominal
        # time, which gives the compensatory pause
        times.append(t - rr_mean * rng.uniform(0.25, 0.45) if is_pvc else t)
        pvc.append(is_pvc)
        if p.rhythm == "af":
            rr = rr_mean * float(np.clip(rng.normal(1.0, p.rr_jitter), 0.45, 1.9))
        else:
            rr = rr_mean * (1 + resp_depth * np.sin(2 * np.pi * resp_hz * t + resp_phase)
                            + rng.normal(0, p.rr_jitter))
        t = t + max(rr, 0.25)
    return np.asarray(times), np.asarray(pvc, dtype=bool)


def _waves(p: SignalParams, rng: np.random.Generator, duration_s: float):
    """All waves of the record: centres (K,), left and right sigmas (K,), dipole vectors (K, 3)."""
    th = np.deg2rad(p.frontal_axis_deg)
    # Frank frame: frontal axis angle measured from +X (left) towards +Y (feet)
    r_dir = _unit(np.array([np.cos(th), np.sin(th), rng.uniform(0.1, 0.6)]) + rng.normal(0, 0.1, 3))
    q_dir = _unit(np.array([-0.5, rng.uniform(-0.2, 0.3), -0.9]) + rng.normal(0, 0.2, 3))
    s_dir = _unit(np.array([-0.35, -0.25, 0.9]) + rng.normal(0, 0.25, 3))
    late_dir = _unit(rng.normal(0, 1, 3) + np.array([-0.3, 0.0, -0.6]) * (rng.random() < 0.5))
    t_dir = _unit(r_dir * np.array([1, 1, -0.5]) + np.array([0.2, 0.1, -0.3]) + rng.normal(0, 0.2, 3))
    p_dir = _unit(np.array([0.6, 0.8, rng.uniform(-0.3, 0.3)]) + rng.normal(0, 0.1, 3))
    t_sign = {"normal": 1.0, "inverted": -1.0, "flat": 0.12, "biphasic": 1.0}[p.t_mode]
    w = p.qrs_width
    has_p = p.rhythm != "af"

    beats, pvc = _beat_times(p, rng, -1.5, duration_s + 1.0)
    rows = []  # (centre, sigma_left, sigma_right, vx, vy, vz)

    def add(c, sl, sr, vec):
        rows.append((c, sl, sr, vec[0], vec[1], vec[2]))

    prev = beats[0] - 60.0 / p.heart_rate
    for tr, is_pvc in zip(beats, pvc):
        rr = float(np.clip(tr - prev, 0.25, 2.0))
        prev = tr
        amp_jit = rng.normal(1.0, 0.03)
        if is_pvc:
            v_dir = _unit(rng.normal(0, 1, 3))
            a = p.qrs_amplitude * rng.uniform(1.1, 1.8)
            add(tr, 0.028, 0.034, v_dir * a)
            add(tr + 0.06, 0.03, 0.03, -_unit(v_dir + rng.normal(0, 0.4, 3)) * a * 0.35)
            qt = p.qtc * np.sqrt(rr) + 0.06
            add(tr + qt - 0.09, 0.07, 0.05, -v_dir * p.t_amplitude * 1.4)
            continue
        if has_p:
            add(tr - p.pr_interval, 0.022, 0.026, p_dir * p.p_amplitude * amp_jit)
        add(tr - 0.022 * w, 0.008 * w, 0.008 * w, q_dir * 0.25 * p.qrs_amplitude * amp_jit)
        add(tr, 0.010 * w, 0.011 * w, r_dir * p.qrs_amplitude * amp_jit)
        add(tr + 0.026 * w, 0.009 * w, 0.011 * w, s_dir * 0.4 * p.qrs_amplitude * amp_jit)
        if w >= 1.4:  # delayed conduction: a late, slow QRS component
            add(tr + 0.05 * w, 0.014 * w, 0.016 * w, late_dir * 0.5 * p.qrs_amplitude)
        qt = p.qtc * np.sqrt(rr) + 0.02 * (w - 1)
        t_peak = tr + qt - 0.11
        t_amp = p.t_amplitude * t_sign * amp_jit
        if p.t_mode == "biphasic":
            add(t_peak - 0.06, 0.04, 0.035, t_dir * t_amp * 0.6)
            add(t_peak + 0.03, 0.035, 0.04, -t_dir * t_amp * 0.6)
        else:
            add(t_peak, 0.055 * rr ** 0.35, 0.04 * rr ** 0.35, t_dir * t_amp)
        if p.u_amplitude > 0:
            add(t_peak + 0.16, 0.03, 0.03, t_dir * p.u_amplitude)
    return np.asarray(rows, dtype=np.float64)


def _render_waves(waves: np.ndarray, t: np.ndarray, fs: float) -> np.ndarray:
    """Sum the asymmetric Gaussian waves over the sample times `t` -> dipole (N, 3)."""
    vcg = np.zeros((t.size, 3))
    centre, sl, sr = waves[:, 0], waves[:, 1], waves[:, 2]
    half = int(np.ceil(4.5 * max(sl.max(), sr.max()) * fs)) + 1
    offs = np.arange(-half, half + 1)
    idx = np.round(centre * fs).astype(np.int64)[:, None] + offs[None, :]  # (K, W)
    valid = (idx >= 0) & (idx < t.size)
    idxc = np.clip(idx, 0, t.size - 1)
    dt = t[idxc] - centre[:, None]
    sig = np.where(dt < 0, sl[:, None], sr[:, None])
    g = np.exp(-0.5 * (dt / sig) ** 2) * valid
    for k in range(3):
        np.add.at(vcg[:, k], idxc.ravel(), (g * waves[:, 3 + k, None]).ravel())
    return vcg


def _af_waves(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Fibrillatory baseline (4-8 Hz, drifting) as a small atrial dipole, (N, 3)."""
    out = np.zeros((t.size, 3))
    for _ in range(3):
        f = rng.uniform(4, 8)
        phase = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.02, t.size))
        out += np.sin(2 * np.pi * f * t + phase)[:, None] * rng.normal(0, 0.03, 3)[None, :]
    return out


def _baseline_wander(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """Slow drifts of the eight independent leads (respiration, electrode motion), (N, 8)."""
    out = np.zeros((t.size, _N_INDEPENDENT))
    if amplitude <= 0:
        return out
    for _ in range(3):
        f = rng.uniform(0.05, 0.5)
        a = rng.normal(0, amplitude, _N_INDEPENDENT)
        out += np.sin(2 * np.pi * f * t[:, None] + rng.uniform(0, 2 * np.pi, _N_INDEPENDENT)) * a
    return out


def simulate_record(fs: float, rng: Union[np.random.Generator, int], duration_s: float = 10.0,
                    **options) -> np.ndarray:
    """Simulate one 12-lead record: array (round(duration_s * fs), 12) in mV, columns in LEADS order.

    `options` fix fields of `SignalParams` (e.g. heart_rate=150, rhythm="af", t_mode="inverted");
    the rest are drawn from `rng`. The same generator state gives the same record.
    """
    return simulate_record_with_params(fs, rng, duration_s, **options)[0]


def simulate_record_with_params(fs: float, rng: Union[np.random.Generator, int], duration_s: float = 10.0,
                                **options) -> Tuple[np.ndarray, SignalParams]:
    """`simulate_record` and the SignalParams it used (e.g. to print a matching header)."""
    if fs <= 0 or duration_s <= 0:
        raise ValueError(f"fs and duration_s must be positive, got fs={fs}, duration_s={duration_s}")
    rng = np.random.default_rng(rng)
    p = sample_params(rng, **options)
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    vcg = _render_waves(_waves(p, rng, duration_s), t, fs)
    if p.rhythm == "af":
        vcg += _af_waves(rng, t)
    ind = vcg @ _DOWER.T  # (N, 8): I, II, V1..V6
    ind[:, 2:] *= 1 + rng.normal(0, p.precordial_gain_spread, 6)
    peak = np.abs(ind - np.median(ind, axis=0)).max()
    limb_peak = max(peak, 1e-9)
    if limb_peak > p.max_abs_mv * 0.92:  # keep room for wander and noise
        ind *= p.max_abs_mv * 0.92 / limb_peak
    ind += _baseline_wander(rng, t, p.wander_mv)
    ind += rng.normal(0, p.noise_mv, ind.shape)
    if p.hum_mv > 0:
        ind += p.hum_mv * np.sin(2 * np.pi * p.hum_hz * t[:, None] + rng.uniform(0, 2 * np.pi, _N_INDEPENDENT))
    lead_i, lead_ii = ind[:, 0], ind[:, 1]
    out = np.empty((n, len(LEADS)))
    out[:, 0] = lead_i
    out[:, 1] = lead_ii
    out[:, 2] = lead_ii - lead_i  # III (Einthoven)
    out[:, 3] = -(lead_i + lead_ii) / 2  # aVR
    out[:, 4] = lead_i - lead_ii / 2  # aVL
    out[:, 5] = lead_ii - lead_i / 2  # aVF
    out[:, 6:] = ind[:, 2:]
    return out, p
