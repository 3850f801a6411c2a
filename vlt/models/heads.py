"""Small task heads on top of the backbone features, BERT-style initialisation."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn


def init_bert_weights(module: nn.Module) -> None:
    """BERT initialisation (normal 0.02, zero bias, unit LayerNorm); use with ``module.apply``."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


class Pooler(nn.Module):
    """Linear + tanh on the first token.

    ``pooler_type="single"`` pools the text CLS (ViLT); ``"double"`` also pools the
    image CLS with its own projection and concatenates (output width 2 x hidden).
    """

    def __init__(self, hidden_size: int, pooler_type: str = "single"):
        super().__init__()
        if pooler_type not in ("single", "double"):
            raise ValueError(f"pooler_type must be 'single' or 'double', got {pooler_type!r}")
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.image_dense = nn.Linear(hidden_size, hidden_size) if pooler_type == "double" else None
        self.out_dim = hidden_size * (2 if self.image_dense is not None else 1)

    def forward(self, text_feats: torch.Tensor, image_feats: torch.Tensor) -> torch.Tensor:
        pooled = torch.tanh(self.dense(text_feats[:, 0]))
        if self.image_dense is not None:
            pooled = torch.cat([pooled, torch.tanh(self.image_dense(image_feats[:, 0]))], dim=-1)
        return pooled


class MLMHead(nn.Module):
    """BERT LM head: dense + GELU + LayerNorm, then a vocabulary decoder.

    Passing ``tied_weight`` (the word-embedding matrix) shares it with the
    decoder, as BERT does; the output bias stays separate.
    """

    def __init__(self, hidden_size: int, vocab_size: int, tied_weight: Optional[nn.Parameter] = None,
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = nn.GELU()
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        self.apply(init_bert_weights)
        if tied_weight is not None:
            if tied_weight.shape != self.decoder.weight.shape:
                raise ValueError(f"tied weight {tuple(tied_weight.shape)} != decoder {tuple(self.decoder.weight.shape)}")
            self.decoder.weight = tied_weight

    def forward(self, text_feats: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.act(self.dense(text_feats))))


class ITMHead(nn.Module):
    """Binary image-text matching classifier on the pooled feature (1 = matched)."""

    def __init__(self, cls_dim: int):
        super().__init__()
        self.fc = nn.Linear(cls_dim, 2)
        self.apply(init_bert_weights)

    def forward(self, cls_feats: torch.Tensor) -> torch.Tensor:
        return self.fc(cls_feats)


# ---------------------------------------------------------------- downstream heads


class MLPClassifierHead(nn.Module):
    """Linear(in, hidden) -> LayerNorm -> GELU -> Linear(hidden, out): ViLT's VQA/NLVR2 classifier shape."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, out_dim))
        self.apply(init_bert_weights)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(feats)


class VQAHead(MLPClassifierHead):
    """Answer classifier over ``label_size`` answers on the pooled feature (logits, for BCE)."""

    def __init__(self, cls_dim: int, label_size: int):
        super().__init__(cls_dim, cls_dim * 2, label_size)


class NLVR2Head(MLPClassifierHead):
    """True/False classifier on the two pooled features of an image pair, concatenated (2 * cls_dim)."""

    def __init__(self, cls_dim: int):
        super().__init__(cls_dim * 2, cls_dim * 2, 2)


class RankHead(nn.Module):
    """One matching score per (image, text) pair for retrieval (ViLT's ``rank_output``)."""

    def __init__(self, cls_dim: int):
        super().__init__()
        self.fc = nn.Linear(cls_dim, 1)
        self.apply(init_bert_weights)

    @torch.no_grad()
    def init_from_itm(self, itm_weight: torch.Tensor, itm_bias: torch.Tensor) -> None:
        """Start from the ITM classifier's "matched" row (index 1), as ViLT does."""
        self.fc.weight.copy_(itm_weight[1:2])
        self.fc.bias.copy_(itm_bias[1:2])

    def forward(self, cls_feats: torch.Tensor) -> torch.Tensor:
        return self.fc(cls_feats).squeeze(-1)


class ContrastiveHead(nn.Module):
    """Projections of unimodal text / image features into a shared space, with a learned temperature.

    Used for the cheap first retrieval stage (``k_test``); trained by IRTR's
    in-batch contrastive term (``irtr_itc_weight``).
    """

    def __init__(self, hidden_size: int, embed_dim: int = 256, init_temperature: float = 0.07):
        super().__init__()
        self.text_proj = nn.Linear(hidden_size, embed_dim)
        self.image_proj = nn.Linear(hidden_size, embed_dim)
        self.apply(init_bert_weights)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def embed_text(self, feats: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.text_proj(feats), dim=-1)

    def embed_image(self, feats: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.image_proj(feats), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()
