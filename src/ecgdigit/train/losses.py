"""Losses: stage 2 (BCE on the band masks, per-column cross-entropy over y); stages 0 and 1 below."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, masks: torch.Tensor, pos_weight: float = 10.0) -> torch.Tensor:
    """Binary cross-entropy with `pos_weight` on trace pixels (the seed: 10)."""
    pw = torch.tensor(pos_weight, device=logits.device, dtype=torch.float32)
    return F.binary_cross_entropy_with_logits(logits.float(), masks.float(), pos_weight=pw)


def column_ce_loss(logits: torch.Tensor, col_y: torch.Tensor, col_valid: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Per band and column, cross-entropy between softmax over y and a Gaussian centred on the trace.

    logits (B, C, H, W); col_y, col_valid (B, C, W). Columns without a trace are ignored.
    """
    logp = F.log_softmax(logits.float(), dim=2)
    rows = torch.arange(logits.shape[2], device=logits.device, dtype=torch.float32).view(1, 1, -1, 1)
    target = torch.exp(-0.5 * ((rows - col_y.float().unsqueeze(2)) / sigma) ** 2)
    target = target / target.sum(dim=2, keepdim=True).clamp_min(1e-12)
    per_column = -(target * logp).sum(dim=2)  # (B, C, W)
    valid = col_valid.float()
    return (per_column * valid).sum() / valid.sum().clamp_min(1.0)


def stage2_loss(logits, batch, pos_weight: float = 10.0, column_ce_weight: float = 0.0, sigma: float = 1.0):
    """(total, parts) with parts = {"bce": ..., "col_ce": ...} as floats."""
    bce = bce_loss(logits, batch["masks"], pos_weight)
    parts = {"bce": float(bce.detach())}
    total = bce
    if column_ce_weight > 0:
        ce = column_ce_loss(logits, batch["col_y"], batch["col_valid"], sigma)
        parts["col_ce"] = float(ce.detach())
        total = total + column_ce_weight * ce
    return total, parts


# -------------------------------------------------------------------------------------------------
# Stages 0 and 1
# -------------------------------------------------------------------------------------------------
def keypoint_ce_loss(logits: torch.Tensor, keypoints: torch.Tensor, valid: torch.Tensor,
                     sigma: float = 1.5) -> torch.Tensor:
    """Per keypoint channel, cross-entropy between a softmax over all pixels and a Gaussian on the
    keypoint (output px). logits (B, K, h, w); keypoints (B, K, 2) xy; valid (B, K) bool."""
    b, k, h, w = logits.shape
    logp = F.log_softmax(logits.float().reshape(b, k, h * w), dim=-1)
    ys = torch.arange(h, device=logits.device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=logits.device, dtype=torch.float32).view(1, 1, 1, w)
    kp = keypoints.float()
    d2 = (xs - kp[..., 0, None, None]) ** 2 + (ys - kp[..., 1, None, None]) ** 2
    target = torch.exp(-0.5 * d2 / sigma ** 2).reshape(b, k, h * w)
    target = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
    per_kp = -(target * logp).sum(-1)  # (B, K)
    v = valid.float()
    return (per_kp * v).sum() / v.sum().clamp_min(1.0)


def stage0_loss(outputs, batch, keypoint_weight: float = 0.5, sigma: float = 1.5):
    """Orientation cross-entropy + `keypoint_weight` x marker-map cross-entropy; (total, parts)."""
    logits, orient_logits = outputs
    ce = F.cross_entropy(orient_logits.float(), batch["orientation"])
    kp = keypoint_ce_loss(logits, batch["keypoints"], batch["kp_valid"], sigma)
    return ce + keypoint_weight * kp, {"orient_ce": float(ce.detach()), "keypoint_ce": float(kp.detach())}


def stage1_loss(logits, batch, pos_weight: float = 4.0, index_weight: float = 1.0):
    """Node-heatmap BCE (pos_weight on the Gaussian peaks) + smooth-L1 on the (j, i) index maps
    (scaled to [-1, 1], see `stage01.index_to_target`) where the page is; (total, parts).
    logits (B, 3, h, w): heat, j, i."""
    heat = bce_loss(logits[:, :1], batch["heat"], pos_weight)
    valid = batch["index_valid"].float()
    err = F.smooth_l1_loss(logits[:, 1:3].float(), batch["node_index"].float(), reduction="none", beta=0.02)
    idx = (err * valid).sum() / (2 * valid.sum()).clamp_min(1.0)
    return heat + index_weight * idx, {"heat_bce": float(heat.detach()), "index_l1": float(idx.detach())}
