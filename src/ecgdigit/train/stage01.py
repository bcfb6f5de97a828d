"""Stage 0 + stage 1 training data: network inputs and targets from the synthetic engine's exact labels.

Stage 0 (orientation + lead-label markers): the whole image, scaled so that its long side is
`size` and padded with white to a `size` x `size` square, turned into one of the 8 layout
orientations (drawn uniformly: the engine itself turns only a few images). Targets: the
orientation code, and the 13 lead-label keypoints (`layout.KEYPOINT_NAMES`) in output pixels.

Stage 1 (grid nodes): the image brought upright by its true orientation, scaled into a
`size` x `stage1_height(size)` canvas (white padding right/bottom). Targets at the model's
output resolution: a node heatmap (a Gaussian on every large-grid node) and the fractional node
index (j, i) at every pixel of the page (linear over the node triangulation; the decoder reads it
at each heatmap peak and rounds it to name the node), with a mask of where it is defined.

Sources: the on-the-fly generator (`SyntheticECGDataset`, item k deterministic in (seed, k)) or a
folder written by `ecgdigit synth` (train split, with labels/).

Geometry convention everywhere: pixel centres, so scaling by s maps x to (x + 0.5) * s - 0.5.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ecgdigit import layout

STAGE0_SIZE = 512  # stage-0 input: long side (square canvas)
STAGE0_REDUCTION = 4  # stage-0 marker maps at 1/4 of the input
STAGE1_SIZE = 1024  # stage-1 input width (canvas height = 3/4 of it)
STAGE1_REDUCTION = 2  # stage-1 node maps at 1/2 of the input
STAGE1_ASPECT = 0.75
N_KEYPOINTS = len(layout.KEYPOINT_NAMES)
N_ROWS = layout.LETTER.grid_horizontal_lines
N_COLS = layout.LETTER.grid_vertical_lines
# The index maps predict (j, i) centred and scaled to [-1, 1] over the page grid: a ramp the
# decoder's coordinate channels give almost for free (raw indices up to 56 train far slower).
INDEX_CENTRE = np.array([(N_ROWS - 1) / 2.0, (N_COLS - 1) / 2.0])
HEAT_SIGMA = 1.0  # node Gaussian, output px
PAPER_WHITE = 255


def index_to_target(index: np.ndarray) -> np.ndarray:
    """(2, ...) node index (j, i) -> the index-map target in [-1, 1] over the page grid."""
    c = INDEX_CENTRE.reshape((2,) + (1,) * (np.ndim(index) - 1))
    return ((np.asarray(index, dtype=np.float64) - c) / c).astype(np.float32)


def target_to_index(target: np.ndarray) -> np.ndarray:
    """Inverse of `index_to_target`."""
    c = INDEX_CENTRE.reshape((2,) + (1,) * (np.ndim(target) - 1))
    return np.asarray(target, dtype=np.float64) * c + c


def stage1_height(size: int) -> int:
    return int(round(size * STAGE1_ASPECT))


# -------------------------------------------------------------------------------------------------
# Geometry
# -------------------------------------------------------------------------------------------------
def scale_points(pts: np.ndarray, sx: float, sy: float) -> np.ndarray:
    p = np.array(pts, dtype=np.float64)
    p[..., 0] = (p[..., 0] + 0.5) * sx - 0.5
    p[..., 1] = (p[..., 1] + 0.5) * sy - 0.5
    return p


def fit_into_canvas(image: np.ndarray, width: int, height: int) -> Tuple[np.ndarray, float, float]:
    """`image` scaled (aspect kept) to fit `width` x `height`, top-left on white: (canvas, sx, sy)
    where sx, sy are the exact per-axis scales of the resize (canvas px = (x + 0.5) * s - 0.5)."""
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, min(width, int(round(w * s)))), max(1, min(height, int(round(h * s))))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    canvas = np.full((height, width, 3), PAPER_WHITE, np.uint8)
    canvas[:nh, :nw] = small
    return canvas, nw / w, nh / h


def orient_points(pts: np.ndarray, code: int, upright_w: int, upright_h: int) -> np.ndarray:
    """Points of an upright image (upright_w x upright_h) -> after `layout.apply_orientation(code)`."""
    from ecgdigit.synth.degrade.warp import Orientation

    p = np.asarray(pts, dtype=np.float64)
    return Orientation(int(code), int(upright_w), int(upright_h)).forward(p.reshape(-1, 2)).reshape(p.shape)


def unorient_points(pts: np.ndarray, code: int, upright_w: int, upright_h: int) -> np.ndarray:
    """Inverse of `orient_points`: points of the turned image -> the upright image."""
    from ecgdigit.synth.degrade.warp import Orientation

    p = np.asarray(pts, dtype=np.float64)
    return Orientation(int(code), int(upright_w), int(upright_h)).backward(p.reshape(-1, 2)).reshape(p.shape)


def upright_size(shape_hw, code: int) -> Tuple[int, int]:
    """(w, h) of the upright image whose turn by `code` has shape `shape_hw`."""
    h, w = shape_hw[:2]
    return (h, w) if code % 2 else (w, h)


def local_px_per_mm(nodes: np.ndarray) -> np.ndarray:
    """Per node of a (n_h, n_v, 2) node grid: mean distance to its grid neighbours / 5 mm."""
    dx = np.linalg.norm(np.diff(nodes, axis=1), axis=-1)
    dy = np.linalg.norm(np.diff(nodes, axis=0), axis=-1)
    s = np.zeros(nodes.shape[:2])
    c = np.zeros(nodes.shape[:2])
    s[:, :-1] += dx
    s[:, 1:] += dx
    c[:, :-1] += 1
    c[:, 1:] += 1
    s[:-1] += dy
    s[1:] += dy
    c[:-1] += 1
    c[1:] += 1
    return s / c / layout.LARGE_GRID_MM


def visible(pts: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.isfinite(pts).all(-1) & (pts[..., 0] >= 0) & (pts[..., 0] <= width - 1) & \
        (pts[..., 1] >= 0) & (pts[..., 1] <= height - 1)


def node_errors_mm(pred: np.ndarray, truth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Errors (mm) of predicted grid nodes at the true nodes that lie inside the image."""
    err = np.linalg.norm(pred - truth, axis=-1) / local_px_per_mm(truth)
    return err[visible(truth, width, height)]


