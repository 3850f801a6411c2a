"""Two-tower and HF one-tower backbones through VLTModule: training steps, padding, freezing,
learning-rate groups, checkpoints and the named configs."""
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from test_encoders import IMAGE_DIMS, TEXT_DIMS
from test_models import make_batch, tiny_config
from vlt.checkpoints import load_vlt_checkpoint
from vlt.config import DEMO_TOKENIZER, _loss_names, ex
from vlt.models import HFOneTowerBackbone, TwoTowerBackbone, build_backbone
from vlt.module import VLTModule
from vlt.optim import build_optimizer, param_groups

ROOT = Path(__file__).resolve().parents[1]
MLM_ITM = dict(loss_names=_loss_names({"mlm": 1, "itm": 1}), use_mae=False)
ONE_TOWER_DIMS = dict(encoder_manual_configuration=True, hidden_size=32, num_heads=2, num_layers=2, mlp_ratio=2,
                      drop_rate=0.0)
FUSION = dict(cross_layer_hidden_size=32, num_cross_layers=2, num_cross_layer_heads=2, cross_layer_mlp_ratio=2,
              cross_layer_drop_rate=0.0)

VARIANTS = {
    "one-tower-bert": dict(encoder="bert-base-uncased", random_init_encoder=True, **ONE_TOWER_DIMS),
    "one-tower-vit": dict(encoder="google/vit-base-patch16-224-in21k", pooler_type="double", **ONE_TOWER_DIMS),
    "two-tower-bert-timm-vit": dict(model_type="two-tower", text_encoder="bert-base-uncased", **TEXT_DIMS,
                                    image_encoder="vit_tiny_patch16_224", random_init_vision_encoder=True,
                                    **IMAGE_DIMS, **FUSION),
    "two-tower-hf-deit": dict(model_type="two-tower", text_encoder="bert-base-uncased", **TEXT_DIMS,
                              image_encoder="facebook/deit-tiny-patch16-224", **IMAGE_DIMS, **FUSION),
    "two-tower-hf-vit": dict(model_type="two-tower", text_encoder="google/electra-small-discriminator",
                             **TEXT_DIMS, image_encoder="google/vit-base-patch16-224-in21k", **IMAGE_DIMS, **FUSION),
    "two-tower-minilm": dict(model_type="two-tower", text_encoder=DEMO_TOKENIZER, vocab_size=30522,
                             image_encoder="vit_tiny_patch16_224", random_init_vision_encoder=True,
                             **IMAGE_DIMS, **FUSION),
}
# Backbone parts each variant must train (attribute-name prefixes under ``backbone.``).
TRAINED_PARTS = {
    "one-tower": ("text_embeddings", "image_embeddings", "token_type_embeddings", "layers", "pooler"),
    "two-tower": ("text_encoder", "image_encoder", "cross_modal_text_proj", "cross_modal_image_proj",
                  "cross_modal_token_type_embeddings", "cross_modal_layers", "cross_modal_text_pooler",
                  "cross_modal_image_pooler"),
}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(not attached|self.log|not registered).*")
        yield


def config_for(variant: str, **overrides) -> dict:
    return tiny_config(**{**MLM_ITM, **VARIANTS[variant], **overrides})


def make_text_batch(variant: str, **kwargs) -> dict:
    batch = make_batch(**kwargs)
    if "minilm" in variant:  # real bert-base-uncased ids, so the pretrained tower sees sensible input
        for key in ("text_ids", "text_ids_mlm"):
            batch[key] = torch.where(batch[key] > 0, batch[key] + 2000, batch[key])
        labels = batch["text_labels_mlm"]
        batch["text_labels_mlm"] = torch.where(labels >= 0, labels + 2000, labels)
    return batch


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_training_step_reaches_every_part(variant):
    module = VLTModule(config_for(variant))
    kind = "two-tower" if variant.startswith("two") else "one-tower"
    assert isinstance(module.backbone, TwoTowerBackbone if kind == "two-tower" else HFOneTowerBackbone)
    assert all(m.training for m in module.modules())  # pretrained towers too: Lightning keeps modes as found
    batch = make_text_batch(variant)
    module.on_train_batch_start(batch, 0)
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None][:5]
    for part in TRAINED_PARTS[kind] + ("heads.mlm", "heads.itm"):
        prefix = part if part.startswith("heads") else f"backbone.{part}"
        assert any(n.startswith(prefix) and g.abs().sum() > 0 for n, g in grads.items()), part
    cls_dim = 32 if VARIANTS[variant].get("pooler_type", "single") == "single" and kind == "one-tower" else 64
    assert module.backbone.cls_dim == cls_dim and module.heads["itm"].fc.in_features == cls_dim


