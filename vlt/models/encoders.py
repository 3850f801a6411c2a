"""Encoder factories: named Hugging Face / timm encoders -> ``nn.Module`` towers.

Config keys follow Renaissance. A *role* is the config key that names the encoder:

| role            | random-init key              | manual dims (``*_manual_configuration``)   |
|-----------------|------------------------------|--------------------------------------------|
| ``encoder``     | ``random_init_encoder``      | hidden_size, num_heads, ... (no prefix)    |
| ``text_encoder``| ``random_init_text_encoder`` | text_encoder_hidden_size, ...              |
| ``image_encoder``| ``random_init_vision_encoder``| image_encoder_hidden_size, ...           |

Name resolution: a local directory is loaded as it is; a hub name is looked up in
the local Hugging Face cache first and fetched only when the hub is reachable
(``HF_HUB_OFFLINE`` unset). An image-encoder name without ``/`` that timm knows
(``timm.is_model``) is a timm model; anything else is a Hugging Face model.

A manual configuration always means fresh weights and nothing downloaded: the
architecture family comes from the encoder's local/cached config.json when there
is one, else from the name (electra, roberta, deit, beit, vit, bert); dimensions
come from the keys, plus ``image_size`` / ``patch_size`` for vision encoders and
``vocab_size`` / ``max_text_len`` for text encoders.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import timm
import torch
import torch.nn as nn
from einops import rearrange
from transformers import AutoConfig, AutoModel

logger = logging.getLogger("vlt")

RANDOM_INIT_KEYS = {
    "encoder": "random_init_encoder",
    "text_encoder": "random_init_text_encoder",
    "image_encoder": "random_init_vision_encoder",
}
MANUAL_PREFIXES = {"encoder": "", "text_encoder": "text_encoder_", "image_encoder": "image_encoder_"}
# Substring of a hub name -> transformers model_type, most specific first ("roberta" contains "bert").
FAMILY_HINTS = (("electra", "electra"), ("roberta", "roberta"), ("deit", "deit"), ("beit", "beit"),
                ("vit", "vit"), ("bert", "bert"), ("minilm", "bert"))
DEFAULT_FAMILY = {"text": "bert", "image": "vit"}
TEXT_POSITIONS_DEFAULT = 512


class EncoderUnavailableError(OSError):
    """A named encoder (or its config) is neither a local directory nor in the local cache."""


class ConvolutionalEncoderError(ValueError):
    """An image encoder that yields a feature map where a token sequence is needed."""


@dataclass(frozen=True)
class EncoderRequest:
    """What the config asks for one encoder role."""

    role: str  # the config key naming the encoder: encoder | text_encoder | image_encoder
    name: str
    random_init: bool
    manual: Optional[dict]  # hidden_size, num_heads, num_layers, mlp_ratio, drop_rate, embedding_size

    @property
    def random_init_key(self) -> str:
        return RANDOM_INIT_KEYS[self.role]

    @property
    def pretrained(self) -> bool:
        return not (self.random_init or self.manual is not None)


def encoder_request(config: dict, role: str) -> EncoderRequest:
    """Read the name, random-init flag and (when enabled) manual dimensions of ``role``."""
    prefix = MANUAL_PREFIXES[role]
    manual = None
    if config[f"{role}_manual_configuration"]:
        manual = {dim: config[f"{prefix}{dim}"] for dim in
                  ("hidden_size", "num_heads", "num_layers", "mlp_ratio", "drop_rate", "embedding_size")}
        if manual["hidden_size"] % manual["num_heads"]:
            raise ValueError(f"{prefix}hidden_size={manual['hidden_size']} is not divisible by "
                             f"{prefix}num_heads={manual['num_heads']}")
    return EncoderRequest(role, str(config[role]), bool(config[RANDOM_INIT_KEYS[role]]), manual)


# ---------------------------------------------------------------- resolution


def hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return flag or bool(constants.HF_HUB_OFFLINE)


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


def is_timm_name(name: str) -> bool:
    """True for names timm's registry knows (``/``-free, not a local path), e.g. ``vit_tiny_patch16_224``."""
    return "/" not in name and not Path(name).exists() and timm.is_model(name)


