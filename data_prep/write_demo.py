"""Demo shapes-and-captions data -> ``coco_caption_karpathy_{train,restval,val,test}.arrow``.

Usage: ``python data_prep/write_demo.py ARROW_DIR [--num_train 5000 --num_val 500 --num_test 500
--image_size 64 --seed 0]``

Needs no raw data and no network: images of coloured shapes are rendered and
captioned by :mod:`vlt.data.demo` (deterministic: the same options give
byte-identical files). Use a separate ARROW_DIR from real COCO files, since the
file names are the same.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import WriteSummary, run_cli  # noqa: E402
from vlt.data.demo import CAPTIONS_PER_IMAGE, write_demo_arrows  # noqa: E402


def make_arrow(
    dataset_root,
    *,
    num_train: int = 5000,
    num_val: int = 500,
    num_test: int = 500,
    num_restval: int = 0,
    image_size: int = 64,
    seed: int = 0,
    image_format: str = "png",
    rows_per_batch: int = 256,
    progress: bool = True,
) -> WriteSummary:
    """Write the demo arrow files into ``dataset_root``; return the summary."""
    start = time.perf_counter()
    files = write_demo_arrows(
        dataset_root, num_train, num_val, num_test, image_size, seed,
        num_restval=num_restval, image_format=image_format, rows_per_batch=rows_per_batch, progress=progress,
    )
    summary = WriteSummary("demo", str(dataset_root), files=files)
    summary.images = sum(files.values())
    summary.texts = summary.images * CAPTIONS_PER_IMAGE
    summary.note(f"generated in {time.perf_counter() - start:.1f} s (seed={seed}, image_size={image_size})")
    return summary


def build_demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("dataset_root", metavar="ARROW_DIR", help="folder the .arrow files are written to")
    parser.add_argument("--num_train", type=int, default=5000)
    parser.add_argument("--num_val", type=int, default=500)
    parser.add_argument("--num_test", type=int, default=500)
    parser.add_argument("--num_restval", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_format", choices=("png", "jpeg"), default="png")
    parser.add_argument("--rows_per_batch", type=int, default=256, help="rows per arrow record batch")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def main(argv=None) -> int:
    return run_cli(make_arrow, build_demo_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
