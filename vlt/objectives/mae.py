"""VLC's masked image modelling: MAE pixel reconstruction inside the joint encoder."""
from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, N, p*p*3), patches row-major, pixels ``(p q c)`` within a patch (MAE order)."""
    return rearrange(images, "b c (h p) (w q) -> b (h w) (p q c)", p=patch_size, q=patch_size)


def mae_loss(pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, patch_size: int,
             norm_pix_loss: bool = True) -> torch.Tensor:
    """Mean squared error over masked patches (mask 1 = masked).

    Targets come from the same ImageNet-normalised tensor the encoder saw (as MAE
    and VLC do). ``norm_pix_loss`` standardises each target patch with its own mean
    and unbiased variance (eps 1e-6), MAE's default.
    """
    target = patchify(images, patch_size).float()
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def compute_mae(passes, decoder: nn.Module, patch_size: int, norm_pix_loss: bool = True) -> dict:
    """Decode the masked-image pass (text masked too when MLM is on, sharing MLM's pass).

    Returns ``loss``, ``pred`` (B, N, p*p*3) and ``mask`` (B, N).
    """
    out = passes.infer(mask_text=passes.mlm_on, mask_image=True)
    pred = decoder(out["image_feats"], out["mae_ids_restore"])
    loss = mae_loss(pred, passes.batch["image"], out["mae_mask"], patch_size, norm_pix_loss)
    return {"loss": loss, "pred": pred, "mask": out["mae_mask"]}