def unavailable_message(request: EncoderRequest, what: str = "weights") -> str:
    where = ("the local directory does not exist or lacks config.json / weight files"
             if looks_like_path(request.name) else
             "it is not in the local Hugging Face cache and the hub is offline or unreachable")
    return (
        f"{request.role}={request.name!r}: {what} not available ({where}).\n"
        f"  Fix: point `{request.role}` at a local directory with config.json and the weights "
        f"(e.g. one written by `save_pretrained(DIR)`), or\n"
        f"  set `{request.random_init_key}=True` for fresh weights (the architecture config must still be "
        f"found), or `{request.role}_manual_configuration=True` to build it from the dimension keys "
        f"with nothing downloaded."
    )


def cache_first(request: EncoderRequest, loader: Callable, what: str, **kwargs):
    """``loader(name, ...)`` from the local cache / directory, then (if online) from the hub."""
    try:
        return loader(request.name, local_files_only=True, **kwargs)
    except OSError as err:
        if looks_like_path(request.name) or hub_offline():
            raise EncoderUnavailableError(f"{unavailable_message(request, what)}\n  ({err})") from err
    try:
        return loader(request.name, **kwargs)
    except OSError as err:
        raise EncoderUnavailableError(f"{unavailable_message(request, what)}\n  ({err})") from err


# ---------------------------------------------------------------- Hugging Face


def modality_of(hf_config) -> str:
    """"image" for vision configs (they describe pixels), "text" otherwise."""
    return "image" if hasattr(hf_config, "num_channels") or hasattr(hf_config, "image_size") else "text"


def yields_tokens(hf_config) -> bool:
    """Vision transformers keep one width (``hidden_size``); CNNs list per-stage ``hidden_sizes``."""
    return isinstance(getattr(hf_config, "hidden_size", None), int) and not hasattr(hf_config, "hidden_sizes")


def family_of(request: EncoderRequest, modality: Optional[str]) -> str:
    """transformers ``model_type`` of the named encoder: from its local/cached config, else from the name."""
    try:
        return AutoConfig.from_pretrained(request.name, local_files_only=True).model_type
    except (OSError, ValueError):
        lowered = request.name.lower()
        for hint, family in FAMILY_HINTS:
            if hint in lowered:
                return family
        return DEFAULT_FAMILY[modality or "text"]


def manual_hf_config(request: EncoderRequest, config: dict, modality: Optional[str] = None):
    """An HF config of the family of ``request.name`` with the manual dimensions (no weights read)."""
    family = family_of(request, modality)
    template = AutoConfig.for_model(family)
    if not yields_tokens(template):
        raise ValueError(f"{request.role}_manual_configuration describes a transformer, but {request.name!r} "
                         f"is a {family} model (convolutional)")
    dims = request.manual
    kwargs = dict(
        hidden_size=dims["hidden_size"], num_attention_heads=dims["num_heads"],
        num_hidden_layers=dims["num_layers"], intermediate_size=int(dims["hidden_size"] * dims["mlp_ratio"]),
        hidden_dropout_prob=dims["drop_rate"], attention_probs_dropout_prob=dims["drop_rate"],
    )
    if modality_of(template) == "image":
        kwargs.update(image_size=config["image_size"], patch_size=config["patch_size"])
    else:
        kwargs.update(vocab_size=config["vocab_size"],
                      max_position_embeddings=max(TEXT_POSITIONS_DEFAULT, config["max_text_len"]))
        if hasattr(template, "embedding_size"):  # ELECTRA-style factorised embeddings
            kwargs["embedding_size"] = dims["embedding_size"]
    return AutoConfig.for_model(family, **kwargs)


def load_hf_config(request: EncoderRequest, config: dict, modality: Optional[str] = None):
    if request.manual is not None:
        return manual_hf_config(request, config, modality)
    return cache_first(request, AutoConfig.from_pretrained, "config")


