"""Image transforms of the MAE ImageNet recipe (finetune, linear probe, evaluation)."""
from __future__ import annotations

import argparse

from PIL import Image, ImageOps
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.data.auto_augment import AugmentOp
from torchvision import transforms as T

_BICUBIC = T.InterpolationMode.BICUBIC


def _auto_augment(name: str | None) -> str | None:
    return None if not name or name.lower() == "none" else name


def eval_transform(input_size: int) -> T.Compose:
    """Resize the short side to input_size / crop_pct (crop_pct 224/256 up to 224 px, else 1), centre crop."""
    crop_pct = 224 / 256 if input_size <= 224 else 1.0
    return T.Compose([
        T.Resize(int(input_size / crop_pct), interpolation=_BICUBIC),
        T.CenterCrop(input_size),
        T.ToTensor(),
        T.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])


def linprobe_train_transform(input_size: int) -> T.Compose:
    """MAE linear-probe training: random resized crop and flip only."""
    return T.Compose([
        T.RandomResizedCrop(input_size, interpolation=_BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])


def _posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize with 0 bits kept meaning a black image (Pillow >= 13 rejects bits < 1)."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _patch_posterize(transform) -> None:
    """Point every RandAugment/AutoAugment Posterize op at ``_posterize``.

    timm's 'inc' RandAugment asks for 0 bits at magnitude 10, which older Pillow
    turned into a black image and Pillow 13 refuses with a ValueError.
    """
    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):
            if isinstance(op, AugmentOp) and op.name.startswith("Posterize"):
                op.aug_fn = _posterize


def finetune_train_transform(args: argparse.Namespace):
    """timm ImageNet training transform: RRC, flip, RandAugment (--aa) or colour jitter, random erasing."""
    transform = create_transform(
        input_size=args.input_size,
        is_training=True,
        color_jitter=args.color_jitter,
        auto_augment=_auto_augment(args.aa),
        interpolation="bicubic",
        re_prob=args.reprob,
        re_mode=args.remode,
        re_count=args.recount,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )
    _patch_posterize(transform)
    return transform


def build_transform(is_train: bool, args: argparse.Namespace):
    """The transform for a split under the run's mode (finetune or --linprobe)."""
    if not is_train:
        return eval_transform(args.input_size)
    if args.linprobe:
        return linprobe_train_transform(args.input_size)
    return finetune_train_transform(args)
