"""Encoder factories: offline resolution, manual configurations, timm/HF choice, convolutional encoders."""
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, ResNetConfig, ViTConfig, ViTModel

from test_models import VOCAB, make_batch, tiny_config
from vlt.config import DEMO_TOKENIZER, _loss_names
from vlt.models.build import build_backbone
from vlt.models.encoders import (ConvolutionalEncoderError, EncoderUnavailableError, HFImageEncoder, HFTextEncoder,
                                 TimmImageEncoder, build_image_encoder, encoder_request)

TEXT_DIMS = dict(text_encoder_manual_configuration=True, text_encoder_hidden_size=32, text_encoder_num_heads=2,
                 text_encoder_num_layers=2, text_encoder_mlp_ratio=2, text_encoder_drop_rate=0.0,
                 text_encoder_embedding_size=16)
IMAGE_DIMS = dict(image_encoder_manual_configuration=True, image_encoder_hidden_size=32, image_encoder_num_heads=2,
                  image_encoder_num_layers=2, image_encoder_mlp_ratio=2, image_encoder_drop_rate=0.0)


def test_packaged_minilm_tower_equals_the_transformers_model():
    cfg = tiny_config(text_encoder=DEMO_TOKENIZER, vocab_size=30522)
    tower = HFTextEncoder(cfg).eval()
    reference = AutoModel.from_pretrained(DEMO_TOKENIZER).eval()
    tokens = AutoTokenizer.from_pretrained(DEMO_TOKENIZER)(
        ["a red circle left of a blue square", "two shapes"], padding="max_length", max_length=12,
        return_tensors="pt")
    with torch.no_grad():
        ours = tower(tokens["input_ids"], tokens["attention_mask"])
        theirs = reference(**tokens).last_hidden_state
    real = tokens["attention_mask"].bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)
    assert tower.out_dim == 384


def test_missing_hub_weights_offline_name_the_fix():
    with pytest.raises(EncoderUnavailableError, match="local directory") as err:
        HFTextEncoder(tiny_config(text_encoder="google/electra-small-discriminator"))
    assert "random_init_text_encoder" in str(err.value) and "text_encoder_manual_configuration" in str(err.value)
    # random init still needs the architecture config; the message says how to do without it
    with pytest.raises(EncoderUnavailableError, match="image_encoder_manual_configuration"):
        HFImageEncoder(tiny_config(image_encoder="facebook/deit-tiny-patch16-224", random_init_vision_encoder=True))
    with pytest.raises(EncoderUnavailableError, match="local directory does not exist"):
        HFTextEncoder(tiny_config(text_encoder="/nonexistent/vlt-encoder"))
    with pytest.raises(EncoderUnavailableError, match="local directory.*random_init_vision_encoder"):
        TimmImageEncoder(tiny_config(image_encoder="vit_tiny_patch16_224", image_size=32))


@pytest.mark.parametrize("role, name, overrides, model_class, width", [
    ("text", "google/electra-small-discriminator", TEXT_DIMS, "ElectraModel", 32),
    ("text", "bert-base-uncased", TEXT_DIMS, "BertModel", 32),
    ("image", "facebook/deit-tiny-patch16-224", IMAGE_DIMS, "DeiTModel", 32),
    ("image", "google/vit-base-patch16-224-in21k", IMAGE_DIMS, "ViTModel", 32),
])
def test_manual_configuration_keeps_the_family_and_reads_nothing(role, name, overrides, model_class, width):
    cfg = tiny_config(**{f"{role}_encoder": name}, **overrides)
    tower = HFTextEncoder(cfg) if role == "text" else build_image_encoder(cfg)
    assert type(tower.model).__name__ == model_class and tower.out_dim == width
    assert tower.model.config.num_hidden_layers == 2 and tower.model.config.intermediate_size == 64
    if model_class == "ElectraModel":
        assert tower.model.config.embedding_size == 16
    if role == "text":
        assert tower.model.config.vocab_size == VOCAB
        batch = make_batch()
        assert tower(batch["text_ids"], batch["text_masks"]).shape == (4, 8, 32)
    else:
        assert tower(torch.randn(2, 3, 32, 32)).shape == (2, 16 + (2 if "deit" in name else 1), 32)


def test_timm_names_go_to_timm_and_hub_names_to_transformers():
    cfg = tiny_config(image_encoder="vit_tiny_patch16_224", random_init_vision_encoder=True, **IMAGE_DIMS)
    timm_tower = build_image_encoder(cfg)
    assert isinstance(timm_tower, TimmImageEncoder)
    assert timm_tower(torch.randn(2, 3, 32, 32)).shape == (2, 1 + 16, 32)
    assert isinstance(build_image_encoder(dict(cfg, image_encoder="facebook/deit-tiny-patch16-224")), HFImageEncoder)


def test_text_positions_must_cover_max_text_len():
    with pytest.raises(ValueError, match="max_text_len"):
        HFTextEncoder(tiny_config(text_encoder=DEMO_TOKENIZER, vocab_size=30522, max_text_len=600))


