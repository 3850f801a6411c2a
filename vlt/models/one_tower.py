"""One-tower VLC/ViLT backbone: text embeddings + timm ViT blocks over [text ; image]."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import timm
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEmbeddings

from vlt.models.heads import Pooler, init_bert_weights
from vlt.models.init import init_linears_and_norms_like_mae
from vlt.models.pos_embed import sincos_2d

TEXT_TYPE, IMAGE_TYPE, SECOND_IMAGE_TYPE = 0, 1, 2


def random_masking(tokens: torch.Tensor, mask_ratio: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``int(N * (1 - mask_ratio))`` tokens per sample (MAE).

    Returns (kept tokens (B, N_keep, D), mask (B, N) with 1 = masked, ids_restore (B, N)).
    Draws from the current torch RNG so the caller controls reproducibility.
    """
    batch, n, dim = tokens.shape
    n_keep = int(n * (1 - mask_ratio))
    noise = torch.rand(batch, n, device=tokens.device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    kept = tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = torch.ones(batch, n, device=tokens.device)
    mask[:, :n_keep] = 0
    mask = mask.gather(1, ids_restore)
    return kept, mask, ids_restore


def sample_patches(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """A uniformly random subset of ``k`` patch tokens per sample (ViLT's ``max_image_len``, training only).

    Positions are added before sampling, so the kept tokens keep their places. ViLT prefers
    unpadded patches; vlt batches are never padded, so a uniform draw is the same rule.
    """
    keep = torch.rand(tokens.shape[:2], device=tokens.device).argsort(dim=1)[:, :k]
    return tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def image_tokens(patches: torch.Tensor, cls_token: torch.Tensor, pos_embed: torch.Tensor,
                 mask_ratio: Optional[float] = None, max_patches: int = -1):
    """``[cls ; patches]`` with positions added, the patches MAE-masked (``mask_ratio``) or else
    subsampled to ``max_patches`` (ViLT's ``max_image_len``; <= 0 keeps all).

    ``patches`` (B, N, D) without positions; ``pos_embed`` (1, 1 + N, D) with the cls row first.
    Returns (tokens, mask, ids_restore); the last two are None unless masked.
    """
    patches = patches + pos_embed[:, 1:]
    mask = ids_restore = None
    if mask_ratio is not None:
        patches, mask, ids_restore = random_masking(patches, mask_ratio)
    elif 0 < max_patches < patches.shape[1]:
        patches = sample_patches(patches, max_patches)
    cls = (cls_token + pos_embed[:, :1]).expand(patches.shape[0], -1, -1)
    return torch.cat([cls, patches], dim=1), mask, ids_restore


def build_vit(config: dict) -> VisionTransformer:
    """A randomly initialised timm ViT without classifier; dropout placed as in ViLT."""
    drop = dict(
        pos_drop_rate=config["drop_rate"],
        proj_drop_rate=config["drop_rate"],
        drop_path_rate=config["drop_path_rate"],
    )
    if config["encoder_manual_configuration"]:
        vit = VisionTransformer(
            img_size=config["image_size"], patch_size=config["patch_size"], embed_dim=config["hidden_size"],
            depth=config["num_layers"], num_heads=config["num_heads"], mlp_ratio=config["mlp_ratio"],
            num_classes=0, qkv_bias=True, **drop,
        )
    else:
        vit = timm.create_model(config["vit"], pretrained=False, img_size=config["image_size"], num_classes=0, **drop)
    if not isinstance(vit, VisionTransformer) or vit.cls_token is None or vit.num_reg_tokens or vit.no_embed_class:
        raise ValueError(f"vit={config['vit']!r}: the one-tower backbone needs a plain timm VisionTransformer "
                         "with a class token, no register tokens and a position table covering the cls token")
    return vit


def init_vit_like_mae(vit: VisionTransformer) -> None:
    """MAE's initialisation of a from-scratch ViT: xavier-uniform linears and patch projection, cls ~ N(0, 0.02).

    timm's default (N(0, 0.02) linears, PyTorch's default conv init) suits width 768; at the
    small widths of tests and the demo it leaves attention nearly uniform for hundreds of steps
    and the image content weak against the unit-amplitude sin-cos positions. MAE checkpoints
    loaded through ``pretrain_path`` overwrite all of it.
    """
    init_linears_and_norms_like_mae(vit)
    proj = vit.patch_embed.proj.weight
    nn.init.xavier_uniform_(proj.data.view(proj.shape[0], -1))
    nn.init.normal_(vit.cls_token, std=0.02)


class OneTowerBackbone(nn.Module):
    """Text tokens and image patches through one shared stack of timm ViT blocks (ViLT/VLC).

    Parameters of the ViT keep timm's names under ``vit.`` so MAE/timm checkpoints map 1:1.
    ``vit.pos_embed`` is a fixed 2-D sin-cos table (MAE), recomputed for ``image_size``.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.vit = build_vit(config)
        self.hidden_size = dim = self.vit.embed_dim
        self.patch_size = self.vit.patch_embed.patch_size[0]
        self.grid_size = tuple(self.vit.patch_embed.grid_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        init_vit_like_mae(self.vit)
        self.vit.pos_embed.data.copy_(sincos_2d(dim, self.grid_size, cls_token=True))
        self.vit.pos_embed.requires_grad_(False)

        bert_config = BertConfig(
            vocab_size=config["vocab_size"], hidden_size=dim, num_attention_heads=self.vit.blocks[0].attn.num_heads,
            max_position_embeddings=config["max_text_len"], hidden_dropout_prob=config["drop_rate"],
        )
        self.text_embeddings = BertEmbeddings(bert_config)
        # Modality embedding added to both streams: 0 text, 1 image, 2 second image (NLVR2).
        self.token_type_embeddings = nn.Embedding(3, dim)
        self.pooler = Pooler(dim, config["pooler_type"])
        for module in (self.text_embeddings, self.token_type_embeddings, self.pooler):
            module.apply(init_bert_weights)

    @property
    def cls_dim(self) -> int:
        return self.pooler.out_dim

    @property
    def word_embeddings(self) -> nn.Parameter:
        """The word-embedding matrix the MLM decoder is tied to."""
        return self.text_embeddings.word_embeddings.weight

    def embed_image(self, image: torch.Tensor, mask_ratio: Optional[float] = None):
        """Patch tokens + positions (MAE-masked, or subsampled to ``max_image_len`` in training), cls in front."""
        budget = self.config.get("max_image_len", -1) if self.training else -1
        tokens, mask, ids_restore = image_tokens(self.vit.patch_embed(image), self.vit.cls_token,
                                                 self.vit.pos_embed, mask_ratio, budget)
        return self.vit.pos_drop(tokens), mask, ids_restore

    def forward(self, text_ids: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                image_token_type_idx: int = IMAGE_TYPE, mask_image: bool = False,
                mask_ratio: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Joint encoding.

        Returns ``text_feats`` (B, Lt, D), ``image_feats`` (B, 1 + N_visible, D),
        ``cls_feats`` (B, cls_dim), ``text_masks``; with ``mask_image`` also
        ``mae_mask`` (B, N; 1 = masked) and ``mae_ids_restore`` (B, N).
        """
        if mask_image and mask_ratio is None:
            mask_ratio = self.config["mask_ratio"]
        text = self.text_embeddings(input_ids=text_ids)
        text = text + self.token_type_embeddings(torch.full_like(text_ids, TEXT_TYPE))
        img, mae_mask, ids_restore = self.embed_image(image, mask_ratio if mask_image else None)
        img_types = torch.full(img.shape[:2], image_token_type_idx, dtype=torch.long, device=img.device)
        img = img + self.token_type_embeddings(img_types)

        x = torch.cat([text, img], dim=1)
        attn_mask = self._attention_mask(text_masks, img.shape[1])
        for block in self.vit.blocks:
            x = block(x, attn_mask=attn_mask)
        x = self.vit.norm(x)

        n_text = text.shape[1]
        text_feats, image_feats = x[:, :n_text], x[:, n_text:]
        out = {
            "text_feats": text_feats,
            "image_feats": image_feats,
            "cls_feats": self.pooler(text_feats, image_feats),
            "text_masks": text_masks,
        }
        if mask_image:
            out["mae_mask"], out["mae_ids_restore"] = mae_mask, ids_restore
        return out

    @staticmethod
    def _attention_mask(text_masks: torch.Tensor, n_image_tokens: int) -> torch.Tensor:
        """Boolean key mask (B, 1, 1, L) for SDPA (True = may be attended): padded text never is.

        Always built, even without padding: checking for that would cost a device sync per
        pass, and captions padded to ``max_text_len`` almost always have padding.
        """
        image_keys = text_masks.new_ones(text_masks.shape[0], n_image_tokens)
        return torch.cat([text_masks, image_keys], dim=1).bool()[:, None, None, :]
