"""Visual Genome region descriptions -> ``vg.arrow``.

Usage: ``python data_prep/write_vg.py VG_ROOT ARROW_DIR``

Reads ``annotations/region_descriptions.json`` (or ``region_descriptions.json``
at VG_ROOT) and the images ``<id>.jpg``, looked up in ``images/``,
``images/VG_100K/``, ``images/VG_100K_2/``, ``VG_100K/`` and ``VG_100K_2/``.
One row per image that has regions: caption = its region phrases, and
x, y, width, height = the region boxes in the same order; image_id = str(id),
as in ViLT.
"""
from __future__ import annotations

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
    find_file,
    load_json,
    run_cli,
)

NAME = "vg"
REGION_JSON = ("annotations/region_descriptions.json", "region_descriptions.json")
IMAGE_DIRS = ("images", "images/VG_100K", "images/VG_100K_2", "VG_100K", "VG_100K_2")
VG_SCHEMA = pa.schema(
    [
        ("image", pa.binary()),
        ("caption", pa.list_(pa.string())),
        ("width", pa.list_(pa.int64())),
        ("height", pa.list_(pa.int64())),
        ("x", pa.list_(pa.int64())),
        ("y", pa.list_(pa.int64())),
        ("image_id", pa.string()),
    ]
)


def image_path(root: Path, image_id: int) -> Path | None:
    """Where ``<image_id>.jpg`` is, or ``None``."""
    for folder in IMAGE_DIRS:
        path = root / folder / f"{image_id}.jpg"
        if path.is_file():
            return path
    return None


def region_row(entry: dict) -> dict:
    """The text and box columns of one image's regions."""
    regions = entry["regions"]
    return {
        "caption": [r["phrase"] for r in regions],
        "width": [int(r["width"]) for r in regions],
        "height": [int(r["height"]) for r in regions],
        "x": [int(r["x"]) for r in regions],
        "y": [int(r["y"]) for r in regions],
    }


def entry_id(entry: dict, json_path: Path) -> int:
    for key in ("id", "image_id"):
        if key in entry:
            return int(entry[key])
    raise DataPrepError(f"{json_path}: an entry has neither 'id' nor 'image_id'; is this region_descriptions.json?")


def make_arrow(
    root,
    dataset_root,
    *,
    rows_per_batch: int = 256,
    image_check: str = "decode",
    progress: bool = True,
) -> WriteSummary:
    """Write ``vg.arrow``; return the summary."""
    root = check_root(root)
    opts = WriterOptions(rows_per_batch, image_check, progress)
    json_path = find_file(
        root, REGION_JSON, "Visual Genome region descriptions",
        fix="Download region_descriptions.json (VG v1.2) into VG_ROOT/annotations/.",
    )
    entries = load_json(json_path)
    if not isinstance(entries, list):
        raise DataPrepError(f"{json_path} should hold a list of {{'id', 'regions'}} entries")
    summary = WriteSummary(NAME, str(dataset_root))
    no_regions = 0
    with StagedOutput(dataset_root, NAME) as stage:
        rows = 0
        with stage.writer(f"{NAME}.arrow", VG_SCHEMA, opts.rows_per_batch) as writer:
            for entry in opts.bar(entries, desc=NAME):
                if not entry.get("regions"):
                    no_regions += 1
                    continue
                iid = entry_id(entry, json_path)
                path = image_path(root, iid)
                if path is None:
                    also = ", ".join(IMAGE_DIRS[1:])
                    summary.skip(root / IMAGE_DIRS[0] / f"{iid}.jpg", f"missing file (also looked in {also})")
                    continue
                data = opts.read(path, summary)
                if data is None:
                    continue
                row = region_row(entry)
                writer.write_row({"image": data, **row, "image_id": str(iid)})
                rows += 1
                summary.images += 1
                summary.texts += len(row["caption"])
        summary.files[f"{NAME}.arrow"] = rows
    if no_regions:
        summary.note(f"{no_regions} images without regions were left out")
    return summary


def main(argv=None) -> int:
    return run_cli(make_arrow, build_parser(__doc__.splitlines()[0]), argv)


if __name__ == "__main__":
    sys.exit(main())
