"""Arrow-backed datasets: captions (coco, f30k, vg, sbu, gcc, demo), VQAv2 and NLVR2.

Memory: arrow files are opened memory-mapped and shared by DataLoader workers;
the per-sample index is a pair of numpy int arrays (row, entry-within-row)
computed with arrow compute kernels, and texts are read from the mapped list
column on demand. No caption is held as a Python object, so memory does not
grow with the data or with the number of workers (the reference ViLT fault).

Keys: ``dataset[i]`` takes either an int (uses the epoch set by ``set_epoch``)
or an ``(epoch, index)`` tuple as yielded by
``vlt.data.datamodule.EpochShuffleSampler``. Carrying the epoch inside the key
makes per-epoch randomness reach persistent DataLoader workers, whose dataset
copies never see ``set_epoch`` calls made in the main process. All randomness
of a sample (false draws, random crops, and the collator's MLM masks through
``sample_seed``) is a function of (seed, epoch, index).

Item keys follow docs/ARCHITECTURE.md, plus ``sample_seed`` (int, consumed by
the Collator to seed masking) and, for NLVR2, ``table_name``. An unreadable
image yields ``None`` (logged once per image, counted in ``n_corrupt``), never
a substitute sample.
"""
from __future__ import annotations

import difflib
import io
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset

from vlt.data.arrow_io import MissingArrowFileError, data_prep_hint, open_arrow
from vlt.data.transforms import build_transform, seeded_global_rng

logger = logging.getLogger(__name__)

SampleKey = Union[int, tuple[int, int]]
SPLITS = ("train", "val", "test", "test-dev")
MAX_FALSE_IMAGE_TRIES = 10
_SUBSET_STREAM = 0x5EB5E7  # separates the use_percentage RNG stream from per-sample streams
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, Image.DecompressionBombError)


def split_key(key: SampleKey, default_epoch: int) -> tuple[int, int]:
    """``(epoch, index)`` from an int index or an ``(epoch, index)`` pair."""
    if isinstance(key, (tuple, list)):
        epoch, index = key
        return int(epoch), int(index)
    return int(default_epoch), int(key)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that drives all randomness of sample ``index`` in ``epoch``."""
    return np.random.default_rng((int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch), int(index)))


# ---------------------------------------------------------------- index building


def _list_lengths(chunk: pa.Array) -> np.ndarray:
    """Entries per row of a list column chunk (null -> 0); a plain column has 1 per non-null row."""
    if pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type):
        return pc.list_value_length(chunk).fill_null(0).to_numpy().astype(np.int64)
    return chunk.is_valid().to_numpy(zero_copy_only=False).astype(np.int64)


def _chunk_entries(chunk: pa.Array, remove_duplicate: bool) -> tuple[np.ndarray, np.ndarray]:
    """(row-in-chunk, entry-within-row) of each entry of one chunk, duplicates within a row dropped."""
    counts = _list_lengths(chunk)
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(len(rows), dtype=np.int64) - starts[rows]
    is_list = pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type)
    if remove_duplicate and is_list and len(rows):
        keyed = pa.table({"row": rows, "text": chunk.flatten(), "pos": np.arange(len(rows))})
        first = keyed.group_by(["row", "text"], use_threads=False).aggregate([("pos", "min")])
        keep = np.sort(first.column("pos_min").to_numpy())
        rows, within = rows[keep], within[keep]
    return rows, within


def build_entry_index(column: pa.ChunkedArray, remove_duplicate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Numpy (row, entry-within-row) arrays over a (list) column, sorted by row."""
    rows_out, within_out, offset = [], [], 0
    for chunk in column.chunks:
        rows, within = _chunk_entries(chunk, remove_duplicate)
        rows_out.append(rows + offset)
        within_out.append(within)
        offset += len(chunk)
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    return np.concatenate(rows_out), np.concatenate(within_out).astype(np.int32)


