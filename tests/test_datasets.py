"""Arrow datasets: indexing, subsets, false draws, corrupt images, VQA/NLVR2 items, registry."""
import io
import json
import logging
import os
import pickle
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from vlt.data.arrow_io import AtomicArrowWriter, MissingArrowFileError
from vlt.data.datasets import (
    DATASET_REGISTRY,
    CaptionDataset,
    ConcatArrowDataset,
    NLVR2Dataset,
    VQAv2Dataset,
    build_dataset,
    resolve_names,
)

SIZE = 32
SHARED_COCO = Path(__file__).resolve().parents[1] / "../shared/data/coco"
CAPTION_SCHEMA = pa.schema(
    [("image", pa.binary()), ("caption", pa.list_(pa.string())), ("image_id", pa.string()), ("split", pa.string())]
)
VQA_SCHEMA = pa.schema(
    [
        ("image", pa.binary()),
        ("questions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.list_(pa.string()))),
        ("answer_labels", pa.list_(pa.list_(pa.int64()))),
        ("answer_scores", pa.list_(pa.list_(pa.float64()))),
        ("image_id", pa.int64()),
        ("question_id", pa.list_(pa.int64())),
        ("split", pa.string()),
    ]
)
NLVR2_SCHEMA = pa.schema(
    [
        ("image_0", pa.binary()),
        ("image_1", pa.binary()),
        ("questions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.string())),
        ("identifier", pa.string()),
        ("identifiers", pa.list_(pa.string())),
    ]
)


def color(row: int, file_no: int = 0) -> tuple:
    return (10 + 20 * (row % 12), 40 * file_no, 200 - 15 * (row // 12))


def encode(rgb: tuple, fmt: str = "JPEG", textured: bool = False) -> bytes:
    """A solid-colour image (its colour identifies the row), or random noise when ``textured``."""
    if textured:
        pixels = np.random.default_rng(sum(rgb)).integers(0, 255, (SIZE, SIZE + 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", (SIZE + 8, SIZE), rgb)
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def captions_of(name: str, row: int) -> list:
    """1-3 captions per row, the last one repeating the first (a duplicate)."""
    return [f"{name} img {row} cap {j}" for j in range(row % 3 + 1)] + [f"{name} img {row} cap 0"]


def write_captions(data_dir, name, n_rows, corrupt=(), file_no=0, textured=False):
    rows = [
        {
            "image": b"not an image" if r in corrupt else encode(color(r, file_no), textured=textured),
            "caption": captions_of(name, r),
            "image_id": f"{name}-{r}",
            "split": "train",
        }
        for r in range(n_rows)
    ]
    with AtomicArrowWriter(os.path.join(data_dir, f"{name}.arrow"), CAPTION_SCHEMA, rows_per_batch=5) as w:
        w.write_rows(rows)


def write_coco(data_dir, n_train=12, n_restval=4, n_eval=6):
    write_captions(data_dir, "coco_caption_karpathy_train", n_train)
    write_captions(data_dir, "coco_caption_karpathy_restval", n_restval, file_no=1)
    write_captions(data_dir, "coco_caption_karpathy_val", n_eval)
    write_captions(data_dir, "coco_caption_karpathy_test", n_eval)


def config(data_dir, **overrides):
    cfg = dict(
        data_root=str(data_dir),
        train_transform_keys=["pixelbert"],
        val_transform_keys=["pixelbert"],
        image_size=SIZE,
        max_text_len=16,
        draw_false_image=0,
        draw_false_text=0,
        image_only=False,
        use_percentage=100,
        use_single_caption=False,
        seed=0,
        vqav2_label_size=10,
    )
    cfg.update(overrides)
    return cfg


def caption_ds(data_dir, names=("coco_caption_karpathy_train",), **kwargs):
    kwargs.setdefault("transform_keys", ["pixelbert"])
    return CaptionDataset(data_dir=data_dir, image_size=SIZE, names=list(names), **kwargs)


def mean_rgb(image: torch.Tensor) -> np.ndarray:
    """Mean colour (0-255) of a pixelbert-normalised tensor."""
    return ((image * 0.5 + 0.5) * 255).mean(dim=(1, 2)).numpy()


@pytest.fixture()
def coco_dir(tmp_path):
    write_coco(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- indexing


def test_caption_index_matches_source_rows(coco_dir):
    ds = build_dataset("coco", "train", config(coco_dir))
    expected = []
    for offset, (name, n) in enumerate([("coco_caption_karpathy_train", 12), ("coco_caption_karpathy_restval", 4)]):
        for r in range(n):
            unique = list(dict.fromkeys(captions_of(name, r)))
            expected += [(offset * 12 + r, text) for text in unique]
    assert len(ds) == len(expected)
    for index, (row, text) in enumerate(expected):
        item = ds[index]
        assert (item["image_index"], item["text"], item["text_index"]) == (row, text, index)
    assert ds.num_images == 16
    assert ds.table_name(11) == "coco_caption_karpathy_train"
    assert ds.table_name(12) == "coco_caption_karpathy_restval"


def test_item_image_is_its_row(coco_dir):
    ds = build_dataset("coco", "train", config(coco_dir))
    item = ds[len(ds) - 1]  # last caption: restval row 3
    assert item["image"].shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(mean_rgb(item["image"]), color(3, file_no=1), atol=4)


def test_remove_duplicate_off_keeps_repeats(coco_dir):
    ds = caption_ds(coco_dir, remove_duplicate=False)
    assert len(ds) == sum(len(captions_of("coco_caption_karpathy_train", r)) for r in range(12))


def test_splits_use_their_files(coco_dir):
    assert build_dataset("coco", "val", config(coco_dir)).names == ["coco_caption_karpathy_val"]
    assert build_dataset("coco", "test", config(coco_dir)).names == ["coco_caption_karpathy_test"]
    assert build_dataset("vg", "val", config(coco_dir)) is None


def test_index_is_numpy_not_python_lists(coco_dir):
    ds = build_dataset("coco", "train", config(coco_dir, draw_false_text=1))
    for name in ("_sample_rows", "_sample_within", "_image_rows", "_image_bounds"):
        assert isinstance(getattr(ds, name), np.ndarray), name
        assert getattr(ds, name).dtype.kind == "i"
    big_lists = [k for k, v in vars(ds).items() if isinstance(v, (list, tuple, dict)) and len(v) > len(ds.names)]
    assert big_lists == [] or big_lists == ["_columns"]
    assert all(isinstance(c, pa.ChunkedArray) for c in ds.columns.values())


def test_pickle_reopens_tables(coco_dir):
    ds = build_dataset("coco", "train", config(coco_dir))
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # the table is not serialised; workers reopen it memory-mapped
    clone = pickle.loads(blob)
    assert clone[(2, 5)]["text"] == ds[(2, 5)]["text"]
    assert torch.equal(clone[(2, 5)]["image"], ds[(2, 5)]["image"])


# ---------------------------------------------------------------- subsets


def test_use_percentage_is_a_deterministic_image_subset(tmp_path):
    write_captions(tmp_path, "coco_caption_karpathy_train", 40)
    a = caption_ds(tmp_path, use_percentage=25, seed=1)
    b = caption_ds(tmp_path, use_percentage=25, seed=1)
    c = caption_ds(tmp_path, use_percentage=25, seed=2)
    assert a.num_images == 10
    np.testing.assert_array_equal(a._image_rows, b._image_rows)
    assert not np.array_equal(a._image_rows, c._image_rows)
    full = caption_ds(tmp_path)
    kept = np.isin(full._sample_rows, a._image_rows)
    assert len(a) == kept.sum()  # every caption of a kept image stays


def test_use_percentage_only_subsets_train(coco_dir):
    cfg = config(coco_dir, use_percentage=50, use_single_caption=True)
    assert build_dataset("coco", "train", cfg).num_images == 8
    assert build_dataset("coco", "val", cfg).num_images == 6
    assert len(build_dataset("coco", "val", cfg)) > 6


def test_use_single_caption(coco_dir):
    ds = caption_ds(coco_dir, use_single_caption=True)
    assert len(ds) == 12
    assert [ds[i]["text"] for i in range(3)] == [f"coco_caption_karpathy_train img {r} cap 0" for r in range(3)]


def test_image_only(coco_dir):
    ds = caption_ds(coco_dir, image_only=True, draw_false_text=2)
    assert len(ds) == 12
    item = ds[4]
    assert "text" not in item and "false_text_0" not in item
    assert item["image_index"] == 4


# ---------------------------------------------------------------- false draws and randomness


def test_false_image_and_text_come_from_other_rows(coco_dir):
    ds = caption_ds(coco_dir, draw_false_image=2, draw_false_text=2)
    for index in range(len(ds)):
        item = ds[(0, index)]
        row = item["image_index"]
        for k in range(2):
            assert not np.allclose(mean_rgb(item[f"false_image_{k}"]), color(row), atol=4)
            other_row = int(item[f"false_text_{k}"].split(" img ")[1].split()[0])
            assert other_row != row


def test_randomness_depends_on_seed_epoch_index(tmp_path):
    write_captions(tmp_path, "coco_caption_karpathy_train", 8, textured=True)
    ds = caption_ds(tmp_path, draw_false_image=1, draw_false_text=1, transform_keys=["mae"])
    a, b = ds[(3, 7)], ds[(3, 7)]
    assert torch.equal(a["image"], b["image"]) and a["false_text_0"] == b["false_text_0"]
    assert a["sample_seed"] == b["sample_seed"]
    ds.set_epoch(3)
    assert ds[7]["sample_seed"] == a["sample_seed"]  # int keys use the epoch set by set_epoch
    other_epoch = [ds[(4, i)] for i in range(len(ds))]
    same_epoch = [ds[(3, i)] for i in range(len(ds))]
    assert any(x["false_text_0"] != y["false_text_0"] for x, y in zip(other_epoch, same_epoch))
    assert not torch.equal(other_epoch[7]["image"], a["image"])  # random crop follows the epoch


def test_transform_seeding_leaves_global_rng_alone(coco_dir):
    ds = caption_ds(coco_dir, transform_keys=["mae"])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ds[(0, 1)]
    assert torch.equal(torch.rand(3), expected)


def test_false_draws_need_two_images(tmp_path):
    write_captions(tmp_path, "coco_caption_karpathy_train", 1)
    with pytest.raises(ValueError, match="at least 2"):
        caption_ds(tmp_path, draw_false_image=1)


# ---------------------------------------------------------------- corrupt and missing files


def test_corrupt_image_gives_none_counted_and_warned_once(tmp_path, caplog):
    write_captions(tmp_path, "coco_caption_karpathy_train", 6, corrupt={2})
    ds = caption_ds(tmp_path, use_single_caption=True)
    with caplog.at_level(logging.WARNING, logger="vlt.data.datasets"):
        assert ds[2] is None
        assert ds[(1, 2)] is None
    assert ds.n_corrupt == 2
    warnings = [r for r in caplog.records if "unreadable image" in r.getMessage()]
    assert len(warnings) == 1 and "row 2" in warnings[0].getMessage()
    assert ds[3] is not None


def test_corrupt_false_image_is_redrawn(tmp_path):
    write_captions(tmp_path, "coco_caption_karpathy_train", 6, corrupt={2})
    ds = caption_ds(tmp_path, use_single_caption=True, draw_false_image=1)
    items = [ds[(0, i)] for i in range(len(ds))]
    assert [i for i, item in enumerate(items) if item is None] == [2]


def test_collator_drops_corrupt_samples(tmp_path):
    from vlt.data.collate import Collator
    from vlt.data.tokenizer import load_tokenizer, minilm_dir

    write_captions(tmp_path, "coco_caption_karpathy_train", 4, corrupt={1})
    ds = caption_ds(tmp_path, use_single_caption=True)
    batch = Collator(load_tokenizer(str(minilm_dir())), max_text_len=16)([ds[i] for i in range(4)])
    assert batch["n_corrupt"] == 1
    assert batch["image"].shape == (3, 3, SIZE, SIZE)
    assert batch["image_index"].tolist() == [0, 2, 3]


def test_missing_arrow_names_data_prep_command(tmp_path):
    with pytest.raises(MissingArrowFileError, match=r"data_prep/write_coco_karpathy\.py"):
        build_dataset("coco", "train", config(tmp_path))
    with pytest.raises(MissingArrowFileError, match=r"data_prep/write_sbu\.py"):
        build_dataset("sbu", "train", config(tmp_path))
    with pytest.raises(MissingArrowFileError, match=r"data_prep/write_demo\.py"):
        build_dataset("demo", "train", config(tmp_path))


def test_glob_datasets_in_numeric_order(tmp_path):
    for k in (0, 1, 2, 10):
        write_captions(tmp_path, f"sbu_{k}", 2)
    assert resolve_names("sbu", "train", tmp_path) == ["sbu_0", "sbu_1", "sbu_2", "sbu_10"]
    assert len(build_dataset("sbu", "train", config(tmp_path))) == 4 * 3
    assert build_dataset("sbu", "val", config(tmp_path)) is None


def test_registry_errors(coco_dir):
    with pytest.raises(ValueError, match="Did you mean 'coco'"):
        build_dataset("cocoo", "train", config(coco_dir))
    with pytest.raises(ValueError, match="unknown split"):
        build_dataset("coco", "trian", config(coco_dir))
    with pytest.raises(ValueError, match="data_root"):
        build_dataset("coco", "train", config(""))
    assert {"coco", "f30k", "vg", "sbu", "gcc", "demo", "vqa", "nlvr2"} <= set(DATASET_REGISTRY)


def test_concat_dataset_accepts_epoch_keys(coco_dir):
    a = build_dataset("coco", "val", config(coco_dir))
    b = build_dataset("coco", "test", config(coco_dir))
    both = ConcatArrowDataset([a, b])
    assert both[(1, len(a) + 2)]["text"] == b[(1, 2)]["text"]
    assert both[len(a)]["text"] == b[0]["text"]
    both.set_epoch(5)
    assert a.epoch == b.epoch == 5


# ---------------------------------------------------------------- VQA and NLVR2


def write_vqa(data_dir, name="vqav2_rest_val"):
    rows = [
        {
            "image": encode(color(0)),
            "questions": ["what colour?", "how many?"],
            "answers": [["red", "red", "pink"], ["2"]],
            "answer_labels": [[3, 7], [1]],
            "answer_scores": [[1.0, 0.3], [0.6]],
            "image_id": 1,
            "question_id": [101, 102],
            "split": "val",
        },
        {
            "image": encode(color(1)),
            "questions": ["is it a cat?"],
            "answers": [[]],
            "answer_labels": [[]],
            "answer_scores": [[]],
            "image_id": 2,
            "question_id": [201],
            "split": "val",
        },
    ]
    with AtomicArrowWriter(os.path.join(data_dir, f"{name}.arrow"), VQA_SCHEMA) as w:
        w.write_rows(rows)


def test_vqa_item_soft_scores(tmp_path):
    write_vqa(tmp_path)
    ds = build_dataset("vqa", "val", config(tmp_path, draw_false_image=1))
    assert isinstance(ds, VQAv2Dataset) and len(ds) == 3
    item = ds[0]
    expected = torch.zeros(10)
    expected[3], expected[7] = 1.0, 0.3
    torch.testing.assert_close(item["vqa_targets"], expected)
    assert (item["text"], item["question_id"], item["vqa_answers"]) == ("what colour?", 101, ["red", "red", "pink"])
    assert "false_image_0" not in item
    assert ds[1]["vqa_targets"][1] == pytest.approx(0.6) and ds[1]["question_id"] == 102
    assert ds[2]["vqa_targets"].sum() == 0 and ds[2]["vqa_answers"] == []


def test_vqa_label_outside_label_size(tmp_path):
    write_vqa(tmp_path)
    ds = build_dataset("vqa", "val", config(tmp_path, vqav2_label_size=5))
    with pytest.raises(ValueError, match="vqav2_label_size"):
        ds[0]


def write_nlvr2(data_dir, name, n_rows, identifiers=True):
    rows = [
        {
            "image_0": encode(color(r)),
            "image_1": encode(color(r + 1), "PNG"),
            "questions": [f"{name} pair {r} sentence {j}" for j in range(2)],
            "answers": ["True", "False"],
            "identifier": f"{name}-{r}",
            "identifiers": [f"{name}-{r}-{j}" for j in (0, 3)],
        }
        for r in range(n_rows)
    ]
    schema = NLVR2_SCHEMA if identifiers else NLVR2_SCHEMA.remove(NLVR2_SCHEMA.get_field_index("identifiers"))
    if not identifiers:
        for row in rows:
            del row["identifiers"]
    with AtomicArrowWriter(os.path.join(data_dir, f"{name}.arrow"), schema) as w:
        w.write_rows(rows)


def test_nlvr2_item_has_two_images_and_source_table(tmp_path):
    write_nlvr2(tmp_path, "nlvr2_dev", 2)
    write_nlvr2(tmp_path, "nlvr2_test1", 3)
    ds = build_dataset("nlvr2", "val", config(tmp_path, draw_false_image=1, draw_false_text=1))
    assert isinstance(ds, NLVR2Dataset) and len(ds) == 10
    item = ds[5]  # nlvr2_test1 row 0, sentence 1
    assert item["image_0"].shape == item["image_1"].shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(mean_rgb(item["image_1"]), color(1), atol=4)
    assert item["nlvr2_label"] == 0 and ds[4]["nlvr2_label"] == 1
    assert item["table_name"] == "nlvr2_test1" and ds[0]["table_name"] == "nlvr2_dev"
    assert item["identifier"] == "nlvr2_test1-0-3"  # the sentence's own identifier
    assert item["text"] == "nlvr2_test1 pair 0 sentence 1"
    assert "false_image_0" not in item


def test_nlvr2_without_sentence_identifiers_uses_pair_id(tmp_path):
    write_nlvr2(tmp_path, "nlvr2_train", 2, identifiers=False)
    ds = build_dataset("nlvr2", "train", config(tmp_path))
    assert ds[3]["identifier"] == "nlvr2_train-1" and ds[3]["nlvr2_label"] == 0


@pytest.mark.skipif(not (SHARED_COCO / "karpathy/dataset_coco.json").is_file(), reason="../shared/data not present")
def test_real_coco_images_and_captions(tmp_path):
    images = json.loads((SHARED_COCO / "karpathy/dataset_coco.json").read_text())["images"]
    chosen = [im for im in images if im["split"] == "test"][:6]
    chosen.append(next(im for im in images if im["filename"] == "000000431848.jpg"))  # greyscale JPEG
    rows = [
        {
            "image": (SHARED_COCO / im["filepath"] / im["filename"]).read_bytes(),
            "caption": [s["raw"] for s in im["sentences"]],
            "image_id": im["filename"],
            "split": im["split"],
        }
        for im in chosen
    ]
    with AtomicArrowWriter(tmp_path / "coco_caption_karpathy_test.arrow", CAPTION_SCHEMA) as w:
        w.write_rows(rows)
    ds = build_dataset("coco", "test", config(tmp_path, val_transform_keys=["mae_test"], image_size=64))
    assert len(ds) == sum(len(set(r["caption"])) for r in rows)
    last = ds[len(ds) - 1]
    assert last["image"].shape == (3, 64, 64) and last["image_index"] == len(rows) - 1
    assert last["text"] in rows[-1]["caption"]
