"""SBU Captions -> ``sbu_{k}.arrow``.

Usage: ``python data_prep/write_sbu.py SBU_ROOT ARROW_DIR [--rows_per_file N]``

Layout (as ViLT's writer expects): ``SBU_ROOT/annot.json``, a JSON list of
``[image_path_or_url, caption]`` pairs (objects with ``image``/``url``/... and
``caption`` keys are accepted too), and the downloaded images anywhere under
``SBU_ROOT/images_train/`` (or ``SBU_ROOT/images/``). Images are matched to
captions by file name; everything is the ``train`` split. Chunking, ordering,
skipping and columns are those of ``write_conceptual_caption.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import (  # noqa: E402
    StagedOutput,
    WriterOptions,
    WriteSummary,
    build_parser,
    check_root,
    find_file,
    run_cli,
)
from data_prep.write_conceptual_caption import (  # noqa: E402
    DEFAULT_ROWS_PER_FILE,
    caption_index,
    write_chunked_captions,
)

PREFIX = "sbu"
IMAGE_DIRS = ("images_train", "images")


def make_arrow(
    root,
    dataset_root,
    *,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    rows_per_batch: int = 256,
    image_check: str = "decode",
    progress: bool = True,
) -> WriteSummary:
    """Write the SBU chunks; return the summary."""
    root = check_root(root)
    opts = WriterOptions(rows_per_batch, image_check, progress)
    json_path = find_file(root, ["annot.json"], "SBU annotation", fix="It is a JSON list of [image_path, caption].")
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), root / IMAGE_DIRS[0])
    summary = WriteSummary(PREFIX, str(dataset_root))
    with StagedOutput(dataset_root, PREFIX) as stage:
        write_chunked_captions(
            caption_index(json_path, summary), image_dir, stage=stage, prefix=PREFIX, split="train",
            rows_per_file=rows_per_file, summary=summary, opts=opts,
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
