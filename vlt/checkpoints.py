"""Loading weights: MAE encoder/decoder checkpoints (``pretrain_path``) and vlt
Lightning checkpoints (``load_path``), with position-table adaptation.

Everything is read with ``torch.load(weights_only=True)``: checkpoints are data,
not code. Every mismatch is reported through the ``vlt`` logger; a checkpoint
that matches nothing at all is an error, since it is almost always the wrong file.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from vlt.models.pos_embed import interpolate_pos_embed

logger = logging.getLogger("vlt")

# MAE keys that belong to its decoder rather than to the ViT encoder.
MAE_DECODER_PREFIXES = ("decoder_", "mask_token")
# Fixed sin-cos tables: ours are recomputed for the current grid, never loaded from MAE.
MAE_FIXED_KEYS = ("pos_embed", "decoder_pos_embed")


def _read(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def _strip_prefix(state: Dict[str, torch.Tensor], prefix: str = "module.") -> Dict[str, torch.Tensor]:
    """Drop a DDP ``module.`` prefix when every key carries it."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _few(keys, n: int = 6) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _nothing_matched(path, ckpt_keys, model_keys) -> ValueError:
    return ValueError(
        f"{path}: no parameter of the checkpoint matches the model.\n"
        f"  checkpoint keys: {_few(sorted(ckpt_keys))}\n  expected keys:   {_few(sorted(model_keys))}"
    )


def _load_matching(module: nn.Module, state: Dict[str, torch.Tensor]) -> Dict[str, List[str]]:
    """Load the keys whose name and shape match; return what was loaded, missing, unexpected, mismatched."""
    own = module.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in state if k in own and own[k].shape != state[k].shape]
    module.load_state_dict(matching, strict=False)
    return {
        "loaded": sorted(matching),
        "missing": sorted(k for k in own if k not in state),
        "unexpected": sorted(k for k in state if k not in own),
        "mismatched": mismatched,
    }


def _check_sincos(ckpt_pos: Optional[torch.Tensor], own_pos: torch.Tensor, path) -> None:
    """Warn when a same-shape checkpoint table is not the sin-cos table we use instead."""
    if ckpt_pos is None or ckpt_pos.shape != own_pos.shape:
        return
    diff = (ckpt_pos.float() - own_pos.float()).abs().max().item()
    if diff > 1e-3:
        logger.warning("%s: its pos_embed differs from the fixed sin-cos table (max |diff| %.3g); "
                       "vlt keeps the sin-cos table, so a learned-position encoder will see other positions",
                       path, diff)


def load_mae_pretrained(backbone: nn.Module, mae_decoder: Optional[nn.Module], path) -> Dict[str, List[str]]:
    """Initialise ``backbone.vit`` (and the MAE decoder, if given) from an MAE checkpoint.

    Accepts ``{'model': state_dict}`` or a bare state_dict with timm ViT names.
    Position tables are skipped (ours are fixed sin-cos for the current grid).
    Returns the report of loaded / missing / unexpected / mismatched keys.
    """
    ckpt = _read(path)
    state = _strip_prefix(ckpt["model"] if isinstance(ckpt.get("model"), dict) else ckpt)
    encoder_state = {k: v for k, v in state.items() if not k.startswith(MAE_DECODER_PREFIXES)}
    decoder_state = {k: v for k, v in state.items() if k.startswith(MAE_DECODER_PREFIXES)}
    _check_sincos(encoder_state.get("pos_embed"), backbone.vit.pos_embed.detach(), path)
    for key in MAE_FIXED_KEYS:
        encoder_state.pop(key, None)
        decoder_state.pop(key, None)

    report = _load_matching(backbone.vit, encoder_state)
    if mae_decoder is not None:
        dec = _load_matching(mae_decoder, decoder_state)
        for name in report:
            report[name] += [f"decoder:{k}" for k in dec[name]]
    elif decoder_state:
        logger.info("%s: %d MAE decoder keys ignored (this model has no MAE decoder)", path, len(decoder_state))
    report["missing"] = [k for k in report["missing"] if k.split(":")[-1] not in MAE_FIXED_KEYS]

    if not report["loaded"]:
        model_keys = list(backbone.vit.state_dict()) + list(mae_decoder.state_dict() if mae_decoder else [])
        raise _nothing_matched(path, state.keys(), model_keys)
    logger.info("%s: loaded %d MAE tensors (pos_embed tables kept as fixed sin-cos)", path, len(report["loaded"]))
    for name in ("missing", "unexpected", "mismatched"):
        if report[name]:
            logger.warning("%s: %s keys: %s", path, name, _few(report[name], 20))
    return report


