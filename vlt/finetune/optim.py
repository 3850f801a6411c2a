"""Optimiser: layer-decay parameter groups (timm) and AdamW, or SGD for linear probing."""
from __future__ import annotations

import argparse

import torch
from timm.optim import param_groups_layer_decay
from torch import nn


def build_param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """timm layer-decay groups (each with ``lr_scale``); no weight decay on 1-D params and
    ``model.no_weight_decay()`` names (pos_embed, cls_token). Frozen parameters are left out.

    For a ViT of depth L: patch_embed/cls_token/pos_embed get layer_decay ** (L + 1),
    blocks.i get layer_decay ** (L - i), the rest (fc_norm/norm, head) get 1.
    """
    no_wd = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    return param_groups_layer_decay(model, weight_decay=weight_decay, no_weight_decay_list=no_wd,
                                    layer_decay=layer_decay)


def build_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """AdamW over layer-decay groups; --linprobe: SGD (momentum 0.9) over the head alone."""
    if args.linprobe:
        groups = build_param_groups(model, args.weight_decay, layer_decay=1.0)
        return torch.optim.SGD(groups, lr=args.lr, momentum=0.9)
    groups = build_param_groups(model, args.weight_decay, args.layer_decay)
    return torch.optim.AdamW(groups, lr=args.lr)
