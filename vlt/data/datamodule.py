"""LightningDataModule over ``config["datasets"]`` and the epoch-aware, DDP-sharding sampler.

How epoch randomness reaches workers: ``EpochShuffleSampler`` yields
``(epoch, index)`` keys and the datasets derive every random choice from
(seed, epoch, index). The key travels with each index to whichever worker
loads it, so persistent workers (whose dataset copies never see a
``set_epoch`` call) still follow the epoch. Lightning calls the sampler's
``set_epoch`` at every epoch start. The sampler shards by rank itself, so the
Trainer must run with ``use_distributed_sampler=False``.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterator, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from vlt.data.collate import Collator
from vlt.data.datasets import ConcatArrowDataset, build_dataset, lookup_dataset
from vlt.data.tokenizer import load_tokenizer

logger = logging.getLogger("vlt")


class EpochShuffleSampler(Sampler):
    """Yields ``(epoch, index)`` keys: a (seed, epoch) permutation, sharded by rank.

    Like ``DistributedSampler``: each of ``num_replicas`` ranks takes every
    ``num_replicas``-th index of the permutation; without ``drop_last`` the
    permutation is padded by wrapping around so all ranks get equally many.
    ``num_replicas`` / ``rank`` default to the initialised process group (else 1 / 0).

    ``start_index``: samples of this rank's share of the current epoch to skip
    (exact mid-epoch resume). It applies to the epoch current when it was set
    and is dropped once ``set_epoch`` moves to another epoch; ``resume_at``
    sets both at once. ``len()`` counts the samples still to be yielded.
    """

    def __init__(
        self,
        dataset_len: int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ):
        self.dataset_len = int(dataset_len)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.num_replicas, self.rank = _replicas_and_rank(num_replicas, rank)
        self.drop_last = bool(drop_last)
        if self.drop_last:
            self.num_samples = self.dataset_len // self.num_replicas
        else:
            self.num_samples = math.ceil(self.dataset_len / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch = 0
        self._start_index = 0
        self._start_epoch = 0

    @property
    def start_index(self) -> int:
        return self._start_index if self._start_epoch == self.epoch else 0

    @start_index.setter
    def start_index(self, value: int) -> None:
        if not 0 <= int(value) <= self.num_samples:
            raise ValueError(f"start_index {value} outside [0, {self.num_samples}] (samples per rank)")
        self._start_index, self._start_epoch = int(value), self.epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, start_index: int) -> None:
        """Continue ``epoch`` after its first ``start_index`` samples of this rank."""
        self.set_epoch(epoch)
        self.start_index = start_index

    def indices(self) -> np.ndarray:
        """This rank's dataset indices for the current epoch (before ``start_index``)."""
        if self.shuffle:
            order = np.random.default_rng((self.seed & 0xFFFFFFFFFFFFFFFF, self.epoch)).permutation(self.dataset_len)
        else:
            order = np.arange(self.dataset_len)
        if self.total_size > len(order):
            order = np.resize(order, self.total_size) if len(order) else order
        order = order[: self.total_size]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for index in self.indices()[self.start_index :]:
            yield epoch, int(index)

    def __len__(self) -> int:
        return self.num_samples - self.start_index  # what this iteration yields (less after a resume)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start_index": self.start_index, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.resume_at(state["epoch"], state["start_index"])


class EvalSampler(EpochShuffleSampler):
    """In-order, rank-sharded keys at a fixed epoch 0, so validation draws are the same every epoch."""

    def __init__(self, dataset_len: int, seed: int = 0, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset_len, seed, shuffle=False, num_replicas=num_replicas, rank=rank)

    def set_epoch(self, epoch: int) -> None:  # noqa: ARG002 - evaluation randomness stays at epoch 0
        return None


def _replicas_and_rank(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    distributed = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if distributed else 1
    if rank is None:
        rank = dist.get_rank() if distributed else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}")
    return int(num_replicas), int(rank)


class ResumableDataLoader(DataLoader):
    """A training DataLoader that Lightning checkpoints, so a run resumes mid-epoch exactly.

    Lightning saves ``state_dict()`` of loaders that have one and hands it back
    on resume. The position is read from the trainer (batches whose step
    finished), not counted here, because Lightning prefetches a batch ahead.
    """

    def __init__(self, *args, batches_done=lambda: 0, **kwargs):
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "start_index": self._batches_done() * self.batch_size}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        start = min(int(state["start_index"]), self.sampler.num_samples)
        self.sampler.resume_at(int(state["epoch"]), start)


