"""One-tower backbone over a Hugging Face encoder's layers (Renaissance ``model_type="one-tower"``, ``encoder=...``).

The encoder's transformer layers (BERT, ELECTRA, RoBERTa, ViT, DeiT, BEiT without
relative position bias...) process ``[text tokens ; image patches]``. Embeddings
are vlt's own, sized to the encoder, so every family gets the same inputs; when
the encoder is pretrained they are warm-started from its embeddings where shapes
allow (a text encoder's word/position tables, a vision encoder's patch projection,
cls token and position table), and the rest starts fresh.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import transformers
from packaging.version import Version
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEmbeddings

try:
    from transformers.masking_utils import create_bidirectional_mask
except ImportError:  # older transformers: HFOneTowerBackbone refuses to build (see its __init__)
    create_bidirectional_mask = None

from vlt.models.encoders import encoder_request, load_hf_config, load_hf_model, modality_of
from vlt.models.heads import Pooler, init_bert_weights
from vlt.models.one_tower import IMAGE_TYPE, TEXT_TYPE, image_tokens
from vlt.models.pos_embed import interpolate_pos_embed

logger = logging.getLogger("vlt")


def layer_stack(model: nn.Module, num_layers: int) -> nn.ModuleList:
    """The model's list of transformer layers (``encoder.layer`` in BERT, ``layers`` in ViT...)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return module
    raise ValueError(f"{type(model).__name__}: no list of {num_layers} transformer layers found")


class PatchEmbedding(nn.Module):
    """Conv patchify + learned positions + cls token in front (ViT layout)."""

    def __init__(self, image_size: int, patch_size: int, dim: int, drop_rate: float):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not a multiple of the encoder's patch size {patch_size}")
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, dim))
        self.dropout = nn.Dropout(drop_rate)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @property
    def num_patches(self) -> int:
        return self.grid ** 2

    def forward(self, image: torch.Tensor, mask_ratio: Optional[float] = None, max_patches: int = -1):
        patches = self.proj(image).flatten(2).transpose(1, 2)
        tokens, mask, ids_restore = image_tokens(patches, self.cls_token, self.pos_embed, mask_ratio, max_patches)
        return self.dropout(tokens), mask, ids_restore