# -------------------------------------------------------------------------------------------------
# Targets
# -------------------------------------------------------------------------------------------------
def node_heatmap(nodes_out: np.ndarray, width: int, height: int, sigma: float = HEAT_SIGMA) -> np.ndarray:
    """(height, width) float32: max over nodes of a Gaussian centred on each (sub-pixel) node."""
    heat = np.zeros((height, width), np.float32)
    p = nodes_out.reshape(-1, 2)
    p = p[visible(p, width, height)]
    if not len(p):
        return heat
    r = int(np.ceil(3 * sigma))
    cx, cy = np.round(p[:, 0]).astype(int), np.round(p[:, 1]).astype(int)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ix, iy = cx + dx, cy + dy
            ok = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
            val = np.exp(-((ix - p[:, 0]) ** 2 + (iy - p[:, 1]) ** 2) / (2 * sigma ** 2)).astype(np.float32)
            np.maximum.at(heat, (iy[ok], ix[ok]), val[ok])
    return heat


def index_maps(nodes_out: np.ndarray, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
    """((2, height, width) float32 fractional (j, i) of every pixel, (height, width) valid mask).

    Linear interpolation over the triangulated node grid: exact at the nodes, defined on the page
    (inside the convex hull of the nodes), undefined (mask 0) elsewhere.
    """
    from scipy.interpolate import LinearNDInterpolator

    nh, nv = nodes_out.shape[:2]
    jj, ii = np.meshgrid(np.arange(nh, dtype=np.float64), np.arange(nv, dtype=np.float64), indexing="ij")
    pts = nodes_out.reshape(-1, 2)
    ok = np.isfinite(pts).all(1)
    interp = LinearNDInterpolator(pts[ok], np.stack([jj.ravel()[ok], ii.ravel()[ok]], 1))
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    vals = interp(gx.ravel(), gy.ravel()).reshape(height, width, 2)
    valid = np.isfinite(vals).all(-1)
    vals = np.where(valid[..., None], vals, 0.0)
    return vals.transpose(2, 0, 1).astype(np.float32), valid.astype(np.float32)


# -------------------------------------------------------------------------------------------------
# Sources: dicts with image (H, W, 3) uint8 RGB, keypoints (13, 2), grid_nodes (44, 57, 2),
# orientation, image_type (labels in image pixels)
# -------------------------------------------------------------------------------------------------
class SyntheticSource:
    def __init__(self, length: int, seed: int = 0, types: Optional[Sequence[str]] = None):
        from ecgdigit.io import IMAGE_TYPES
        from ecgdigit.synth.dataset import SyntheticECGDataset

        self.base = SyntheticECGDataset(length, seed=seed, types=tuple(types or IMAGE_TYPES), mode="image")
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        it = self.base[index]
        return {k: it[k] for k in ("image", "keypoints", "grid_nodes", "orientation", "image_type")}


class FolderSource:
    """Images of a synthetic competition-layout train folder with its labels/ (from `ecgdigit synth`)."""

    def __init__(self, root, types: Optional[Sequence[str]] = None, record_ids: Optional[Sequence[str]] = None):
        from ecgdigit.train.data import labelled_train_entries

        self.root = Path(root)
        self.seed = 0
        self.entries = labelled_train_entries(self.root, types, record_ids, "stage-0/1 training")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        from ecgdigit.synth.labels import read_image_labels
        from ecgdigit.train.data import read_rgb

        e = self.entries[index]
        lab = read_image_labels(self.root / "labels", e.image_id)
        return {"image": read_rgb(e.path), "keypoints": lab["keypoints"],
                "grid_nodes": lab["grid_nodes"], "orientation": int(lab["orientation"]),
                "image_type": e.image_type or ""}


def make_source(data: str, length: int, seed: int, types=None, record_ids=None):
    if data == "synthetic":
        return SyntheticSource(length, seed, types)
    return FolderSource(data, types, record_ids)


# -------------------------------------------------------------------------------------------------
# Items
# -------------------------------------------------------------------------------------------------
def stage0_arrays(src: dict, size: int, code: Optional[int] = None) -> dict:
    """Stage-0 input and targets of one source item, turned to orientation `code` (None: as is)."""
    image = src["image"]
    c0 = int(src["orientation"])
    h, w = image.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    sx, sy = nw / w, nh / h
    kp = scale_points(src["keypoints"], sx, sy)
    nodes = scale_points(src["grid_nodes"], sx, sy)
    if code is not None and code != c0:
        uw, uh = upright_size(small.shape, c0)
        up = layout.undo_orientation(small, c0)
        kp = orient_points(unorient_points(kp, c0, uw, uh), code, uw, uh)
        nodes = orient_points(unorient_points(nodes, c0, uw, uh), code, uw, uh)
        small = layout.apply_orientation(up, code)
        c0 = int(code)
    canvas = np.full((size, size, 3), PAPER_WHITE, np.uint8)
    canvas[:small.shape[0], :small.shape[1]] = small
    ppm = local_px_per_mm(nodes)
    return {"image": canvas, "orientation": c0, "keypoints": kp, "px_per_mm": float(np.median(ppm)),
            "valid_size": (small.shape[1], small.shape[0])}


def stage1_arrays(src: dict, size: int, reduction: int = STAGE1_REDUCTION, with_targets: bool = True) -> dict:
    """Stage-1 input (upright, in the stage-1 canvas) and its targets of one source item."""
    image = src["image"]
    c0 = int(src["orientation"])
    uw, uh = upright_size(image.shape, c0)
    up = layout.undo_orientation(image, c0) if c0 else image
    nodes = unorient_points(src["grid_nodes"], c0, uw, uh) if c0 else np.asarray(src["grid_nodes"], np.float64)
    cw, ch = size, stage1_height(size)
    canvas, sx, sy = fit_into_canvas(up, cw, ch)
    nodes_c = scale_points(nodes, sx, sy)
    out = {"image": canvas, "nodes": nodes_c}
    if with_targets:
        ow, oh = -(-cw // reduction), -(-ch // reduction)
        nodes_o = scale_points(nodes_c, 1.0 / reduction, 1.0 / reduction)
        out["heat"] = node_heatmap(nodes_o, ow, oh)
        out["index"], out["index_valid"] = index_maps(nodes_o, ow, oh)
    return out


def _image_tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def _downscaled_source(src: dict, size: int) -> dict:
    """The source item with its image scaled to long side `size` (labels scaled with it)."""
    h, w = src["image"].shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(src["image"], (nw, nh), interpolation=cv2.INTER_AREA)
    return {**src, "image": small, "keypoints": scale_points(src["keypoints"], nw / w, nh / h),
            "grid_nodes": scale_points(src["grid_nodes"], nw / w, nh / h)}


class Stage0Dataset:
    """Stage-0 items: image (3, S, S), orientation, keypoints (13, 2) in output px, kp_valid (13,),
    plus keypoints_px (input px) and px_per_mm for validation.

    `cache_items`: keep each rendered image (scaled to the input size) in memory, so later epochs
    skip the synthetic engine; with `cycle_orientation` the orientation then moves on by one code
    per fetch of the item, so every cached image is seen in all 8 orientations (training only)."""

    def __init__(self, source, size: int = STAGE0_SIZE, reduction: int = STAGE0_REDUCTION,
                 augment_orientation: bool = True, cache_items: bool = False, cycle_orientation: bool = True):
        self.source, self.size, self.reduction = source, int(size), int(reduction)
        self.augment_orientation = augment_orientation
        self.cache = {} if cache_items else None
        self.fetches = {} if cycle_orientation else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fresh pages (and orientation draws) for `epoch`; only for an uncached synthetic source."""
        self.epoch = int(epoch)
        self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        import torch

        if self.cache is not None:
            if index not in self.cache:
                self.cache[index] = _downscaled_source(self.source[index], self.size)
            src = self.cache[index]
        else:
            src = self.source[index]
        code = None
        if self.augment_orientation:
            rng = np.random.default_rng([getattr(self.source, "seed", 0) & 0xFFFFFFFF, int(index), 770 + self.epoch])
            code = int(rng.integers(layout.N_ORIENTATIONS))
            if self.cache is not None and self.fetches is not None:
                code = (code + self.fetches.get(index, 0)) % layout.N_ORIENTATIONS
                self.fetches[index] = self.fetches.get(index, 0) + 1
        a = stage0_arrays(src, self.size, code)
        r = self.reduction
        out_wh = -(-self.size // r)
        kp_out = scale_points(a["keypoints"], 1.0 / r, 1.0 / r)
        valid = visible(kp_out, out_wh, out_wh)
        return {
            "image": _image_tensor(a["image"]),
            "orientation": torch.tensor(a["orientation"], dtype=torch.long),
            "keypoints": torch.from_numpy(np.nan_to_num(kp_out, nan=-1.0).astype(np.float32)),
            "kp_valid": torch.from_numpy(valid),
            "keypoints_px": torch.from_numpy(np.nan_to_num(a["keypoints"], nan=-1.0).astype(np.float32)),
            "px_per_mm": float(a["px_per_mm"]),
            "index": int(index),
            "image_type": src["image_type"],
        }


class Stage1Dataset:
    """Stage-1 items: image (3, H, W), heat (1, h, w), node_index (2, h, w) = `index_to_target`((j, i)), index_valid
    (1, h, w), plus nodes (44, 57, 2) in input px for validation.

    `cache_items`: keep each item's arrays in memory, compactly (uint8 image, float16 heatmap, uint8
    mask: about 2.5 MB at width 768 instead of 7 MB as float tensors), so later epochs skip the engine."""

    def __init__(self, source, size: int = STAGE1_SIZE, reduction: int = STAGE1_REDUCTION,
                 cache_items: bool = False):
        self.source, self.size, self.reduction = source, int(size), int(reduction)
        self.cache = {} if cache_items else None  # index -> compact arrays (later epochs skip the engine)

    def set_epoch(self, epoch: int) -> None:
        """Fresh pages for `epoch`; only for an uncached synthetic source."""
        self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        if self.cache is None:
            return self._tensors(self._arrays(index, compact=False), index)
        if index not in self.cache:
            self.cache[index] = self._arrays(index, compact=True)
        return self._tensors(self.cache[index], index)

    def _arrays(self, index: int, compact: bool) -> dict:
        """The item's arrays; `compact` (for the cache): heatmap as float16, mask as uint8."""
        src = self.source[index]
        a = stage1_arrays(src, self.size, self.reduction)
        heat_dtype, mask_dtype = (np.float16, np.uint8) if compact else (np.float32, np.float32)
        return {"image": a["image"], "heat": a["heat"].astype(heat_dtype),
                "node_index": index_to_target(a["index"]), "index_valid": a["index_valid"].astype(mask_dtype),
                "nodes": a["nodes"].astype(np.float32), "image_type": src["image_type"]}

    @staticmethod
    def _tensors(a: dict, index: int) -> dict:
        import torch

        return {
            "image": _image_tensor(a["image"]),
            "heat": torch.from_numpy(a["heat"][None].astype(np.float32)),
            "node_index": torch.from_numpy(a["node_index"]),
            "index_valid": torch.from_numpy(a["index_valid"][None].astype(np.float32)),
            "nodes": torch.from_numpy(a["nodes"]),
            "index": int(index),
            "image_type": a["image_type"],
        }


def collate_stage01(items: list) -> dict:
    """Stack tensors; keep scalars and strings as lists."""
    import torch

    out = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


# -------------------------------------------------------------------------------------------------
# Validation
# -------------------------------------------------------------------------------------------------
FAILED_FIT_MM = 25.0  # node error charged to an image whose nodes could not be fitted (5 boxes)


def _per_type(values: list, types: list) -> dict:
    out = {}
    for t in sorted(set(types)):
        v = [x for x, tt in zip(values, types) if tt == t]
        out[t] = float(np.mean(v))
    return out


def validate_stage0(model, dataset, device, amp: bool = False, batch_size: int = 2, progress: bool = True) -> dict:
    """Orientation accuracy and mean lead-label marker error (mm) on `dataset` (a Stage0Dataset).

    score = accuracy - 0.001 * marker error (mm): accuracy decides, the markers break ties."""
    import torch
    from tqdm.auto import tqdm

    from ecgdigit.rectify.learned import keypoints_from_logits

    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                                         collate_fn=collate_stage01)
    correct, types, kp_err_all = [], [], []
    with torch.no_grad():
        for batch in tqdm(loader, desc="validate", leave=False, disable=not progress):
            x = batch["image"].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
                logits, orient = model(x)
            logits = logits.float().cpu().numpy()
            pred = orient.float().argmax(1).cpu().numpy()
            r = x.shape[-1] / logits.shape[-1]
            for k in range(len(pred)):
                ok = int(pred[k]) == int(batch["orientation"][k])
                correct.append(float(ok))
                pts, _ = keypoints_from_logits(logits[k])
                pts = scale_points(pts, r, r)
                valid = batch["kp_valid"][k].numpy()
                truth = batch["keypoints_px"][k].numpy()
                e = np.linalg.norm(pts - truth, axis=-1)[valid] / batch["px_per_mm"][k]
                err = float(e.mean()) if e.size else float("nan")
                kp_err_all.append(err)
                types.append(batch["image_type"][k])
    acc = float(np.mean(correct)) if correct else 0.0
    marker = float(np.nanmean(kp_err_all)) if np.isfinite(kp_err_all).any() else float("nan")
    metrics = {"orient_acc": acc, "marker_mm": marker,
               **{f"orient_acc_{t}": v for t, v in _per_type(correct, types).items()}}
    score = acc - 0.001 * (marker if np.isfinite(marker) else 1000.0)
    return {"score": score, "metrics": metrics}


