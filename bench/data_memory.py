"""Memory of the caption data path as the data grows: vlt's mapped index vs. materialised captions.

Writes synthetic caption arrows (tiny 32 px JPEGs, 5 captions per image) with
10k / 100k / 500k captions, then for each size, in a fresh process, runs the
``f30k`` train split through ``MultiDataModule`` (2 persistent workers, MiniLM
tokenizer, MLM masking) for a fixed number of batches and records memory of the
main process plus its workers from /proc:

* peak RSS: sum of VmHWM (includes pages of the memory-mapped arrow file and
  pages shared between processes, counted once per process)
* peak RSS excl. file: sampled sum of VmRSS - RssFile (heap and shared
  memory, without the reclaimable page-cache pages of the mapped arrow file)
* peak PSS: sampled sum of proportional set sizes (shared pages split between
  the processes that map them; the real footprint)
* peak anon: sampled sum of anonymous RSS (heap: what materialised Python
  objects cost; excludes the mapped file)

``--reference`` adds rows for a dataset that holds every caption as a Python
string (the ViLT data path), for contrast.

    python bench/data_memory.py [--sizes 10000 100000 500000] [--batches 200] [--reference]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CAPTIONS_PER_IMAGE = 5
TRAIN_NAME = "f30k_caption_karpathy_train"
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]


# ---------------------------------------------------------------- data


def jpeg_pool(n: int = 8) -> list[bytes]:
    """A few encoded 32 px JPEGs reused for every row (generation must be fast)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def write_captions(data_dir: Path, n_captions: int) -> Path:
    """``TRAIN_NAME.arrow`` with n_captions / 5 rows of unique captions."""
    import pyarrow as pa

    from vlt.data.arrow_io import AtomicArrowWriter

    schema = pa.schema(
        [("image", pa.binary()), ("caption", pa.list_(pa.string())), ("image_id", pa.string()), ("split", pa.string())]
    )
    images = jpeg_pool()
    path = data_dir / f"{TRAIN_NAME}.arrow"
    with AtomicArrowWriter(path, schema, rows_per_batch=4096) as writer:
        for row in range(n_captions // CAPTIONS_PER_IMAGE):
            colour = COLOURS[row % len(COLOURS)]
            captions = [
                f"picture {row} caption {j}: a small {colour} square on a plain background next to a tree"
                for j in range(CAPTIONS_PER_IMAGE)
            ]
            writer.write_row({"image": images[row % len(images)], "caption": captions, "image_id": str(row), "split": "train"})
    return path


# ---------------------------------------------------------------- /proc


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except OSError:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid]


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def proc_kb(pid: int, path: str, fields: tuple[str, ...]) -> dict[str, int]:
    """kB values of ``fields`` in /proc/<pid>/<path> (missing -> 0)."""
    out = dict.fromkeys(fields, 0)
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in out:
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def memory_sample(pids: list[int]) -> dict[str, float]:
    """Summed MB over ``pids``: peak RSS (VmHWM), RSS without file pages, PSS and anonymous RSS."""
    total = {"hwm": 0, "nofile": 0, "pss": 0, "anon": 0}
    for pid in pids:
        status = proc_kb(pid, "status", ("VmHWM", "VmRSS", "RssFile", "RssAnon"))
        rollup = proc_kb(pid, "smaps_rollup", ("Pss",))
        total["hwm"] += status["VmHWM"]
        total["nofile"] += status["VmRSS"] - status["RssFile"]
        total["anon"] += status["RssAnon"]
        total["pss"] += rollup["Pss"]
    return {k: v / 1024 for k, v in total.items()}


# ---------------------------------------------------------------- one measurement (child process)


def reference_style(dataset):
    """Give ``dataset`` the ViLT data path: every caption materialised as a Python string."""
    column = dataset.columns[dataset.text_column_name]
    dataset.all_texts = column.to_pylist()  # list of lists of str, like ViLT's BaseDataset
    rows, within = dataset._sample_rows, dataset._sample_within
    dataset.index_mapper = {i: (int(rows[i]), int(within[i])) for i in range(len(rows))}

    def read_text(index):
        row, j = dataset.index_mapper[index]
        return dataset.all_texts[row][j]

    dataset.read_text = read_text
    return dataset


