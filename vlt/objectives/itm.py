"""Image-text matching: half the pairs get a false image (ViLT)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def itm_labels(batch_size: int, device=None) -> torch.Tensor:
    """Exactly ceil(B/2) ones (matched) and floor(B/2) zeros, in a random order from the torch RNG."""
    labels = torch.zeros(batch_size, dtype=torch.long)
    labels[: (batch_size + 1) // 2] = 1
    return labels[torch.randperm(batch_size)].to(device)


def compute_itm(passes, head: nn.Module) -> dict:
    """Swap the image of label-0 samples with ``false_image_0`` and classify the pooled feature.

    Returns ``loss``, ``logits`` (B, 2) and ``labels`` (B,; 1 = matched).
    """
    batch = passes.batch
    if "false_image_0" not in batch:
        raise KeyError("ITM needs batch['false_image_0']: set draw_false_image >= 1")
    image = batch["image"]
    labels = itm_labels(image.shape[0], image.device)
    mixed = torch.where(labels.bool()[:, None, None, None], image, batch["false_image_0"])
    out = passes.infer(mask_text=False, mask_image=False, image_key="itm_image", image=mixed)
    logits = head(out["cls_feats"])
    return {"loss": F.cross_entropy(logits.float(), labels), "logits": logits, "labels": labels}
