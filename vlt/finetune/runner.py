"""``main(args)``: wire data, model, optimiser and the epoch loop together (MAE ImageNet recipe)."""
from __future__ import annotations

import argparse
import datetime
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed as du
from .args import apply_mode_defaults, check_args, effective_batch_size, resolve_lr
from .checkpoint import resolve_resume, resume_training, save_training_state
from .data import build_datasets, build_loaders
from .engine import evaluate, train_one_epoch
from .model import count_parameters, create_model, freeze_for_linprobe
from .optim import build_optimizer
from .pretrained import load_pretrained
from .run_log import RunLog

_LINPROBE_IGNORED = ("mixup", "cutmix", "cutmix_minmax", "smoothing", "reprob", "color_jitter", "drop_path")


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def build_mixup(args: argparse.Namespace):
    """timm Mixup/CutMix when --mixup, --cutmix or --cutmix_minmax asks for it (never for --linprobe)."""
    active = args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None
    if args.linprobe or not active:
        return None
    return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                 prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                 label_smoothing=args.smoothing, num_classes=args.nb_classes)


def build_criterion(args: argparse.Namespace, mixup_fn) -> nn.Module:
    """Soft-target CE under mixup, label-smoothing CE when --smoothing > 0, else CE."""
    if mixup_fn is not None:
        return SoftTargetCrossEntropy()
    if args.smoothing > 0 and not args.linprobe:
        return LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    return nn.CrossEntropyLoss()


def _prepare_model(args: argparse.Namespace) -> nn.Module:
    model = create_model(args, args.nb_classes)
    if args.finetune:
        load_pretrained(model, args.finetune, global_pool=args.global_pool)
    if args.linprobe:
        trainable = freeze_for_linprobe(model)
        du.print_main(f"linprobe: backbone frozen; head re-initialised (std 0.01); training only {trainable}")
    return model


def main(args: argparse.Namespace) -> dict:
    """Run finetuning / linear probing / evaluation; returns the last evaluation stats (plus max_accuracy)."""
    apply_mode_defaults(args)
    check_args(args)
    device = du.init_distributed(args)
    try:
        return _run(args, device)
    finally:
        du.cleanup()


def _run(args: argparse.Namespace, device: torch.device) -> dict:
    rank, world = du.get_rank(), du.get_world_size()
    _seed_everything(args.seed + rank)
    torch.backends.cudnn.benchmark = True
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    args.resume = resolve_resume(args.resume, args.output_dir)
    if args.linprobe:
        du.print_main(f"linprobe: ignoring {', '.join(_LINPROBE_IGNORED)}, --aa and --layer_decay")

    train_set, val_set = build_datasets(args)
    train_loader, val_loader = build_loaders(args, train_set, val_set, rank, world)
    du.print_main(f"data: train {len(train_set) if train_set else 0} images, val {len(val_set)} images, "
                  f"{args.nb_classes} classes")
    if args.dist_eval and world > 1 and len(val_set) % world:
        du.print_main(f"dist_eval: {len(val_set)} val images over {world} processes; shards are uneven "
                      "(no padding), each image is counted once")

    model = _prepare_model(args).to(device)
    model_without_ddp = model
    if args.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    eff_batch = effective_batch_size(args, world)
    resolve_lr(args, world)
    du.print_main(f"model {args.model}: {count_parameters(model_without_ddp):,} trainable parameters")
    du.print_main(f"base lr {args.blr:.3e}, effective batch {eff_batch} "
                  f"({args.batch_size} x {args.accum_iter} accum x {world} processes), lr {args.lr:.3e}")
    du.print_main("args: " + json.dumps(vars(args), default=str))

    optimizer = build_optimizer(model_without_ddp, args)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    mixup_fn = build_mixup(args)
    criterion = build_criterion(args, mixup_fn)
    du.print_main(f"criterion {type(criterion).__name__}, mixup {'on' if mixup_fn else 'off'}")

    max_accuracy = resume_training(args, model_without_ddp, optimizer, scaler) if args.resume else 0.0
    reduce_eval = args.dist_eval and world > 1
    if args.eval:
        return evaluate(model_without_ddp, val_loader, device, args.nb_classes, reduce_eval)

    run_log = RunLog(args.output_dir, args.output_dir if args.log_dir is None else args.log_dir,
                     enabled=du.is_main_process())
    du.print_main(f"training epochs {args.start_epoch} .. {args.epochs - 1}")
    start = time.time()
    test_stats: dict = {}
    try:
        for epoch in range(args.start_epoch, args.epochs):
            train_loader.sampler.set_epoch(epoch)
            train_stats = train_one_epoch(model, criterion, train_loader, optimizer, scaler, device,
                                          epoch, args, mixup_fn, run_log)
            test_stats = evaluate(model_without_ddp, val_loader, device, args.nb_classes, reduce_eval)
            max_accuracy = max(max_accuracy, test_stats["acc1"])
            if args.output_dir and du.is_main_process():
                save_training_state(args.output_dir, model_without_ddp, optimizer, scaler, epoch, args,
                                    max_accuracy)
            du.print_main(f"epoch {epoch}: val acc@1 {test_stats['acc1']:.2f}%, max {max_accuracy:.2f}%")
            for key in ("acc1", "acc5", "loss"):
                run_log.scalar(f"perf/test_{key}", test_stats[key], epoch)
            run_log.epoch({**{f"train_{k}": v for k, v in train_stats.items()},
                           **{f"test_{k}": v for k, v in test_stats.items()},
                           "epoch": epoch, "n_parameters": count_parameters(model_without_ddp)})
    finally:
        run_log.close()
    du.print_main(f"training time {datetime.timedelta(seconds=int(time.time() - start))}")
    return {**test_stats, "max_accuracy": max_accuracy}
