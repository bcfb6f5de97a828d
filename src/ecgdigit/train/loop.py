"""Training loop of all three stages: AdamW + one-cycle cosine, AMP on CUDA, gradient accumulation, DDP.

`TrainConfig.stage` picks the data, model head, loss and validation metric:
- 0: orientation (8-way pooled head) + 13 lead-label marker maps on the whole image
  (`train.stage01.Stage0Dataset`); validation: orientation accuracy (+ marker error in mm).
- 1: large-grid node heatmap + (j, i) index maps on the upright image (`train.stage01.Stage1Dataset`);
  validation: mean node error in mm after the full decode + fit of `rectify.learned`.
- 2: the 4 band maps of the canonical frame; validation: competition dB
  (model -> sigmoid maps -> `trace.extract.extract_record` -> `ecgdigit.metric`).
The checkpoint kept as `best.pt` is the one with the best validation figure, not the lowest loss.
`last.pt` carries optimiser, scheduler and scaler state so that `resume=True` continues a run. Each
checkpoint has its model config as JSON beside it (`nets.unet.save_model`); the run's TrainConfig
is written to `train_config.json`, one CSV row per epoch to `log.csv` and the curves to `curves.png`.

Multi-GPU: launch the same entry (notebook or `python -m ecgdigit.train.loop`) under `torchrun`;
WORLD_SIZE > 1 switches on DistributedDataParallel (NCCL on GPUs, gloo on CPU), only rank 0
validates and writes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ecgdigit.layout import CANONICAL_HEIGHT, CANONICAL_WIDTH
from ecgdigit.nets.unet import SegmentationModel, load_model, save_model
from ecgdigit.train.data import SyntheticTraceDataset, collate, make_folds, trace_dataset
from ecgdigit.train.losses import stage0_loss, stage1_loss, stage2_loss


@dataclass
class TrainConfig:
    stage: int = 2
    backbone: str = "resnet34"
    data: str = "synthetic"  # "synthetic" (on-the-fly) or a synthetic competition-layout train folder
    types: Tuple[str, ...] = ()  # image types to draw/use; () = all
    epochs: int = 30
    samples_per_epoch: int = 2000  # synthetic source only
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-2
    pct_start: float = 0.1  # one-cycle warm-up fraction
    fold: int = 0  # folder source: validation fold (-1: no split, validate on the synthetic set)
    n_folds: int = 5
    image_width: int = CANONICAL_WIDTH  # canonical frame scaled to this width
    amp: bool = True  # CUDA only
    workers: int = 2
    out_dir: str = "runs/stage2"
    image_size: int = 0  # stages 0/1: input size (stage 0: square side, stage 1: canvas width); 0 = default
    keypoint_weight: float = 0.5  # stage 0: weight of the marker-map loss beside the orientation loss
    augment_orientation: bool = True  # stage 0: draw each image's orientation uniformly from the 8 codes
    cache_items: bool = False  # stages 0/1: keep rendered items in memory across epochs (workers=0; CPU runs)
    fresh_pages: bool = True  # synthetic source, no cache: new pages every epoch (else the same pool each epoch)
    time_limit_s: float = 0.0  # > 0: stop after the epoch during which this many seconds have passed
    threads: int = 0  # > 0: torch and OpenCV use this many CPU threads (a shared CPU machine); 0 leaves them
    resume: bool = False
    pos_weight: float = 10.0
    column_ce_weight: float = 0.0  # > 0 adds the per-column cross-entropy (top teams: ~+1 dB)
    column_sigma: float = 1.0
    decoder_channels: Tuple[int, ...] = (256, 128, 64, 32, 16)
    encoder_weights: Optional[str] = None
    val_samples: int = 16
    seed: int = 0
    max_steps: Optional[int] = None  # stop after this many optimiser steps (tests, smoke runs)
    device: Optional[str] = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["types"] = list(self.types)
        d["decoder_channels"] = list(self.decoder_channels)
        return d


# ---------------------------------------------------------------------------------------------
def set_cpu_threads(n: int) -> None:
    """Limit torch (intra-op) and OpenCV (the synthetic engine, resizes) to `n` CPU threads; OpenCV's
    pthreads pool ignores OMP_NUM_THREADS, so setting the environment alone is not enough."""
    import cv2

    torch.set_num_threads(int(n))
    cv2.setNumThreads(int(n))


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _datasets(cfg: TrainConfig):
    types = tuple(cfg.types) or None
    if cfg.data == "synthetic":
        train = SyntheticTraceDataset(cfg.samples_per_epoch, seed=cfg.seed, width=cfg.image_width, types=types)
        val = SyntheticTraceDataset(cfg.val_samples, seed=cfg.seed + 1_000_003, width=cfg.image_width, types=types)
        return train, val
    root = Path(cfg.data)
    if cfg.fold >= 0:
        train_csv = root / "train.csv"
        if not train_csv.is_file() and (root / "prepared.json").is_file():  # a prepared folder: folds of its source
            import json

            train_csv = Path(json.loads((root / "prepared.json").read_text())["input_dir"]) / "train.csv"
        folds = make_folds(train_csv, cfg.n_folds, cfg.seed, out=Path(cfg.out_dir) / "train_folds.csv")
        tr_ids = folds.loc[folds["fold"] != cfg.fold, "id"].astype(str).tolist()
        va_ids = folds.loc[folds["fold"] == cfg.fold, "id"].astype(str).tolist()
        train = trace_dataset(root, cfg.image_width, types, record_ids=tr_ids)
        val = trace_dataset(root, cfg.image_width, types, record_ids=va_ids)
        if len(val) > cfg.val_samples:  # a fixed, evenly spread subset keeps validation affordable
            keep = np.linspace(0, len(val) - 1, cfg.val_samples).astype(int)
            if hasattr(val, "entries"):
                val.entries = [val.entries[k] for k in keep]
            else:
                val.index = val.index.iloc[keep].reset_index(drop=True)
        return train, val
    train = trace_dataset(root, cfg.image_width, types)
    val = SyntheticTraceDataset(cfg.val_samples, seed=cfg.seed + 1_000_003, width=cfg.image_width, types=types)
    return train, val


def _stage01_image_size(cfg: TrainConfig) -> int:
    from ecgdigit.train.stage01 import STAGE0_SIZE, STAGE1_SIZE

    return int(cfg.image_size) or (STAGE0_SIZE if cfg.stage == 0 else STAGE1_SIZE)


def _stage01_datasets(cfg: TrainConfig):
    from ecgdigit.train import stage01

    types = tuple(cfg.types) or None
    size = _stage01_image_size(cfg)
    if cfg.data == "synthetic":
        train_src = stage01.make_source("synthetic", cfg.samples_per_epoch, cfg.seed, types)
        val_src = stage01.make_source("synthetic", cfg.val_samples, cfg.seed + 1_000_003, types)
    else:
        root = Path(cfg.data)
        tr_ids = va_ids = None
        if cfg.fold >= 0:
            folds = make_folds(root / "train.csv", cfg.n_folds, cfg.seed, out=Path(cfg.out_dir) / "train_folds.csv")
            tr_ids = folds.loc[folds["fold"] != cfg.fold, "id"].astype(str).tolist()
            va_ids = folds.loc[folds["fold"] == cfg.fold, "id"].astype(str).tolist()
        train_src = stage01.make_source(cfg.data, 0, cfg.seed, types, tr_ids)
        if va_ids is None:
            val_src = stage01.make_source("synthetic", cfg.val_samples, cfg.seed + 1_000_003, types)
        else:
            val_src = stage01.make_source(cfg.data, 0, cfg.seed, types, va_ids)
            if len(val_src) > cfg.val_samples:  # a fixed, evenly spread subset keeps validation affordable
                keep = np.linspace(0, len(val_src) - 1, cfg.val_samples).astype(int)
                val_src.entries = [val_src.entries[k] for k in keep]
    # The validation pages are the same every epoch: always cached, so only the first validation renders.
    cache = bool(cfg.cache_items)
    if cfg.stage == 0:
        return (stage01.Stage0Dataset(train_src, size, augment_orientation=cfg.augment_orientation, cache_items=cache),
                stage01.Stage0Dataset(val_src, size, augment_orientation=True, cache_items=True,
                                      cycle_orientation=False))
    return stage01.Stage1Dataset(train_src, size, cache_items=cache), stage01.Stage1Dataset(val_src, size,
                                                                                          cache_items=True)


def _build_model(cfg: TrainConfig) -> SegmentationModel:
    from ecgdigit.train import stage01

    extra = {"stage": cfg.stage, "train": cfg.to_dict()}
    if cfg.stage == 0:
        return SegmentationModel(cfg.backbone, n_classes=stage01.N_KEYPOINTS, decoder_channels=cfg.decoder_channels,
                                 output_reduction=stage01.STAGE0_REDUCTION, n_aux_classes=8, activation="none",
                                 encoder_weights=cfg.encoder_weights,
                                 extra={**extra, "image_size": _stage01_image_size(cfg)})
    if cfg.stage == 1:
        return SegmentationModel(cfg.backbone, n_classes=3, decoder_channels=cfg.decoder_channels,
                                 output_reduction=stage01.STAGE1_REDUCTION, activation="none",
                                 encoder_weights=cfg.encoder_weights,
                                 extra={**extra, "image_size": _stage01_image_size(cfg)})
    return SegmentationModel(cfg.backbone, n_classes=4, decoder_channels=cfg.decoder_channels,
                             encoder_weights=cfg.encoder_weights, extra={**extra, "image_width": cfg.image_width})


def _loss(cfg: TrainConfig, outputs, batch):
    if cfg.stage == 0:
        return stage0_loss(outputs, batch, cfg.keypoint_weight)
    if cfg.stage == 1:
        return stage1_loss(outputs, batch)
    return stage2_loss(outputs, batch, cfg.pos_weight, cfg.column_ce_weight, cfg.column_sigma)


# Per stage: (log column of the validation figure, its plot label) and how the figure compares.
VAL_COLUMNS = {0: ("val_orient_acc", "orientation accuracy"), 1: ("val_node_mm", "mean node error (mm)"),
               2: ("val_score_db", "dB")}


def _validate(cfg: TrainConfig, model, dataset, device, amp: bool, progress: bool) -> dict:
    """{"score": higher is better, "columns": {log column: value}}."""
    if cfg.stage in (0, 1):
        from ecgdigit.train import stage01

        fn = stage01.validate_stage0 if cfg.stage == 0 else stage01.validate_stage1
        val = fn(model, dataset, device, amp, cfg.batch_size, progress)
        return {"score": val["score"], "columns": {f"val_{k}": v for k, v in val["metrics"].items()}, "raw": val}
    val = validate(model, dataset, device, amp, cfg.batch_size, progress)
    return {"score": val["score"], "raw": val,
            "columns": {"val_score_db": val["score"], **{f"val_db_{t}": v for t, v in val["per_type"].items()}}}


@torch.no_grad()
def validate(model, dataset, device, amp: bool = False, batch_size: int = 2, progress: bool = True) -> dict:
    """Competition score (dB) of model -> extraction on `dataset`, overall and per image type."""
    from ecgdigit.trace.evaluation import score_records, truth_record
    from ecgdigit.layout import default_lead_lengths
    from ecgdigit.trace.extract import ExtractOptions, extract_record

    model.eval()
    truths, preds, fss, ids, types = [], [], [], [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                                         collate_fn=collate)
    for batch in tqdm(loader, desc="validate", leave=False, disable=not progress):
        x = batch["image"].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = model(x)
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        h, w = probs.shape[-2:]
        opts = ExtractOptions(frame_scale=(w / CANONICAL_WIDTH, h / CANONICAL_HEIGHT))
        for k in range(len(probs)):
            fs = float(batch["fs"][k])
            lengths = default_lead_lengths(fs)
            preds.append(extract_record(probs[k], lengths, fs, opts))
            truths.append(truth_record(batch["signals"][k].numpy().astype(np.float64), fs, lengths))
            fss.append(fs)
            ids.append(f"val{batch['index'][k]}")
            types.append(batch["image_type"][k])
    report = score_records(truths, preds, fss, ids)
    per_image = report.per_image.set_index("image_id")
    snr = per_image.loc[ids, "snr"].to_numpy()
    per_type = {}
    for t in sorted(set(types)):
        sel = np.array([tt == t for tt in types])
        per_type[t] = float(10 * np.log10(max(snr[sel].mean(), 1e-12)))
    return {"score": float(report.score), "per_type": per_type}


def _plot(log_rows: list, path: Path, column: str = "val_score_db", label: str = "dB") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in log_rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(ep, [r["train_loss"] for r in log_rows], marker="o")
    ax[0].set(xlabel="epoch", ylabel="train loss", title="loss")
    ax[1].plot(ep, [r.get(column, np.nan) for r in log_rows], marker="o", color="C1")
    ax[1].set(xlabel="epoch", ylabel=label, title="validation")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Run (or resume) a training of stage `cfg.stage`; returns paths and the best validation figure
    (`best_score`: higher is better; stage 2 also `best_score_db`)."""
    if cfg.stage not in (0, 1, 2):
        raise ValueError(f"stage must be 0 (orientation + markers), 1 (grid nodes) or 2 (traces); got {cfg.stage}")
    world, rank, local = _dist_info()
    distributed = world > 1
    on_gpu = torch.cuda.is_available() and not (cfg.device or "").startswith("cpu")
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if on_gpu else "gloo")
    if cfg.device:
        device = torch.device(cfg.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    use_amp = bool(cfg.amp and device.type == "cuda")
    main_process = rank == 0
    out = Path(cfg.out_dir)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    torch.manual_seed(cfg.seed + rank)
    if cfg.threads > 0:
        set_cpu_threads(cfg.threads)

    train_ds, val_ds = _datasets(cfg) if cfg.stage == 2 else _stage01_datasets(cfg)
    if cfg.stage == 2:
        collate_fn = collate
    else:
        from ecgdigit.train.stage01 import collate_stage01 as collate_fn
    # Fresh pages need the workers re-made each epoch: a persistent worker keeps its copy of the dataset.
    fresh = bool(cfg.fresh_pages and cfg.data == "synthetic" and not cfg.cache_items and hasattr(train_ds, "set_epoch"))
    sampler = (torch.utils.data.distributed.DistributedSampler(train_ds, world, rank, shuffle=True, seed=cfg.seed)
               if distributed else None)
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler, num_workers=cfg.workers,
        collate_fn=collate_fn, drop_last=len(train_ds) >= cfg.batch_size * world, pin_memory=device.type == "cuda",
        persistent_workers=cfg.workers > 0 and not fresh)

    model = _build_model(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum))
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(total_steps, 2),
                                                    pct_start=cfg.pct_start, anneal_strategy="cos")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, step, best, log_rows = 0, 0, -math.inf, []
    last_path, best_path = out / "last.pt", out / "best.pt"
    if cfg.resume and last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, best = state["epoch"] + 1, state["step"], state["best"]
        if state["scheduler"].get("total_steps") == scheduler.total_steps:
            scheduler.load_state_dict(state["scheduler"])
        else:  # more (or fewer) epochs than the saved run: the new schedule, continued at `step`
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg.lr, total_steps=max(total_steps, step + 1), pct_start=cfg.pct_start,
                anneal_strategy="cos", last_epoch=step - 1)
        scaler.load_state_dict(state["scaler"])
        log_rows = state.get("log", [])
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)

    t_begin = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total_steps:
            break
        stop = bool(cfg.time_limit_s > 0 and time.time() - t_begin > cfg.time_limit_s)
        if distributed:  # rank 0's clock decides, so that every rank stops at the same epoch
            import torch.distributed as dist

            flag = torch.tensor([float(stop)], device=device if on_gpu else "cpu")
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            if progress and main_process:
                print(f"time limit of {cfg.time_limit_s:.0f} s reached after epoch {epoch}")
            break
        if sampler is not None:
            sampler.set_epoch(epoch)
        if fresh:
            train_ds.set_epoch(epoch)
        net.train()
        t0 = time.time()
        losses, parts_sum = [], {}
        optimizer.zero_grad(set_to_none=True)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not (progress and main_process))
        for k, batch in enumerate(bar):
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                outputs = net(batch["image"])
            loss, parts = _loss(cfg, outputs, batch)
            scaler.scale(loss / cfg.grad_accum).backward()
            losses.append(float(loss.detach()))
            for name, v in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + v
            if (k + 1) % cfg.grad_accum == 0 or k + 1 == len(loader):
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if step < total_steps:
                    scheduler.step()
                step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                if step >= total_steps:
                    break
        if not main_process:
            continue
        val = _validate(cfg, model, val_ds, device, use_amp, progress)
        row = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               **{f"train_{n}": v / max(len(losses), 1) for n, v in parts_sum.items()},
               **val["columns"], "val_score": val["score"],
               "lr": scheduler.get_last_lr()[0], "seconds": time.time() - t0}
        log_rows.append(row)
        if val["score"] > best:
            best = val["score"]
            save_model(model, best_path, {"epoch": epoch, "val": val["raw"]})
        save_model(model, last_path, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                      "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "best": best,
                                      "log": log_rows})
        import pandas as pd

        pd.DataFrame(log_rows).to_csv(out / "log.csv", index=False)
        _plot(log_rows, out / "curves.png", *VAL_COLUMNS[cfg.stage])
        if progress:
            shown = {k[4:]: round(v, 3) for k, v in val["columns"].items()}
            print(f"epoch {epoch + 1}: loss {row['train_loss']:.4f}  val {json.dumps(shown)}")
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    # identical on every rank when DDP kept the replicas in step (each rank starts from its own seed)
    checksum = float(sum(float(p.detach().double().sum()) for p in model.parameters()))
    result = {"best_score": best, "best": str(best_path), "last": str(last_path), "log": str(out / "log.csv"),
              "curves": str(out / "curves.png"), "steps": step, "rank": rank, "world_size": world,
              "param_checksum": checksum}
    if cfg.stage == 2:
        result["best_score_db"] = best
    return result


def load_best(out_dir, map_location="cpu") -> SegmentationModel:
    return load_model(Path(out_dir) / "best.pt", map_location=map_location)