def subset_rows(n_rows: int, use_percentage: float, seed: int) -> np.ndarray:
    """Sorted rows of a deterministic ``use_percentage`` % subset (all rows at 100)."""
    if not 0 < use_percentage <= 100:
        raise ValueError(f"use_percentage must be in (0, 100], got {use_percentage}")
    if use_percentage >= 100:
        return np.arange(n_rows, dtype=np.int64)
    k = max(1, int(round(n_rows * use_percentage / 100)))
    rng = np.random.default_rng((int(seed) & 0xFFFFFFFFFFFFFFFF, _SUBSET_STREAM))
    return np.sort(rng.choice(n_rows, size=k, replace=False)).astype(np.int64)


def _draw_other(rng: np.random.Generator, n: int, start: int, stop: int) -> int:
    """Uniform draw from ``range(n)`` outside the block ``[start, stop)``."""
    r = int(rng.integers(n - (stop - start)))
    return r + (stop - start) if r >= start else r


def _nth(scalar: pa.Scalar, within: int) -> Any:
    """Entry ``within`` of a list scalar, or the scalar's value for a plain column."""
    if isinstance(scalar, (pa.ListScalar, pa.LargeListScalar)):
        return scalar[within].as_py() if scalar.is_valid else None
    return scalar.as_py()


# ---------------------------------------------------------------- datasets


