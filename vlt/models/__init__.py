"""Backbones, decoders and heads."""
from vlt.models.heads import ITMHead, MLMHead, Pooler
from vlt.models.mae_decoder import MAEDecoder
from vlt.models.one_tower import OneTowerBackbone

__all__ = ["ITMHead", "MAEDecoder", "MLMHead", "OneTowerBackbone", "Pooler"]
