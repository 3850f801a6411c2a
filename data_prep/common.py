"""Shared machinery of the data_prep writers.

* Command line: ``python data_prep/write_<name>.py RAW_ROOT ARROW_DIR [options]``
  (:func:`build_parser`, :func:`run_cli`).
* Images are read one at a time and checked (:func:`read_image`); a missing or
  undecodable image is skipped and listed in the summary, never replaced.
* Output is staged (:class:`StagedOutput`): every file of a run is written with
  :class:`~vlt.data.arrow_io.AtomicArrowWriter` into a hidden folder inside
  ARROW_DIR and moved into place only when the whole run succeeded, so a failed
  run leaves neither partial ``.arrow`` files nor temporary files behind.
* :class:`WriteSummary` is what every ``make_arrow`` returns and what the CLI prints.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pyarrow as pa
from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm import tqdm

from vlt.data.arrow_io import AtomicArrowWriter

IMAGE_CHECKS = ("decode", "verify", "none")

# Column layouts (same names as the ViLT/VLC writers; see docs/ARCHITECTURE.md).
CAPTION_SCHEMA = pa.schema(
    [
        ("image", pa.binary()),
        ("caption", pa.list_(pa.string())),
        ("image_id", pa.string()),
        ("split", pa.string()),
    ]
)


class DataPrepError(Exception):
    """A problem with the raw inputs; the message names the file and the fix."""


# --------------------------------------------------------------------------- summary
@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class WriteSummary:
    """What a writer produced: rows per file, images, skipped inputs and notes."""

    dataset: str
    arrow_dir: str
    files: dict = field(default_factory=dict)  # arrow file name -> rows
    images: int = 0  # image files written
    texts: int = 0  # captions / questions written
    skipped: list = field(default_factory=list)  # list[Skipped]
    notes: list = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.files.values())

    def skip(self, path, reason: str) -> None:
        self.skipped.append(Skipped(str(path), reason))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def skip_reasons(self) -> Counter:
        """How many inputs were skipped for each kind of reason."""
        return Counter(s.reason.split(" (")[0] for s in self.skipped)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rows"] = self.rows
        return data

    def format(self, max_listed: int = 50) -> str:
        lines = [
            f"{self.dataset}: wrote {self.rows} rows, {self.images} images, {self.texts} texts to {self.arrow_dir}"
        ]
        lines += [f"  {name}: {rows} rows" for name, rows in self.files.items()]
        lines.append(f"  skipped: {len(self.skipped)}")
        for reason, count in sorted(self.skip_reasons().items()):
            lines.append(f"    {count} x {reason}")
        for item in self.skipped[:max_listed]:
            lines.append(f"    - {item.path}: {item.reason}")
        if len(self.skipped) > max_listed:
            lines.append(f"    ... and {len(self.skipped) - max_listed} more")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# --------------------------------------------------------------------------- images
def check_image_bytes(data: bytes, check: str = "decode") -> str | None:
    """``None`` if ``data`` is a usable image, else why it is not.

    ``decode`` decodes the whole image (JPEGs at 1/8 scale, which still reads
    every coded byte, so truncated files are caught); ``verify`` only runs PIL's
    structural check; ``none`` only rejects empty files.
    """
    if not data:
        return "empty file"
    if check == "none":
        return None
    truncated_ok = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                if check == "verify":
                    image.verify()
                else:
                    if image.format == "JPEG":
                        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                    image.load()
    except UnidentifiedImageError:
        return "cannot decode image (not a recognised image format)"
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f"cannot decode image ({type(exc).__name__}: {exc})"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok
    return None


def read_image(path, check: str = "decode") -> tuple[bytes | None, str | None]:
    """``(bytes, None)`` for a readable image file, ``(None, reason)`` otherwise."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None, "missing file"
    except OSError as exc:
        return None, f"cannot read file ({exc.strerror or exc})"
    reason = check_image_bytes(data, check)
    return (None, reason) if reason else (data, None)


