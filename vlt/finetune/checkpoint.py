"""Training checkpoints: atomic writes each epoch, ``--resume`` (model, optimiser, scaler, epoch)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch import nn

from .distributed import print_main
from .pretrained import extract_vit_state_dict, read_checkpoint

LAST = "checkpoint-last.pth"


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_training_state(output_dir: str, model: nn.Module, optimizer, scaler, epoch: int,
                        args: argparse.Namespace, max_accuracy: float) -> list[Path]:
    """Write checkpoint-last.pth, and checkpoint-{epoch}.pth every --save_freq epochs and at the end."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "max_accuracy": max_accuracy,
        "args": dict(vars(args)),
    }
    paths = [Path(output_dir) / LAST]
    is_last_epoch = epoch + 1 == args.epochs
    if is_last_epoch or (args.save_freq > 0 and (epoch + 1) % args.save_freq == 0):
        paths.append(Path(output_dir) / f"checkpoint-{epoch}.pth")
    for p in paths:
        atomic_save(state, p)
    return paths


def resolve_resume(resume: str, output_dir: str) -> str:
    """'auto' -> OUTPUT_DIR/checkpoint-last.pth when it exists (else ''); other values unchanged."""
    if resume != "auto":
        return resume
    candidate = Path(output_dir or ".") / LAST
    return str(candidate) if candidate.is_file() else ""


def resume_training(args: argparse.Namespace, model: nn.Module, optimizer, scaler) -> float:
    """Load ``args.resume`` into model (strict) and, when training, optimiser/scaler/epoch.

    Sets ``args.start_epoch = epoch + 1``; returns the stored best accuracy (0 if absent).
    A checkpoint with only weights (e.g. an MAE finetuned ``{'model': sd}``) restores weights only.
    """
    ckpt = read_checkpoint(args.resume)
    sd, fmt, _ = extract_vit_state_dict(ckpt)
    model.load_state_dict(sd, strict=True)
    print_main(f"Resumed weights from {args.resume} ({fmt})")
    if args.eval or "optimizer" not in ckpt or "epoch" not in ckpt:
        return float(ckpt.get("max_accuracy", 0.0))
    optimizer.load_state_dict(ckpt["optimizer"])
    if scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    args.start_epoch = int(ckpt["epoch"]) + 1
    print_main(f"Resumed optimiser and scaler; continuing at epoch {args.start_epoch}")
    return float(ckpt.get("max_accuracy", 0.0))
