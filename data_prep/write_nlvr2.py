"""NLVR2 -> ``nlvr2_{train,dev,test1}.arrow`` (+ ``balanced_*``/``unbalanced_*`` when present).

Usage: ``python data_prep/write_nlvr2.py NLVR2_ROOT ARROW_DIR``

Reads ``{train,dev,test1}.json`` (JSON lines; in NLVR2_ROOT, ``data/`` or
``nlvr2/data/``) and, when present, ``balanced/balanced_{dev,test1}.json`` and
``unbalanced/unbalanced_{dev,test1}.json``. Splits whose file is absent are
skipped with a note.

Row layout (ViLT's): one row per image pair. An example's identifier is
``<split>-<set>-<pair>-<sentence>``; the pair id drops the last ``-<sentence>``,
and the pair's images are ``<pair id>-img0.png`` and ``-img1.png``. Columns:
image_0, image_1 (file bytes), questions (the pair's sentences), answers
("True"/"False", parallel to questions), identifier (the pair id, as ViLT) and
identifiers (the full per-sentence identifiers, parallel to questions; sentence
numbers are not always contiguous, so they cannot be rebuilt from positions).

Images are looked up in ``images/<split>/`` and ``<split>/`` (train: first in
``images/train/<directory>/`` when the example names its ``directory``), then
by file name anywhere below those folders (the released train images sit in
numbered sub-folders), with ``.png`` or ``.jpg``. A pair with a missing or
unreadable image is skipped and listed.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow as pa

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import (  # noqa: E402
    DataPrepError,
    StagedOutput,
    WriterOptions,
    WriteSummary,
    build_parser,
    check_root,
    load_json_lines,
    optional_file,
    run_cli,
)

PREFIX = "nlvr2"
SPLIT_FILES = {
    "train": "train.json",
    "dev": "dev.json",
    "test1": "test1.json",
    "balanced_dev": "balanced/balanced_dev.json",
    "balanced_test1": "balanced/balanced_test1.json",
    "unbalanced_dev": "unbalanced/unbalanced_dev.json",
    "unbalanced_test1": "unbalanced/unbalanced_test1.json",
}
MAIN_SPLITS = ("train", "dev", "test1")
JSON_DIRS = ("", "data", "nlvr2/data")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

NLVR2_SCHEMA = pa.schema(
    [
        ("image_0", pa.binary()),
        ("image_1", pa.binary()),
        ("questions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.string())),
        ("identifier", pa.string()),
        ("identifiers", pa.list_(pa.string())),
    ]
)


def pair_id(identifier: str) -> str:
    """``dev-850-0-1`` -> ``dev-850-0`` (the image pair an example is about)."""
    head, sep, _ = identifier.rpartition("-")
    if not sep or not head:
        raise DataPrepError(f"identifier {identifier!r} is not <split>-<set>-<pair>-<sentence>")
    return head


def group_pairs(examples: list, path: Path) -> dict[str, list[dict]]:
    """pair id -> its examples, in first-mention order."""
    pairs: dict[str, list[dict]] = {}
    for example in examples:
        if "identifier" not in example or "sentence" not in example:
            raise DataPrepError(f"{path}: an example lacks 'identifier' or 'sentence'; is this an NLVR2 file?")
        pairs.setdefault(pair_id(example["identifier"]), []).append(example)
    return pairs


class ImageFinder:
    """Locate ``<pair>-img<k>`` files for one image split; builds a file-name index only when needed."""

    def __init__(self, root: Path, image_split: str):
        self.folders = [root / "images" / image_split, root / image_split]
        self._index: dict[str, Path] | None = None

    def find(self, pair: str, k: int, directory=None) -> Path | None:
        stem = f"{pair}-img{k}"
        folders = ([f / str(directory) for f in self.folders] if directory is not None else []) + self.folders
        for folder in folders:
            path = folder / f"{stem}.png"
            if path.is_file():
                return path
        return self._lookup(stem)

    def expected(self, pair: str, k: int) -> Path:
        return self.folders[0] / f"{pair}-img{k}.png"

    def _lookup(self, stem: str) -> Path | None:
        if self._index is None:
            self._index = {}
            for folder in self.folders:
                for dirpath, _, filenames in os.walk(folder):
                    for name in filenames:
                        base, ext = os.path.splitext(name)
                        if ext.lower() in IMAGE_EXTENSIONS:
                            self._index.setdefault(base, Path(dirpath) / name)
        return self._index.get(stem)


def pair_row(images: list[bytes], pair: str, examples: list[dict]) -> dict:
    return {
        "image_0": images[0],
        "image_1": images[1],
        "questions": [e["sentence"] for e in examples],
        "answers": [None if e.get("label") is None else str(e["label"]) for e in examples],
        "identifier": pair,
        "identifiers": [e["identifier"] for e in examples],
    }


def read_pair(finder: ImageFinder, pair: str, examples: list[dict], summary: WriteSummary, opts: WriterOptions):
    """Both images of a pair, or ``None`` (with the failures recorded) when either is unusable."""
    images = []
    for k in (0, 1):
        path = finder.find(pair, k, examples[0].get("directory"))
        if path is None:
            summary.skip(finder.expected(pair, k), "missing file")
            data = None
        else:
            data = opts.read(path, summary)
        images.append(data)
    return images if all(d is not None for d in images) else None


def write_split(root: Path, stage: StagedOutput, split: str, json_path: Path, summary, opts) -> None:
    pairs = group_pairs(load_json_lines(json_path), json_path)
    finder = ImageFinder(root, next(iter(pairs)).split("-")[0] if pairs else split)
    rows = unlabelled = 0
    with stage.writer(f"{PREFIX}_{split}.arrow", NLVR2_SCHEMA, opts.rows_per_batch) as writer:
        for pair, examples in opts.bar(pairs.items(), total=len(pairs), desc=f"{PREFIX}_{split}", unit="pair"):
            images = read_pair(finder, pair, examples, summary, opts)
            if images is None:
                continue
            writer.write_row(pair_row(images, pair, examples))
            rows += 1
            summary.images += 2
            summary.texts += len(examples)
            unlabelled += sum(1 for e in examples if e.get("label") is None)
    summary.files[f"{PREFIX}_{split}.arrow"] = rows
    if unlabelled:
        summary.note(f"{split}: {unlabelled} examples have no label (answer stored as null)")


def make_arrow(
    root,
    dataset_root,
    *,
    rows_per_batch: int = 256,
    image_check: str = "decode",
    progress: bool = True,
) -> WriteSummary:
    """Write one NLVR2 arrow file per split file found; return the summary."""
    root = check_root(root)
    opts = WriterOptions(rows_per_batch, image_check, progress)
    found = {s: optional_file(root, [str(Path(d) / f) for d in JSON_DIRS]) for s, f in SPLIT_FILES.items()}
    if not any(found[s] for s in MAIN_SPLITS):
        looked = ", ".join(str(root / d / SPLIT_FILES[s]) for s in MAIN_SPLITS for d in JSON_DIRS)
        raise DataPrepError(f"no NLVR2 split file found; looked for {looked}")
    summary = WriteSummary(PREFIX, str(dataset_root))
    with StagedOutput(dataset_root, PREFIX) as stage:
        for split, json_path in found.items():
            if json_path is None:
                if split in MAIN_SPLITS:
                    summary.note(f"{SPLIT_FILES[split]} not found: no {PREFIX}_{split}.arrow written")
                continue
            write_split(root, stage, split, json_path, summary, opts)
    return summary


def main(argv=None) -> int:
    return run_cli(make_arrow, build_parser(__doc__.splitlines()[0]), argv)


if __name__ == "__main__":
    sys.exit(main())