class BaseArrowDataset(Dataset):
    """Samples over memory-mapped arrow files: one per entry of ``text_column_name`` (or per image).

    Args mirror the config keys: ``transform_keys`` (one key, see
    ``vlt.data.transforms``), ``names`` (arrow file names without ``.arrow``,
    concatenated), ``remove_duplicate`` (drop repeated texts within a row),
    ``max_text_len`` (kept for ViLT compatibility; the Collator truncates),
    ``draw_false_image`` / ``draw_false_text`` (k random images / texts of
    *other* rows per sample), ``image_only`` (one sample per image, no text),
    ``use_percentage`` (deterministic subset of images), ``use_single_caption``
    (first text of each row only), ``seed``.
    """

    image_columns: tuple[str, ...] = ("image",)
    default_text_column = "caption"
    extra_columns: tuple[str, ...] = ()
    optional_columns: tuple[str, ...] = ()  # read when every file has them

    def __init__(
        self,
        data_dir: str | Path,
        transform_keys: Sequence[str] | str,
        image_size: int,
        names: Sequence[str],
        text_column_name: str | None = None,
        remove_duplicate: bool = True,
        max_text_len: int = 40,
        draw_false_image: int = 0,
        draw_false_text: int = 0,
        image_only: bool = False,
        use_percentage: float = 100,
        use_single_caption: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        if not names:
            raise ValueError(f"{type(self).__name__} needs at least one arrow file name")
        self.data_dir = Path(data_dir)
        self.names = list(names)
        self.transform_key = _single_transform_key(transform_keys)
        self.image_size = int(image_size)
        self.transform = build_transform(self.transform_key, self.image_size)
        self.text_column_name = text_column_name or self.default_text_column
        self.remove_duplicate = bool(remove_duplicate)
        self.max_text_len = int(max_text_len)
        self.draw_false_image = int(draw_false_image)
        self.draw_false_text = int(draw_false_text)
        self.image_only = bool(image_only)
        self.use_percentage = float(use_percentage)
        self.use_single_caption = bool(use_single_caption)
        self.seed = int(seed)
        self.epoch = 0
        self.n_corrupt = 0
        self._warned: set[tuple[str, int]] = set()
        self._columns: dict[str, pa.ChunkedArray] | None = None
        self._build_index()
        self._check_false_draws()

    # ---- arrow access

    @property
    def columns(self) -> dict[str, pa.ChunkedArray]:
        """The needed columns of all files, concatenated zero-copy (opened lazily after unpickling)."""
        if self._columns is None:
            self._columns = self._open_columns()
        return self._columns

    def _needed_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.image_columns, self.text_column_name, *self.extra_columns]))

    def _open_columns(self) -> dict[str, pa.ChunkedArray]:
        wanted = self._needed_columns()
        opened = [open_arrow(self.data_dir, name) for name in self.names]
        for name, table in zip(self.names, opened):
            missing = [c for c in wanted if c not in table.column_names]
            if missing:
                raise ValueError(
                    f"{self.data_dir / (name + '.arrow')} lacks column(s) {missing} needed by "
                    f"{type(self).__name__} (it has {table.column_names}); rewrite it with: "
                    f"{data_prep_hint(name, self.data_dir)}"
                )
        wanted += [c for c in self.optional_columns if all(c in t.column_names for t in opened)]
        tables = [table.select(wanted) for table in opened]
        ends = [table.num_rows for table in opened]
        try:
            table = pa.concat_tables(tables)
        except pa.ArrowInvalid as err:
            raise ValueError(f"arrow files {self.names} have incompatible schemas: {err}") from err
        self._table_ends = np.cumsum(ends).astype(np.int64)
        return {name: table.column(name) for name in wanted}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_columns"] = None  # reopened memory-mapped in the receiving process
        return state

    # ---- index

    def _build_index(self) -> None:
        columns = self.columns
        n_rows = len(columns[self.image_columns[0]])
        keep = np.zeros(n_rows, dtype=bool)
        keep[subset_rows(n_rows, self.use_percentage, self.seed)] = True
        if self.image_only:
            self._sample_rows = np.flatnonzero(keep).astype(np.int64)
            self._sample_within = np.full(len(self._sample_rows), -1, dtype=np.int32)
        else:
            rows, within = build_entry_index(columns[self.text_column_name], self.remove_duplicate)
            mask = keep[rows] & ((within == 0) if self.use_single_caption else True)
            self._sample_rows, self._sample_within = rows[mask], within[mask]
        self._image_rows = np.unique(self._sample_rows)
        self._image_bounds = np.searchsorted(self._sample_rows, np.append(self._image_rows, n_rows))
        pa.default_memory_pool().release_unused()  # hand back group-by scratch before workers fork

    def _check_false_draws(self) -> None:
        wants = self.draw_false_image > 0 or (self.draw_false_text > 0 and not self.image_only)
        if wants and 0 < len(self._image_rows) < 2:  # an empty dataset is left out by the datamodule
            raise ValueError(
                f"{type(self).__name__} over {self.names} has {len(self._image_rows)} image(s); "
                "draw_false_image / draw_false_text need at least 2 (set them to 0)"
            )

    @property
    def num_images(self) -> int:
        return len(self._image_rows)

    def __len__(self) -> int:
        return len(self._sample_rows)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain int keys (``(epoch, index)`` keys carry their own)."""
        self.epoch = int(epoch)

    def table_name(self, row: int) -> str:
        """Arrow file name that ``row`` (across the concatenated files) comes from."""
        return self.names[self._file_of(row)]

    def _file_of(self, row: int) -> int:
        return int(np.searchsorted(self._table_ends, row, side="right"))

    # ---- reading

    def read_text(self, index: int) -> str:
        """Text of sample ``index`` read from the mapped column."""
        row, within = int(self._sample_rows[index]), int(self._sample_within[index])
        text = _nth(self.columns[self.text_column_name][row], within)
        return "" if text is None else str(text)

    def load_image(self, row: int, seed: int, column: str | None = None) -> torch.Tensor | None:
        """Decoded, transformed image of ``row``; ``None`` (logged, counted) if unreadable."""
        column = column or self.image_columns[0]
        data = self.columns[column][row].as_py()
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except _DECODE_ERRORS as err:
            self._report_corrupt(column, row, err)
            return None
        if not getattr(self.transform, "draws_randomness", True):
            return self.transform(image)
        with seeded_global_rng(seed):
            return self.transform(image)

    def _report_corrupt(self, column: str, row: int, err: Exception) -> None:
        self.n_corrupt += 1
        if (column, row) in self._warned:
            return
        self._warned.add((column, row))
        file = self._file_of(row)
        local_row = row - (int(self._table_ends[file - 1]) if file else 0)
        logger.warning(
            "unreadable image in %s.arrow row %d column %r (%s: %s); the sample is dropped from its batch",
            self.names[file], local_row, column, type(err).__name__, err,
        )

    # ---- items

    def __getitem__(self, key: SampleKey) -> dict | None:
        epoch, index = split_key(key, self.epoch)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        index %= len(self)
        rng = sample_rng(self.seed, epoch, index)
        return self.build_item(index, rng)

    def _seed(self, rng: np.random.Generator) -> int:
        return int(rng.integers(2**63 - 1))

    def build_item(self, index: int, rng: np.random.Generator) -> dict | None:
        """Image, text and false draws of sample ``index`` (caption layout)."""
        row = int(self._sample_rows[index])
        item = {"sample_seed": self._seed(rng), "image_index": row, "text_index": index}
        image = self.load_image(row, self._seed(rng))
        if image is None:
            return None
        item["image"] = image
        if not self.image_only:
            item["text"] = self.read_text(index)
        false_images = self._false_images(row, rng)
        if false_images is None:
            return None
        item.update(false_images)
        if not self.image_only:
            item.update(self._false_texts(row, rng))
        return item

    def _image_position(self, row: int) -> int:
        return int(np.searchsorted(self._image_rows, row))

    def _false_images(self, row: int, rng: np.random.Generator) -> dict | None:
        """``false_image_{k}``: images of random other rows (unreadable ones are redrawn)."""
        out, pos, n = {}, self._image_position(row), len(self._image_rows)
        for k in range(self.draw_false_image):
            for _ in range(MAX_FALSE_IMAGE_TRIES):
                other = int(self._image_rows[_draw_other(rng, n, pos, pos + 1)])
                image = self.load_image(other, self._seed(rng))
                if image is not None:
                    out[f"false_image_{k}"] = image
                    break
            else:
                logger.warning("no readable false image after %d draws; dropping the sample", MAX_FALSE_IMAGE_TRIES)
                return None
        return out

    def _false_texts(self, row: int, rng: np.random.Generator) -> dict:
        """``false_text_{k}``: texts of random samples from other rows."""
        pos = self._image_position(row)
        start, stop = int(self._image_bounds[pos]), int(self._image_bounds[pos + 1])
        return {
            f"false_text_{k}": self.read_text(_draw_other(rng, len(self), start, stop))
            for k in range(self.draw_false_text)
        }


class CaptionDataset(BaseArrowDataset):
    """Image-caption pairs (coco, f30k, vg, sbu, gcc, demo): one sample per distinct caption."""


class VQAv2Dataset(BaseArrowDataset):
    """One sample per question; ``vqa_targets`` is the dense soft-score vector.

    False draws and ``image_only`` do not apply (as in ViLT) and are ignored.
    """

    default_text_column = "questions"
    extra_columns = ("answers", "answer_labels", "answer_scores", "question_id")

    def __init__(self, *args, vqav2_label_size: int = 3129, **kwargs):
        kwargs.setdefault("remove_duplicate", False)
        kwargs.update(draw_false_image=0, draw_false_text=0, image_only=False)
        self.vqav2_label_size = int(vqav2_label_size)
        super().__init__(*args, **kwargs)

    def vqa_targets(self, row: int, within: int) -> torch.Tensor:
        """Soft scores of question ``within`` of ``row`` scattered into a (label_size,) vector."""
        targets = torch.zeros(self.vqav2_label_size)
        labels = _nth(self.columns["answer_labels"][row], within) or []
        scores = _nth(self.columns["answer_scores"][row], within) or []
        if len(labels) != len(scores):
            raise ValueError(f"row {row}: {len(labels)} answer_labels but {len(scores)} answer_scores")
        if labels:
            labels_t = torch.as_tensor(labels, dtype=torch.long)
            if int(labels_t.max()) >= self.vqav2_label_size or int(labels_t.min()) < 0:
                raise ValueError(
                    f"answer label {int(labels_t.max())} outside vqav2_label_size={self.vqav2_label_size}; "
                    "set vqav2_label_size to the answer vocabulary size the arrow files were written with"
                )
            targets[labels_t] = torch.as_tensor(scores, dtype=torch.float32)
        return targets

    def build_item(self, index: int, rng: np.random.Generator) -> dict | None:
        row, within = int(self._sample_rows[index]), int(self._sample_within[index])
        item = {"sample_seed": self._seed(rng), "image_index": row, "text_index": index}
        image = self.load_image(row, self._seed(rng))
        if image is None:
            return None
        question_id = _nth(self.columns["question_id"][row], within)
        item.update(
            image=image,
            text=self.read_text(index),
            vqa_targets=self.vqa_targets(row, within),
            question_id=int(question_id) if question_id is not None else -1,
            vqa_answers=list(_nth(self.columns["answers"][row], within) or []),
        )
        return item


class NLVR2Dataset(BaseArrowDataset):
    """One sample per sentence over an image pair: ``image_0``, ``image_1``, ``nlvr2_label``.

    ``table_name`` tells which file (e.g. ``nlvr2_dev`` / ``nlvr2_test1``) the
    sample came from; ``identifier`` is the sentence's own identifier (column
    ``identifiers``) when the file has it, else the pair's. False draws and
    ``image_only`` do not apply and are ignored.
    """

    image_columns = ("image_0", "image_1")
    default_text_column = "questions"
    extra_columns = ("answers", "identifier")
    optional_columns = ("identifiers",)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("remove_duplicate", False)
        kwargs.update(draw_false_image=0, draw_false_text=0, image_only=False)
        super().__init__(*args, **kwargs)

    def build_item(self, index: int, rng: np.random.Generator) -> dict | None:
        row, within = int(self._sample_rows[index]), int(self._sample_within[index])
        item = {"sample_seed": self._seed(rng), "image_index": row, "text_index": index}
        for column in self.image_columns:
            image = self.load_image(row, self._seed(rng), column)
            if image is None:
                return None
            item[column] = image
        answer = _nth(self.columns["answers"][row], within)
        identifier_column = "identifiers" if "identifiers" in self.columns else "identifier"
        item.update(
            text=self.read_text(index),
            nlvr2_label=int(str(answer) == "True"),
            identifier=str(_nth(self.columns[identifier_column][row], within)),
            table_name=self.table_name(row),
        )
        return item


class ConcatArrowDataset(ConcatDataset):
    """``ConcatDataset`` that accepts ``(epoch, index)`` keys and forwards ``set_epoch``."""

    def __getitem__(self, key: SampleKey) -> dict | None:
        if isinstance(key, (tuple, list)):
            epoch, index = split_key(key, 0)
            if index < 0:
                index += len(self)
            part = int(np.searchsorted(self.cumulative_sizes, index, side="right"))
            if part >= len(self.datasets):
                raise IndexError(f"index {index} out of range for a dataset of length {len(self)}")
            start = self.cumulative_sizes[part - 1] if part else 0
            return self.datasets[part][(epoch, index - start)]
        return super().__getitem__(key)

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    @property
    def n_corrupt(self) -> int:
        return sum(getattr(d, "n_corrupt", 0) for d in self.datasets)


# ---------------------------------------------------------------- registry

SplitFiles = Mapping[str, Union[Sequence[str], str]]  # names, or one glob pattern like "sbu_*"

_COCO = {
    "train": ("coco_caption_karpathy_train", "coco_caption_karpathy_restval"),
    "val": ("coco_caption_karpathy_val",),
    "test": ("coco_caption_karpathy_test",),
}
_GCC_VAL = "conceptual_caption_val_*"

DATASET_REGISTRY: dict[str, tuple[type[BaseArrowDataset], SplitFiles]] = {
    "coco": (CaptionDataset, _COCO),
    "f30k": (CaptionDataset, {s: (f"f30k_caption_karpathy_{s}",) for s in ("train", "val", "test")}),
    "vg": (CaptionDataset, {"train": ("vg",), "val": (), "test": ()}),
    "sbu": (CaptionDataset, {"train": "sbu_*", "val": (), "test": ()}),
    "gcc": (CaptionDataset, {"train": "conceptual_caption_train_*", "val": _GCC_VAL, "test": _GCC_VAL}),
    "demo": (CaptionDataset, _COCO),  # write_demo.py writes the COCO Karpathy files
    "vqa": (
        VQAv2Dataset,
        {
            "train": ("vqav2_train", "vqav2_trainable_val"),
            "val": ("vqav2_rest_val",),
            "test": ("vqav2_test",),
            "test-dev": ("vqav2_test-dev",),
        },
    ),
    "nlvr2": (
        NLVR2Dataset,
        {"train": ("nlvr2_train",), "val": ("nlvr2_dev", "nlvr2_test1"), "test": ("nlvr2_dev", "nlvr2_test1")},
    ),
}

# Datasets whose files are made by a different writer than their name prefix suggests.
_PREP_COMMAND = {"demo": "python data_prep/write_demo.py {data_dir}"}


def _natural_key(path: Path) -> tuple:
    stem = path.stem
    head, _, tail = stem.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (stem, -1)


def resolve_names(dataset: str, split: str, data_dir: str | Path) -> list[str]:
    """Arrow file names of ``dataset``'s ``split`` ([] when the dataset has no such split)."""
    _, splits = lookup_dataset(dataset)
    if split not in splits:
        if split in SPLITS:
            return []
        raise ValueError(f"unknown split {split!r} for {dataset!r}; valid: {sorted(splits)}")
    files = splits[split]
    if not isinstance(files, str):
        return list(files)
    found = sorted(Path(data_dir).glob(f"{files}.arrow"), key=_natural_key)
    if not found:
        raise MissingArrowFileError(
            f"no arrow files matching {Path(data_dir) / (files + '.arrow')} for {dataset!r} {split}; "
            f"make them with: {_prep_command(dataset, files.rstrip('*'), data_dir)}"
        )
    return [p.stem for p in found]


