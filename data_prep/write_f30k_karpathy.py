"""Flickr30k captions -> ``f30k_caption_karpathy_{train,val,test}.arrow``.

Usage: ``python data_prep/write_f30k_karpathy.py F30K_ROOT ARROW_DIR``

Reads ``karpathy/dataset_flickr30k.json`` (Karpathy split format, no ``filepath``
field) and the images in ``flickr30k-images/<filename>``. Columns: image (bytes
of the original file), caption (list of raw captions), image_id (the image file
name, as in ViLT), split.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import WriterOptions, WriteSummary, build_parser, check_root, find_file, run_cli  # noqa: E402
from data_prep.write_coco_karpathy import write_karpathy  # noqa: E402

PREFIX = "f30k_caption_karpathy"
SPLITS = ("train", "val", "test")
JSON_CANDIDATES = ("karpathy/dataset_flickr30k.json", "dataset_flickr30k.json")
IMAGE_DIR = "flickr30k-images"


def make_arrow(
    root,
    dataset_root,
    *,
    rows_per_batch: int = 256,
    image_check: str = "decode",
    progress: bool = True,
) -> WriteSummary:
    """Write the three F30K caption arrow files; return the summary."""
    root = check_root(root)
    json_path = find_file(
        root, JSON_CANDIDATES, "Flickr30k Karpathy split JSON",
        fix="Get dataset_flickr30k.json (Karpathy splits) and put it in F30K_ROOT/karpathy/.",
    )
    return write_karpathy(
        json_path, dataset_root, dataset="f30k", prefix=PREFIX, splits=SPLITS,
        image_path=lambda e: root / IMAGE_DIR / e["filename"],
        opts=WriterOptions(rows_per_batch, image_check, progress),
    )


def main(argv=None) -> int:
    return run_cli(make_arrow, build_parser(__doc__.splitlines()[0]), argv)


if __name__ == "__main__":
    sys.exit(main())
