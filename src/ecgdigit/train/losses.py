"""Stage-2 losses: BCE on the band masks (pos_weight) and a per-column cross-entropy over y."""
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
