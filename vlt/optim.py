"""Optimiser parameter groups and learning-rate schedules.

Groups are derived from parameter names (see docs/ARCHITECTURE.md):
- ``heads.*`` (task heads) get ``lr_mult_head`` (``lr_mult``, the ViLT/VLC name, when unset);
- names containing ``cross_modal`` get ``lr_mult_cross_modal`` (two-tower fusion);
- with ``layer_decay < 1`` a backbone parameter in transformer block ``i`` gets
  ``layer_decay ** (num_layers + 1 - (i + 1))``; embeddings get the deepest decay;
- biases, norms, position embeddings and cls tokens get no weight decay.

Schedules are ``LambdaLR`` multipliers on each group's own lr, so group scales
survive warmup and decay, and they count *optimizer* steps (Lightning steps
"step"-interval schedulers once per optimizer step), so gradient accumulation
does not squeeze warmup or decay.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
from torch import nn

BLOCK_INDEX = re.compile(r"\.(?:blocks|layer|layers)\.(\d+)\.")
EMBEDDING_HINTS = ("patch_embed", "pos_embed", "cls_token", "embeddings", "token_type")
NO_DECAY_HINTS = ("bias", "norm", "LayerNorm", "pos_embed", "cls_token", "mask_token", "position_embeddings")


def head_lr_mult(config: dict) -> float:
    return config["lr_mult_head"] if config["lr_mult_head"] > 0 else config["lr_mult"]


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or any(hint in name for hint in NO_DECAY_HINTS)


def _num_backbone_layers(names) -> int:
    ids = [int(m.group(1)) for n in names if n.startswith("backbone.") and (m := BLOCK_INDEX.search(n))]
    return max(ids) + 1 if ids else 0


def layer_id(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for block i, num_layers + 1 for everything after the blocks."""
    if not name.startswith("backbone."):
        return num_layers + 1
    match = BLOCK_INDEX.search(name)
    if match:
        return int(match.group(1)) + 1
    if any(hint in name for hint in EMBEDDING_HINTS):
        return 0
    return num_layers + 1


def lr_scale(name: str, config: dict, num_layers: int) -> float:
    """The multiplier of the base learning rate for parameter ``name``."""
    scale = 1.0
    if name.startswith("heads."):
        scale *= head_lr_mult(config)
    if "cross_modal" in name:
        scale *= config["lr_mult_cross_modal"]
    if config["layer_decay"] < 1.0 and name.startswith("backbone.") and "cross_modal" not in name:
        scale *= config["layer_decay"] ** (num_layers + 1 - layer_id(name, num_layers))
    return scale


def param_groups(model: nn.Module, config: dict) -> list[dict]:
    """Trainable parameters grouped by (weight decay, lr scale); each group carries ``lr_scale``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    num_layers = _num_backbone_layers(n for n, _ in named)
    groups: "OrderedDict[tuple, dict]" = OrderedDict()
    for name, param in named:
        decay = 0.0 if _no_decay(name, param) else config["weight_decay"]
        scale = lr_scale(name, config, num_layers)
        group = groups.setdefault((decay, scale), {
            "params": [], "names": [], "weight_decay": decay, "lr_scale": scale,
            "lr": config["learning_rate"] * scale,
        })
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(groups: list[dict], config: dict) -> torch.optim.Optimizer:
    groups = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    lr, kind = config["learning_rate"], config["optim_type"]
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, eps=1e-8, betas=(0.9, 0.98))
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optim_type {kind!r}; use adamw, adam or sgd")


def resolve_warmup(warmup, total_steps: int) -> int:
    """``warmup_steps`` as given (int) or as a fraction of the total when below 1."""
    if isinstance(warmup, float) and warmup < 1:
        return int(warmup * total_steps)
    return int(warmup)


def lr_multiplier(config: dict, total_steps: int, steps_per_epoch: int = 1):
    """A function step -> multiplier of each group's lr, for ``config['lr_sched']``."""
    base = config["learning_rate"]
    warmup = resolve_warmup(config["warmup_steps"], total_steps)
    kind = config["lr_sched"]

    def warming(step: int, start_ratio: float) -> float:
        return start_ratio + (1.0 - start_ratio) * step / max(1, warmup)

    if kind == "polynomial":
        end_ratio, power = config["end_lr"] / base, config["decay_power"]

        def polynomial(step: int) -> float:
            if step < warmup:
                return warming(step, 0.0)
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return (1.0 - end_ratio) * (1.0 - progress) ** power + end_ratio
        return polynomial

    if kind == "linear_warmup_cosine_lr":
        start_ratio, min_ratio = config["warmup_lr"] / base, config["min_lr"] / base

        def cosine(step: int) -> float:
            if step < warmup:
                return warming(step, start_ratio)
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return cosine

    if kind == "linear_warmup_step_lr":
        start_ratio, min_ratio, rate = config["warmup_lr"] / base, config["min_lr"] / base, config["lr_decay_rate"]

        def stepwise(step: int) -> float:
            if step < warmup:
                return warming(step, start_ratio)
            return max(min_ratio, rate ** (step // max(1, steps_per_epoch)))
        return stepwise

    raise ValueError(f"unknown lr_sched {kind!r}")


def total_optimizer_steps(trainer, config: dict) -> tuple[int, int]:
    """(optimizer steps of the whole run, optimizer steps per epoch) as Lightning will count them."""
    total = int(trainer.estimated_stepping_batches)  # accounts for accumulation, devices, max_steps
    batches = trainer.num_training_batches
    per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches)) if math.isfinite(batches) else total
    if config["max_steps"] > 0:
        total = config["max_steps"]
    return max(1, total), per_epoch


def configure_optimizers(module) -> dict:
    """What ``LightningModule.configure_optimizers`` returns for a vlt module."""
    config = module.hparams["config"]
    optimizer = build_optimizer(param_groups(module, config), config)
    total, per_epoch = total_optimizer_steps(module.trainer, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(config, total, per_epoch))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
