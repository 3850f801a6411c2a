"""One training epoch and one evaluation pass."""
from __future__ import annotations

import argparse
import contextlib
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import all_reduce_sum, print_main
from .lr_schedule import adjust_learning_rate
from .model import set_train_mode


def _autocast(device: torch.device):
    """fp16 autocast on CUDA; a no-op elsewhere (CPU runs in fp32)."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda")


def _usable_batch(images, targets, need_even: bool, input_size: int):
    """(images, targets, n_real) with unreadable-sample gaps handled.

    Mixup needs an even batch, so an odd one loses its last sample. A batch left
    empty becomes a zero placeholder whose loss is multiplied by 0: every process
    must still run forward/backward so the gradient all-reduce stays in step.
    """
    if images is not None and need_even and len(images) % 2:
        images, targets = images[:-1], targets[:-1]
    if images is None or len(images) == 0:
        n = 2 if need_even else 1
        return torch.zeros(n, 3, input_size, input_size), torch.zeros(n, dtype=torch.long), 0
    return images, targets, len(images)


def train_one_epoch(model: nn.Module, criterion: nn.Module, loader, optimizer, scaler, device: torch.device,
                    epoch: int, args: argparse.Namespace, mixup_fn=None, run_log=None) -> dict:
    """Train for one epoch (per-iteration lr schedule, accumulation, clipping, AMP on CUDA).

    Returns process-averaged stats: lr, loss, skipped_images.
    """
    set_train_mode(model, args.linprobe)
    params = [p for p in model.parameters() if p.requires_grad]
    n_iters = len(loader)
    accum = args.accum_iter
    loss_sum = n_seen = n_skipped = 0.0
    lr = optimizer.param_groups[0]["lr"]
    start = time.time()
    optimizer.zero_grad(set_to_none=True)
    for it, (images, targets, n_bad) in enumerate(loader):
        n_skipped += n_bad
        if it % accum == 0:
            lr = adjust_learning_rate(optimizer, epoch + it / n_iters, args)
        images, targets, n_real = _usable_batch(images, targets, mixup_fn is not None, args.input_size)
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if mixup_fn is not None:
            images, targets = mixup_fn(images, targets)

        update = (it + 1) % accum == 0 or it + 1 == n_iters
        sync = contextlib.nullcontext() if update or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with _autocast(device):
                loss = criterion(model(images), targets)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at epoch {epoch} iteration {it}; stopping")
            if n_real == 0:
                loss = loss * 0.0
            scaler.scale(loss / accum).backward()
        if update:
            if args.clip_grad:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, args.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

        loss_sum += loss_value * n_real
        n_seen += n_real
        if update and run_log is not None:
            step = int((epoch + it / n_iters) * 1000)
            run_log.scalar("loss", loss_value, step)
            run_log.scalar("lr", lr, step)
        if it % args.print_freq == 0 or it + 1 == n_iters:
            elapsed = time.time() - start
            print_main(f"Epoch [{epoch}] [{it + 1}/{n_iters}] loss {loss_value:.4f} lr {lr:.3e} "
                       f"{elapsed / (it + 1):.3f} s/it")

    loss_sum, n_seen, n_skipped = all_reduce_sum([loss_sum, n_seen, n_skipped], device)
    if n_skipped:
        print_main(f"Epoch [{epoch}] skipped {int(n_skipped)} unreadable training image(s)")
    return {"lr": lr, "loss": loss_sum / max(n_seen, 1.0), "skipped_images": int(n_skipped)}


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    """Number of samples whose target is among the top-k logits, for each k."""
    top = logits.topk(max(ks), dim=1).indices
    hit = top.eq(targets[:, None])
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, num_classes: int, reduce: bool) -> dict:
    """Cross-entropy, top-1 and top-5 accuracy (%) over the loader.

    ``reduce``: sum counts over processes (each holds a disjoint shard, --dist_eval).
    Pass the unwrapped model (no DDP), so that processes with different numbers
    of batches never wait on each other. top-5 becomes top-min(5, classes).
    """
    model.eval()
    k5 = min(5, num_classes)
    loss_sum = n = c1 = c5 = skipped = 0.0
    for images, targets, n_bad in loader:
        skipped += n_bad
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with _autocast(device):
            logits = model(images)
        logits = logits.float()
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        a, b = topk_correct(logits, targets, (1, k5))
        c1, c5, n = c1 + a, c5 + b, n + len(targets)
    if reduce:
        loss_sum, n, c1, c5, skipped = all_reduce_sum([loss_sum, n, c1, c5, skipped], device)
    denom = max(n, 1.0)
    stats = {"loss": loss_sum / denom, "acc1": 100.0 * c1 / denom, "acc5": 100.0 * c5 / denom,
             "n": int(n), "skipped_images": int(skipped)}
    print_main(f"* Acc@1 {stats['acc1']:.3f} Acc@{k5} {stats['acc5']:.3f} loss {stats['loss']:.4f} "
               f"on {stats['n']} images" + (f" ({stats['skipped_images']} unreadable skipped)" if skipped else ""))
    return stats
