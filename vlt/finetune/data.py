"""ImageFolder datasets (train/ and val/) and their loaders.

Unreadable images: decoding is lazy. The loader returns None for a file that
cannot be decoded (the path and error are printed on stderr), the dataset
passes None through and ``collate_skip_unreadable`` drops it and counts it; the
training loop sums the counts per epoch. Pre-scanning 1.28 M ImageNet files at
start-up would cost minutes on every launch, so it is not done. Non-RGB images
(palette with transparency, greyscale, RGBA, CMYK) are converted to RGB.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator

import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, Sampler, SequentialSampler
from torch.utils.data import default_collate
from torchvision.datasets import DatasetFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .transforms import build_transform

EXTENSIONS = tuple(IMG_EXTENSIONS) + (".gif", ".jfif")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def load_rgb(path: str) -> Image.Image | None:
    """Decode an image file to RGB; None (and a message on stderr) when it cannot be decoded."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            return img.convert("RGB")
    except _DECODE_ERRORS as err:
        print(f"[vlt.finetune] skipping unreadable image {path}: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)
        return None


class RGBImageFolder(DatasetFolder):
    """``root/<class>/<image>`` as (image, class index); None for an unreadable image.

    ``classes`` fixes the class list (the val split uses train's so indices agree
    even when a class folder is missing from val).
    """

    def __init__(self, root: str, transform=None, classes: list[str] | None = None):
        self._given_classes = list(classes) if classes is not None else None
        super().__init__(root, loader=load_rgb, extensions=EXTENSIONS, transform=transform,
                         allow_empty=classes is not None)

    def find_classes(self, directory):
        found = sorted(e.name for e in os.scandir(directory) if e.is_dir())
        if self._given_classes is None:
            if not found:
                raise FileNotFoundError(f"no class folders in {directory}")
            return found, {c: i for i, c in enumerate(found)}
        unknown = sorted(set(found) - set(self._given_classes))
        if unknown:
            raise ValueError(f"{directory} has class folders absent from train/: {unknown[:10]}")
        return self._given_classes, {c: i for i, c in enumerate(self._given_classes)}

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        img = self.loader(path)
        if img is None:
            return None
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def collate_skip_unreadable(batch: list) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    """Stack the readable samples; return (images or None, targets or None, number dropped)."""
    good = [s for s in batch if s is not None]
    dropped = len(batch) - len(good)
    if not good:
        return None, None, dropped
    images, targets = default_collate(good)
    return images, targets, dropped


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ...: every sample on exactly one process, no padding."""

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _split_dir(data_path: str, split: str) -> str:
    path = os.path.join(data_path, split)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"missing {path}: --data_path must hold train/ and val/ with one folder per class "
            f"(DATA_PATH/train/<class>/<image>, DATA_PATH/val/<class>/<image>)")
    return path


def _image_folder(root: str, transform, classes: list[str] | None = None) -> RGBImageFolder:
    try:
        return RGBImageFolder(root, transform, classes=classes)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{root}: {err}") from err


def build_datasets(args: argparse.Namespace) -> tuple[RGBImageFolder | None, RGBImageFolder]:
    """(train or None when --eval, val); sets ``args.nb_classes`` from the class folders if unset."""
    if not os.path.isdir(args.data_path):
        raise FileNotFoundError(f"--data_path {args.data_path} does not exist")
    train_dir = None if args.eval else _split_dir(args.data_path, "train")
    val_dir = _split_dir(args.data_path, "val")
    train = None if train_dir is None else _image_folder(train_dir, build_transform(True, args))
    classes = None if train is None else train.classes
    val = _image_folder(val_dir, build_transform(False, args), classes)
    n_found = len(val.classes)
    if args.nb_classes is None:
        args.nb_classes = n_found
    elif args.nb_classes < n_found:
        raise ValueError(f"--nb_classes {args.nb_classes} is smaller than the {n_found} class folders found")
    return train, val


def build_loaders(args: argparse.Namespace, train, val, rank: int, world_size: int):
    """(train loader or None, val loader). Train: shuffled per epoch (DistributedSampler), drop_last. Val: sharded without padding under --dist_eval, else the full set on every process."""
    pin = bool(args.pin_mem) and str(args.device).startswith("cuda")
    common = dict(batch_size=args.batch_size, num_workers=args.num_workers, pin_memory=pin,
                  collate_fn=collate_skip_unreadable, persistent_workers=args.num_workers > 0)
    train_loader = None
    if train is not None:
        # also for one process: set_epoch(epoch) gives a per-epoch order that a resumed run repeats
        sampler = DistributedSampler(train, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed)
        train_loader = DataLoader(train, sampler=sampler, drop_last=True, **common)
        if len(train_loader) == 0:
            raise ValueError(f"train set of {len(train)} images gives no full batch of {args.batch_size} "
                             f"per process over {world_size} process(es); lower --batch_size")
    if args.dist_eval and world_size > 1:
        val_sampler = ShardSampler(len(val), rank, world_size)
    else:
        val_sampler = SequentialSampler(val)
    val_loader = DataLoader(val, sampler=val_sampler, drop_last=False, **common)
    return train_loader, val_loader