def measure(data_dir: str, batches: int, batch_size: int, workers: int, image_size: int, reference: bool) -> dict:
    from vlt.data.datamodule import MultiDataModule
    from vlt.data.tokenizer import minilm_dir

    config = dict(
        datasets=["f30k"], data_root=data_dir, tokenizer=str(minilm_dir()), loss_names={"mlm": 1, "itm": 1},
        per_gpu_batchsize=batch_size, num_workers=workers, seed=0, image_size=image_size,
        train_transform_keys=["pixelbert"], val_transform_keys=["pixelbert"], max_text_len=40,
        draw_false_image=1, draw_false_text=0, num_gpus=0,
    )
    start = time.perf_counter()
    dm = MultiDataModule(config)
    dataset = dm.train_dataset
    if reference:
        reference_style(dataset.datasets[0])
    init_s = time.perf_counter() - start
    index_mb = sum(a.nbytes for a in (dataset.datasets[0]._sample_rows, dataset.datasets[0]._sample_within)) / 2**20
    dm.collator  # noqa: B018 - load the tokenizer before workers fork
    loader = dm.train_dataloader()
    peak = {"hwm": 0.0, "nofile": 0.0, "pss": 0.0, "anon": 0.0}
    me = os.getpid()
    iterator = iter(loader)
    t0 = None
    for step in range(batches):
        next(iterator)
        if step == 0:
            t0 = time.perf_counter()
        if step % 10 == 0 or step == batches - 1:
            sample = memory_sample([me, *children(me)])
            peak = {k: max(peak[k], sample[k]) for k in peak}
    elapsed = time.perf_counter() - t0
    n_procs = 1 + len(children(me))
    del iterator
    return {
        "captions": len(dataset), "init_s": init_s, "index_mb": index_mb, "procs": n_procs,
        "samples_per_s": (batches - 1) * batch_size / elapsed, **{f"peak_{k}_mb": v for k, v in peak.items()},
    }


# ---------------------------------------------------------------- driver


def run_child(args, data_dir: Path, reference: bool) -> dict:
    cmd = [
        sys.executable, __file__, "--child", str(data_dir), "--batches", str(args.batches),
        "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--image-size", str(args.image_size),
    ] + (["--reference"] if reference else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    lines = [
        "| data path | captions | file MB | index build s | index MB | samples/s | peak RSS MB (sum VmHWM) "
        "| peak RSS excl. file MB | peak PSS MB | peak anon MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['mode']} | {r['captions']:,} | {r['file_mb']:.1f} | {r['init_s']:.2f} | {r['index_mb']:.1f} | "
            f"{r['samples_per_s']:.0f} | {r['peak_hwm_mb']:.0f} | {r['peak_nofile_mb']:.0f} | {r['peak_pss_mb']:.0f} | {r['peak_anon_mb']:.0f} |"
        )
    return "\n".join(lines)


def ratios(results: list[dict]) -> str:
    lines = []
    for mode in dict.fromkeys(r["mode"] for r in results):
        rows = [r for r in results if r["mode"] == mode]
        first, last = rows[0], rows[-1]
        parts = ", ".join(
            f"{name} x{last[key] / first[key]:.3f}"
            for name, key in (
                ("peak RSS", "peak_hwm_mb"), ("RSS excl. file", "peak_nofile_mb"),
                ("PSS", "peak_pss_mb"), ("anon", "peak_anon_mb"),
            )
        )
        lines.append(f"- {mode}: {first['captions']:,} -> {last['captions']:,} captions: {parts}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 500_000])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--reference", action="store_true", help="also measure the materialised-captions data path")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batches, args.batch_size, args.workers, args.image_size, args.reference)))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="vlt_data_memory_") as tmp:
        for size in args.sizes:
            data_dir = Path(tmp) / str(size)
            t = time.perf_counter()
            path = write_captions(data_dir, size)
            print(f"wrote {size:,} captions in {time.perf_counter() - t:.1f}s", file=sys.stderr)
            for reference in [False, True] if args.reference else [False]:
                result = run_child(args, data_dir, reference)
                result.update(mode="materialised captions (ViLT)" if reference else "vlt (mapped index)",
                              file_mb=path.stat().st_size / 2**20)
                results.append(result)
    results.sort(key=lambda r: (r["mode"] != "vlt (mapped index)", r["captions"]))
    print(f"{args.batches} batches of {args.batch_size}, {args.workers} workers, image_size {args.image_size}\n")
    print(table(results))
    print("\nmemory growth, smallest -> largest data:")
    print(ratios(results))


if __name__ == "__main__":
    main()