def load_hf_model(request: EncoderRequest, hf_config) -> nn.Module:
    """The HF base model (``AutoModel``), SDPA attention where supported, without a learned pooler.

    A learned pooler is replaced by an identity because vlt pools itself; left in
    place it would hold parameters that never receive a gradient (DDP complains).
    """

    def build(attn: str):
        extra = {"attn_implementation": attn}
        if request.pretrained:
            return cache_first(request, AutoModel.from_pretrained, "weights", config=hf_config, **extra)
        return AutoModel.from_config(hf_config, **extra)

    try:
        model = build("sdpa")
    except ValueError as err:  # this architecture has no SDPA path: use its default attention
        if "scaled_dot_product_attention" not in str(err) and "sdpa" not in str(err):
            raise
        model = build("eager")  # explicit: the failed attempt already wrote "sdpa" into hf_config
    pooler = getattr(model, "pooler", None)
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        model.pooler = nn.Identity()  # not None: some models call their pooler unconditionally
    # from_pretrained returns the model in eval mode, and Lightning (>= 2.2) keeps each module's mode
    # as it finds it: without this a pretrained tower would train with its dropout silently off.
    return model.train()


class HFTextEncoder(nn.Module):
    """A Hugging Face text transformer (BERT, ELECTRA, RoBERTa, MiniLM...) -> (B, L, out_dim) states."""

    def __init__(self, config: dict):
        super().__init__()
        request = encoder_request(config, "text_encoder")
        role = request.role
        hf_config = load_hf_config(request, config, "text")
        if modality_of(hf_config) != "text":
            raise ValueError(f"{role}={request.name!r} is a vision model ({hf_config.model_type}); "
                             "the text tower needs a text transformer such as BERT or ELECTRA")
        if hf_config.max_position_embeddings < config["max_text_len"]:
            raise ValueError(f"{role}={request.name!r} has {hf_config.max_position_embeddings} text positions, "
                             f"fewer than max_text_len={config['max_text_len']}; lower max_text_len")
        if hf_config.vocab_size < config["vocab_size"]:
            raise ValueError(f"{role}={request.name!r} has a vocabulary of {hf_config.vocab_size} tokens, "
                             f"smaller than vocab_size={config['vocab_size']} of the tokenizer")
        self.model = load_hf_model(request, hf_config)
        self.out_dim = hf_config.hidden_size

    def forward(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=text_ids, attention_mask=text_masks).last_hidden_state


def _conv_error(request: EncoderRequest) -> ConvolutionalEncoderError:
    return ConvolutionalEncoderError(
        f"image_encoder {request.name!r} is convolutional; two-tower fusion needs a token sequence "
        "(a ViT/DeiT/BEiT-style encoder), and this model yields a feature map (a CNN, or a hierarchical model "
        "such as Swin). Use a plain vision transformer, "
        "or set image_encoder_flatten_features=True to use the final feature map's positions as tokens."
    )


