"""Image transforms by config key (``train_transform_keys`` / ``val_transform_keys``).

Every transform takes a PIL image of any mode (palette, greyscale, RGBA, ...),
converts it to RGB first and returns a normalised float tensor (3, S, S) where
S = ``image_size``, so samples stack into fixed-shape batches.

| key | pipeline |
|---|---|
| ``pixelbert`` | ViLT: bicubic resize of the shorter side to S, center crop S x S, mean=std=0.5. ViLT kept the aspect ratio (longer side up to 1333/800 S) and padded batches; vlt batches are fixed-size, so the longer side is center-cropped. No flip (captions say "left of"). |
| ``pixelbert_randaug`` | ``pixelbert`` + RandAugment(2, 9) on the cropped image (ViLT applied it before resizing; same ops, cheaper) |
| ``mae`` | VLC/MAE pretraining: RandomResizedCrop(S, scale=(0.2, 1), bicubic) + horizontal flip + ImageNet mean/std. The flip matches VLC but can contradict "left"/"right" in captions: use ``mae_noflip`` to avoid it. |
| ``mae_noflip`` | ``mae`` without the flip |
| ``mae_randaug`` | ``mae`` + RandAugment(2, 9) after the crop |
| ``mae_test`` | MAE evaluation: bicubic resize of the shorter side to S / 0.875 (256 for 224), center crop S, ImageNet mean/std |
| ``imagenet`` | timm ``create_transform(S, is_training=True)`` (random resized crop, flip, colour jitter 0.4) |
| ``imagenet_randaug`` | timm MAE-finetuning recipe: ``rand-m9-mstd0.5-inc1``, bicubic, random erasing 0.25 |
| ``imagenet_test`` | timm evaluation transform, crop_pct 0.875, bicubic |

Random transforms draw from the global ``torch`` / ``random`` / ``numpy`` RNGs;
datasets seed those per sample (see ``seeded_global_rng``) so that crops are a
function of (seed, epoch, index).
"""
from __future__ import annotations

import contextlib
import difflib
import random
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
MAE_TEST_CROP_PCT = 0.875
BICUBIC = InterpolationMode.BICUBIC


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of ``image``; transparent pixels are composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class ToRGB:
    """Transform step wrapping ``to_rgb`` (a class so transforms stay picklable)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_rgb(image)

    def __repr__(self) -> str:
        return "ToRGB()"


def _finish(mean: tuple, std: tuple) -> list:
    return [T.ToTensor(), T.Normalize(mean, std)]


def _pixelbert(size: int, randaug: bool = False) -> T.Compose:
    steps = [ToRGB(), T.Resize(size, interpolation=BICUBIC), T.CenterCrop(size)]
    if randaug:
        steps.append(T.RandAugment(num_ops=2, magnitude=9))
    return T.Compose(steps + _finish(INCEPTION_MEAN, INCEPTION_STD))


def _mae(size: int, flip: bool = True, randaug: bool = False) -> T.Compose:
    steps = [ToRGB(), T.RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=BICUBIC)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    if randaug:
        steps.append(T.RandAugment(num_ops=2, magnitude=9))
    return T.Compose(steps + _finish(IMAGENET_MEAN, IMAGENET_STD))


def _mae_test(size: int) -> T.Compose:
    resize = int(round(size / MAE_TEST_CROP_PCT))
    steps = [ToRGB(), T.Resize(resize, interpolation=BICUBIC), T.CenterCrop(size)]
    return T.Compose(steps + _finish(IMAGENET_MEAN, IMAGENET_STD))


def _timm(size: int, **kwargs) -> T.Compose:
    from timm.data import create_transform

    return T.Compose([ToRGB(), create_transform(size, **kwargs)])


TRANSFORMS: dict[str, Callable[[int], Callable]] = {
    "pixelbert": _pixelbert,
    "pixelbert_randaug": lambda size: _pixelbert(size, randaug=True),
    "mae": _mae,
    "mae_noflip": lambda size: _mae(size, flip=False),
    "mae_randaug": lambda size: _mae(size, randaug=True),
    "mae_test": _mae_test,
    "imagenet": lambda size: _timm(size, is_training=True),
    "imagenet_randaug": lambda size: _timm(
        size,
        is_training=True,
        color_jitter=None,
        auto_augment="rand-m9-mstd0.5-inc1",
        interpolation="bicubic",
        re_prob=0.25,
        re_mode="pixel",
        re_count=1,
    ),
    "imagenet_test": lambda size: _timm(
        size, is_training=False, crop_pct=MAE_TEST_CROP_PCT, interpolation="bicubic"
    ),
}


# Keys whose pipeline draws no random numbers: per-sample RNG seeding (a third of the
# demo's data-loading time) is skipped for them.
DETERMINISTIC_TRANSFORMS = frozenset({"pixelbert", "mae_test", "imagenet_test"})


def build_transform(key: str, image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """The transform named ``key`` producing (3, image_size, image_size) tensors."""
    if key not in TRANSFORMS:
        close = difflib.get_close_matches(str(key), TRANSFORMS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown transform key {key!r}.{hint} Valid keys: {sorted(TRANSFORMS)}")
    if int(image_size) <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    transform = TRANSFORMS[key](int(image_size))
    transform.draws_randomness = key not in DETERMINISTIC_TRANSFORMS  # datasets skip per-sample seeding if False
    return transform


@contextlib.contextmanager
def seeded_global_rng(seed: int):
    """Seed the CPU ``torch``, ``random`` and ``numpy`` global RNGs, restoring them on exit.

    torchvision/timm transforms draw from these globals; seeding them per sample
    makes crops reproducible without disturbing the caller's RNG streams
    (e.g. dropout in the main process when ``num_workers=0``).
    """
    seed = int(seed) % (2**63)
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.random.default_generator.get_state()
    try:
        torch.random.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (2**32))
        yield
    finally:
        torch.random.default_generator.set_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)