def _adapt(key: str, value: torch.Tensor, own: torch.Tensor, learned: bool) -> Optional[torch.Tensor]:
    """Make a checkpoint tensor fit our shape, or None when there is no sensible way."""
    if key.endswith("token_type_embeddings.weight") and value.shape[0] < own.shape[0] \
            and value.shape[1:] == own.shape[1:]:
        # New modality rows (e.g. NLVR2's second image) start as a copy of the last known one (ViLT).
        extra = value[-1:].expand(own.shape[0] - value.shape[0], -1)
        return torch.cat([value, extra], dim=0)
    if key.endswith("position_embeddings.weight") and value.shape[1:] == own.shape[1:]:
        # Text positions: keep the trained rows that exist in both, our init for the new ones.
        out = own.clone()
        n = min(value.shape[0], own.shape[0])
        out[:n] = value[:n]
        return out
    if key.endswith("pos_embed") and value.dim() == 3 and value.shape[-1] == own.shape[-1]:
        if not learned:
            return own  # fixed sin-cos: ours already matches the current grid
        grid = int(math.isqrt(own.shape[1] - 1))
        return interpolate_pos_embed(value, grid, num_prefix_tokens=1)
    return None


def load_vlt_checkpoint(module: nn.Module, path) -> Dict[str, List[str]]:
    """Load weights (not optimiser or loop state) from a vlt Lightning ``.ckpt`` (``load_path``).

    Loads non-strictly: missing/unexpected keys are reported, not fatal. Position
    tables are adapted when shapes differ (text positions sliced or extended,
    modality rows extended, learned image tables interpolated).
    """
    ckpt = _read(path)
    state = _strip_prefix(ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), dict) else ckpt)
    own = module.state_dict()
    learned = {name for name, p in module.named_parameters(remove_duplicate=False) if p.requires_grad}
    fitted, mismatched, adapted = {}, [], []
    for key, value in state.items():
        if key not in own or own[key].shape == value.shape:
            fitted[key] = value
            continue
        new = _adapt(key, value, own[key], key in learned)
        if new is None:
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
        else:
            fitted[key] = new
            adapted.append(f"{key} {tuple(value.shape)} -> {tuple(own[key].shape)}")

    result = module.load_state_dict(fitted, strict=False)
    report = {
        "loaded": sorted(k for k in fitted if k in own),
        "missing": sorted(result.missing_keys),
        "unexpected": sorted(result.unexpected_keys),
        "mismatched": mismatched,
        "adapted": adapted,
        "initialised": [],
    }
    if not report["loaded"]:
        raise _nothing_matched(path, state.keys(), own.keys())
    hook = getattr(module, "after_load_path", None)  # task-specific starts, e.g. the IRTR head from ITM
    if callable(hook):
        source_config = (ckpt.get("hyper_parameters") or {}).get("config")
        report["initialised"] = list(hook(state, source_config))
    logger.info("%s: loaded %d tensors", path, len(report["loaded"]))
    for name in ("adapted", "initialised", "missing", "unexpected", "mismatched"):
        if report[name]:
            level = logging.INFO if name in ("adapted", "initialised") else logging.WARNING
            logger.log(level, "%s: %s keys: %s", path, name, _few(report[name], 20))
    return report
