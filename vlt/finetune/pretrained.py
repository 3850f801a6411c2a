"""``--finetune`` weights: read a vlt / MAE / timm checkpoint, adapt it to the classifier, load it.

Accepted files:
- vlt pretraining checkpoint (Lightning .ckpt): ``state_dict`` with the ViT under
  ``backbone.vit.``; everything else (text embeddings, pooler, heads, MAE decoder) is dropped;
- MAE checkpoint: ``{"model": state_dict}``;
- a plain timm VisionTransformer state dict.
A ``module.`` prefix (DDP) is stripped. Adaptation: the checkpoint's ``head.*`` is
dropped when its shape differs, ``pos_embed`` is resampled (bicubic over the 2-D
grid, prefix tokens kept) to the model's grid, and a head that was not loaded is
initialised with trunc_normal(std=2e-5). With global pooling the checkpoint's
``norm.*`` has no place (the model has fc_norm instead) and is reported unused.
"""
from __future__ import annotations

import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from .distributed import print_main
from .model import init_head

VLT_VIT_PREFIX = "backbone.vit."
HEAD_INIT_STD = 2e-5


@dataclass
class LoadReport:
    """What happened to the checkpoint's tensors."""
    source_format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)      # non-ViT keys of a vlt checkpoint
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"format: {self.source_format}; loaded {len(self.loaded)} tensors"]
        if self.dropped:
            lines.append(f"dropped {len(self.dropped)} non-ViT keys: {_grouped(self.dropped)}")
        lines += self.notes
        lines.append(f"missing keys (kept at init): {_grouped(self.missing, 12)}")
        lines.append(f"unexpected keys (not loaded): {_grouped(self.unexpected, 12)}")
        return "\n".join(lines)


def _grouped(keys: list[str], list_up_to: int = 0) -> str:
    """Keys listed in full when few, else counted per two-level prefix ('decoder_blocks.0.*: 12')."""
    if len(keys) <= list_up_to:
        return str(keys)
    groups = Counter(".".join(k.split(".")[:2]) for k in keys)
    return ", ".join(f"{g}.* ({n})" if g not in keys else g for g, n in sorted(groups.items()))


def read_checkpoint(path: str | Path) -> dict:
    """torch.load on CPU, tensors-and-containers only; falls back to full unpickling with a warning."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print_main(f"WARNING: {path} holds non-tensor Python objects ({first_line}); "
                   f"loading it with weights_only=False -- only do this for checkpoints you trust")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def _strip_prefix(sd: dict, prefix: str = "module.") -> dict:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def extract_vit_state_dict(ckpt: dict) -> tuple[dict, str, list[str]]:
    """(ViT state dict in timm names, format name, dropped keys) from any accepted checkpoint layout."""
    if isinstance(ckpt.get("state_dict"), dict):
        sd = _strip_prefix(ckpt["state_dict"])
        vit = {k[len(VLT_VIT_PREFIX):]: v for k, v in sd.items() if k.startswith(VLT_VIT_PREFIX)}
        if not vit:
            prefixes = sorted({k.split(".")[0] for k in sd})
            raise ValueError(f"Lightning checkpoint without '{VLT_VIT_PREFIX}*' keys (top-level prefixes: {prefixes}); "
                             "is it a vlt pretraining checkpoint?")
        dropped = sorted(k for k in sd if not k.startswith(VLT_VIT_PREFIX))
        return vit, "vlt-lightning", dropped
    if isinstance(ckpt.get("model"), dict):
        return _strip_prefix(ckpt["model"]), "mae", []
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return _strip_prefix(ckpt), "state-dict", []
    raise ValueError(f"unrecognised checkpoint layout (top-level keys: {sorted(ckpt)[:10]}); expected a "
                     "Lightning .ckpt with 'state_dict', an MAE {'model': ...} or a plain state dict")


def _resample_pos_embed(pos: torch.Tensor, model: nn.Module) -> tuple[torch.Tensor, str]:
    """The checkpoint's pos_embed resampled to the model's patch grid."""
    grid = list(model.patch_embed.grid_size)
    n_prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
    n_old = pos.shape[1] - n_prefix
    side = int(round(n_old ** 0.5))
    if side * side != n_old:
        raise ValueError(f"checkpoint pos_embed has {n_old} patch positions, not a square grid")
    new = resample_abs_pos_embed(pos, new_size=grid, old_size=[side, side], num_prefix_tokens=n_prefix)
    return new, f"pos_embed resampled from {side}x{side} to {grid[0]}x{grid[1]} (prefix tokens: {n_prefix})"


def classifier_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the model's classifier ('head.' for timm ViTs)."""
    classifier = model.get_classifier()
    name = next((n for n, m in model.named_modules() if m is classifier), "head")
    return name + "."


def adapt_state_dict(sd: dict, model: nn.Module) -> tuple[dict, list[str]]:
    """Drop a head of another shape, resample pos_embed; raise on any other shape mismatch."""
    own = model.state_dict()
    sd = dict(sd)
    notes = []
    head_keys = [k for k in sd if k.startswith(classifier_prefix(model))]
    if any(k in own and own[k].shape != sd[k].shape for k in head_keys) or \
            any(k not in own for k in head_keys):
        for k in head_keys:
            notes.append(f"removed {k} {tuple(sd.pop(k).shape)} from the checkpoint (head shape differs)")
    if "pos_embed" in sd and "pos_embed" in own and sd["pos_embed"].shape != own["pos_embed"].shape:
        sd["pos_embed"], note = _resample_pos_embed(sd["pos_embed"], model)
        notes.append(note)
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError("checkpoint tensors do not fit the model (check --model / --model_kwargs):\n  "
                         + "\n  ".join(bad))
    return sd, notes


def load_pretrained(model: nn.Module, path: str | Path, global_pool: bool) -> LoadReport:
    """Load ``--finetune`` weights into ``model`` (non-strict) and return the report (also printed)."""
    vit_sd, fmt, dropped = extract_vit_state_dict(read_checkpoint(path))
    sd, notes = adapt_state_dict(vit_sd, model)
    result = model.load_state_dict(sd, strict=False)
    report = LoadReport(fmt, loaded=sorted(set(sd) - set(result.unexpected_keys)),
                        missing=list(result.missing_keys), unexpected=list(result.unexpected_keys),
                        dropped=dropped, notes=notes)
    if global_pool and any(k.startswith("norm.") for k in report.unexpected):
        report.notes.append("global_pool: the checkpoint's norm.* is not used; fc_norm starts from its init")
    if any(k.startswith(classifier_prefix(model)) for k in report.missing):
        init_head(model, std=HEAD_INIT_STD)
        report.notes.append(f"new head initialised with trunc_normal(std={HEAD_INIT_STD})")
    print_main(f"Loaded --finetune weights from {path}\n{report.summary()}")
    return report
