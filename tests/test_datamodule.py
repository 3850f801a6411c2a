"""MultiDataModule loaders and the epoch-aware, rank-sharding sampler."""
import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from vlt.data.arrow_io import AtomicArrowWriter
from vlt.data.datamodule import EpochShuffleSampler, EvalSampler, MultiDataModule
from vlt.data.tokenizer import minilm_dir

SIZE = 32
L = 16
SCHEMA = pa.schema(
    [("image", pa.binary()), ("caption", pa.list_(pa.string())), ("image_id", pa.string()), ("split", pa.string())]
)


def write(data_dir, name, n_rows, captions_per_row=2):
    buf = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), (90, 30, 200)).save(buf, "JPEG")
    rows = [
        {"image": buf.getvalue(), "caption": [f"{name} {r} caption {j}" for j in range(captions_per_row)],
         "image_id": str(r), "split": "x"}
        for r in range(n_rows)
    ]
    with AtomicArrowWriter(os.path.join(data_dir, f"{name}.arrow"), SCHEMA) as w:
        w.write_rows(rows)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("arrows")
    for split, n in (("train", 6), ("restval", 2), ("val", 3), ("test", 3)):
        write(root, f"coco_caption_karpathy_{split}", n)
    for split, n in (("train", 5), ("val", 2), ("test", 2)):
        write(root, f"f30k_caption_karpathy_{split}", n)
    write(root, "vg", 4, captions_per_row=3)
    return root


def make_config(data_root, **overrides):
    cfg = dict(
        datasets=["coco", "f30k", "vg"],
        data_root=str(data_root),
        tokenizer=str(minilm_dir()),
        loss_names={"itm": 1, "mlm": 1},
        per_gpu_batchsize=4,
        eval_batch_size=0,
        num_workers=0,
        seed=0,
        image_size=SIZE,
        train_transform_keys=["pixelbert"],
        val_transform_keys=["pixelbert"],
        max_text_len=L,
        draw_false_image=1,
        draw_false_text=0,
        image_only=False,
        mlm_prob=0.15,
        whole_word_masking=False,
        use_percentage=100,
        use_single_caption=False,
        num_gpus=0,
    )
    cfg.update(overrides)
    return cfg


def test_multi_dataset_loaders_and_batch_contract(data_root):
    dm = MultiDataModule(make_config(data_root))
    dm.setup("fit")
    assert len(dm.train_dataset) == (6 + 2 + 5) * 2 + 4 * 3
    assert len(dm.dataset("val")) == (3 + 2) * 2  # vg has no val split: left out
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == batch["false_image_0"].shape == (4, 3, SIZE, SIZE)
    for key in ("text_ids", "text_masks", "text_ids_mlm", "text_labels_mlm"):
        assert batch[key].shape == (4, L) and batch[key].dtype == torch.long
    assert batch["image_index"].shape == batch["text_index"].shape == (4,)
    assert len(batch["text"]) == 4 and batch["n_corrupt"] == 0
    val = dm.val_dataloader()
    assert sum(len(b["text"]) for b in val) == 10
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == 10


def test_eval_batch_size_and_loader_options(data_root):
    dm = MultiDataModule(make_config(data_root, eval_batch_size=3, num_workers=1))
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert (train.batch_size, val.batch_size) == (4, 3)
    assert train.persistent_workers and train.num_workers == 1
    assert isinstance(train.sampler, EpochShuffleSampler) and isinstance(val.sampler, EvalSampler)


def test_epoch_reaches_persistent_workers(data_root):
    dm = MultiDataModule(make_config(data_root, datasets=["coco"], num_workers=1, draw_false_text=1))
    loader = dm.train_dataloader()
    dataset = dm.train_dataset
    seen = {}
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)  # what Lightning does at each epoch start
        seen[epoch] = [(t, f) for b in loader for t, f in zip(b["text"], b["false_text_0_ids"].tolist())]
        order = loader.sampler.indices()
        expected = [dataset[(epoch, int(i))]["text"] for i in order]
        assert [t for t, _ in seen[epoch]] == expected
    assert seen[0] != seen[1]


def test_batches_reproducible(data_root):
    def first_batch():
        dm = MultiDataModule(make_config(data_root))
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(3)
        return next(iter(loader))

    a, b = first_batch(), first_batch()
    assert a["text"] == b["text"] and torch.equal(a["text_ids_mlm"], b["text_ids_mlm"])
    assert torch.equal(a["false_image_0"], b["false_image_0"])


