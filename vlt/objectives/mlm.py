"""Masked language modelling on the text positions of the joint sequence."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100


def compute_mlm(passes, head: nn.Module) -> dict:
    """CE over positions whose ``text_labels_mlm`` != -100.

    Returns ``loss``, ``logits`` (n_targets, V) and ``labels`` (n_targets,) for the
    accuracy metric. With MAE on, the pass also has the image masked (VLC shares it).
    """
    out = passes.infer(mask_text=True, mask_image=passes.mae_on)
    labels = passes.batch["text_labels_mlm"]
    targets = labels != IGNORE_INDEX
    # Only the target positions go through the vocabulary projection: it is the
    # most expensive part of the head and the rest would be thrown away.
    logits = head(out["text_feats"][targets])
    labels = labels[targets]
    if labels.numel() == 0:  # no masked token in the batch: a zero that keeps the graph connected
        loss = logits.sum() * 0.0 + out["text_feats"].sum() * 0.0
    else:
        loss = F.cross_entropy(logits.float(), labels)
    return {"loss": loss, "logits": logits, "labels": labels}
