"""``build_backbone(config)``: the backbone the config's ``model_type`` / ``encoder`` keys describe.

| model_type  | encoder    | backbone                                             |
|-------------|------------|------------------------------------------------------|
| one-tower   | ""         | OneTowerBackbone: timm ViT named by ``vit`` (VLC)    |
| one-tower   | HF name    | HFOneTowerBackbone: that encoder's layers            |
| two-tower   | (ignored)  | TwoTowerBackbone: text_encoder + image_encoder + fusion |

Every backbone has ``forward(text_ids, text_masks, image, image_token_type_idx=,
mask_image=, mask_ratio=)``, ``hidden_size``, ``cls_dim`` and ``word_embeddings``
(the matrix an MLM decoder may tie to, or None); the HF one-tower and two-tower
backbones also have ``encode_text`` / ``encode_image`` (unimodal first-token features).

Width and depth of a named encoder come from its own config; the dimension keys
(``hidden_size``..., ``text_encoder_hidden_size``..., ``image_encoder_hidden_size``...)
apply only with the matching ``*_manual_configuration=True`` (see vlt.models.encoders).
"""
from __future__ import annotations

import logging

import torch.nn as nn

from vlt.models.hf_one_tower import HFOneTowerBackbone
from vlt.models.one_tower import OneTowerBackbone
from vlt.models.two_tower import TwoTowerBackbone

logger = logging.getLogger("vlt")
FREEZE_KEYS = ("freeze_image_encoder", "freeze_text_encoder", "freeze_cross_modal_layers")


def _check(config: dict) -> None:
    kind = config["model_type"]
    if kind not in ("one-tower", "two-tower"):
        raise ValueError(f"model_type={kind!r}: use 'one-tower' or 'two-tower'")
    timm_one_tower = kind == "one-tower" and not config["encoder"]
    if kind == "two-tower" and config["loss_names"].get("mae", 0):
        raise ValueError("the MAE objective needs a one-tower backbone (image masking is not implemented "
                         "for two-tower models)")
    if not timm_one_tower and config["pretrain_path"]:
        raise ValueError("pretrain_path loads an MAE ViT checkpoint into the timm one-tower backbone only; "
                         "name a pretrained encoder with encoder / image_encoder instead")
    if kind == "two-tower" and config["layer_decay"] < 1.0:
        logger.warning("layer_decay with a two-tower model: block indices of the text and image encoders are "
                       "counted together, so depth-wise decay is only approximate")
    if kind == "two-tower" and config.get("max_image_len", -1) > 0:
        logger.warning("max_image_len=%s applies to one-tower backbones only; the two-tower image encoder "
                       "sees every patch", config["max_image_len"])
    frozen = [key for key in FREEZE_KEYS if config[key]]
    if kind == "one-tower" and frozen:
        raise ValueError(f"{frozen} apply to two-tower models (model_type='two-tower')")


def build_backbone(config: dict) -> nn.Module:
    """The backbone for ``config`` (see the module docstring for the choice)."""
    _check(config)
    if config["model_type"] == "two-tower":
        return TwoTowerBackbone(config)
    if config["encoder"]:
        return HFOneTowerBackbone(config)
    return OneTowerBackbone(config)
