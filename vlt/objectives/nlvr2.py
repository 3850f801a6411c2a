"""NLVR2 "pair" setting: one pass per image (token types 1 and 2), pooled features concatenated."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FIRST_IMAGE_TYPE, SECOND_IMAGE_TYPE = 1, 2  # token-type rows of the two images


def compute_nlvr2(passes, head: nn.Module) -> dict:
    """Returns ``loss``, ``logits`` (B, 2), ``labels`` (B,; 1 = True) and ``table_names`` (list or None)."""
    batch = passes.batch
    if "image_0" not in batch or "nlvr2_labels" not in batch:
        raise KeyError("NLVR2 needs batch['image_0'], ['image_1'] and ['nlvr2_labels']: train on 'nlvr2'")
    left = passes.infer(image_key="image_0", image_token_type_idx=FIRST_IMAGE_TYPE)
    right = passes.infer(image_key="image_1", image_token_type_idx=SECOND_IMAGE_TYPE)
    logits = head(torch.cat([left["cls_feats"], right["cls_feats"]], dim=-1))
    labels = batch["nlvr2_labels"]
    return {"loss": F.cross_entropy(logits.float(), labels), "logits": logits, "labels": labels,
            "table_names": batch.get("table_name")}
