"""Per-iteration learning rate: linear warmup, then half-cycle cosine down to ``min_lr``."""
from __future__ import annotations

import math

from torch.optim import Optimizer


def lr_at(epoch: float, base_lr: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """The lr at a fractional epoch (``epoch + iteration / iterations_per_epoch``)."""
    if epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    span = max(epochs - warmup_epochs, 1e-12)
    progress = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adjust_learning_rate(optimizer: Optimizer, epoch: float, args) -> float:
    """Set every group's lr to ``lr_at(epoch) * group['lr_scale']`` (scale 1 if absent); return lr_at(epoch)."""
    lr = lr_at(epoch, args.lr, args.min_lr, args.warmup_epochs, args.epochs)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
