"""One-tower backbone, position tables, MAE masking and decoder, heads.

Also home of the tiny-config / hand-made-batch helpers the other model tests import.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from vlt.config import _loss_names, default_config
from vlt.models import MAEDecoder, OneTowerBackbone
from vlt.models.one_tower import random_masking
from vlt.models.pos_embed import interpolate_pos_embed, sincos_2d

VOCAB = 100


def tiny_config(**overrides) -> dict:
    """Default config shrunk to a 2-layer, width-32 model on 32 px images (patch 8: 16 patches)."""
    cfg = default_config()
    cfg.update(
        encoder_manual_configuration=True, hidden_size=32, num_heads=2, num_layers=2, mlp_ratio=2,
        image_size=32, patch_size=8, vocab_size=VOCAB, max_text_len=16, drop_rate=0.0, drop_path_rate=0.0,
        decoder_hidden_size=32, decoder_num_layers=2, decoder_num_heads=2,
        loss_names=_loss_names({"mlm": 1, "itm": 1, "mae": 1}), use_mae=True, is_pretrain=True,
        mask_ratio=0.75, pretrain_path="", seed=0,
    )
    cfg.update(overrides)
    return cfg


def make_batch(batch_size: int = 4, text_len: int = 8, image_size: int = 32, seed: int = 0) -> dict:
    """A batch per the ARCHITECTURE contract: random images/ids, padded tail, ~25% MLM targets."""
    g = torch.Generator().manual_seed(seed)
    text_ids = torch.randint(5, VOCAB, (batch_size, text_len), generator=g)
    text_masks = torch.ones(batch_size, text_len, dtype=torch.long)
    for i in range(batch_size):  # sample i has i padded positions at the end (at most text_len - 2)
        n_pad = min(i, text_len - 2)
        if n_pad:
            text_masks[i, -n_pad:] = 0
            text_ids[i, -n_pad:] = 0
    labels = torch.full_like(text_ids, -100)
    targets = (torch.rand(batch_size, text_len, generator=g) < 0.3) & text_masks.bool()
    targets[:, 1] = True  # at least one target per sample
    labels[targets] = text_ids[targets]
    text_ids_mlm = text_ids.clone()
    text_ids_mlm[targets] = 3  # [MASK]-like id
    return {
        "image": torch.randn(batch_size, 3, image_size, image_size, generator=g),
        "false_image_0": torch.randn(batch_size, 3, image_size, image_size, generator=g),
        "text": ["a caption"] * batch_size,
        "text_ids": text_ids,
        "text_masks": text_masks,
        "text_ids_mlm": text_ids_mlm,
        "text_labels_mlm": labels,
        "image_index": torch.arange(batch_size),
        "text_index": torch.arange(batch_size),
    }


# ---------------------------------------------------------------- backbone


@pytest.mark.parametrize("pooler_type,cls_dim", [("single", 32), ("double", 64)])
def test_backbone_output_shapes(pooler_type, cls_dim):
    backbone = OneTowerBackbone(tiny_config(pooler_type=pooler_type))
    batch = make_batch()
    out = backbone(batch["text_ids"], batch["text_masks"], batch["image"])
    assert out["text_feats"].shape == (4, 8, 32)
    assert out["image_feats"].shape == (4, 1 + 16, 32)
    assert out["cls_feats"].shape == (4, cls_dim)
    assert torch.equal(out["text_masks"], batch["text_masks"])
    assert "mae_mask" not in out

    masked = backbone(batch["text_ids"], batch["text_masks"], batch["image"], mask_image=True, mask_ratio=0.75)
    assert masked["image_feats"].shape == (4, 1 + 4, 32)
    assert masked["mae_mask"].shape == (4, 16) and masked["mae_ids_restore"].shape == (4, 16)
    assert masked["cls_feats"].shape == (4, cls_dim)


def test_backbone_keeps_timm_names_and_fixed_sincos():
    backbone = OneTowerBackbone(tiny_config())
    keys = set(backbone.state_dict())
    for key in ("vit.patch_embed.proj.weight", "vit.cls_token", "vit.pos_embed", "vit.blocks.1.attn.qkv.weight",
                "vit.norm.weight", "text_embeddings.word_embeddings.weight", "token_type_embeddings.weight",
                "pooler.dense.weight"):
        assert key in keys, key
    assert not backbone.vit.pos_embed.requires_grad
    assert torch.allclose(backbone.vit.pos_embed, sincos_2d(32, 4, cls_token=True))
    assert backbone.token_type_embeddings.num_embeddings == 3


def test_backbone_from_timm_name():
    cfg = tiny_config(encoder_manual_configuration=False, vit="vit_tiny_patch16_224", image_size=32)
    backbone = OneTowerBackbone(cfg)
    assert backbone.hidden_size == 192 and backbone.patch_size == 16 and backbone.num_patches == 4
    batch = make_batch(batch_size=2)
    out = backbone(batch["text_ids"], batch["text_masks"], batch["image"])
    assert out["image_feats"].shape == (2, 5, 192)


def test_padding_tokens_change_nothing():
    backbone = OneTowerBackbone(tiny_config()).eval()
    batch = make_batch()
    ids, masks = batch["text_ids"], batch["text_masks"]
    with torch.no_grad():
        ref = backbone(ids, masks, batch["image"])
        pad = torch.zeros(4, 5, dtype=torch.long)
        garbage = torch.randint(5, VOCAB, (4, 5))  # ids under mask 0 must not matter either
        out = backbone(torch.cat([ids, garbage], 1), torch.cat([masks, pad], 1), batch["image"])
    torch.testing.assert_close(out["cls_feats"], ref["cls_feats"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["image_feats"], ref["image_feats"], atol=1e-5, rtol=0)
    valid = masks.bool()
    torch.testing.assert_close(out["text_feats"][:, :8][valid], ref["text_feats"][valid], atol=1e-5, rtol=0)


def test_attention_runs_through_sdpa(monkeypatch):
    calls = []
    real_sdpa = F.scaled_dot_product_attention

    def counting_sdpa(q, k, v, attn_mask=None, **kwargs):
        calls.append(attn_mask)
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    backbone = OneTowerBackbone(tiny_config())
    batch = make_batch()
    backbone(batch["text_ids"], batch["text_masks"], batch["image"])
    assert len(calls) == 2  # one per block
    assert all(m is not None and m.dtype == torch.bool and m.shape == (4, 1, 1, 8 + 17) for m in calls)


# ---------------------------------------------------------------- position tables


def test_sincos_2x2_matches_formula():
    dim = 8  # each axis gets 4 channels: frequencies 1 and 10000^(-1/2) = 0.01
    table = sincos_2d(dim, 2, cls_token=True)
    assert table.shape == (1, 5, dim)
    assert torch.equal(table[0, 0], torch.zeros(dim))
    expected = []
    for row in range(2):
        for col in range(2):  # MAE layout: [column half | row half], each [sin, sin, cos, cos]
            expected.append([math.sin(col), math.sin(col * 0.01), math.cos(col), math.cos(col * 0.01),
                             math.sin(row), math.sin(row * 0.01), math.cos(row), math.cos(row * 0.01)])
    torch.testing.assert_close(table[0, 1:], torch.tensor(expected), atol=1e-6, rtol=0)


def test_interpolate_pos_embed():
    pe = torch.randn(1, 1 + 16, 8)
    assert interpolate_pos_embed(pe, 4) is pe
    out = interpolate_pos_embed(pe, 6)
    assert out.shape == (1, 37, 8)
    assert torch.equal(out[:, 0], pe[:, 0])
    constant = torch.ones(1, 17, 8)
    torch.testing.assert_close(interpolate_pos_embed(constant, (3, 5)), torch.ones(1, 16, 8))


# ---------------------------------------------------------------- MAE


def test_random_masking_keeps_exact_count_per_sample():
    torch.manual_seed(0)
    tokens = torch.randn(6, 16, 4)
    kept, mask, ids_restore = random_masking(tokens, 0.75)
    assert kept.shape == (6, 4, 4)
    assert torch.equal(mask.sum(1), torch.full((6,), 12.0))
    assert len({tuple(m.tolist()) for m in mask}) > 1  # masks differ between samples
    for i in range(6):
        visible = tokens[i][mask[i] == 0]
        assert {tuple(t.tolist()) for t in kept[i]} == {tuple(t.tolist()) for t in visible}
        assert torch.equal(ids_restore[i].argsort().argsort(), ids_restore[i])  # a permutation


def test_mae_decoder_names_and_shapes():
    decoder = MAEDecoder(tiny_config(), encoder_dim=32, num_patches=16, patch_size=8)
    names = set(dict(decoder.named_parameters()))
    for key in ("decoder_embed.weight", "mask_token", "decoder_pos_embed", "decoder_blocks.1.attn.qkv.weight",
                "decoder_blocks.0.mlp.fc2.bias", "decoder_norm.weight", "decoder_pred.weight"):
        assert key in names, key
    assert not decoder.decoder_pos_embed.requires_grad
    assert decoder.decoder_pred.out_features == 8 * 8 * 3
    torch.manual_seed(0)
    kept, _, ids_restore = random_masking(torch.randn(3, 16, 32), 0.75)
    pred = decoder(torch.cat([torch.randn(3, 1, 32), kept], 1), ids_restore)
    assert pred.shape == (3, 16, 192)


def test_default_decoder_is_mae_sized():
    cfg = default_config()
    decoder = MAEDecoder(cfg, encoder_dim=768, num_patches=196, patch_size=16)
    assert decoder.decoder_embed.out_features == 512 and len(decoder.decoder_blocks) == 8
    assert decoder.decoder_blocks[0].attn.num_heads == 16


def test_from_scratch_vit_uses_mae_initialisation():
    """Xavier-uniform linears and patch projection (MAE), not timm's N(0, 0.02): std sqrt(2 / (fan_in + fan_out))."""
    torch.manual_seed(0)
    vit = OneTowerBackbone(tiny_config(hidden_size=64, num_heads=2, num_layers=2, mlp_ratio=4)).vit
    for weight in (vit.blocks[0].mlp.fc1.weight, vit.blocks[1].attn.qkv.weight):
        expected = math.sqrt(2.0 / (weight.shape[0] + weight.shape[1]))
        assert weight.std().item() == pytest.approx(expected, rel=0.05)
        assert weight.abs().max().item() <= expected * math.sqrt(3) + 1e-6  # uniform bound
    proj = vit.patch_embed.proj.weight.flatten(1)
    assert proj.std().item() == pytest.approx(math.sqrt(2.0 / sum(proj.shape)), rel=0.05)
    assert vit.blocks[0].attn.qkv.bias.abs().max() == 0


def test_max_image_len_samples_patches_in_training_only():
    backbone = OneTowerBackbone(tiny_config(max_image_len=3))  # 32 px / patch 8: 16 patches
    batch = make_batch()
    args = (batch["text_ids"], batch["text_masks"], batch["image"])
    backbone.train()
    assert backbone(*args)["image_feats"].shape[1] == 1 + 3
    tokens = torch.arange(4.0).view(1, 4, 1).expand(2, 4, 5)
    from vlt.models.one_tower import sample_patches
    kept = sample_patches(tokens, 3)
    assert kept.shape == (2, 3, 5) and all(len(set(row[:, 0].tolist())) == 3 for row in kept)  # distinct patches
    backbone.eval()
    assert backbone(*args)["image_feats"].shape[1] == 1 + 16
    assert backbone(*args, mask_image=True, mask_ratio=0.5)["image_feats"].shape[1] == 1 + 8  # MAE masking wins
