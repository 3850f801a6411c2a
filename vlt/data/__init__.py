"""Data path: arrow files -> datasets -> collated batches (see docs/ARCHITECTURE.md).

Names are imported lazily so that light users (``vlt.data.arrow_io`` in the
data_prep writers) do not pay for torch/torchvision/transformers imports.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "open_arrow": "arrow_io",
    "AtomicArrowWriter": "arrow_io",
    "MissingArrowFileError": "arrow_io",
    "load_tokenizer": "tokenizer",
    "minilm_dir": "tokenizer",
    "build_transform": "transforms",
    "BaseArrowDataset": "datasets",
    "CaptionDataset": "datasets",
    "VQAv2Dataset": "datasets",
    "NLVR2Dataset": "datasets",
    "ConcatArrowDataset": "datasets",
    "DATASET_REGISTRY": "datasets",
    "build_dataset": "datasets",
    "Collator": "collate",
    "EpochShuffleSampler": "datamodule",
    "MultiDataModule": "datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlt.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vlt.data.{_EXPORTS[name]}"), name)
