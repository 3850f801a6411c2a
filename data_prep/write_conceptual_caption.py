"""Conceptual Captions (GCC) -> ``conceptual_caption_{train,val}_{k}.arrow``.

Usage: ``python data_prep/write_conceptual_caption.py GCC_ROOT ARROW_DIR [--rows_per_file N]``

Layout (as ViLT's writer expects): ``GCC_ROOT/{split}_annot.json`` for split in
train/val, a JSON list of ``[image_path_or_url, caption]`` pairs (objects with
an ``image``/``file_name``/``filename``/``path``/``url`` key and a
``caption``/``text`` key are accepted too), and the downloaded images anywhere
under ``GCC_ROOT/images_{split}/`` (ViLT: ``images_{split}/<shard>/<file>``).
An image is matched to its caption by file name (the last path component of
the annotation's path or URL).

Rows follow the image folder walk (folders and files in sorted order, so runs
are reproducible); the annotation is held in memory (it is JSON), images are
read one at a time. Every ``--rows_per_file`` rows start a new chunk ``_k``.
Annotated images that are missing are listed as skipped; images with no
annotation are counted in a note. Columns: image, caption (list with one str),
image_id (file name), split.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import (  # noqa: E402
    CAPTION_SCHEMA,
    ChunkedWriter,
    DataPrepError,
    StagedOutput,
    WriterOptions,
    WriteSummary,
    build_parser,
    check_root,
    load_json,
    optional_file,
    run_cli,
)

PREFIX = "conceptual_caption"
SPLITS = ("train", "val")
DEFAULT_ROWS_PER_FILE = 100_000
IMAGE_KEYS = ("image", "file_name", "filename", "path", "image_path", "url")
CAPTION_KEYS = ("caption", "text")


def entry_pair(entry, json_path: Path) -> tuple[str, str]:
    """``(file name, caption)`` of one annotation entry."""
    if isinstance(entry, (list, tuple)) and len(entry) >= 2:
        ref, caption = entry[0], entry[1]
    elif isinstance(entry, dict):
        ref = next((entry[k] for k in IMAGE_KEYS if k in entry), None)
        caption = next((entry[k] for k in CAPTION_KEYS if k in entry), None)
    else:
        ref = caption = None
    if not isinstance(ref, str) or not isinstance(caption, str):
        raise DataPrepError(
            f"{json_path}: cannot read entry {str(entry)[:200]!r}; expected [image_path, caption] "
            f"or an object with one of {IMAGE_KEYS} and one of {CAPTION_KEYS}"
        )
    return ref.rstrip("/").rsplit("/", 1)[-1], caption


def caption_index(json_path: Path, summary: WriteSummary) -> dict[str, str]:
    """File name -> caption for one annotation file (first caption wins for repeated names)."""
    entries = load_json(json_path)
    if not isinstance(entries, list):
        raise DataPrepError(f"{json_path} should hold a JSON list of [image_path, caption] pairs")
    index: dict[str, str] = {}
    repeated = 0
    for entry in entries:
        name, caption = entry_pair(entry, json_path)
        if name in index:
            repeated += 1
        else:
            index[name] = caption
    if repeated:
        summary.note(f"{json_path.name}: {repeated} entries repeat an image file name; the first caption is kept")
    return index


def iter_image_files(folder: Path):
    """Every file below ``folder``, in sorted folder/file order."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def write_chunked_captions(
    index: dict[str, str],
    image_dir: Path,
    *,
    stage: StagedOutput,
    prefix: str,
    split: str,
    rows_per_file: int,
    summary: WriteSummary,
    opts: WriterOptions,
) -> None:
    """Write ``<prefix>_<k>.arrow`` chunks pairing the images under ``image_dir`` with ``index``."""
    if not image_dir.is_dir():
        raise DataPrepError(f"image folder {image_dir} not found; put the downloaded {split} images there")
    writer = ChunkedWriter(stage, prefix, CAPTION_SCHEMA, rows_per_file, opts.rows_per_batch)
    unannotated = 0
    with opts.bar(total=len(index), desc=prefix) as bar:
        for path in iter_image_files(image_dir):
            caption = index.pop(path.name, None)
            if caption is None:
                unannotated += 1
                continue
            bar.update()
            data = opts.read(path, summary)
            if data is None:
                continue
            writer.write_row({"image": data, "caption": [caption], "image_id": path.name, "split": split})
            summary.images += 1
            summary.texts += 1
    for name in index:  # annotated, never found on disk
        summary.skip(image_dir / name, "missing file")
    summary.files.update(writer.close())
    if unannotated:
        summary.note(f"{image_dir}: {unannotated} files have no caption in the annotation (or repeat a file name)")


def make_arrow(
    root,
    dataset_root,
    *,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    rows_per_batch: int = 256,
    image_check: str = "decode",
    progress: bool = True,
) -> WriteSummary:
    """Write the GCC train/val chunks for every split whose annotation exists; return the summary."""
    root = check_root(root)
    opts = WriterOptions(rows_per_batch, image_check, progress)
    annots = {split: optional_file(root, [f"{split}_annot.json"]) for split in SPLITS}
    if not any(annots.values()):
        looked = ", ".join(str(root / f"{s}_annot.json") for s in SPLITS)
        raise DataPrepError(f"no GCC annotation found; looked for {looked} (JSON lists of [image_path, caption])")
    summary = WriteSummary("conceptual_caption", str(dataset_root))
    with StagedOutput(dataset_root, PREFIX) as stage:
        for split, json_path in annots.items():
            if json_path is None:
                summary.note(f"{root / f'{split}_annot.json'} not found: no {split} files written")
                continue
            write_chunked_captions(
                caption_index(json_path, summary), root / f"images_{split}", stage=stage,
                prefix=f"{PREFIX}_{split}", split=split, rows_per_file=rows_per_file, summary=summary, opts=opts,
            )
    if stage.removed:
        summary.note(f"removed stale chunks from an earlier run: {stage.removed}")
    return summary


def main(argv=None) -> int:
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--rows_per_file", type=int, default=DEFAULT_ROWS_PER_FILE, help="rows per chunk file")
    return run_cli(make_arrow, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