def _prep_command(dataset: str, name: str, data_dir: str | Path) -> str:
    if dataset in _PREP_COMMAND:
        return _PREP_COMMAND[dataset].format(data_dir=data_dir)
    return data_prep_hint(name, data_dir)


def lookup_dataset(name: str) -> tuple[type[BaseArrowDataset], SplitFiles]:
    """Registry entry of ``name``; unknown names raise with the closest match."""
    if name not in DATASET_REGISTRY:
        close = difflib.get_close_matches(str(name), DATASET_REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}.{hint} Known datasets: {sorted(DATASET_REGISTRY)}")
    return DATASET_REGISTRY[name]


def build_dataset(name: str, split: str, config: Mapping[str, Any]) -> BaseArrowDataset | None:
    """Dataset ``name`` for ``split`` from the run config; ``None`` if it has no files for that split.

    ``use_percentage`` and ``use_single_caption`` subset the training split only;
    evaluation always runs on the full split. Transforms come from
    ``train_transform_keys`` for train and ``val_transform_keys`` otherwise.
    """
    cls, _ = lookup_dataset(name)
    data_dir = config.get("data_root", "")
    if not data_dir:
        raise ValueError("config key data_root is empty; set data_root=<directory with the .arrow files>")
    names = resolve_names(name, split, data_dir)
    if not names:
        return None
    train = split == "train"
    kwargs = dict(
        data_dir=data_dir,
        transform_keys=config.get("train_transform_keys" if train else "val_transform_keys", ["pixelbert"]),
        image_size=config.get("image_size", 224),
        names=names,
        max_text_len=config.get("max_text_len", 40),
        draw_false_image=config.get("draw_false_image", 0),
        draw_false_text=config.get("draw_false_text", 0),
        image_only=config.get("image_only", False),
        use_percentage=config.get("use_percentage", 100) if train else 100,
        use_single_caption=config.get("use_single_caption", False) if train else False,
        seed=config.get("seed", 0),
    )
    if cls is VQAv2Dataset:
        kwargs["vqav2_label_size"] = config.get("vqav2_label_size", 3129)
    try:
        return cls(**kwargs)
    except MissingArrowFileError as err:
        if name not in _PREP_COMMAND:
            raise
        raise MissingArrowFileError(f"{err}\n(for {name!r} use: {_prep_command(name, '', data_dir)})") from err


def _single_transform_key(keys: Sequence[str] | str) -> str:
    if isinstance(keys, str):
        return keys
    keys = list(keys)
    if len(keys) != 1:
        raise ValueError(
            f"transform keys {keys}: vlt datasets apply exactly one transform per split; "
            "give a one-element list, e.g. train_transform_keys=['pixelbert']"
        )
    return keys[0]
