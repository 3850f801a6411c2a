"""Small task heads on top of the backbone features, BERT-style initialisation."""
from __future__ import annotations

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
