"""Downstream finetuning end to end: VQAv2, NLVR2 and COCO retrieval from a pretraining checkpoint.

Arrows are written from the real samples in ../shared/data with the project's
writers; a 1-step MLM+ITM run makes the pretraining checkpoint; each task then
finetunes for 3 steps through ``vlt.train.run`` on a tiny model and validates.
"""
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from data_prep import write_coco_karpathy, write_nlvr2, write_vqa
from vlt.checkpoints import load_vlt_checkpoint
from vlt.config import DEMO_TOKENIZER, _loss_names, default_config, ex
from vlt.config_check import validate_config
from vlt.data.transforms import TRANSFORMS
from vlt.module import VLTModule
from vlt.train import run

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"sample data folder {SHARED} is absent")

DOWNSTREAM_CONFIGS = [f"task_finetune_{task}{suffix}" for task in ("vqa", "nlvr2", "irtr_coco", "irtr_f30k")
                      for suffix in ("", "_randaug", "_mae_randaug")]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|not attached|self.log|"
                                                  "LitLogger|val_check_interval|sync_dist).*")
        yield


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("arrows")
    write_vqa.make_arrow(SHARED / "vqav2", root, min_answer_count=1, progress=False)
    # The sample has a single val image, so rest_val is empty and there are no test questions:
    # its val file stands in for both.
    for name in ("vqav2_rest_val", "vqav2_test"):
        shutil.copy(root / "vqav2_val.arrow", root / f"{name}.arrow")
    write_nlvr2.make_arrow(SHARED / "nlvr2", root, progress=False)
    shutil.copy(root / "nlvr2_dev.arrow", root / "nlvr2_train.arrow")  # the sample has no train split
    write_coco_karpathy.make_arrow(SHARED / "coco", root, progress=False)
    return root


def tiny(data_root, log_dir, **overrides):
    cfg = default_config()
    cfg.update(
        encoder_manual_configuration=True, hidden_size=32, num_heads=2, num_layers=2, mlp_ratio=2, embedding_size=32,
        image_size=32, patch_size=16, max_text_len=16, tokenizer=DEMO_TOKENIZER, drop_rate=0.0,
        train_transform_keys=["pixelbert"], val_transform_keys=["pixelbert"], data_root=str(data_root),
        log_dir=str(log_dir), num_gpus=0, num_workers=0, per_gpu_batchsize=2, batch_size=2, eval_batch_size=32,
        warmup_steps=0, log_every_n_steps=1, progress_bar=False, max_epoch=5,
    )
    cfg.update(overrides)
    return cfg


def finetune(data_root, log_dir, pretrained, **overrides):
    """3 steps from the pretraining checkpoint, validating at step 3 (tiny model, CPU)."""
    cfg = tiny(data_root, log_dir, load_path=pretrained, is_pretrain=False, use_mae=False, max_steps=3,
               val_check_interval=3, draw_false_image=0)
    cfg.update(overrides)
    return run(cfg)


@pytest.fixture(scope="module")
def pretrained(data_root, tmp_path_factory):
    cfg = tiny(data_root, tmp_path_factory.mktemp("pretrain"), exp_name="pretrain", datasets=["coco"],
               loss_names=_loss_names({"mlm": 1, "itm": 1}), max_steps=1)
    return run(cfg)["last_checkpoint"]


def _labels(data_root):
    return json.loads((Path(data_root) / "vqav2_labels.json").read_text())


def test_vqa_finetune_then_test_only_writes_the_submission(data_root, pretrained, tmp_path):
    label_size = len(_labels(data_root))
    result = finetune(data_root, tmp_path, pretrained, exp_name="vqa", datasets=["vqa"],
                      loss_names=_loss_names({"vqa": 1}), vqav2_label_size=label_size)
    metrics = result["metrics"]
    assert 0.0 <= metrics["val/vqa_score"] <= 1.0
    assert metrics["val/the_metric"] == pytest.approx(metrics["val/vqa_score"])
    assert "train/vqa_loss" in metrics and "train/vqa_score" in metrics

    tested = run(tiny(data_root, tmp_path, exp_name="vqa_test", datasets=["vqa"], loss_names=_loss_names({"vqa": 1}),
                      vqav2_label_size=label_size, load_path=result["last_checkpoint"], is_pretrain=False,
                      draw_false_image=0, test_only=True))
    path = Path(tested["run_dir"]) / "vqa_submission_test.json"
    entries = json.loads(path.read_text())
    from vlt.data.arrow_io import open_arrow

    question_ids = [q for row in open_arrow(data_root, "vqav2_test").column("question_id").to_pylist() for q in row]
    assert sorted(e["question_id"] for e in entries) == sorted(question_ids)  # one answer per question id
    assert all(e["answer"] in _labels(data_root) for e in entries)