class MultiDataModule(pl.LightningDataModule):
    """Train/val/test loaders over the concatenation of ``config["datasets"]``.

    Datasets without files for a split (e.g. ``vg`` val) are left out of that
    split; an empty training split is an error, an empty evaluation split gives
    no loader (``[]``). All datasets of a run must be of one kind (captions,
    vqa or nlvr2) because their items are batched together.
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.dataset_names = list(self.config.get("datasets") or [])
        self._check_datasets()
        self.per_gpu_batchsize = int(self.config.get("per_gpu_batchsize", 0))
        if self.per_gpu_batchsize <= 0:
            raise ValueError("per_gpu_batchsize must be set to a positive int, e.g. per_gpu_batchsize=32")
        self.eval_batch_size = int(self.config.get("eval_batch_size", 0)) or self.per_gpu_batchsize
        self.num_workers = int(self.config.get("num_workers", 0))
        self.seed = int(self.config.get("seed", 0))
        self._split_datasets: dict[str, ConcatArrowDataset | None] = {}
        self.train_sampler: EpochShuffleSampler | None = None
        self._collator: Collator | None = None

    def _check_datasets(self) -> None:
        if not self.dataset_names:
            raise ValueError("config key datasets is empty; name at least one, e.g. datasets=['coco']")
        kinds = {name: lookup_dataset(name)[0].__name__ for name in self.dataset_names}
        if len(set(kinds.values())) > 1:
            raise ValueError(
                f"datasets {kinds} mix kinds that cannot share a batch; run caption, vqa and nlvr2 datasets separately"
            )

    @property
    def tokenizer(self):
        return load_tokenizer(self.config.get("tokenizer", "bert-base-uncased"))

    @property
    def collator(self) -> Collator:
        if self._collator is None:
            loss_names = self.config.get("loss_names") or {}
            self._collator = Collator(
                self.tokenizer,
                max_text_len=self.config.get("max_text_len", 40),
                mlm_prob=self.config.get("mlm_prob", 0.15),
                whole_word_masking=self.config.get("whole_word_masking", False),
                mlm=bool(loss_names.get("mlm", 1)),
                seed=self.seed,
            )
        return self._collator

    # ---- datasets

    def dataset(self, split: str) -> ConcatArrowDataset | None:
        """Concatenation of the configured datasets' ``split`` (built once; None if none has it)."""
        if split not in self._split_datasets:
            built = {name: build_dataset(name, split, self.config) for name in self.dataset_names}
            for name, part in built.items():
                if part is not None and len(part) == 0:
                    logger.warning("%s %s split (%s) has no samples: it is left out", name, split,
                                   ", ".join(f"{n}.arrow" for n in part.names))
            parts = [p for p in built.values() if p is not None and len(p) > 0]
            self._split_datasets[split] = ConcatArrowDataset(parts) if parts else None
            if not parts and split != "train":
                logger.warning("no %s samples in datasets %s under data_root=%r: %s is skipped", split,
                               self.dataset_names, self.config.get("data_root"),
                               "validation" if split == "val" else "testing")
        return self._split_datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._train_dataset()
        if stage in (None, "fit", "validate"):
            self.dataset("val")
        if stage in (None, "test", "predict"):
            self.dataset(self.config.get("test_split", "test"))

    def _train_dataset(self) -> ConcatArrowDataset:
        dataset = self.dataset("train")
        if dataset is None:
            raise ValueError(
                f"no training samples: none of datasets {self.dataset_names} has train files with samples "
                f"under data_root={self.config.get('data_root')!r}"
            )
        return dataset

    @property
    def train_dataset(self) -> ConcatArrowDataset:
        return self._train_dataset()

    # ---- loaders

    def train_dataloader(self) -> DataLoader:
        dataset = self._train_dataset()
        self.train_sampler = EpochShuffleSampler(len(dataset), seed=self.seed, shuffle=True)
        return self._loader(dataset, self.per_gpu_batchsize, self.train_sampler,
                            loader_class=ResumableDataLoader, batches_done=self._batches_done_this_epoch)

    def _batches_done_this_epoch(self) -> int:
        trainer = self.trainer
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def val_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader | list:
        """Loader over ``config["test_split"]`` ("test" unless set, e.g. "test-dev" for VQA)."""
        return self.eval_dataloader(self.config.get("test_split", "test"))

    def eval_dataloader(self, split: str) -> DataLoader | list:
        """Loader over ``split`` ("val", "test", "test-dev"), in order; ``[]`` when the split is empty."""
        dataset = self.dataset(split)
        if dataset is None:
            return []
        return self._loader(dataset, self.eval_batch_size, EvalSampler(len(dataset), seed=self.seed))

    def _loader(self, dataset, batch_size: int, sampler: Sampler, loader_class=DataLoader, **extra) -> DataLoader:
        workers = self.num_workers
        return loader_class(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=self.collator,
            pin_memory=torch.cuda.is_available() and int(self.config.get("num_gpus", 1)) > 0,
            persistent_workers=workers > 0,
            drop_last=False,
            **extra,
        )