class HFOneTowerBackbone(nn.Module):
    """vlt text/patch embeddings + the layers (and final norm) of a Hugging Face encoder.

    Outputs follow :class:`~vlt.models.one_tower.OneTowerBackbone`.
    """

    def __init__(self, config: dict):
        super().__init__()
        if Version(transformers.__version__).major < 5:
            # Before 5.0 vision layers (ViT, DeiT...) take no attention mask: padded text would leak in.
            raise RuntimeError(f"one-tower models over an HF encoder need transformers >= 5 "
                               f"(found {transformers.__version__})")
        self.config = config
        request = encoder_request(config, "encoder")
        enc_config = load_hf_config(request, config)
        if getattr(enc_config, "use_relative_position_bias", False) or \
                getattr(enc_config, "use_shared_relative_position_bias", False):
            raise ValueError(f"encoder={request.name!r} uses relative position bias over the image grid, "
                             "which cannot cover a [text ; image] sequence; use it as a two-tower image_encoder")
        if not isinstance(getattr(enc_config, "hidden_size", None), int):
            raise ValueError(f"encoder={request.name!r} ({enc_config.model_type}) is not a transformer encoder")
        model = load_hf_model(request, enc_config)
        self.encoder_config = model.config
        self.layers = layer_stack(model, enc_config.num_hidden_layers)
        # Vision transformers are pre-LN and close with a LayerNorm; BERT-style encoders are post-LN.
        norm = getattr(model, "layernorm", None)
        self.final_norm = norm if isinstance(norm, nn.Module) else nn.Identity()

        self.hidden_size = dim = enc_config.hidden_size
        is_vision = modality_of(enc_config) == "image"
        text_dim = dim if is_vision else getattr(enc_config, "embedding_size", dim)
        drop = enc_config.hidden_dropout_prob
        self.text_embeddings = BertEmbeddings(BertConfig(
            vocab_size=config["vocab_size"], hidden_size=text_dim, max_position_embeddings=config["max_text_len"],
            hidden_dropout_prob=drop, layer_norm_eps=getattr(enc_config, "layer_norm_eps", 1e-12),
        ))
        self.text_embeddings_project = nn.Linear(text_dim, dim) if text_dim != dim else None
        patch_size = enc_config.patch_size if is_vision else config["patch_size"]
        self.image_embeddings = PatchEmbedding(config["image_size"], patch_size, dim, drop)
        self.patch_size, self.num_patches = patch_size, self.image_embeddings.num_patches
        self.token_type_embeddings = nn.Embedding(3, dim)
        self.pooler = Pooler(dim, config["pooler_type"])
        for module in (self.text_embeddings, self.text_embeddings_project, self.token_type_embeddings, self.pooler):
            if module is not None:
                module.apply(init_bert_weights)
        if request.pretrained:
            copied = self._warm_start(getattr(model, "embeddings", None))
            logger.info("encoder=%s: embeddings warm-started from the encoder: %s", request.name,
                        ", ".join(copied) or "none fit")

    @property
    def cls_dim(self) -> int:
        return self.pooler.out_dim

    @property
    def word_embeddings(self) -> Optional[nn.Parameter]:
        """The word-embedding matrix an MLM decoder can share, or None when its width is not ``hidden_size``."""
        weight = self.text_embeddings.word_embeddings.weight
        return weight if weight.shape[1] == self.hidden_size else None

    @torch.no_grad()
    def _warm_start(self, source: Optional[nn.Module]) -> List[str]:
        """Copy the pretrained encoder's embedding tensors that fit ours; return what was copied."""
        if source is None:
            return []
        copied = []

        def copy(name: str, target: torch.Tensor, value) -> None:
            if isinstance(value, torch.Tensor) and value.shape == target.shape:
                target.copy_(value)
                copied.append(name)

        if hasattr(source, "word_embeddings"):
            own = self.text_embeddings
            copy("word_embeddings", own.word_embeddings.weight, source.word_embeddings.weight)
            positions = source.position_embeddings.weight[: own.position_embeddings.weight.shape[0]]
            copy("position_embeddings", own.position_embeddings.weight, positions)
            copy("LayerNorm.weight", own.LayerNorm.weight, source.LayerNorm.weight)
            copy("LayerNorm.bias", own.LayerNorm.bias, source.LayerNorm.bias)
            copy("token_type_embeddings", own.token_type_embeddings.weight[:1], source.token_type_embeddings.weight[:1])
        if hasattr(source, "patch_embeddings"):
            own = self.image_embeddings
            projection = source.patch_embeddings.projection
            copy("patch projection weight", own.proj.weight, projection.weight)
            copy("patch projection bias", own.proj.bias, projection.bias)
            copy("cls_token", own.cls_token, getattr(source, "cls_token", None))
            table = getattr(source, "position_embeddings", None)
            if isinstance(table, torch.Tensor) and table.shape[-1] == own.pos_embed.shape[-1]:
                n_patches = source.patch_embeddings.num_patches
                table = torch.cat([table[:, :1], table[:, -n_patches:]], dim=1)  # drop DeiT's distillation slot
                copy("image position table", own.pos_embed, interpolate_pos_embed(table, own.grid))
        return copied

    def embed_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        text = self.text_embeddings(input_ids=text_ids)
        if self.text_embeddings_project is not None:
            text = self.text_embeddings_project(text)
        return text + self.token_type_embeddings.weight[TEXT_TYPE]

    def encode(self, x: torch.Tensor, key_masks: torch.Tensor) -> torch.Tensor:
        """The encoder's layers and final norm over embedded tokens; ``key_masks`` (B, L), 0 = padding."""
        # The mask format (bool for SDPA, additive for eager attention) is the library's business.
        attn_mask = create_bidirectional_mask(config=self.encoder_config, inputs_embeds=x, attention_mask=key_masks)
        for layer in self.layers:
            x = layer(x, attn_mask)
            x = x[0] if isinstance(x, tuple) else x
        return self.final_norm(x)

    def encode_text(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        """Text-only pass, first-token feature (B, hidden_size) (for ITC / k_test)."""
        return self.encode(self.embed_text(text_ids), text_masks)[:, 0]

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Image-only pass, cls feature (B, hidden_size)."""
        img, _, _ = self.image_embeddings(image)
        img = img + self.token_type_embeddings.weight[IMAGE_TYPE]
        return self.encode(img, torch.ones(img.shape[:2], dtype=torch.long, device=img.device))[:, 0]

    def forward(self, text_ids: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                image_token_type_idx: int = IMAGE_TYPE, mask_image: bool = False,
                mask_ratio: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Joint encoding; same outputs as the timm one-tower backbone (``mae_*`` with ``mask_image``)."""
        if mask_image and mask_ratio is None:
            mask_ratio = self.config["mask_ratio"]
        text = self.embed_text(text_ids)
        budget = self.config.get("max_image_len", -1) if self.training else -1
        img, mae_mask, ids_restore = self.image_embeddings(image, mask_ratio if mask_image else None, budget)
        img = img + self.token_type_embeddings.weight[image_token_type_idx]
        keys = torch.cat([text_masks, text_masks.new_ones(img.shape[:2])], dim=1)
        x = self.encode(torch.cat([text, img], dim=1), keys)

        n_text = text.shape[1]
        text_feats, image_feats = x[:, :n_text], x[:, n_text:]
        out = {"text_feats": text_feats, "image_feats": image_feats,
               "cls_feats": self.pooler(text_feats, image_feats), "text_masks": text_masks}
        if mask_image:
            out["mae_mask"], out["mae_ids_restore"] = mae_mask, ids_restore
        return out
