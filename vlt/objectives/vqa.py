"""VQAv2: answer classification with soft targets on the pooled feature of an unmasked pass."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


def vqa_loss(logits, targets):
    """BCE-with-logits against the soft scores, summed over answers and averaged over questions.

    This is ViLT's ``bce(mean over all elements) * num_labels``: the mean over
    B x C elements times C equals the per-question sum averaged over the batch.
    """
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float()) * targets.shape[1]


def compute_vqa(passes, head: nn.Module) -> dict:
    """Returns ``loss``, ``logits`` (B, C) and ``targets`` (B, C soft scores)."""
    batch = passes.batch
    if "vqa_targets" not in batch:
        raise KeyError("VQA needs batch['vqa_targets']: train on the 'vqa' dataset")
    out = passes.infer(mask_text=False, mask_image=False)
    logits = head(out["cls_feats"])
    targets = batch["vqa_targets"]
    if targets.shape[1] != logits.shape[1]:
        raise ValueError(f"vqa_targets have {targets.shape[1]} answers but the head predicts {logits.shape[1]}; "
                         "set vqav2_label_size to the size of vqav2_labels.json")
    return {"loss": vqa_loss(logits, targets), "logits": logits, "targets": targets}