def feature_map_to_tokens(features: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, C, H, W), (B, H, W, C) or cls-less (B, N, C) features -> (B, 1 + N, C) tokens.

    A mean-pooled summary token goes first, where a ViT has its cls token, so the image pooler reads it.
    """
    if features.ndim == 3:
        tokens = features
    elif features.shape[1] == channels:
        tokens = rearrange(features, "b c h w -> b (h w) c")
    else:
        tokens = rearrange(features, "b h w c -> b (h w) c")
    return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)


class HFImageEncoder(nn.Module):
    """A Hugging Face vision model (ViT, DeiT, BEiT; CNNs only with feature flattening) -> (B, N, out_dim).

    When ``image_size`` differs from the size the encoder was built for (its config's
    ``image_size``; ``original_image_size`` in vlt's keys), position embeddings are
    interpolated on the fly (``interpolate_pos_encoding=True``).
    """

    def __init__(self, config: dict):
        super().__init__()
        request = encoder_request(config, "image_encoder")
        hf_config = load_hf_config(request, config, "image")
        if modality_of(hf_config) != "image":
            raise ValueError(f"image_encoder={request.name!r} is a text model ({hf_config.model_type}); "
                             "the image tower needs a vision model such as ViT, DeiT or BEiT")
        self.flatten = not yields_tokens(hf_config)
        if self.flatten and not config["image_encoder_flatten_features"]:
            raise _conv_error(request)
        built_for = getattr(hf_config, "image_size", config["image_size"])
        built_for = built_for[0] if isinstance(built_for, (list, tuple)) else built_for
        if request.pretrained and built_for != config["original_image_size"]:
            logger.warning("image_encoder=%s was pretrained at %s px but original_image_size=%s; "
                           "using the encoder's own value", request.name, built_for, config["original_image_size"])
        self.interpolate = not self.flatten and built_for != config["image_size"]
        self.model = load_hf_model(request, hf_config)
        self.out_dim = hf_config.hidden_sizes[-1] if self.flatten else hf_config.hidden_size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        extra = {"interpolate_pos_encoding": True} if self.interpolate else {}
        features = self.model(pixel_values=image, **extra).last_hidden_state
        return feature_map_to_tokens(features, self.out_dim) if self.flatten else features


# ---------------------------------------------------------------- timm


def _timm_manual_kwargs(config: dict, dims: dict) -> dict:
    return dict(patch_size=config["patch_size"], embed_dim=dims["hidden_size"], depth=dims["num_layers"],
                num_heads=dims["num_heads"], mlp_ratio=dims["mlp_ratio"], pos_drop_rate=dims["drop_rate"],
                proj_drop_rate=dims["drop_rate"])


class TimmImageEncoder(nn.Module):
    """A timm model by registry name -> (B, N, out_dim) tokens from ``forward_features``.

    Transformers are created at ``img_size=image_size`` (timm resamples pretrained
    position tables on load). Pretrained weights come from timm's hub cache.
    """

    def __init__(self, config: dict):
        super().__init__()
        request = encoder_request(config, "image_encoder")
        # A weightless (meta-device) instance tells whether the model yields tokens (timm's
        # transformers have prefix tokens) before any memory or download is spent on it.
        try:
            with torch.device("meta"):
                probe = timm.create_model(request.name, pretrained=False, num_classes=0)
        except (RuntimeError, NotImplementedError):  # a model whose __init__ needs real tensor values
            probe = timm.create_model(request.name, pretrained=False, num_classes=0)
        self.flatten = not hasattr(probe, "num_prefix_tokens")
        if self.flatten and not config["image_encoder_flatten_features"]:
            raise _conv_error(request)
        kwargs = {"num_classes": 0}
        if not self.flatten:
            kwargs["img_size"] = config["image_size"]
        if request.manual is not None:
            if self.flatten:
                raise ValueError(f"image_encoder_manual_configuration needs a timm vision transformer; "
                                 f"{request.name!r} is convolutional")
            kwargs.update(_timm_manual_kwargs(config, request.manual))
        try:
            self.model = timm.create_model(request.name, pretrained=request.pretrained, **kwargs)
        except (OSError, RuntimeError) as err:
            if not request.pretrained:
                raise
            raise EncoderUnavailableError(
                f"image_encoder={request.name!r} (timm): pretrained weights not available ({err}).\n"
                "  Fix: put them in the local Hugging Face cache (timm reads its weights from there), or point "
                "`image_encoder` at a local directory of a Hugging Face vision model (ViT/DeiT/BEiT, written by "
                "`save_pretrained(DIR)`), or set `random_init_vision_encoder=True` (optionally with "
                "`image_encoder_manual_configuration=True`)."
            ) from err
        except TypeError as err:
            raise ValueError(f"image_encoder={request.name!r}: timm rejected the manual configuration "
                             f"({err}); manual dimensions need a VisionTransformer-family model") from err
        self.out_dim = self.model.num_features

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(image)
        return feature_map_to_tokens(features, self.out_dim) if self.flatten else features


def build_image_encoder(config: dict) -> nn.Module:
    """timm when timm's registry knows the name (and it has no ``/``), Hugging Face otherwise."""
    return TimmImageEncoder(config) if is_timm_name(config["image_encoder"]) else HFImageEncoder(config)