def validate_stage1(model, dataset, device, amp: bool = False, batch_size: int = 2, progress: bool = True) -> dict:
    """Mean grid-node error in mm of the full stage-1 decode (peaks -> names -> smooth fit) on
    `dataset` (a Stage1Dataset, upright images); images without a fit count FAILED_FIT_MM.

    score = -mean error (mm) + share of nodes within 1 mm (the share breaks ties while every image
    still fails)."""
    import torch
    from tqdm.auto import tqdm

    from ecgdigit.rectify.learned import decode_peaks, fit_peaks

    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                                         collate_fn=collate_stage01)
    per_image, p95, failed, types, found, within = [], [], [], [], [], []
    with torch.no_grad():
        for batch in tqdm(loader, desc="validate", leave=False, disable=not progress):
            x = batch["image"].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
                out = model(x)
            out = out.float().cpu().numpy()
            h, w = x.shape[-2:]
            r = w / out.shape[-1]
            for k in range(len(out)):
                xy, jv, iv, score = decode_peaks(out[k])
                fit, _ = fit_peaks(scale_points(xy, r, r), jv, iv, score)
                truth = batch["nodes"][k].numpy().astype(np.float64)
                if fit is None:
                    per_image.append(FAILED_FIT_MM)
                    failed.append(1.0)
                    found.append(0.0)
                    within.append(0.0)
                else:
                    e = node_errors_mm(fit.nodes, truth, w, h)
                    within.append(float(np.mean(e < 1.0)) if e.size else 0.0)
                    per_image.append(float(min(e.mean(), FAILED_FIT_MM)) if e.size else FAILED_FIT_MM)
                    p95.append(float(np.percentile(e, 95)) if e.size else FAILED_FIT_MM)
                    failed.append(0.0)
                    found.append(float(fit.found.sum()))
                types.append(batch["image_type"][k])
    mean = float(np.mean(per_image)) if per_image else FAILED_FIT_MM
    metrics = {"node_mm": mean, "node_p95_mm": float(np.mean(p95)) if p95 else float("nan"),
               "fit_failed": float(np.mean(failed)) if failed else 1.0,
               "nodes_found": float(np.mean(found)) if found else 0.0,
               "within_1mm": float(np.mean(within)) if within else 0.0,
               **{f"node_mm_{t}": v for t, v in _per_type(per_image, types).items()}}
    return {"score": -mean + metrics["within_1mm"], "metrics": metrics}
