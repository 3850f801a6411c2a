"""Training objectives. Each takes a :class:`Passes` (the batch's backbone passes) and
its head, and returns a dict with ``loss`` plus what its metrics need."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn


class Passes:
    """The backbone passes of one batch, each computed at most once.

    Objectives ask for the pass they need with :meth:`infer`; VLC shares passes
    (MLM and MAE read the same masked-text + masked-image pass when both are on),
    which ``mlm_on``/``mae_on`` tell them. Build a fresh instance per step.
    """

    def __init__(self, backbone: nn.Module, batch: dict, mlm_on: bool = False, mae_on: bool = False,
                 mask_ratio: float = 0.0):
        self.backbone, self.batch = backbone, batch
        self.mlm_on, self.mae_on, self.mask_ratio = mlm_on, mae_on, mask_ratio
        self._cache: Dict[Tuple, dict] = {}

    def infer(self, mask_text: bool = False, mask_image: bool = False, image_key: str = "image",
              image: Optional[torch.Tensor] = None, image_token_type_idx: int = 1) -> dict:
        """Backbone outputs for text (``text_ids_mlm`` if ``mask_text``) and ``batch[image_key]``.

        ``image`` overrides the batch tensor (e.g. ITM's mixed images); ``image_key``
        then names it in the cache, so one key must mean one tensor within a step.
        """
        key = (mask_text, mask_image, image_key, image_token_type_idx)
        if key not in self._cache:
            batch = self.batch
            self._cache[key] = self.backbone(
                batch["text_ids_mlm"] if mask_text else batch["text_ids"],
                batch["text_masks"],
                batch[image_key] if image is None else image,
                image_token_type_idx=image_token_type_idx,
                mask_image=mask_image,
                mask_ratio=self.mask_ratio if mask_image else None,
            )
        return self._cache[key]


from vlt.objectives.itm import compute_itm  # noqa: E402
from vlt.objectives.mae import compute_mae, patchify  # noqa: E402
from vlt.objectives.mlm import compute_mlm  # noqa: E402

__all__ = ["Passes", "compute_itm", "compute_mae", "compute_mlm", "patchify"]