def test_config_errors(data_root, tmp_path):
    with pytest.raises(ValueError, match="per_gpu_batchsize"):
        MultiDataModule(make_config(data_root, per_gpu_batchsize=0))
    with pytest.raises(ValueError, match="mix kinds"):
        MultiDataModule(make_config(data_root, datasets=["coco", "vqa"]))
    with pytest.raises(ValueError, match="Did you mean 'f30k'"):
        MultiDataModule(make_config(data_root, datasets=["f30"]))
    write(tmp_path, "vg", 0)
    with pytest.raises(ValueError, match="no training samples"):
        MultiDataModule(make_config(tmp_path, datasets=["vg"])).setup("fit")
    assert MultiDataModule(make_config(tmp_path, datasets=["vg"])).val_dataloader() == []


# ---------------------------------------------------------------- sampler


def keys(sampler):
    return list(iter(sampler))


def test_sampler_shards_disjointly_across_ranks():
    ranks = [EpochShuffleSampler(10, seed=1, num_replicas=2, rank=r) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    shards = [[i for _, i in keys(s)] for s in ranks]
    assert len(shards[0]) == len(shards[1]) == len(ranks[0]) == 5
    assert set(shards[0]).isdisjoint(shards[1]) and sorted(shards[0] + shards[1]) == list(range(10))
    assert all(epoch == 2 for s in ranks for epoch, _ in keys(s))


def test_sampler_pads_or_drops_uneven_lengths():
    padded = [EpochShuffleSampler(7, num_replicas=2, rank=r) for r in range(2)]
    assert [len(s) for s in padded] == [4, 4]
    assert set(i for s in padded for _, i in keys(s)) == set(range(7))
    dropped = [EpochShuffleSampler(7, num_replicas=2, rank=r, drop_last=True) for r in range(2)]
    assert [len(keys(s)) for s in dropped] == [3, 3]


def test_sampler_deterministic_per_epoch_and_different_across_epochs():
    a, b = EpochShuffleSampler(50, seed=3), EpochShuffleSampler(50, seed=3)
    assert keys(a) == keys(b)
    first = [i for _, i in keys(a)]
    a.set_epoch(1)
    second = [i for _, i in keys(a)]
    assert sorted(second) == list(range(50)) and second != first
    assert [i for _, i in keys(EpochShuffleSampler(50, seed=4))] != first
    assert [i for _, i in keys(EpochShuffleSampler(5, shuffle=False))] == [0, 1, 2, 3, 4]


def test_sampler_start_index_resumes_mid_epoch():
    sampler = EpochShuffleSampler(20, seed=0)
    sampler.set_epoch(4)
    full = keys(sampler)
    sampler.resume_at(4, 6)
    assert keys(sampler) == full[6:] and len(sampler) == 14
    sampler.set_epoch(4)  # Lightning re-announcing the same epoch keeps the skip
    assert len(sampler) == 14
    sampler.set_epoch(5)
    assert len(sampler) == 20 and sampler.start_index == 0
    restored = EpochShuffleSampler(20, seed=0)
    restored.load_state_dict({"epoch": 4, "start_index": 6, "seed": 0})
    assert keys(restored) == full[6:]


def test_sampler_reads_world_from_process_group(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(dist, "get_rank", lambda: 3)
    sampler = EpochShuffleSampler(16)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (4, 3, 4)


def test_eval_sampler_ignores_epochs():
    sampler = EvalSampler(6, num_replicas=2, rank=1)
    sampler.set_epoch(9)
    assert keys(sampler) == [(0, 1), (0, 3), (0, 5)]
    assert np.array_equal(sampler.indices(), [1, 3, 5])


def test_empty_eval_split_is_reported_not_silent(tmp_path, caplog):
    write(tmp_path, "f30k_caption_karpathy_train", 3)
    write(tmp_path, "f30k_caption_karpathy_val", 0)
    dm = MultiDataModule(make_config(tmp_path, datasets=["f30k"]))
    with caplog.at_level("WARNING", logger="vlt"):
        assert dm.val_dataloader() == []
    text = caplog.text
    assert "f30k_caption_karpathy_val.arrow" in text and "has no samples" in text
    assert "validation is skipped" in text
