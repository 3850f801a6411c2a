"""MAE's lightweight pixel decoder, with MAE's parameter names so its checkpoints load."""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import LayerNorm
from timm.models.vision_transformer import Block

from vlt.models.init import init_linears_and_norms_like_mae
from vlt.models.pos_embed import sincos_2d


class MAEDecoder(nn.Module):
    """Re-inserts mask tokens at the masked positions and predicts their pixels.

    Input: encoder image tokens ``(B, 1 + N_visible, encoder_dim)`` (cls first)
    and ``ids_restore`` (B, N). Output: ``(B, N, patch_size**2 * 3)`` per patch,
    channel-last within a patch (the ``(p q c)`` order ``vlt.objectives.mae.patchify`` uses).
    """

    def __init__(self, config: dict, encoder_dim: int, num_patches: int, patch_size: int):
        super().__init__()
        width = config["decoder_hidden_size"]
        grid = int(round(num_patches ** 0.5))
        if grid * grid != num_patches:
            raise ValueError(f"MAEDecoder needs a square patch grid, got {num_patches} patches")
        self.decoder_embed = nn.Linear(encoder_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        # Fixed table, kept a (frozen) Parameter because that is how MAE checkpoints store it.
        self.decoder_pos_embed = nn.Parameter(sincos_2d(width, grid, cls_token=True), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([
            Block(width, config["decoder_num_heads"], mlp_ratio=4.0, qkv_bias=True, norm_layer=LayerNorm)
            for _ in range(config["decoder_num_layers"])
        ])
        self.decoder_norm = LayerNorm(width)
        self.decoder_pred = nn.Linear(width, patch_size ** 2 * 3)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.mask_token, std=0.02)
        init_linears_and_norms_like_mae(self)

    def forward(self, image_tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(image_tokens)
        cls, visible = x[:, :1], x[:, 1:]
        n_masked = ids_restore.shape[1] - visible.shape[1]
        full = torch.cat([visible, self.mask_token.expand(x.shape[0], n_masked, -1)], dim=1)
        full = full.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # back to grid order
        x = torch.cat([cls, full], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]