def test_two_tower_outputs_and_second_image_type():
    backbone = build_backbone(config_for("two-tower-bert-timm-vit")).eval()
    batch = make_batch()
    out = backbone(batch["text_ids"], batch["text_masks"], batch["image"])
    assert out["text_feats"].shape == (4, 8, 32) and out["image_feats"].shape == (4, 1 + 16, 32)
    assert out["cls_feats"].shape == (4, 64) and torch.equal(out["text_masks"], batch["text_masks"])
    second = backbone(batch["text_ids"], batch["text_masks"], batch["image"], image_token_type_idx=2)
    assert not torch.allclose(out["cls_feats"], second["cls_feats"])
    assert backbone.word_embeddings is None  # METER: untied MLM decoder
    with pytest.raises(NotImplementedError, match="one-tower"):
        backbone(batch["text_ids"], batch["text_masks"], batch["image"], mask_image=True)


@pytest.mark.parametrize("variant", ["two-tower-hf-deit", "one-tower-vit"])
def test_unimodal_features_for_retrieval(variant):
    backbone = build_backbone(config_for(variant)).eval()
    batch = make_batch()
    text, image = backbone.encode_text(batch["text_ids"], batch["text_masks"]), backbone.encode_image(batch["image"])
    assert text.shape == image.shape == (4, backbone.hidden_size)
    garbage = torch.where(batch["text_masks"].bool(), batch["text_ids"], torch.full_like(batch["text_ids"], 9))
    torch.testing.assert_close(backbone.encode_text(garbage, batch["text_masks"]), text, atol=1e-5, rtol=0)


def test_hf_one_tower_supports_mae_masking():
    module = VLTModule(config_for("one-tower-bert", loss_names=_loss_names({"mlm": 1, "mae": 1}), use_mae=True))
    batch = make_batch()
    module.on_train_batch_start(batch, 0)
    outputs = module.compute_objectives(batch)
    assert torch.isfinite(module.total_loss(outputs))
    assert module.heads["mlm"].decoder.weight is module.backbone.word_embeddings


def test_hf_one_tower_samples_max_image_len_patches_in_training_only():
    backbone = VLTModule(config_for("one-tower-bert", max_image_len=2)).backbone
    batch = make_batch()
    args = (batch["text_ids"], batch["text_masks"], batch["image"])
    n_patches = backbone.image_embeddings.num_patches
    assert n_patches > 2
    assert backbone.train()(*args)["image_feats"].shape[1] == 1 + 2
    assert backbone.eval()(*args)["image_feats"].shape[1] == 1 + n_patches


@pytest.mark.parametrize("variant", ["two-tower-bert-timm-vit", "two-tower-minilm", "one-tower-bert", "one-tower-vit"])
def test_padding_never_changes_the_features(variant):
    backbone = build_backbone(config_for(variant)).eval()
    batch = make_text_batch(variant)
    ids, masks = batch["text_ids"], batch["text_masks"]
    padded_masks = torch.cat([masks, torch.zeros(4, 5, dtype=masks.dtype)], dim=1)
    padded_ids = torch.cat([ids, torch.zeros(4, 5, dtype=ids.dtype)], dim=1)
    garbage = torch.randint(1, 90, padded_ids.shape)  # whatever sits under the padding must not matter
    padded_ids = torch.where(padded_masks.bool(), padded_ids, garbage)
    with torch.no_grad():
        short = backbone(ids, masks, batch["image"])
        long = backbone(padded_ids, padded_masks, batch["image"])
    torch.testing.assert_close(long["cls_feats"], short["cls_feats"], atol=1e-5, rtol=0)
    torch.testing.assert_close(long["image_feats"], short["image_feats"], atol=1e-5, rtol=0)
    real = masks.bool()
    torch.testing.assert_close(long["text_feats"][:, :8][real], short["text_feats"][real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("flags, frozen_parts", [
    (dict(freeze_text_encoder=True, freeze_image_encoder=True), ("text_encoder", "image_encoder")),
    (dict(freeze_cross_modal_layers=True), ("cross_modal_",)),
])
def test_frozen_parts_get_no_gradient_and_keep_their_values(flags, frozen_parts):
    cfg = config_for("two-tower-bert-timm-vit", text_encoder_drop_rate=0.1, weight_decay=0.1, **flags)
    module = VLTModule(cfg).train()
    frozen = {n: p.detach().clone() for n, p in module.named_parameters()
              if n.removeprefix("backbone.").startswith(frozen_parts)}
    assert frozen and not any(module.get_parameter(n).requires_grad for n in frozen)
    for name in module.backbone.frozen:
        assert not getattr(module.backbone, name).training  # dropout off, statistics fixed
    groups = param_groups(module, cfg)
    assert not set(frozen) & {n for g in groups for n in g["names"]}
    optimizer = build_optimizer(groups, cfg)
    trained = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    for step in range(2):
        batch = make_batch(seed=step)
        module.on_train_batch_start(batch, step)
        optimizer.zero_grad()
        module.training_step(batch, step).backward()
        assert all(module.get_parameter(n).grad is None for n in frozen)
        optimizer.step()
    for name, before in frozen.items():
        assert torch.equal(module.get_parameter(name), before), name
    assert any(not torch.equal(module.get_parameter(n), v) for n, v in trained.items())


def test_head_and_cross_modal_learning_rates():
    cfg = config_for("two-tower-bert-timm-vit", learning_rate=1e-4, lr_mult_head=5, lr_mult_cross_modal=3)
    lrs = {name: g["lr"] for g in param_groups(VLTModule(cfg), cfg) for name in g["names"]}
    for name, lr in lrs.items():
        expected = 5e-4 if name.startswith("heads.") else 3e-4 if "cross_modal" in name else 1e-4
        assert lr == pytest.approx(expected), name
    assert any(n.startswith("backbone.cross_modal_layers.") for n in lrs)
    assert any(n.startswith("backbone.text_encoder.") for n in lrs)


def test_two_tower_checkpoint_reloads(tmp_path):
    cfg = config_for("two-tower-minilm")
    module = VLTModule(cfg).eval()
    path = tmp_path / "two_tower.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": cfg}}, path)
    torch.manual_seed(123)
    reloaded = VLTModule(dict(cfg, seed=1)).eval()
    report = load_vlt_checkpoint(reloaded, path)
    assert not report["missing"] and not report["unexpected"] and not report["mismatched"]
    batch = make_text_batch("two-tower-minilm")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(batch)["cls_feats"], module(batch)["cls_feats"], atol=0, rtol=0)


