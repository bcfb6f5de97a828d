"""Learned rectifier (stages 0 + 1 as networks), behind the same `Rectification` as the classical one.

Stage 0 (`nets.unet.SegmentationModel` with an 8-way pooled head): the whole image, long side
scaled to the model's `image_size` and padded to a square, gives the orientation code (softmax
over the 8 layout codes) and the 13 lead-label marker maps (spatial softmax per label; peak with a
sub-pixel centroid).
Stage 1 (3 output channels: node heatmap logit, j and i scaled to [-1, 1]): the image, turned upright by the
stage-0 code and scaled into the stage-1 canvas, gives the large-grid nodes: heatmap peaks
(threshold, 3 x 3 local maxima, parabolic sub-pixel step), each named by rounding the index maps
at the peak (then named again by the nearest node of the fitted field, see `fit_peaks`). A RANSAC homography over node index plus a smooth residual field (the classical
rectifier's biharmonic-regularised least squares) fits every node of the page and its margin ring,
filling hidden nodes and extrapolating past the detected ones (never (0, 0)). The lead-label
keypoints of stage 0 sit on known nodes; when most of them agree that the stage-1 indices are off
by a whole number of boxes, the indices are corrected; so are they when the page's ink (traces,
pulses, labels) matches the layout template clearly better at a whole-box shift of the names. The node field goes to original pixels and
`api.build_rectification` makes the dense map and the ONE remap of the original image. Optionally
(`refine=True`, the default) the nodes are measured again on the image itself at the classical
rectifier's working resolution, starting from the fitted field, so that their precision does not
depend on the network's small input.

Weights folder: `stage0.pt` / `stage1.pt` (each with its `.json` config beside it), or the
training-run folders `stage0/best.pt` and `stage1/best.pt`. Loaded models are cached per process.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import cv2
import numpy as np
from scipy import ndimage

from ecgdigit import layout
from ecgdigit.errors import InputError
from ecgdigit.rectify.api import (NODE_MARGIN, N_COLS, N_ROWS, Rectification, as_rgb_uint8, build_rectification,
                                  rejected_rectification, too_small_reason)
from ecgdigit.rectify.classical import (CLIP_PCT, INK_SAMPLES_PER_BOX, WORK_PX_PER_BOX, _apply_h,
                                        _biharmonic_operator, _clip_at_percentile, _features, _layout_template,
                                        _measure, _smooth_field, _trace_end_anchor)
from ecgdigit.train.stage01 import (PAPER_WHITE, STAGE0_SIZE, STAGE1_SIZE,
                                    orient_points, scale_points, stage1_height, target_to_index, unorient_points,
                                    upright_size)

MIN_IMAGE_SIDE = 64
MIN_FIT_NODES = 20  # fewer detected nodes: no fit
GOOD_NODE_COUNT = 1000  # confidence is full from this many fitted nodes on
NODE_THRESHOLD = 0.3  # heatmap probability of a node peak
INDEX_TOLERANCE = 0.35  # |predicted index - nearest integer| beyond this: the node is not named
FIT_ROUNDS = 4
LAYOUT_SHIFT_GAIN = 0.02  # correlation a whole-box row shift must gain over no shift to be applied
LAYOUT_MIN_SCORE = 0.06  # correlation with the layout template below which the page match is weak
SMOOTH_LAMBDA = 0.1  # weight of the biharmonic smoothness of the residual field (per node, px^2)
OUTLIER_FLOOR = 0.05  # nodes further than this many boxes (or 4 robust sigmas) from the fit are dropped
ORIENT_SURE = 0.9  # stage-0 probability from which its orientation is taken as it is
ORIENT_CANDIDATES = 3  # below it, stage 1 runs under this many most probable codes; the layout match decides

WEIGHT_NAMES: Dict[int, Tuple[str, ...]] = {0: ("stage0.pt", "stage0/best.pt"), 1: ("stage1.pt", "stage1/best.pt")}
_MODEL_CACHE: Dict[tuple, object] = {}
_CACHE_LOCK = threading.Lock()


# -------------------------------------------------------------------------------------------------
# Weights
# -------------------------------------------------------------------------------------------------
def stage_checkpoint(weights: Union[str, Path], stage: int) -> Path:
    """The stage-`stage` checkpoint of a weights folder (see the module docstring)."""
    root = Path(weights)
    if not root.is_dir():
        raise InputError(f"{root}: weights folder not found (the learned rectifier needs "
                         f"{' or '.join(WEIGHT_NAMES[stage])} in it)")
    for name in WEIGHT_NAMES[stage]:
        if (root / name).is_file():
            return root / name
    raise InputError(f"{root}: no stage-{stage} weights in this folder (expected "
                     f"{' or '.join(str(root / n) for n in WEIGHT_NAMES[stage])})")


def load_stage_model(weights: Union[str, Path], stage: int, device: Optional[str] = None):
    """The stage model of `weights`, loaded once per process (keyed by file, its mtime and device)."""
    import torch

    from ecgdigit.nets.unet import load_model

    path = stage_checkpoint(weights, stage).resolve()
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    key = (str(path), path.stat().st_mtime_ns, str(dev))
    with _CACHE_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is None:
            model = load_model(path, map_location="cpu").to(dev).eval()
            got = model.config.extra.get("stage")
            if got is not None and int(got) != stage:
                raise InputError(f"{path}: this is a stage-{got} model, expected stage {stage}")
            _MODEL_CACHE[key] = model
    return model


def clear_model_cache() -> None:
    with _CACHE_LOCK:
        _MODEL_CACHE.clear()


def _forward(model, image_u8: np.ndarray):
    import torch

    dev = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image_u8.transpose(2, 0, 1))).float().div_(255.0)[None].to(dev)
    with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
        out = model(x)
    if isinstance(out, tuple):
        return tuple(o.float().cpu().numpy()[0] for o in out)
    return out.float().cpu().numpy()[0]


# -------------------------------------------------------------------------------------------------
# Stage 0
# -------------------------------------------------------------------------------------------------
@dataclass
class Stage0Output:
    orientation: int
    probabilities: np.ndarray  # (8,) softmax over orientation codes
    keypoints: np.ndarray  # (13, 2) image px of the lead-label markers
    keypoint_score: np.ndarray  # (13,) probability mass within 1 output px of each peak


def _square_canvas(rgb: np.ndarray, size: int) -> Tuple[np.ndarray, float, float]:
    h, w = rgb.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), PAPER_WHITE, np.uint8)
    canvas[:nh, :nw] = small
    return canvas, nw / w, nh / h


def keypoints_from_logits(logits: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(K, h, w) marker logits -> ((K, 2) output px (sub-pixel centroid of the 3 x 3 peak), (K,) score)."""
    k, h, w = logits.shape
    flat = logits.reshape(k, -1).astype(np.float64)
    prob = np.exp(flat - flat.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    prob = prob.reshape(k, h, w)
    pts = np.zeros((k, 2))
    score = np.zeros(k)
    for c in range(k):
        y, x = np.unravel_index(int(np.argmax(prob[c])), (h, w))
        y0, y1, x0, x1 = max(0, y - 1), min(h, y + 2), max(0, x - 1), min(w, x + 2)
        win = prob[c, y0:y1, x0:x1]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        m = win.sum()
        score[c] = m
        pts[c] = (float((xx * win).sum() / m), float((yy * win).sum() / m))
    return pts, score


def run_stage0(model, rgb: np.ndarray) -> Stage0Output:
    size = int(model.config.extra.get("image_size", STAGE0_SIZE))
    canvas, sx, sy = _square_canvas(rgb, size)
    logits, orient_logits = _forward(model, canvas)
    p = np.exp(orient_logits - orient_logits.max())
    p /= p.sum()
    r = size / logits.shape[-1]
    pts, score = keypoints_from_logits(logits)
    pts = scale_points(scale_points(pts, r, r), 1.0 / sx, 1.0 / sy)
    return Stage0Output(int(np.argmax(p)), p, pts, score)


# -------------------------------------------------------------------------------------------------
# Stage 1: nodes
# -------------------------------------------------------------------------------------------------
def _parabolic(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    den = a - 2 * b + c
    safe = np.where(den < -1e-9, den, -1.0)
    return np.clip(np.where(den < -1e-9, 0.5 * (a - c) / safe, 0.0), -0.5, 0.5)


def decode_peaks(outputs: np.ndarray, threshold: float = NODE_THRESHOLD):
    """Stage-1 outputs (3, h, w) -> every node-heatmap peak: (xy (n, 2) output px, predicted
    fractional j, i (n,), peak probability (n,)).

    Peaks: 3 x 3 local maxima above `threshold` with a parabolic sub-pixel step; the index maps
    are read as their 3 x 3 mean at the peak."""
    heat = 1.0 / (1.0 + np.exp(-outputs[0].astype(np.float64)))
    peak = (heat >= ndimage.maximum_filter(heat, size=3, mode="constant")) & (heat > threshold)
    ys, xs = np.nonzero(peak)
    if not len(ys):
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0)
    pad = np.pad(heat, 1, mode="edge")
    dx = _parabolic(pad[ys + 1, xs], pad[ys + 1, xs + 1], pad[ys + 1, xs + 2])
    dy = _parabolic(pad[ys, xs + 1], pad[ys + 1, xs + 1], pad[ys + 2, xs + 1])
    jv, iv = target_to_index(np.stack([ndimage.uniform_filter(outputs[c].astype(np.float64), 3)[ys, xs]
                                       for c in (1, 2)]))
    xy = np.stack([xs + dx, ys + dy], 1).astype(np.float64)
    return xy, jv, iv, heat[ys, xs]


def name_peaks(jv: np.ndarray, iv: np.ndarray, score: np.ndarray, tolerance: float = INDEX_TOLERANCE):
    """Indices of the peaks named by rounding their predicted index, and the names (j, i).

    Peaks whose index is ambiguous (further than `tolerance` from an integer) or off the page
    grid are left out; of several peaks with the same name the strongest is kept."""
    jr, ir = np.rint(jv).astype(int), np.rint(iv).astype(int)
    ok = (np.abs(jv - jr) <= tolerance) & (np.abs(iv - ir) <= tolerance) & \
        (jr >= 0) & (jr < N_ROWS) & (ir >= 0) & (ir < N_COLS)
    order = np.argsort(-score[ok], kind="stable")
    sel = np.nonzero(ok)[0][order]
    _, first = np.unique(jr[sel] * N_COLS + ir[sel], return_index=True)
    sel = sel[first]
    return sel, jr[sel], ir[sel]


def decode_nodes(outputs: np.ndarray, threshold: float = NODE_THRESHOLD,
                 tolerance: float = INDEX_TOLERANCE) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stage-1 outputs (3, h, w) -> (j, i, xy (n, 2) output px, peak probability) of the peaks
    named by their predicted index (see `decode_peaks`, `name_peaks`)."""
    xy, jv, iv, score = decode_peaks(outputs, threshold)
    sel, j, i = name_peaks(jv, iv, score, tolerance)
    return j, i, xy[sel], score[sel]


def fit_peaks(xy: np.ndarray, jv: np.ndarray, iv: np.ndarray, score: np.ndarray, rounds: int = 2,
              tolerance: float = INDEX_TOLERANCE) -> Tuple[Optional["NodeFit"], int]:
    """Name the peaks and fit the node field: (fit or None, number of named peaks).

    The peaks whose predicted index is clear seed the fit (when fewer than MIN_FIT_NODES are, all
    peaks named by plain rounding do, and RANSAC sorts them out); then every peak is named again
    by the nearest node of the fitted field (within 0.3 box) and the field refitted, so that peaks
    with an unclear index join in and misnamed ones are corrected by their neighbours."""
    from scipy.spatial import cKDTree

    sel, j, i = name_peaks(jv, iv, score, tolerance)
    if len(sel) < MIN_FIT_NODES:
        sel, j, i = name_peaks(jv, iv, score, 0.5)
    fit = fit_node_field(j, i, xy[sel])
    n_named = len(sel)
    if fit is None:
        return None, n_named
    for _ in range(rounds):
        nodes = fit.nodes.reshape(-1, 2)
        dist, idx = cKDTree(nodes).query(xy)
        ok = dist < 0.3 * fit.box_px
        if ok.sum() < MIN_FIT_NODES:
            break
        cand = np.nonzero(ok)[0][np.argsort(dist[ok], kind="stable")]
        _, first = np.unique(idx[cand], return_index=True)  # the closest peak per node
        cand = cand[first]
        refit = fit_node_field(idx[cand] // N_COLS, idx[cand] % N_COLS, xy[cand])
        if refit is None:
            break
        fit, n_named = refit, len(cand)
    return fit, n_named


@dataclass
class NodeFit:
    field: np.ndarray  # (44 + 2m, 57 + 2m, 2) px of node (j, i) for j = -m.., i = -m..
    found: np.ndarray  # (44, 57) bool: detected and kept by the fit
    homography: np.ndarray  # 3x3: (i, j) -> px
    box_px: float  # median large-box size, px
    residual: float  # median |detected - fitted| of the kept nodes, in boxes

    @property
    def nodes(self) -> np.ndarray:
        m = NODE_MARGIN
        return self.field[m:m + N_ROWS, m:m + N_COLS]


def _box_size(j: np.ndarray, i: np.ndarray, xy: np.ndarray) -> Optional[float]:
    pos = {(a, b): p for a, b, p in zip(j.tolist(), i.tolist(), xy)}
    d = [np.hypot(*(pos[(a, b + 1)] - p)) for (a, b), p in pos.items() if (a, b + 1) in pos]
    d += [np.hypot(*(pos[(a + 1, b)] - p)) for (a, b), p in pos.items() if (a + 1, b) in pos]
    return float(np.median(d)) if len(d) >= 3 else None


def fit_node_field(j: np.ndarray, i: np.ndarray, xy: np.ndarray, margin: int = NODE_MARGIN,
                   lam: float = SMOOTH_LAMBDA, tol_floor: float = OUTLIER_FLOOR) -> Optional[NodeFit]:
    """Every node of the page grid (and its margin ring) from the named detected nodes, or None.

    RANSAC homography over node index, then a smooth residual field (biharmonic-regularised least
    squares on the node grid, shared with the classical rectifier) refitted over a few rounds in
    which every detected node is kept or dropped by its distance to the current field; hidden and
    missing nodes are filled and extrapolated smoothly."""
    if len(j) < MIN_FIT_NODES:
        return None
    box = _box_size(j, i, xy)
    if box is None or box <= 0:
        return None
    src = np.stack([i, j], 1).astype(np.float32)
    H, inl = cv2.findHomography(src, xy.astype(np.float32), cv2.RANSAC, max(0.3 * box, 0.5), maxIters=2000,
                                confidence=0.999)
    if H is None or inl is None or inl.sum() < MIN_FIT_NODES:
        return None
    nm, nk = N_ROWS + 2 * margin, N_COLS + 2 * margin
    KK, MM = np.meshgrid(np.arange(-margin, N_COLS + margin, dtype=np.float64),
                         np.arange(-margin, N_ROWS + margin, dtype=np.float64))
    base = _apply_h(H, KK, MM)
    if not np.isfinite(base).all():
        return None
    meas = base.copy()
    use = np.zeros((nm, nk), bool)
    detected = np.zeros((nm, nk), bool)
    rows, cols = j + margin, i + margin
    meas[rows, cols] = xy
    detected[rows, cols] = True
    use[rows[inl.ravel() > 0], cols[inl.ravel() > 0]] = True
    op = _biharmonic_operator(nm, nk)
    # The homography's inliers seed the smooth field; then every detected node is judged against the
    # smooth field (curl and folds move nodes further from one homography than from it).
    for _ in range(FIT_ROUNDS):
        resid = _smooth_field(meas - base, use.astype(np.float64), lam, op)
        err = np.hypot(*(meas - base - resid).transpose(2, 0, 1))
        tol = max(tol_floor * box, 4.0 * 1.4826 * float(np.median(err[use])))
        use = detected & (err < tol)
        if use.sum() < MIN_FIT_NODES:
            return None
    resid = _smooth_field(meas - base, use.astype(np.float64), lam, op)
    field = base + resid
    err = np.hypot(*(meas - field).transpose(2, 0, 1))
    found = use[margin:margin + N_ROWS, margin:margin + N_COLS].copy()
    return NodeFit(field, found, H, box, float(np.median(err[use])) / box)


def _keypoint_index_shift(fit: NodeFit, keypoints: np.ndarray, score: np.ndarray,
                          min_score: float = 0.3) -> Tuple[Optional[Tuple[int, int]], int, int]:
    """(shift (dj, di) of the stage-1 indices that the lead-label markers vote for, or None; the
    number of usable markers; the number agreeing with that shift)."""
    label_nodes = layout.STANDARD_3X4.label_nodes
    names = [p.lead if p.row < 3 else "II-rhythm" for p in layout.STANDARD_3X4.placements]
    order = [layout.KEYPOINT_NAMES.index(n) for n in names]
    Hinv = np.linalg.inv(fit.homography)
    votes = []
    for (jl, il), k in zip(label_nodes, order):
        if score[k] < min_score or not np.isfinite(keypoints[k]).all():
            continue
        q = Hinv @ np.array([keypoints[k][0], keypoints[k][1], 1.0])
        if abs(q[2]) < 1e-12:
            continue
        ip, jp = q[0] / q[2], q[1] / q[2]
        d = (jp - jl, ip - il)
        if max(abs(d[0] - round(d[0])), abs(d[1] - round(d[1]))) <= 0.35:
            votes.append((int(round(d[0])), int(round(d[1]))))
    if not votes:
        return None, 0, 0
    best = max(set(votes), key=votes.count)
    return best, len(votes), votes.count(best)


def refine_on_image(rgb: np.ndarray, field: np.ndarray, box_px: float,
                    margin: int = NODE_MARGIN) -> Tuple[Optional[NodeFit], int]:
    """Re-measure every page node on the image itself, starting from the fitted `field` (image px).

    The network sees a small copy; here the grid lines around each node are measured at the
    classical rectifier's working resolution (its line-profile measurement, `WORK_PX_PER_BOX` px
    per box, on the grid colour or on darkness, whichever names more nodes), moves larger than
    0.3 box are refused, and the smooth model is fitted again. Returns (fit in image px or None,
    number of nodes measured)."""
    h, w = rgb.shape[:2]
    sw = min(1.0, WORK_PX_PER_BOX / max(box_px, 1e-6))
    work = cv2.resize(rgb, (max(1, round(w * sw)), max(1, round(h * sw))), interpolation=cv2.INTER_AREA) \
        if sw < 1 else rgb
    swx, swy = work.shape[1] / w, work.shape[0] / h
    field_w = scale_points(field, swx, swy)
    box_w = box_px * np.sqrt(swx * swy)
    dark, chroma = _features(work)
    best = None
    for from_chroma, feat in ((True, chroma), (False, dark)):
        f = _clip_at_percentile(feat, CLIP_PCT[from_chroma])
        if f.max() <= 0:
            continue
        f = cv2.GaussianBlur(f, (0, 0), 0.8)
        meas, contrast, ok, prom = _measure(f, field_w)
        if ok.sum() < MIN_FIT_NODES:
            continue
        moved = np.hypot(*(meas - field_w).transpose(2, 0, 1))
        thr = min(4.0, 0.5 * float(np.median(prom[ok])))
        good = ok & (moved < 0.3 * box_w) & (prom > thr) & (contrast > 0.3 * np.percentile(contrast[ok], 75))
        good[:margin] = good[-margin:] = False
        good[:, :margin] = good[:, -margin:] = False
        if best is None or good.sum() > best[1].sum():
            best = (meas, good)
    if best is None:
        return None, 0
    meas, good = best
    jj, ii = np.nonzero(good)
    fit = fit_node_field(jj - margin, ii - margin, meas[good], margin)
    if fit is None:
        return None, int(good.sum())
    fit.field = scale_points(fit.field, 1.0 / swx, 1.0 / swy)
    fit.homography = None  # the homography was over work pixels
    return fit, int(good.sum())


def _ink_raster(rgb: np.ndarray, field: np.ndarray, margin: int = NODE_MARGIN) -> Optional[np.ndarray]:
    """The page's ink (darkness with the grid removed, clipped to 0..1) sampled S times per box over
    the named node grid plus `margin` boxes, cells centred on nodes (the classical template's frame)."""
    S = INK_SAMPLES_PER_BOX
    h, w = rgb.shape[:2]
    box = float(np.median(np.hypot(*np.diff(field, axis=1).reshape(-1, 2).T)))
    s = min(1.0, 2.0 * S / max(box, 1e-6))
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) \
        if s < 1 else rgb
    sx, sy = small.shape[1] / w, small.shape[0] / h
    dark, _ = _features(small)
    dark = cv2.GaussianBlur(dark, (0, 0), max(0.5, box * s / S / 2.5))
    jj = (np.arange(-margin * S, (N_ROWS + margin) * S) + 0.5) / S - 0.5 + margin
    ii = (np.arange(-margin * S, (N_COLS + margin) * S) + 0.5) / S - 0.5 + margin
    J, I = np.meshgrid(jj, ii, indexing="ij")
    coords = [J.ravel(), I.ravel()]
    px = np.stack([ndimage.map_coordinates(field[:, :, c], coords, order=1, mode="nearest") for c in (0, 1)], -1)
    px = scale_points(px, sx, sy).reshape(J.shape + (2,)).astype(np.float32)
    obs = cv2.remap(dark, px[..., 0], px[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    # remove the grid: every box looks the same, so the per-phase median over the boxes is the grid
    # (as the classical rectifier does); then clip, so that a dark background cannot dominate
    nb_j, nb_i = obs.shape[0] // S, obs.shape[1] // S
    cells = obs.reshape(nb_j, S, nb_i, S).transpose(0, 2, 1, 3)
    obs = np.clip(cells - np.median(cells.reshape(-1, S, S), axis=0), 0, None).transpose(0, 2, 1, 3).reshape(obs.shape)
    top = float(np.percentile(obs, 99.5))
    if top <= 1e-6:
        return None
    return np.minimum(obs / top, 1.0)


def layout_index_scores(ink: np.ndarray, margin: int = NODE_MARGIN) -> np.ndarray:
    """Normalised correlation of the ink raster (`_ink_raster`) with the classical rectifier's layout
    template (trace bands on the baselines, calibration pulses, lead labels) for every whole-box
    shift of the node names: scores[dj + m, di + m], (dj, di) = named index - true index.
    The baselines fix dj well; di is weaker (the bands are long), see `layout_index_shift`."""
    S = INK_SAMPLES_PER_BOX
    tmpl = _layout_template(S)
    t0 = tmpl - tmpl.mean()
    th, tw = t0.shape
    scores = np.zeros((2 * margin + 1, 2 * margin + 1))
    for a in range(2 * margin + 1):
        for b in range(2 * margin + 1):
            win = ink[a * S:a * S + th, b * S:b * S + tw]
            win = win - win.mean()
            scores[a, b] = float((t0 * win).sum() / max(np.linalg.norm(t0) * np.linalg.norm(win), 1e-12))
    return scores


def layout_index_shift(rgb: np.ndarray, field: np.ndarray,
                       margin: int = NODE_MARGIN) -> Tuple[Tuple[int, int], float]:
    """(whole-box shift (dj, di) of the node names that the page layout asks for, layout score).

    dj: the template row shift, when it beats no shift by LAYOUT_SHIFT_GAIN; di: where the rows'
    traces end (the 10 s line, the classical rectifier's anchor) when the rows agree, else the
    template's column shift under the same rule."""
    ink = _ink_raster(rgb, field, margin)
    if ink is None:
        return (0, 0), 0.0
    scores = layout_index_scores(ink, margin)
    rows = scores.max(axis=1)
    a = int(np.argmax(rows))
    dj = a - margin if rows[a] - rows[margin] >= LAYOUT_SHIFT_GAIN else 0
    row = scores[dj + margin]
    b = int(np.argmax(row))
    di = b - margin if row[b] - row[margin] >= LAYOUT_SHIFT_GAIN else 0  # the template's answer
    end = _trace_end_anchor(ink, margin + dj)
    if end is not None and abs(end - margin) <= margin:
        di = end - margin  # the trace ends, where the rows agree, are the sharper anchor
    return (dj, di), float(scores[dj + margin, di + margin])


def _shifted_fit(field: np.ndarray, found: np.ndarray, shift: Tuple[int, int]) -> Optional["NodeFit"]:
    """Fit again with the found nodes' names moved by -shift (named index = true index + shift)."""
    m = NODE_MARGIN
    JJ, II = np.meshgrid(np.arange(N_ROWS), np.arange(N_COLS), indexing="ij")
    jd, idd = JJ[found] - shift[0], II[found] - shift[1]
    keep = (jd >= 0) & (jd < N_ROWS) & (idd >= 0) & (idd < N_COLS)
    return fit_node_field(jd[keep], idd[keep], field[m:m + N_ROWS, m:m + N_COLS][found][keep])


# -------------------------------------------------------------------------------------------------
# Entry
# -------------------------------------------------------------------------------------------------
def _reject(rgb, reason, timings, interpolation, orientation: int = 0) -> Rectification:
    return rejected_rectification(rgb, reason, timings, "learned", interpolation, orientation)


def stage1_canvas(rgb: np.ndarray, code: int, size: int):
    """The upright stage-1 canvas of `rgb` (turned by `code`) and the map canvas px -> image px."""
    h, w = rgb.shape[:2]
    uw, uh = upright_size(rgb.shape, code)
    cw, ch = size, stage1_height(size)
    s = min(cw / uw, ch / uh)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    # scale first, in the image's own orientation (the turn of the small copy is exact and cheap)
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    up = layout.undo_orientation(small, code) if code else small
    canvas = np.full((ch, cw, 3), PAPER_WHITE, np.uint8)
    canvas[:up.shape[0], :up.shape[1]] = up[:ch, :cw]
    suw, suh = upright_size(small.shape, code)
    sx, sy = nw / w, nh / h

    def to_image(p: np.ndarray) -> np.ndarray:
        q = orient_points(p, code, suw, suh) if code else np.asarray(p, np.float64)
        return scale_points(q, 1.0 / sx, 1.0 / sy)

    def from_image(p: np.ndarray) -> np.ndarray:
        q = scale_points(p, sx, sy)
        return unorient_points(q, code, suw, suh) if code else q

    return canvas, to_image, from_image


def stage1_fit(model, canvas: np.ndarray, threshold: float = NODE_THRESHOLD) -> Tuple[Optional[NodeFit], int]:
    """Stage-1 model on an upright canvas -> (fit in canvas px or None, number of named peaks)."""
    out = _forward(model, canvas)
    r = canvas.shape[1] / out.shape[-1]
    xy, jv, iv, score = decode_peaks(out, threshold)
    return fit_peaks(scale_points(xy, r, r), jv, iv, score)


def rectify_learned(image: np.ndarray, weights: Union[str, Path, None] = None, *, device: Optional[str] = None,
                    interpolation: int = cv2.INTER_LINEAR, node_threshold: float = NODE_THRESHOLD,
                    refine: bool = True, orientation: Optional[int] = None,
                    layout_check: bool = True) -> Rectification:
    """Rectify `image` with the stage-0 and stage-1 networks of the weights folder `weights`.

    `refine`: re-measure the nodes on the full image (see `refine_on_image`); kept when it measures
    at least 80% as many nodes as the network found, with a smaller fit residual.
    `orientation`: the layout orientation code when it is known (e.g. upright scans); stage 0 then
    only supplies the lead-label markers.
    `layout_check`: find whole-box shifts of the node names from the page's ink (`layout_index_shift`:
    template rows, trace ends) and correct them; a weak layout match lowers the confidence. With it,
    an unsure stage 0 (p < ORIENT_SURE) is checked too: stage 1 runs under its ORIENT_CANDIDATES most
    probable codes and the code whose nodes match the layout template best is kept.
    Missing weights raise InputError naming the path; unusable images come back with confidence 0
    and a reason (like the classical rectifier)."""
    if weights is None:
        raise InputError("rectify: the learned rectifier needs a weights folder (weights=DIR with stage0/ and stage1/)")
    model0 = load_stage_model(weights, 0, device)
    model1 = load_stage_model(weights, 1, device)
    rgb = as_rgb_uint8(image)
    timings: Dict[str, float] = {}
    too_small = too_small_reason(rgb, MIN_IMAGE_SIDE)
    if too_small:
        return _reject(rgb, too_small, timings, interpolation)
    t0 = time.perf_counter()
    s0 = run_stage0(model0, rgb)
    timings["stage0"] = time.perf_counter() - t0
    if orientation is not None:
        if not 0 <= int(orientation) < layout.N_ORIENTATIONS:
            raise InputError(f"rectify: orientation must be a layout code 0..7, got {orientation}")
        p = np.zeros(layout.N_ORIENTATIONS)
        p[int(orientation)] = 1.0
        s0 = Stage0Output(int(orientation), p, s0.keypoints, s0.keypoint_score)
    t0 = time.perf_counter()
    size1 = int(model1.config.extra.get("image_size", STAGE1_SIZE))
    codes = [s0.orientation]
    if orientation is None and layout_check and s0.probabilities[s0.orientation] < ORIENT_SURE:
        # an unsure stage 0: stage 1 under each likely code, and the page layout decides
        codes = [int(c) for c in np.argsort(-s0.probabilities, kind="stable")[:ORIENT_CANDIDATES]]
    tried = []
    for c in codes:
        canvas, to_image, from_image = stage1_canvas(rgb, c, size1)
        fit, n_named = stage1_fit(model1, canvas, node_threshold)
        match = -np.inf
        if fit is not None and len(codes) > 1:
            match = layout_index_shift(rgb, to_image(fit.field))[1]
        tried.append((match, -len(tried), c, canvas, to_image, from_image, fit, n_named))
    with_fit = [t for t in tried if t[6] is not None] or tried
    _, _, code, canvas, to_image, from_image, fit, n_named = max(with_fit, key=lambda t: t[:2])
    timings["stage1"] = time.perf_counter() - t0
    if fit is None:
        return _reject(rgb, f"too few grid nodes named ({n_named} < {MIN_FIT_NODES})", timings, interpolation, code)
    t0 = time.perf_counter()
    reasons = []
    if code != s0.orientation:
        reasons.append(f"orientation {code} chosen by the page layout over stage 0's {s0.orientation} "
                       f"(p = {s0.probabilities[s0.orientation]:.2f})")
    kp_canvas = from_image(s0.keypoints)
    shift, n_votes, n_agree = _keypoint_index_shift(fit, kp_canvas, s0.keypoint_score)
    if shift is not None and shift != (0, 0) and n_agree >= 4 and n_agree >= 0.6 * n_votes:
        refit = _shifted_fit(fit.field, fit.found, shift)
        if refit is not None:
            fit = refit
            reasons.append(f"grid indices corrected by {shift} boxes from the lead labels")
    timings["fit"] = time.perf_counter() - t0
    node_field = to_image(fit.field)
    n_found = int(fit.found.sum())
    residual = fit.residual
    if refine:
        t0 = time.perf_counter()
        box_img = float(np.median(np.hypot(*np.diff(node_field, axis=1).reshape(-1, 2).T)))
        refined, n_measured = refine_on_image(rgb, node_field, box_img)
        # kept when it measures about as many nodes and they sit more consistently on a smooth grid
        if refined is not None and refined.found.sum() >= 0.8 * n_found and refined.residual <= residual:
            node_field, found_mask = refined.field, refined.found
            n_found, residual = int(found_mask.sum()), refined.residual
            fit = NodeFit(fit.field, found_mask, fit.homography, fit.box_px, residual)
        timings["refine"] = time.perf_counter() - t0
    found_mask = fit.found
    layout_score = float("nan")
    if layout_check:
        t0 = time.perf_counter()
        shift, layout_score = layout_index_shift(rgb, node_field)
        if shift != (0, 0) and layout_score >= LAYOUT_MIN_SCORE:  # only a clear layout match renames
            moved = _shifted_fit(node_field, found_mask, shift)
            if moved is not None:
                node_field, found_mask = moved.field, moved.found
                n_found = int(found_mask.sum())
                reasons.append(f"grid indices corrected by {shift} boxes from the page layout")
        timings["layout"] = time.perf_counter() - t0
    p_orient = float(s0.probabilities[code])
    if len(codes) > 1 and np.isfinite(layout_score) and layout_score >= LAYOUT_MIN_SCORE:
        # the layout chose among stage 0's likely codes and matches clearly: stage 0's doubt is settled
        p_orient = max(p_orient, float(np.clip(layout_score / (2 * LAYOUT_MIN_SCORE), 0.0, 1.0)) * ORIENT_SURE)
    conf = min(1.0, n_found / GOOD_NODE_COUNT) * float(np.clip(1.0 - residual / 0.25, 0.0, 1.0)) * p_orient
    if np.isfinite(layout_score):
        conf *= float(np.clip(layout_score / (2 * LAYOUT_MIN_SCORE), 0.0, 1.0))
        if layout_score < LAYOUT_MIN_SCORE:
            reasons.append(f"weak match with the ECG layout (score {layout_score:.3f})")
    if n_found < GOOD_NODE_COUNT:
        reasons.append(f"only {n_found} page grid nodes detected")
    if p_orient < 0.9:
        reasons.append(f"orientation uncertain (p = {p_orient:.2f})")
    if residual > 0.1:
        reasons.append(f"nodes fit the smooth grid model poorly (median {residual:.2f} boxes)")
    if n_votes >= 4 and n_agree < 0.6 * n_votes:
        reasons.append(f"lead labels disagree with the grid indices ({n_agree} of {n_votes} agree)")
    return build_rectification(rgb, node_field, found_mask, code, conf, "; ".join(reasons), timings, "learned",
                               interpolation)


__all__ = ["rectify_learned", "load_stage_model", "stage_checkpoint", "decode_nodes", "decode_peaks", "name_peaks",
           "fit_peaks", "fit_node_field",
           "run_stage0", "stage1_canvas", "stage1_fit", "keypoints_from_logits", "clear_model_cache",
           "refine_on_image", "layout_index_scores", "layout_index_shift"]
