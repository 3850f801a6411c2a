"""Backbones, decoders and heads."""
from vlt.models.heads import ITMHead, MLMHead, Pooler
from vlt.models.mae_decoder import MAEDecoder
from vlt.models.one_tower import OneTowerBackbone
from vlt.models.build import build_backbone
from vlt.models.hf_one_tower import HFOneTowerBackbone
from vlt.models.two_tower import TwoTowerBackbone

__all__ = ["ITMHead", "MAEDecoder", "MLMHead", "OneTowerBackbone", "Pooler",
           "HFOneTowerBackbone", "TwoTowerBackbone", "build_backbone"]
