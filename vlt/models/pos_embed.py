"""Position embeddings: fixed 2-D sin-cos tables and interpolation of learned ones.

The sin-cos layout follows MAE exactly (first half of the channels encodes the
column index, second half the row index; each half is ``[sin, cos]``), because
MAE checkpoints are trained with that table and we do not load it from them:
any other layout would silently scramble the positions a pretrained encoder
expects.
"""
from __future__ import annotations

import math
from typing import Tuple, Union

import torch
import torch.nn.functional as F

Grid = Union[int, Tuple[int, int]]


def _as_hw(grid: Grid) -> Tuple[int, int]:
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M,) positions -> (M, dim) as ``[sin(p * w_k), cos(p * w_k)]``, w_k = 10000^(-k / (dim/2))."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, grid: Grid, cls_token: bool = False) -> torch.Tensor:
    """Fixed 2-D sin-cos table of shape (1, [1 +] H*W, dim), row-major over the patch grid.

    The cls slot (when asked for) is all zeros, as in MAE.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    h, w = _as_hw(grid)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    table = torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=table.dtype), table], dim=0)
    return table.float().unsqueeze(0)


def interpolate_pos_embed(pos_embed: torch.Tensor, new_grid: Grid, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resize a learned (1, P + G*G, D) position table to a new patch grid.

    The first ``num_prefix_tokens`` rows (cls) are kept as they are; the patch
    rows are treated as a square G x G image and resized bicubically.
    """
    new_h, new_w = _as_hw(new_grid)
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = int(math.isqrt(patches.shape[1]))
    if old * old != patches.shape[1]:
        raise ValueError(f"cannot interpolate a non-square position grid of {patches.shape[1]} patches")
    if (old, old) == (new_h, new_w):
        return pos_embed
    dim = patches.shape[-1]
    image = patches.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    image = F.interpolate(image, size=(new_h, new_w), mode="bicubic", align_corners=False)
    patches = image.permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)
