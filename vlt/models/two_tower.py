"""Two-tower backbone (METER / Renaissance): separate text and image encoders, co-attention fusion."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn

from vlt.models.encoders import HFTextEncoder, build_image_encoder
from vlt.models.fusion import CrossModalFusion
from vlt.models.heads import Pooler, init_bert_weights
from vlt.models.one_tower import IMAGE_TYPE, TEXT_TYPE

# Config flag -> attribute-name prefixes of the parts it freezes.
FREEZE_FLAGS = {
    "freeze_text_encoder": ("text_encoder",),
    "freeze_image_encoder": ("image_encoder",),
    "freeze_cross_modal_layers": ("cross_modal_",),
}


class TwoTowerBackbone(nn.Module):
    """Text encoder + image encoder, projected to ``cross_layer_hidden_size`` and fused.

    Everything after the two encoders is named ``cross_modal_*`` so the optimiser
    gives it ``lr_mult_cross_modal``. ``cls_feats`` = [pooled text CLS ; pooled
    image first token] (``cls_dim`` = 2 x cross_layer_hidden_size); ``pooler_type``
    does not apply here.

    Frozen parts (``freeze_*`` flags) get ``requires_grad=False`` and stay in eval
    mode even when the module is put in training mode: no dropout noise, and batch
    statistics of a frozen CNN are not updated.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.text_encoder = HFTextEncoder(config)
        self.image_encoder = build_image_encoder(config)
        self.hidden_size = dim = config["cross_layer_hidden_size"]
        self.cross_modal_text_proj = nn.Linear(self.text_encoder.out_dim, dim)
        self.cross_modal_image_proj = nn.Linear(self.image_encoder.out_dim, dim)
        # Modality embedding: 0 text, 1 image, 2 second image (NLVR2), as in the one-tower model.
        self.cross_modal_token_type_embeddings = nn.Embedding(3, dim)
        self.cross_modal_layers = CrossModalFusion(dim, config["num_cross_layers"], config["num_cross_layer_heads"],
                                                   config["cross_layer_mlp_ratio"], config["cross_layer_drop_rate"])
        self.cross_modal_text_pooler = Pooler(dim)
        self.cross_modal_image_pooler = Pooler(dim)
        for name, module in self.named_children():
            if name.startswith("cross_modal_"):
                module.apply(init_bert_weights)
        self.frozen: List[str] = self._freeze(config)

    @property
    def cls_dim(self) -> int:
        return 2 * self.hidden_size

    @property
    def word_embeddings(self) -> Optional[nn.Parameter]:
        """None: the MLM decoder is not tied; fused features are not in the text encoder's embedding space (METER)."""
        return None

    def _freeze(self, config: dict) -> List[str]:
        prefixes = tuple(p for flag, ps in FREEZE_FLAGS.items() if config[flag] for p in ps)
        frozen = [name for name, _ in self.named_children() if name.startswith(prefixes)] if prefixes else []
        for name in frozen:
            getattr(self, name).requires_grad_(False).eval()
        return frozen

    def train(self, mode: bool = True) -> "TwoTowerBackbone":
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    def encode_text(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        """Unimodal text feature (B, hidden_size): the projected first token, before fusion (for ITC / k_test)."""
        return self.cross_modal_text_proj(self.text_encoder(text_ids, text_masks)[:, :1])[:, 0]

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Unimodal image feature (B, hidden_size): the projected first token, before fusion."""
        return self.cross_modal_image_proj(self.image_encoder(image)[:, :1])[:, 0]

    def forward(self, text_ids: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                image_token_type_idx: int = IMAGE_TYPE, mask_image: bool = False,
                mask_ratio: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Encode each modality, fuse. Returns ``text_feats`` (B, Lt, D), ``image_feats`` (B, Li, D),
        ``cls_feats`` (B, 2D), ``text_masks``."""
        if mask_image:
            raise NotImplementedError("image masking (MAE) is implemented for the one-tower backbones only")
        text = self.cross_modal_text_proj(self.text_encoder(text_ids, text_masks))
        text = text + self.cross_modal_token_type_embeddings.weight[TEXT_TYPE]
        img = self.cross_modal_image_proj(self.image_encoder(image))
        img = img + self.cross_modal_token_type_embeddings.weight[image_token_type_idx]
        text_feats, image_feats = self.cross_modal_layers(text, img, text_masks)
        cls_feats = torch.cat([self.cross_modal_text_pooler(text_feats, None),
                               self.cross_modal_image_pooler(image_feats, None)], dim=-1)
        return {"text_feats": text_feats, "image_feats": image_feats, "cls_feats": cls_feats,
                "text_masks": text_masks}