def test_build_rejects_settings_that_cannot_apply():
    with pytest.raises(ValueError, match="two-tower"):
        build_backbone(tiny_config(freeze_text_encoder=True))
    with pytest.raises(ValueError, match="MAE"):
        build_backbone(config_for("two-tower-bert-timm-vit", loss_names=_loss_names({"mae": 1})))
    with pytest.raises(ValueError, match="divisible"):
        build_backbone(config_for("two-tower-bert-timm-vit", num_cross_layer_heads=3))


# ---------------------------------------------------------------- named configs


def _compose(*named) -> dict:
    return ex.run("print_config", named_configs=list(named), options={"--loglevel": "ERROR"}).config


def test_named_configs_compose():
    cfg = _compose("demo_two_tower", "freeze_text_encoder", "random_init_text")
    assert cfg["model_type"] == "two-tower" and cfg["text_encoder"] == DEMO_TOKENIZER
    assert cfg["freeze_text_encoder"] and cfg["random_init_text_encoder"] and not cfg["freeze_image_encoder"]
    for name in ("pretrain_mlm_itm_onetower_bert", "pretrain_mlm_itm_onetower_vit"):
        assert _compose(name)["encoder"] and _compose(name)["model_type"] == "one-tower"
    fragments = _compose("freeze_image_encoder", "freeze_cross_modal_layers", "random_init_vision")
    assert fragments["freeze_image_encoder"] and fragments["freeze_cross_modal_layers"]
    assert fragments["random_init_vision_encoder"]


def test_demo_two_tower_builds_offline():
    cfg = _compose("demo_two_tower")
    module = VLTModule(cfg)
    assert module.backbone.text_encoder.out_dim == 384 and module.backbone.image_encoder.out_dim == 128
    assert module.backbone.hidden_size == 128 and len(module.backbone.cross_modal_layers.layers) == 2


def test_run_py_prints_the_renaissance_config():
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "print_config", "with", "task_mlm_itm_deit_electra"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = _compose("task_mlm_itm_deit_electra")
    assert cfg == dict(_compose("pretrain_mlm_itm_twotower_deit_electra"), seed=cfg["seed"])  # an alias
    expected = dict(model_type="two-tower", image_encoder="facebook/deit-tiny-patch16-224",
                    text_encoder="google/electra-small-discriminator", tokenizer="google/electra-small-discriminator",
                    num_cross_layers=6, cross_layer_hidden_size=256, num_cross_layer_heads=4, datasets=["coco", "vg"],
                    whole_word_masking=True, max_text_len=50, learning_rate=1e-5, lr_mult_head=5,
                    lr_mult_cross_modal=5, vocab_size=30522, image_size=224)
    for key, value in expected.items():
        assert cfg[key] == value, key
        assert f"{key} = {value!r}" in out.stdout, key
    assert {k for k, w in cfg["loss_names"].items() if w} == {"itm", "mlm"}


def test_example_yaml_configs_are_valid_and_the_scratch_one_builds_offline():
    import yaml

    from vlt.config import default_config
    from vlt.config_check import check_config_file

    files = sorted((ROOT / "configs").glob("two_tower_*.yaml"))
    assert len(files) >= 3
    for path in files:
        check_config_file(str(path), default_config())
    cfg = dict(default_config(), **yaml.safe_load((ROOT / "configs/two_tower_small_from_scratch.yaml").read_text()))
    backbone = build_backbone(cfg)
    assert type(backbone.text_encoder.model).__name__ == "ElectraModel"
    assert type(backbone.image_encoder.model).__name__ == "DeiTModel" and backbone.cls_dim == 512
