"""Classifier construction: MAE model names mapped to timm, linear-probe freezing, head init."""
from __future__ import annotations

import argparse

import timm
from timm.layers import trunc_normal_
from timm.models import model_entrypoint
from torch import nn

MAE_TO_TIMM = {
    "vit_base_patch16": "vit_base_patch16_224",
    "vit_large_patch16": "vit_large_patch16_224",
    "vit_huge_patch14": "vit_huge_patch14_224",
}
# timm modules whose models take img_size and global_pool='avg'|'token' like VisionTransformer
_VIT_MODULES = ("timm.models.vision_transformer", "timm.models.deit")


def timm_name(name: str) -> str:
    """The timm model name for an MAE name; other names pass through."""
    return MAE_TO_TIMM.get(name, name)


def is_vit_family(name: str) -> bool:
    """True for timm VisionTransformer-style models (accept img_size / global_pool)."""
    return model_entrypoint(name).__module__ in _VIT_MODULES


def create_model(args: argparse.Namespace, num_classes: int) -> nn.Module:
    """A randomly initialised timm classifier for ``args.model`` (pretrained=False).

    ViTs get img_size=input_size and global_pool 'avg' (+ fc_norm, no final norm) or
    'token'; ``--model_kwargs`` entries override everything.
    """
    name = timm_name(args.model)
    if not timm.is_model(name):
        raise ValueError(f"unknown model {args.model!r}: use {sorted(MAE_TO_TIMM)} or a timm name "
                         f"(timm.list_models('vit_*'))")
    kwargs = {"pretrained": False, "num_classes": num_classes,
              "drop_path_rate": 0.0 if args.linprobe else args.drop_path}
    if is_vit_family(name):
        kwargs.update(img_size=args.input_size, global_pool="avg" if args.global_pool else "token")
    kwargs.update(args.model_kwargs or {})
    return timm.create_model(name, **kwargs)


def init_head(model: nn.Module, std: float) -> None:
    """Truncated-normal head weights with the given std, zero bias."""
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        trunc_normal_(head.weight, std=std)
        if head.bias is not None:
            nn.init.zeros_(head.bias)


def freeze_for_linprobe(model: nn.Module) -> list[str]:
    """Freeze everything but the classifier head; re-initialise it (std 0.01); return trainable names.

    The head is a plain Linear on the pooled (frozen-normalised) feature; no
    BatchNorm is added in front of it.
    """
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"--linprobe needs a Linear classifier head, got {type(head).__name__}")
    head_ids = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad = id(p) in head_ids
    init_head(model, std=0.01)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def set_train_mode(model: nn.Module, linprobe: bool) -> None:
    """train() for finetuning; for linear probing the frozen backbone stays in eval mode.

    ``model`` may be a DistributedDataParallel wrapper (its ``module`` is the classifier).
    """
    model.train()
    if linprobe:
        inner = getattr(model, "module", model)
        inner.eval()
        inner.get_classifier().train()


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

