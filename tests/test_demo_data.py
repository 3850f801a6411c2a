"""The offline demo generator: deterministic, COCO Karpathy layout, captions grounded in the pixels."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data_prep.common import CAPTION_SCHEMA  # noqa: E402
from vlt.data import demo  # noqa: E402
from vlt.data.demo import COLORS, DEMO_WORDS, SHAPES, demo_sample, write_demo_arrows  # noqa: E402

NAMES = [f"coco_caption_karpathy_{s}.arrow" for s in ("train", "restval", "val", "test")]
SMALL = dict(num_train=40, num_val=10, num_test=10, image_size=64)


def table(path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    write_demo_arrows(out, **SMALL)
    return out


def test_same_seed_gives_identical_files(small_demo, tmp_path):
    write_demo_arrows(tmp_path / "again", **SMALL)
    write_demo_arrows(tmp_path / "other", **SMALL, seed=1)
    for name in NAMES:
        assert (small_demo / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert (small_demo / NAMES[0]).read_bytes() != (tmp_path / "other" / NAMES[0]).read_bytes()
    assert sorted(os.listdir(tmp_path / "again")) == sorted(NAMES)  # no temp files left


def test_layout_is_coco_karpathy(small_demo):
    counts = {"train": 40, "restval": 0, "val": 10, "test": 10}
    for split, n in counts.items():
        t = table(small_demo / f"coco_caption_karpathy_{split}.arrow")
        assert t.schema.equals(CAPTION_SCHEMA) and t.num_rows == n
        assert set(t["split"].to_pylist()) <= {split}
    t = table(small_demo / "coco_caption_karpathy_train.arrow")
    assert t["image_id"][3].as_py() == "demo_train_000003.png"
    assert Image.open(io.BytesIO(t["image"][0].as_py())).size == (64, 64)
    for captions in t["caption"].to_pylist():
        assert len(captions) == demo.CAPTIONS_PER_IMAGE and len(set(captions)) == len(captions)
        for caption in captions:
            assert set(caption.split()) <= set(DEMO_WORDS)


def test_captions_name_what_is_drawn(small_demo):
    t = table(small_demo / "coco_caption_karpathy_val.arrow")
    for index in range(t.num_rows):
        sample = demo_sample("val", index, image_size=64)
        image = pixels(t["image"][index].as_py())
        captions = t["caption"][index].as_py()
        assert captions == sample.captions
        for shape in sample.scene.shapes:
            # The shape's centre pixel has exactly the colour its captions name.
            assert tuple(image[shape.cy, shape.cx]) == COLORS[shape.color]
            assert sum(shape.color in c and shape.kind in c for c in captions) >= 3
        mentioned = {w for c in captions for w in c.split() if w in COLORS}
        assert mentioned == {s.color for s in sample.scene.shapes}
        for color in mentioned:  # every colour word is visible in the image
            assert (image == COLORS[color]).all(axis=-1).sum() >= 20
        assert {w for c in captions for w in c.split() if w in SHAPES} == {s.kind for s in sample.scene.shapes}


def test_relations_match_positions():
    for index in range(200):
        scene = demo_sample("train", index).scene
        if scene.relation is None:
            continue
        a, b = scene.shapes
        along = {"left of": b.cx - a.cx, "right of": a.cx - b.cx, "above": b.cy - a.cy, "below": a.cy - b.cy}
        horizontal = scene.relation in ("left of", "right of")
        across = {scene.relation: abs(a.cy - b.cy) if horizontal else abs(a.cx - b.cx)}
        assert along[scene.relation] >= a.half + b.half + 2  # separated, no overlap
        assert across[scene.relation] <= along[scene.relation] // 2


def test_default_size_is_fast(tmp_path):
    start = time.perf_counter()
    rows = write_demo_arrows(tmp_path)
    assert time.perf_counter() - start < 30
    assert rows == dict(zip(NAMES, (5000, 0, 500, 500)))


def test_write_demo_cli(tmp_path):
    done = subprocess.run(
        [sys.executable, "data_prep/write_demo.py", str(tmp_path), "--num_train", "8", "--num_val", "2",
         "--num_test", "2", "--image_size", "32", "--no_progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "demo: wrote 12 rows" in done.stdout
    assert table(tmp_path / "coco_caption_karpathy_train.arrow").num_rows == 8
