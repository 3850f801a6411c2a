"""Reading and writing the arrow files that every vlt dataset is stored in.

Files use the Arrow IPC *file* format (what ViLT/VLC writers produce with
``pa.ipc.new_file``), so they can be opened memory-mapped: rows are paged in on
demand and shared between DataLoader workers instead of copied into each one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pyarrow as pa

# Which data_prep script writes which arrow file name prefix; used to tell the
# user how to make a missing file.
WRITER_FOR_PREFIX = {
    "coco_caption_karpathy": "write_coco_karpathy.py <COCO_ROOT>",
    "f30k_caption_karpathy": "write_f30k_karpathy.py <F30K_ROOT>",
    "vg": "write_vg.py <VG_ROOT>",
    "sbu": "write_sbu.py <SBU_ROOT>",
    "conceptual_caption": "write_conceptual_caption.py <GCC_ROOT>",
    "vqav2": "write_vqa.py <VQAV2_ROOT>",
    "nlvr2": "write_nlvr2.py <NLVR2_ROOT>",
    "demo": "write_demo.py",
}


class MissingArrowFileError(FileNotFoundError):
    """An arrow file a dataset needs does not exist; the message says how to make it."""


def data_prep_hint(name: str, data_dir: str | os.PathLike) -> str:
    """The command that writes ``<name>.arrow`` into ``data_dir``."""
    for prefix in sorted(WRITER_FOR_PREFIX, key=len, reverse=True):
        if name.startswith(prefix):
            return f"python data_prep/{WRITER_FOR_PREFIX[prefix]} {data_dir}"
    return f"python data_prep/write_<dataset>.py <RAW_ROOT> {data_dir}"


def open_arrow(data_dir: str | os.PathLike, name: str) -> pa.Table:
    """Open ``<data_dir>/<name>.arrow`` memory-mapped (zero-copy)."""
    path = Path(data_dir) / f"{name}.arrow"
    if not path.is_file():
        raise MissingArrowFileError(
            f"arrow file {path} does not exist; make it with: {data_prep_hint(name, data_dir)}"
        )
    source = pa.memory_map(str(path), "r")
    return pa.ipc.open_file(source).read_all()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicArrowWriter:
    """Stream record batches into ``path`` and publish it only when complete.

    Rows go to a temporary file in the same directory and are flushed every
    ``rows_per_batch`` rows, so memory stays bounded by one batch whatever the
    split size. ``close()`` renames the temporary file onto ``path``; an error
    (or an interrupted run) inside the ``with`` block deletes it, so a reader
    never sees a truncated ``.arrow``.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, rows_per_batch: int = 256):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.rows_per_batch = rows_per_batch
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._sink = pa.OSFile(str(self._tmp), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self._pending: list[Mapping] = []
        self.rows_written = 0

    def write_row(self, row: Mapping) -> None:
        self._pending.append(row)
        if len(self._pending) >= self.rows_per_batch:
            self.flush()

    def write_rows(self, rows: Iterable[Mapping]) -> None:
        for row in rows:
            self.write_row(row)

    def flush(self) -> None:
        if not self._pending:
            return
        batch = pa.RecordBatch.from_pylist(self._pending, schema=self.schema)
        self._writer.write_batch(batch)
        self.rows_written += len(self._pending)
        self._pending = []

    def close(self) -> Path:
        """Flush, close and atomically move the file into place."""
        self.flush()
        self._writer.close()
        self._sink.close()
        os.chmod(self._tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; publish with the usual mode
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is left untouched."""
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - closing a broken writer may fail; the file is deleted anyway
            pass
        self._sink.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicArrowWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_table_atomic(path: str | os.PathLike, rows: Sequence[Mapping], schema: pa.Schema) -> Path:
    """Write a small list of rows at once (tests, label files); atomic like the writer."""
    with AtomicArrowWriter(path, schema) as writer:
        writer.write_rows(rows)
    return Path(path)
