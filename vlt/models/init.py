"""Weight initialisation shared by the MAE-style modules (ViT trunk, MAE decoder)."""
from __future__ import annotations

import torch.nn as nn


def init_linears_and_norms_like_mae(root: nn.Module) -> None:
    """MAE's rule for every submodule: xavier-uniform Linear weights, zero biases, unit LayerNorms."""
    for module in root.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
