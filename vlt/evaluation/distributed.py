"""Small collectives for evaluation that work with and without an initialised process group."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.distributed as dist


def world_and_rank() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate (along dim 0, in rank order) a tensor whose first dimension may differ per rank."""
    world, _ = world_and_rank()
    if world == 1:
        return tensor
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    if max(sizes) == 0:
        return tensor
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)
