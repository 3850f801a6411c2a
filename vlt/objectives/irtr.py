"""Image-text retrieval (IRTR) training: rank 1 true caption among false ones, per image.

For each image the rank head scores the true caption and ``draw_false_text``
false captions (``false_text_{k}_ids``) with full joint passes; the loss is CE
with the true caption at index 0 (ViLT). Options:

* ``in_batch_negatives``: the other samples' captions join as negatives
  (captions of the same image, by ``image_index``, are left out);
* an in-batch contrastive term on *unimodal* features (``itc_head``, weight
  ``itc_weight``) that trains the cheap first stage used by ``k_test`` evaluation.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

TEXT_TYPE, IMAGE_TYPE = 0, 1


def _false_text_count(batch: dict) -> int:
    n = 0
    while f"false_text_{n}_ids" in batch:
        n += 1
    return n


def unimodal_features(backbone: nn.Module, text_ids: Optional[torch.Tensor] = None,
                      text_masks: Optional[torch.Tensor] = None,
                      image: Optional[torch.Tensor] = None) -> torch.Tensor:
    """First-token feature (B, hidden_size) of a text-only or an image-only encoding.

    A backbone may define ``encode_text(ids, masks)`` / ``encode_image(image)``
    returning these features; otherwise the timm one-tower backbone runs its shared
    blocks on one modality alone, and a two-tower backbone uses its encoders'
    outputs projected to the fusion width (before fusion).
    """
    if (text_ids is None) == (image is None):
        raise ValueError("give either text_ids (with text_masks) or image")
    method = "encode_text" if text_ids is not None else "encode_image"
    if hasattr(backbone, method):
        return getattr(backbone, method)(text_ids, text_masks) if text_ids is not None else backbone.encode_image(image)
    if hasattr(backbone, "text_encoder") and hasattr(backbone, "image_encoder"):  # two-tower
        if text_ids is not None:
            return backbone.cross_modal_text_proj(backbone.text_encoder(text_ids, text_masks))[:, 0]
        return backbone.cross_modal_image_proj(backbone.image_encoder(image))[:, 0]
    if not hasattr(backbone, "vit"):
        raise NotImplementedError(f"{type(backbone).__name__} has no unimodal encoding (encode_text / encode_image), "
                                  "which the contrastive term and k_test > 0 need; set irtr_itc_weight=0 and k_test=0")
    if text_ids is not None:
        x = backbone.text_embeddings(input_ids=text_ids)
        x = x + backbone.token_type_embeddings(torch.full_like(text_ids, TEXT_TYPE))
        attn_mask = text_masks.bool()[:, None, None, :]
    else:
        x, _, _ = backbone.embed_image(image)
        types = torch.full(x.shape[:2], IMAGE_TYPE, dtype=torch.long, device=x.device)
        x = x + backbone.token_type_embeddings(types)
        attn_mask = None
    for block in backbone.vit.blocks:
        x = block(x, attn_mask=attn_mask)
    return backbone.vit.norm(x)[:, 0]


def pair_scores(backbone: nn.Module, head: nn.Module, text_ids: torch.Tensor, text_masks: torch.Tensor,
                image: torch.Tensor) -> torch.Tensor:
    """Rank-head score of each (text_i, image_i) row, (N,)."""
    return head(backbone(text_ids, text_masks, image)["cls_feats"]).float()


def contrastive_loss(text_emb: torch.Tensor, image_emb: torch.Tensor, scale: torch.Tensor,
                     image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric InfoNCE over the batch (CLIP); pairs sharing an ``image_index`` are not negatives."""
    logits = scale * image_emb.float() @ text_emb.float().t()
    target = torch.arange(len(logits), device=logits.device)
    if image_index is not None:
        same = image_index[:, None] == image_index[None, :]
        logits = logits.masked_fill(same & ~torch.eye(len(logits), dtype=torch.bool, device=logits.device),
                                    float("-inf"))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def compute_irtr(passes, head: nn.Module, itc_head: Optional[nn.Module] = None, itc_weight: float = 0.0,
                 in_batch_negatives: bool = False) -> dict:
    """Returns ``loss``, ``logits`` (B, 1 + K [+ B - 1]; true caption first), ``labels`` (zeros)
    and ``rank_loss`` / ``itc_loss`` (the latter only with ``itc_head``)."""
    batch, backbone = passes.batch, passes.backbone
    k = _false_text_count(batch)
    if k == 0 and not in_batch_negatives:
        raise KeyError("IRTR needs false captions: set draw_false_text >= 1 (ViLT uses 15)")
    image, ids, masks = batch["image"], batch["text_ids"], batch["text_masks"]
    b = image.shape[0]

    positive = head(passes.infer()["cls_feats"]).float()[:, None]  # shares the plain pass with other objectives
    columns = [positive]
    if k:
        false_ids = torch.stack([batch[f"false_text_{j}_ids"] for j in range(k)], dim=1).flatten(0, 1)
        false_masks = torch.stack([batch[f"false_text_{j}_masks"] for j in range(k)], dim=1).flatten(0, 1)
        images = image.repeat_interleave(k, dim=0)
        columns.append(pair_scores(backbone, head, false_ids, false_masks, images).view(b, k))
    if in_batch_negatives and b > 1:
        # Pair image i with caption j for every j != i; drop captions of the same image.
        rows, cols = (~torch.eye(b, dtype=torch.bool, device=image.device)).nonzero(as_tuple=True)
        scores = pair_scores(backbone, head, ids[cols], masks[cols], image[rows]).view(b, b - 1)
        if "image_index" in batch:
            index = batch["image_index"]
            scores = scores.masked_fill((index[rows] == index[cols]).view(b, b - 1), float("-inf"))
        columns.append(scores)
    logits = torch.cat(columns, dim=1)
    labels = torch.zeros(b, dtype=torch.long, device=logits.device)
    rank_loss = F.cross_entropy(logits, labels)
    out = {"loss": rank_loss, "rank_loss": rank_loss.detach(), "logits": logits, "labels": labels}
    if itc_head is not None:
        text_emb = itc_head.embed_text(unimodal_features(backbone, ids, masks))
        image_emb = itc_head.embed_image(unimodal_features(backbone, image=image))
        itc = contrastive_loss(text_emb, image_emb, itc_head.scale(), batch.get("image_index"))
        out["itc_loss"] = itc.detach()
        out["loss"] = rank_loss + itc_weight * itc
    return out