@dataclass
class WriterOptions:
    """Options every writer takes."""

    rows_per_batch: int = 256
    image_check: str = "decode"
    progress: bool = True

    def __post_init__(self):
        if self.image_check not in IMAGE_CHECKS:
            raise DataPrepError(f"image_check={self.image_check!r} is not one of {IMAGE_CHECKS}")
        if self.rows_per_batch < 1:
            raise DataPrepError(f"rows_per_batch must be >= 1, got {self.rows_per_batch}")

    def read(self, path, summary: WriteSummary) -> bytes | None:
        """Image bytes, or ``None`` after recording in ``summary`` why it was skipped."""
        data, reason = read_image(path, self.image_check)
        if data is None:
            summary.skip(path, reason)
        return data

    def bar(self, iterable=None, *, total=None, desc="", unit="img"):
        return progress(iterable, total=total, desc=desc, unit=unit, enabled=self.progress)


def progress(iterable=None, *, total=None, desc="", unit="img", enabled=True):
    """A tqdm progress bar on stderr (disabled when ``enabled`` is false)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)


# --------------------------------------------------------------------------- output
class StagedOutput:
    """Collect a run's files in a hidden folder of ``arrow_dir``; publish all or none.

    Use as a context manager: on success every staged file replaces its namesake
    in ``arrow_dir`` (and files matching :meth:`owns` that this run did not
    write, e.g. stale chunks, are removed); on an exception the staging folder
    and every open writer's temporary file are deleted.
    """

    def __init__(self, arrow_dir, tag: str):
        self.arrow_dir = Path(arrow_dir)
        self.arrow_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f".{tag}.staging-", dir=self.arrow_dir))
        self.names: list[str] = []
        self.removed: list[str] = []
        self._writers: list[AtomicArrowWriter] = []
        self._owned: list[re.Pattern] = []

    def _add(self, name: str) -> Path:
        if name in self.names:
            raise ValueError(f"{name} is written twice in one run")
        self.names.append(name)
        return self.dir / name

    def writer(self, name: str, schema: pa.Schema, rows_per_batch: int = 256) -> AtomicArrowWriter:
        """An AtomicArrowWriter for ``name`` (e.g. ``vg.arrow``) inside the staging folder."""
        writer = AtomicArrowWriter(self._add(name), schema, rows_per_batch)
        self._writers.append(writer)
        return writer

    def write_json(self, name: str, obj) -> None:
        self._add(name).write_text(json.dumps(obj, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")

    def owns(self, pattern: str) -> None:
        """Files in ``arrow_dir`` fully matching ``pattern`` belong to this writer (stale ones are removed)."""
        self._owned.append(re.compile(pattern))

    def publish(self) -> list[Path]:
        missing = [name for name in self.names if not (self.dir / name).is_file()]
        if missing:
            raise RuntimeError(f"staged files were never closed: {missing}")
        published = []
        mode = _file_mode()
        for name in self.names:
            target = self.arrow_dir / name
            os.chmod(self.dir / name, mode)  # temp files are created 0600; published ones follow the umask
            os.replace(self.dir / name, target)
            published.append(target)
        for path in sorted(self.arrow_dir.iterdir()):
            if path.name not in self.names and any(p.fullmatch(path.name) for p in self._owned):
                path.unlink()
                self.removed.append(path.name)
        shutil.rmtree(self.dir, ignore_errors=True)
        return published

    def discard(self) -> None:
        for writer in self._writers:
            writer.abort()  # harmless for writers that were already closed
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "StagedOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class ChunkedWriter:
    """Split one stream of rows into ``<prefix>_<k>.arrow`` files of at most ``rows_per_file`` rows."""

    def __init__(self, stage: StagedOutput, prefix: str, schema: pa.Schema, rows_per_file: int, rows_per_batch: int):
        if rows_per_file < 1:
            raise DataPrepError(f"rows_per_file must be >= 1, got {rows_per_file}")
        self.stage, self.prefix, self.schema = stage, prefix, schema
        self.rows_per_file, self.rows_per_batch = rows_per_file, rows_per_batch
        self.files: dict[str, int] = {}
        self._writer: AtomicArrowWriter | None = None
        self._name = ""
        stage.owns(rf"{re.escape(prefix)}_\d+\.arrow")

    def _next_file(self) -> None:
        self._close_current()
        self._name = f"{self.prefix}_{len(self.files)}.arrow"
        self.files[self._name] = 0
        self._writer = self.stage.writer(self._name, self.schema, self.rows_per_batch)

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_row(self, row: dict) -> None:
        if self._writer is None or self.files[self._name] >= self.rows_per_file:
            self._next_file()
        self._writer.write_row(row)
        self.files[self._name] += 1

    def close(self) -> dict[str, int]:
        """Close the last file (write an empty ``_0`` if no row came) and return rows per file."""
        if not self.files:
            self._next_file()
        self._close_current()
        return dict(self.files)


def write_caption_split(
    stage: StagedOutput,
    name: str,
    items: Iterable[tuple],
    *,
    split: str,
    total: int,
    summary: WriteSummary,
    opts: WriterOptions,
) -> int:
    """Write ``<name>.arrow`` in CAPTION_SCHEMA from ``(image_path, captions, image_id)`` items."""
    rows = 0
    with stage.writer(f"{name}.arrow", CAPTION_SCHEMA, opts.rows_per_batch) as writer:
        for path, captions, image_id in opts.bar(items, total=total, desc=name):
            data = opts.read(path, summary)
            if data is None:
                continue
            writer.write_row({"image": data, "caption": list(captions), "image_id": str(image_id), "split": split})
            rows += 1
            summary.images += 1
            summary.texts += len(captions)
    summary.files[f"{name}.arrow"] = rows
    return rows


# --------------------------------------------------------------------------- inputs
def check_root(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataPrepError(f"raw dataset folder {root} does not exist (first argument: RAW_ROOT)")
    return root


def find_file(root: Path, candidates: Sequence[str], what: str, fix: str = "") -> Path:
    """The first of ``root/<candidate>`` that exists, or a DataPrepError listing where it looked."""
    found = optional_file(root, candidates)
    if found is None:
        looked = ", ".join(str(root / c) for c in candidates)
        raise DataPrepError(f"{what} not found; looked for {looked}." + (f" {fix}" if fix else ""))
    return found


def optional_file(root: Path, candidates: Sequence[str]) -> Path | None:
    for candidate in candidates:
        path = root / candidate
        if path.is_file():
            return path
    return None


def load_json(path: Path):
    """Parse a JSON file; a broken file raises a DataPrepError naming it."""
    try:
        with open(path, encoding="utf-8") as fp:
            return json.load(fp)
    except json.JSONDecodeError as exc:
        raise DataPrepError(f"{path} is not valid JSON ({exc}); re-download or re-extract it") from exc


def load_json_lines(path: Path) -> list:
    """Rows of a JSON-lines file (a file holding one JSON array is accepted too)."""
    with open(path, encoding="utf-8") as fp:
        text = fp.read()
    if text.lstrip().startswith("["):
        return load_json(path)
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataPrepError(f"{path} line {number} is not valid JSON ({exc})") from exc
    return rows


# --------------------------------------------------------------------------- CLI
def build_parser(description: str, *, raw_root: bool = True) -> argparse.ArgumentParser:
    """Parser with RAW_ROOT ARROW_DIR positionals (ViLT's make_arrow(root, dataset_root) order)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if raw_root:
        parser.add_argument("root", metavar="RAW_ROOT", help="folder holding the dataset in its published layout")
    parser.add_argument("dataset_root", metavar="ARROW_DIR", help="folder the .arrow files are written to")
    parser.add_argument("--rows_per_batch", type=int, default=256, help="rows per arrow record batch (memory bound)")
    parser.add_argument("--image_check", choices=IMAGE_CHECKS, default="decode", help="how images are validated")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--skipped_list", metavar="FILE", help="also write every skipped input and its reason to FILE (TSV)"
    )
    return parser


def write_skipped_list(summary: WriteSummary, path) -> None:
    """Every skipped input as ``path<TAB>reason`` lines."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fp:
        for item in summary.skipped:
            fp.write(f"{item.path}\t{item.reason}\n")


def run_cli(make_arrow: Callable[..., WriteSummary], parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv``, run ``make_arrow`` and print its summary; the exit status is 0 when rows were written."""
    args = vars(parser.parse_args(argv))
    args["progress"] = not args.pop("no_progress")
    skipped_list = args.pop("skipped_list", None)
    positional = [args.pop("root")] if "root" in args else []
    try:
        summary = make_arrow(*positional, args.pop("dataset_root"), **args)
    except DataPrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    if skipped_list:
        write_skipped_list(summary, skipped_list)
        print(f"skipped list: {skipped_list}")
    if not summary.rows:
        print("error: no rows were written; check RAW_ROOT and the skipped list above", file=sys.stderr)
        return 1
    return 0
