"""COCO captions -> ``coco_caption_karpathy_{train,restval,val,test}.arrow``.

Usage: ``python data_prep/write_coco_karpathy.py COCO_ROOT ARROW_DIR [--layout ...]``

Two raw layouts are read (``--layout``; ``auto`` picks ``karpathy`` when its JSON exists):

* ``karpathy``: ``karpathy/dataset_coco.json`` (``images[].filepath/filename/split/
  sentences[].raw``); each image is ``COCO_ROOT/<filepath>/<filename>``; the
  train/restval/val/test splits are the JSON's.
* ``official``: ``annotations/captions_{train,val}<year>.json`` with images in
  ``<set><year>/`` (``--year``: 2017 if its files exist, else 2014). Official
  train goes to ``train`` and official val to ``val``; ``--official_splits``
  changes that (``train:train,val:val,val:test`` also writes val as ``test``).
  Splits with no source are written empty (a note says so) so that readers of
  train + restval keep working.

Columns: image (bytes of the original file), caption (list of raw captions),
image_id (the image file name, as in ViLT), split.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import (  # noqa: E402
    DataPrepError,
    StagedOutput,
    WriterOptions,
    WriteSummary,
    build_parser,
    check_root,
    find_file,
    load_json,
    optional_file,
    run_cli,
    write_caption_split,
)

PREFIX = "coco_caption_karpathy"
SPLITS = ("train", "restval", "val", "test")
KARPATHY_JSON = "karpathy/dataset_coco.json"
OFFICIAL_YEARS = ("2017", "2014")
DEFAULT_OFFICIAL_SPLITS = "train:train,val:val"


# --------------------------------------------------------------------------- Karpathy layout
def karpathy_items(entries: list, split: str, image_path: Callable[[dict], Path]):
    """``(path, captions, image_id)`` for the Karpathy entries of one split."""
    for entry in entries:
        if entry.get("split") == split:
            yield image_path(entry), [s["raw"] for s in entry.get("sentences", [])], entry["filename"]


def write_karpathy(
    json_path: Path,
    dataset_root,
    *,
    dataset: str,
    prefix: str,
    splits: tuple,
    image_path: Callable[[dict], Path],
    opts: WriterOptions,
) -> WriteSummary:
    """Write one arrow file per split of a Karpathy-format JSON (COCO, F30K)."""
    data = load_json(json_path)
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise DataPrepError(f"{json_path} has no 'images' list; expected the Karpathy split format")
    summary = WriteSummary(dataset, str(dataset_root))
    _note_unusual_entries(entries, splits, summary, json_path)
    entries = [e for e in entries if e.get("sentences")]
    counts = Counter(e.get("split") for e in entries)
    with StagedOutput(dataset_root, prefix) as stage:
        for split in splits:
            write_caption_split(
                stage, f"{prefix}_{split}", karpathy_items(entries, split, image_path),
                split=split, total=counts.get(split, 0), summary=summary, opts=opts,
            )
    return summary


def _note_unusual_entries(entries: list, splits: tuple, summary: WriteSummary, json_path: Path) -> None:
    other = Counter(e.get("split") for e in entries if e.get("split") not in splits)
    if other:
        summary.note(f"{json_path.name}: ignored images of unknown splits {dict(other)} (known: {list(splits)})")
    empty = sum(1 for e in entries if not e.get("sentences"))
    if empty:
        summary.note(f"{json_path.name}: {empty} images without sentences were left out")


# --------------------------------------------------------------------------- official layout
def parse_split_map(text: str) -> dict[str, list[str]]:
    """``"train:train,val:val,val:test"`` -> ``{"train": ["train"], "val": ["val", "test"]}``."""
    mapping: dict[str, list[str]] = {}
    targets = []
    for pair in filter(None, (p.strip() for p in text.split(","))):
        source, sep, target = pair.partition(":")
        if not sep or source not in ("train", "val") or target not in SPLITS:
            raise DataPrepError(
                f"bad --official_splits entry {pair!r}; use OFFICIAL:SPLIT with OFFICIAL in train/val "
                f"and SPLIT in {'/'.join(SPLITS)}, e.g. {DEFAULT_OFFICIAL_SPLITS}"
            )
        if target in targets:
            raise DataPrepError(f"--official_splits writes split {target!r} twice")
        targets.append(target)
        mapping.setdefault(source, []).append(target)
    return mapping


def pick_year(root: Path, year: str) -> str:
    if year != "auto":
        return year
    for candidate in OFFICIAL_YEARS:
        if optional_file(root, [f"annotations/captions_{s}{candidate}.json" for s in ("train", "val")]):
            return candidate
    looked = ", ".join(str(root / f"annotations/captions_{{train,val}}{y}.json") for y in OFFICIAL_YEARS)
    raise DataPrepError(
        f"no COCO caption annotations found; looked for {root / KARPATHY_JSON} and {looked}. "
        "Download the Karpathy split JSON or the official annotations into COCO_ROOT."
    )


def load_official(json_path: Path, summary: WriteSummary) -> list[tuple[str, list[str]]]:
    """``(file_name, captions)`` per captioned image of an official captions JSON, in its image order."""
    data = load_json(json_path)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataPrepError(f"{json_path} lacks 'images'/'annotations'; expected an official COCO captions file")
    captions: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        captions.setdefault(ann["image_id"], []).append(ann["caption"])
    images = [(img["file_name"], captions[img["id"]]) for img in data["images"] if img["id"] in captions]
    if len(images) < len(data["images"]):
        summary.note(f"{json_path.name}: {len(data['images']) - len(images)} images without captions were left out")
    return images


def write_official(root: Path, dataset_root, *, year: str, split_map: str, opts: WriterOptions) -> WriteSummary:
    year = pick_year(root, year)
    mapping = parse_split_map(split_map)
    summary = WriteSummary("coco (official layout)", str(dataset_root))
    written = set()
    with StagedOutput(dataset_root, PREFIX) as stage:
        for source, targets in mapping.items():
            json_path = find_file(
                root, [f"annotations/captions_{source}{year}.json"], f"COCO {source}{year} captions",
                fix=f"Download annotations_trainval{year}.zip, or drop '{source}:' from --official_splits.",
            )
            images = load_official(json_path, summary)
            image_dir = root / f"{source}{year}"
            for target in targets:
                items = ((image_dir / name, captions, name) for name, captions in images)
                write_caption_split(
                    stage, f"{PREFIX}_{target}", items, split=target, total=len(images), summary=summary, opts=opts
                )
                written.add(target)
        for split in SPLITS:
            if split not in written:
                write_caption_split(stage, f"{PREFIX}_{split}", [], split=split, total=0, summary=summary, opts=opts)
                summary.note(f"{PREFIX}_{split}.arrow written empty: no official set maps to it (--official_splits)")
    return summary


# --------------------------------------------------------------------------- entry points
def make_arrow(
    root,
    dataset_root,
    *,
    layout: str = "auto",
    year: str = "auto",
    official_splits: str = DEFAULT_OFFICIAL_SPLITS,
    rows_per_batch: int = 256,
    image_check: str = "decode",
    progress: bool = True,
) -> WriteSummary:
    """Write the four COCO caption arrow files from either raw layout; return the summary."""
    root = check_root(root)
    opts = WriterOptions(rows_per_batch, image_check, progress)
    if layout not in ("auto", "karpathy", "official"):
        raise DataPrepError(f"layout={layout!r}; use auto, karpathy or official")
    karpathy = optional_file(root, [KARPATHY_JSON])
    if layout == "karpathy" and karpathy is None:
        find_file(root, [KARPATHY_JSON], "Karpathy split JSON", fix="Use --layout official for official annotations.")
    if layout == "official" or (layout == "auto" and karpathy is None):
        return write_official(root, dataset_root, year=year, split_map=official_splits, opts=opts)
    return write_karpathy(
        karpathy, dataset_root, dataset="coco (karpathy layout)", prefix=PREFIX, splits=SPLITS,
        image_path=lambda e: root / e.get("filepath", "") / e["filename"], opts=opts,
    )


def main(argv=None) -> int:
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=("auto", "karpathy", "official"), default="auto")
    parser.add_argument("--year", choices=("auto",) + OFFICIAL_YEARS, default="auto", help="official layout year")
    parser.add_argument("--official_splits", default=DEFAULT_OFFICIAL_SPLITS, help="OFFICIAL:SPLIT pairs")
    return run_cli(make_arrow, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
