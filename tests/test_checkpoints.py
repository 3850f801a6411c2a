"""pretrain_path (MAE checkpoints) and load_path (vlt Lightning checkpoints) loading."""
import logging

import pytest
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from test_models import make_batch, tiny_config
from vlt.checkpoints import load_mae_pretrained, load_vlt_checkpoint
from vlt.models import MAEDecoder, OneTowerBackbone
from vlt.models.pos_embed import interpolate_pos_embed, sincos_2d
from vlt.module import VLTModule


def _mae_state(patch_size: int = 8) -> dict:
    """A tiny MAE-like state dict: timm ViT encoder keys + decoder_* keys, all random."""
    torch.manual_seed(123)
    vit = VisionTransformer(img_size=32, patch_size=patch_size, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2,
                            num_classes=0)
    decoder = MAEDecoder(tiny_config(), encoder_dim=32, num_patches=(32 // patch_size) ** 2, patch_size=patch_size)
    with torch.no_grad():
        vit.pos_embed.copy_(sincos_2d(32, 32 // patch_size, cls_token=True))
    return {**vit.state_dict(), **decoder.state_dict()}


def _save(obj, path):
    torch.save(obj, path)
    return path


def test_load_mae_checkpoint_into_backbone_and_decoder(tmp_path):
    state = _mae_state()
    path = _save({"model": state}, tmp_path / "mae.pth")
    cfg = tiny_config()
    backbone, decoder = OneTowerBackbone(cfg), MAEDecoder(cfg, 32, 16, 8)
    report = load_mae_pretrained(backbone, decoder, path)
    for key in ("blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias", "patch_embed.proj.weight", "cls_token",
                "norm.weight"):
        assert torch.equal(backbone.vit.state_dict()[key], state[key]), key
    for key in ("decoder_embed.weight", "mask_token", "decoder_blocks.1.attn.proj.weight", "decoder_pred.bias"):
        assert torch.equal(decoder.state_dict()[key], state[key]), key
    assert torch.allclose(backbone.vit.pos_embed, sincos_2d(32, 4, cls_token=True))
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []


def test_bare_state_dict_with_ddp_prefix_and_no_decoder(tmp_path, caplog):
    state = {f"module.{k}": v for k, v in _mae_state().items()}
    path = _save(state, tmp_path / "bare.pth")
    backbone = OneTowerBackbone(tiny_config())
    with caplog.at_level(logging.INFO, logger="vlt"):
        load_mae_pretrained(backbone, None, path)
    assert torch.equal(backbone.vit.blocks[1].attn.qkv.weight, state["module.blocks.1.attn.qkv.weight"])
    assert "decoder keys ignored" in caplog.text


def test_shape_mismatch_is_reported(tmp_path, caplog):
    path = _save({"model": _mae_state(patch_size=16)}, tmp_path / "p16.pth")
    backbone = OneTowerBackbone(tiny_config())
    with caplog.at_level(logging.WARNING, logger="vlt"):
        report = load_mae_pretrained(backbone, None, path)
    assert any(k.startswith("patch_embed.proj.weight") for k in report["mismatched"])
    assert "mismatched" in caplog.text


def test_unrelated_checkpoint_raises_naming_the_file(tmp_path):
    path = _save({"model": {"encoder.layer.0.weight": torch.zeros(3), "foo.bar": torch.ones(1)}},
                 tmp_path / "unrelated.pth")
    with pytest.raises(ValueError, match="unrelated.pth") as err:
        load_mae_pretrained(OneTowerBackbone(tiny_config()), None, path)
    assert "encoder.layer.0.weight" in str(err.value) and "blocks.0" in str(err.value)


def test_module_loads_pretrain_path(tmp_path):
    state = _mae_state()
    path = _save({"model": state}, tmp_path / "mae.pth")
    module = VLTModule(tiny_config(pretrain_path=str(path)))
    assert torch.equal(module.backbone.vit.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])
    assert torch.equal(module.mae_decoder.decoder_pred.weight, state["decoder_pred.weight"])


def _outputs(module, batch):
    module.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        return {k: v["loss"] for k, v in module.compute_objectives(batch).items()}, module(batch)["cls_feats"]


def test_vlt_checkpoint_round_trip(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(1)
    source = VLTModule(cfg)
    path = _save({"state_dict": source.state_dict(), "hyper_parameters": {"config": cfg}}, tmp_path / "a.ckpt")
    torch.manual_seed(2)
    target = VLTModule(cfg)
    report = load_vlt_checkpoint(target, path)
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    batch = make_batch()
    (losses_a, cls_a), (losses_b, cls_b) = _outputs(source, batch), _outputs(target, batch)
    assert torch.equal(cls_a, cls_b)
    assert losses_a.keys() == losses_b.keys() and all(torch.equal(losses_a[k], losses_b[k]) for k in losses_a)


def test_vlt_checkpoint_adapts_text_positions_and_token_types(tmp_path):
    source = VLTModule(tiny_config(max_text_len=16, loss_names={"mlm": 1}))
    state = source.state_dict()
    state["backbone.token_type_embeddings.weight"] = state["backbone.token_type_embeddings.weight"][:2]
    path = _save({"state_dict": state}, tmp_path / "b.ckpt")

    longer = VLTModule(tiny_config(max_text_len=24, loss_names={"mlm": 1}))
    report = load_vlt_checkpoint(longer, path)
    pos_old = state["backbone.text_embeddings.position_embeddings.weight"]
    pos_new = longer.backbone.text_embeddings.position_embeddings.weight
    assert pos_new.shape[0] == 24 and torch.equal(pos_new[:16], pos_old)
    types = longer.backbone.token_type_embeddings.weight
    assert torch.equal(types[:2], state["backbone.token_type_embeddings.weight"])
    assert torch.equal(types[2], types[1])  # the new (second image) row starts as the image row
    assert len(report["adapted"]) == 2

    shorter = VLTModule(tiny_config(max_text_len=8, loss_names={"mlm": 1}))
    load_vlt_checkpoint(shorter, path)
    assert torch.equal(shorter.backbone.text_embeddings.position_embeddings.weight, pos_old[:8])


def test_vlt_checkpoint_interpolates_learned_pos_embed(tmp_path):
    class LearnedPositions(nn.Module):
        def __init__(self, grid):
            super().__init__()
            self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, 8))

    source = LearnedPositions(4)
    path = _save({"state_dict": source.state_dict()}, tmp_path / "c.ckpt")
    target = LearnedPositions(6)
    load_vlt_checkpoint(target, path)
    torch.testing.assert_close(target.pos_embed.data, interpolate_pos_embed(source.pos_embed.data, 6))


def test_vlt_checkpoint_of_unrelated_keys_raises(tmp_path):
    path = _save({"state_dict": {"something.else": torch.zeros(2)}}, tmp_path / "d.ckpt")
    with pytest.raises(ValueError, match="d.ckpt"):
        load_vlt_checkpoint(VLTModule(tiny_config()), path)