def test_nlvr2_finetune_reports_dev_and_test1(data_root, pretrained, tmp_path):
    result = finetune(data_root, tmp_path, pretrained, exp_name="nlvr2", datasets=["nlvr2"],
                      loss_names=_loss_names({"nlvr2": 1}))
    metrics = result["metrics"]
    dev, test1 = metrics["val/nlvr2_dev_accuracy"], metrics["val/nlvr2_test1_accuracy"]
    assert 0.0 <= dev <= 1.0 and 0.0 <= test1 <= 1.0
    assert metrics["val/the_metric"] == pytest.approx((dev + test1) / 2)


def test_irtr_finetune_with_recall_evaluation(data_root, pretrained, tmp_path):
    result = finetune(data_root, tmp_path, pretrained, exp_name="irtr", datasets=["coco"],
                      loss_names=_loss_names({"itm": 0.5, "irtr": 1}), draw_false_image=1, draw_false_text=2,
                      get_recall_metric=True, k_test=8, irtr_itc_weight=1.0, irtr_in_batch_negatives=True,
                      limit_val_batches=2)
    metrics = result["metrics"]
    keys = [f"val/{d}_r{k}" for d in ("ir", "tr") for k in (1, 5, 10)]
    for key in keys:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["val/irtr_rsum"] == pytest.approx(sum(metrics[k] for k in keys), rel=1e-5)
    assert metrics["val/the_metric"] == pytest.approx(metrics["val/irtr_rsum"] + metrics["val/itm_accuracy"],
                                                      rel=1e-5)
    assert "train/irtr_accuracy" in metrics and "val/irtr_itc_loss" in metrics


def test_loading_a_pretraining_checkpoint_starts_the_task_heads(data_root, pretrained, tmp_path):
    state = torch.load(pretrained, map_location="cpu", weights_only=True)["state_dict"]
    cfg = tiny(data_root, tmp_path, loss_names=_loss_names({"irtr": 1, "nlvr2": 1}), is_pretrain=False)
    module = VLTModule(cfg)
    report = load_vlt_checkpoint(module, pretrained)
    assert len(report["initialised"]) == 2
    torch.testing.assert_close(module.heads["irtr"].fc.weight[0], state["heads.itm.fc.weight"][1])
    torch.testing.assert_close(module.heads["irtr"].fc.bias, state["heads.itm.fc.bias"][1:])
    types = module.backbone.token_type_embeddings.weight
    torch.testing.assert_close(types[2], types[1])  # the second NLVR2 image starts as "image"

    # A ViLT-era checkpoint with two token types is extended to three.
    state["backbone.token_type_embeddings.weight"] = state["backbone.token_type_embeddings.weight"][:2]
    short = tmp_path / "two_types.ckpt"
    torch.save({"state_dict": state}, short)
    fresh = VLTModule(cfg)
    report = load_vlt_checkpoint(fresh, short)
    assert any("token_type_embeddings" in a for a in report["adapted"])
    types = fresh.backbone.token_type_embeddings.weight
    torch.testing.assert_close(types[:2], state["backbone.token_type_embeddings.weight"])
    torch.testing.assert_close(types[2], types[1])


def test_downstream_objectives_never_mask_images(data_root, tmp_path, monkeypatch):
    cfg = tiny(data_root, tmp_path, loss_names=_loss_names({"vqa": 1}), vqav2_label_size=4, is_pretrain=False)
    module = VLTModule(cfg)
    seen = []
    original = module.backbone.forward
    monkeypatch.setattr(module.backbone, "forward",
                        lambda *a, **k: seen.append(k.get("mask_image")) or original(*a, **k))
    batch = {"text_ids": torch.randint(5, 100, (2, 16)), "text_masks": torch.ones(2, 16, dtype=torch.long),
             "image": torch.randn(2, 3, 32, 32), "vqa_targets": torch.zeros(2, 4)}
    module.compute_objectives(batch)
    assert seen == [False]


@pytest.mark.parametrize("name", DOWNSTREAM_CONFIGS)
def test_named_finetune_configs_compose_and_validate(name):
    cfg = default_config()
    cfg.update(ex.named_configs[name](preset=cfg))
    cfg.update(per_gpu_batchsize=32)
    validate_config(cfg)
    assert cfg["max_steps"] == -1 and cfg["warmup_steps"] == 0.1 and cfg["learning_rate"] == 1e-4
    for key in cfg["train_transform_keys"] + cfg["val_transform_keys"]:
        assert key in TRANSFORMS, key
    if name.endswith("_mae_randaug"):
        assert cfg["is_pretrain"] is False and cfg["use_mae"] is False and cfg["layer_decay"] == 0.65
    if "irtr" in name:
        assert cfg["get_recall_metric"] and cfg["draw_false_text"] == 15