def _two_tower(**overrides):
    return tiny_config(model_type="two-tower", text_encoder="bert-base-uncased", use_mae=False,
                       loss_names=_loss_names({"mlm": 1, "itm": 1}), **TEXT_DIMS, **overrides)


def test_convolutional_image_encoder_is_refused_at_build(tmp_path):
    with pytest.raises(ConvolutionalEncoderError, match="'resnet50' is convolutional; two-tower fusion needs a token"):
        build_backbone(_two_tower(image_encoder="resnet50", random_init_vision_encoder=True))
    hf_resnet = tmp_path / "tiny-resnet"
    ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]).save_pretrained(hf_resnet)
    with pytest.raises(ConvolutionalEncoderError, match="image_encoder_flatten_features"):
        build_backbone(_two_tower(image_encoder=str(hf_resnet), random_init_vision_encoder=True))


@pytest.mark.parametrize("name", ["test_resnet", "hf-resnet"])
def test_flattened_cnn_features_feed_the_fusion(tmp_path, name):
    if name == "hf-resnet":
        name = str(tmp_path / name)
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]).save_pretrained(name)
    cfg = _two_tower(image_encoder=name, random_init_vision_encoder=True, image_encoder_flatten_features=True,
                     image_size=64, cross_layer_hidden_size=32, num_cross_layers=1, num_cross_layer_heads=2)
    backbone = build_backbone(cfg)
    tokens = backbone.image_encoder(torch.randn(2, 3, 64, 64))
    assert tokens.shape[0] == 2 and tokens.shape[2] == backbone.image_encoder.out_dim
    torch.testing.assert_close(tokens[:, 0], tokens[:, 1:].mean(dim=1))  # summary token first
    batch = make_batch(batch_size=2, image_size=64)
    out = backbone(batch["text_ids"], batch["text_masks"], batch["image"])
    assert out["cls_feats"].shape == (2, 64) and torch.isfinite(out["cls_feats"]).all()


def test_request_reads_role_keys():
    request = encoder_request(tiny_config(random_init_vision_encoder=True, **IMAGE_DIMS), "image_encoder")
    assert request.random_init and request.manual["hidden_size"] == 32 and not request.pretrained
    with pytest.raises(ValueError, match="divisible"):
        encoder_request(tiny_config(**dict(IMAGE_DIMS, image_encoder_num_heads=3)), "image_encoder")


# ---------------------------------------------------------------- one-tower over a local pretrained encoder


def test_one_tower_warm_starts_its_text_embeddings_from_a_local_bert(tmp_path):
    bert = BertModel(BertConfig(vocab_size=VOCAB, hidden_size=32, num_attention_heads=2, num_hidden_layers=2,
                                intermediate_size=64, max_position_embeddings=64))
    bert.save_pretrained(tmp_path / "bert")
    backbone = build_backbone(tiny_config(encoder=str(tmp_path / "bert"), encoder_manual_configuration=False,
                                          loss_names={"mlm": 1, "itm": 1}, use_mae=False))
    assert torch.equal(backbone.word_embeddings, bert.embeddings.word_embeddings.weight)
    assert torch.equal(backbone.text_embeddings.position_embeddings.weight,
                       bert.embeddings.position_embeddings.weight[:16])
    assert torch.equal(backbone.layers[1].output.dense.weight, bert.encoder.layer[1].output.dense.weight)


def test_one_tower_warm_starts_patches_from_a_local_vit_at_another_size(tmp_path):
    vit = ViTModel(ViTConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=2, intermediate_size=64,
                             image_size=16, patch_size=8))
    vit.save_pretrained(tmp_path / "vit")
    backbone = build_backbone(tiny_config(encoder=str(tmp_path / "vit"), encoder_manual_configuration=False,
                                          image_size=32, use_mae=False, loss_names={"mlm": 1}))
    assert backbone.patch_size == 8 and backbone.image_embeddings.pos_embed.shape == (1, 1 + 16, 32)
    assert torch.equal(backbone.image_embeddings.proj.weight, vit.embeddings.patch_embeddings.projection.weight)
    assert torch.equal(backbone.image_embeddings.cls_token, vit.embeddings.cls_token)
    assert torch.equal(backbone.final_norm.weight, vit.layernorm.weight)


def test_pretrained_hf_vit_is_interpolated_to_image_size(tmp_path):
    vit = ViTModel(ViTConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=1, intermediate_size=64,
                             image_size=16, patch_size=8))
    vit.save_pretrained(tmp_path / "vit16")
    tower = HFImageEncoder(tiny_config(image_encoder=str(tmp_path / "vit16"), image_size=32, original_image_size=16))
    assert tower.interpolate and tower(torch.randn(2, 3, 32, 32)).shape == (2, 1 + 16, 32)
    same_size = HFImageEncoder(tiny_config(image_encoder=str(tmp_path / "vit16"), image_size=16,
                                           original_image_size=16))
    assert not same_size.interpolate
