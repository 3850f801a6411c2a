"""Bidirectional co-attention fusion of a text and an image stream (METER / Renaissance two-tower).

Hand-written on purpose: neither transformers nor timm offers a block in which two
streams each self-attend, cross-attend to the other and pass an MLP, with key
padding masks on both attentions and this config surface (width, heads, MLP ratio,
dropout per layer). Only the MLP comes from timm.

Blocks are pre-LayerNorm (a final LayerNorm per stream closes the stack); the two
streams of a layer are updated in parallel from the previous layer's outputs.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp


def key_padding_mask(masks: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(B, Lk) with 1 = real token -> boolean (B, 1, 1, Lk) SDPA mask (True = may be attended), or None."""
    return None if masks is None else masks.bool()[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """Queries from ``x``, keys/values from ``context`` (``x`` itself for self-attention), via SDPA."""

    def __init__(self, dim: int, num_heads: int, drop_rate: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"cross_layer_hidden_size={dim} is not divisible by num_cross_layer_heads={num_heads}")
        self.num_heads, self.drop_rate = num_heads, drop_rate
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: Optional[torch.Tensor]) -> torch.Tensor:
        q = rearrange(self.query(x), "b l (h d) -> b h l d", h=self.num_heads)
        k, v = rearrange(self.key_value(context), "b l (two h d) -> two b h l d", two=2, h=self.num_heads)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask,
                                                  dropout_p=self.drop_rate if self.training else 0.0)
        return self.out(rearrange(attended, "b h l d -> b l (h d)"))


class CoAttentionBlock(nn.Module):
    """One stream's update: self-attention, cross-attention to the other stream, MLP (all residual)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_rate: float):
        super().__init__()
        self.self_norm = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, num_heads, drop_rate)
        self.cross_norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, num_heads, drop_rate)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop_rate)
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor, other: torch.Tensor, own_mask: Optional[torch.Tensor],
                other_mask: Optional[torch.Tensor]) -> torch.Tensor:
        h = self.self_norm(x)
        x = x + self.dropout(self.self_attn(h, h, own_mask))
        x = x + self.dropout(self.cross_attn(self.cross_norm(x), self.context_norm(other), other_mask))
        return x + self.mlp(self.mlp_norm(x))


class FusionLayer(nn.Module):
    """A text block and an image block, each attending to the other stream's layer input."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_rate: float):
        super().__init__()
        self.text_block = CoAttentionBlock(dim, num_heads, mlp_ratio, drop_rate)
        self.image_block = CoAttentionBlock(dim, num_heads, mlp_ratio, drop_rate)

    def forward(self, text: torch.Tensor, image: torch.Tensor, text_key_mask: Optional[torch.Tensor],
                image_key_mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        new_text = self.text_block(text, image, text_key_mask, image_key_mask)
        new_image = self.image_block(image, text, image_key_mask, text_key_mask)
        return new_text, new_image


class CrossModalFusion(nn.Module):
    """``num_layers`` fusion layers and a closing LayerNorm per stream.

    Padded text (``text_masks == 0``) is never attended to, neither by text
    self-attention nor by the image stream's cross-attention.
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, mlp_ratio: float = 4.0, drop_rate: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(dim, num_heads, mlp_ratio, drop_rate) for _ in range(num_layers))
        self.text_norm = nn.LayerNorm(dim)
        self.image_norm = nn.LayerNorm(dim)

    def forward(self, text: torch.Tensor, image: torch.Tensor, text_masks: torch.Tensor,
                image_masks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        text_key_mask, image_key_mask = key_padding_mask(text_masks), key_padding_mask(image_masks)
        for layer in self.layers:
            text, image = layer(text, image, text_key_mask, image_key_mask)
        return self.text_norm(text), self.image_norm(image)
