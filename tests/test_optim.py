"""Parameter groups (head multiplier, layer decay, no-decay) and lr schedules."""
import math

import pytest
import torch
from torch import nn

from vlt.config import default_config
from vlt.optim import build_optimizer, layer_id, lr_multiplier, param_groups, resolve_warmup


class Toy(nn.Module):
    """Names laid out like a vlt module: backbone.vit.blocks.i, heads.*, cross_modal."""

    def __init__(self, layers=3):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.vit = nn.Module()
        self.backbone.vit.patch_embed = nn.Linear(4, 8)
        self.backbone.vit.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.backbone.vit.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(layers))
        self.backbone.vit.norm = nn.LayerNorm(8)
        self.backbone.cross_modal_layers = nn.Linear(8, 8)
        self.heads = nn.ModuleDict({"itm": nn.Linear(8, 2)})


def cfg(**kw):
    c = default_config()
    c.update(kw)
    return c


def lr_of(groups, name):
    return next(g["lr"] for g in groups if name in g["names"])


def decay_of(groups, name):
    return next(g["weight_decay"] for g in groups if name in g["names"])


def test_head_multiplier_and_vilt_alias():
    model = Toy()
    groups = param_groups(model, cfg(learning_rate=1e-4, lr_mult_head=5, lr_mult_cross_modal=3))
    assert lr_of(groups, "heads.itm.weight") == pytest.approx(5e-4)
    assert lr_of(groups, "backbone.cross_modal_layers.weight") == pytest.approx(3e-4)
    assert lr_of(groups, "backbone.vit.blocks.0.weight") == pytest.approx(1e-4)
    alias = param_groups(model, cfg(learning_rate=1e-4, lr_mult=10, lr_mult_head=-1))
    assert lr_of(alias, "heads.itm.weight") == pytest.approx(1e-3)


def test_layer_decay_scales_each_block():
    model, decay = Toy(layers=3), 0.5
    groups = param_groups(model, cfg(learning_rate=1.0, layer_decay=decay))
    # num_layers=3: embeddings -> 0.5**4, block i -> 0.5**(3 - i), post-block norm and heads -> 1
    assert lr_of(groups, "backbone.vit.patch_embed.weight") == pytest.approx(decay ** 4)
    for i in range(3):
        assert lr_of(groups, f"backbone.vit.blocks.{i}.weight") == pytest.approx(decay ** (3 - i))
    assert lr_of(groups, "backbone.vit.norm.weight") == pytest.approx(1.0)
    assert lr_of(groups, "heads.itm.weight") == pytest.approx(1.0)
    assert layer_id("backbone.vit.blocks.2.attn.qkv.weight", 3) == 3


def test_no_weight_decay_on_bias_norm_and_tokens():
    groups = param_groups(Toy(), cfg(weight_decay=0.05))
    assert decay_of(groups, "backbone.vit.blocks.0.weight") == 0.05
    for name in ("backbone.vit.blocks.0.bias", "backbone.vit.norm.weight", "backbone.vit.cls_token"):
        assert decay_of(groups, name) == 0.0


def test_frozen_parameters_are_left_out():
    model = Toy()
    model.backbone.vit.blocks[0].weight.requires_grad_(False)
    names = [n for g in param_groups(model, cfg()) for n in g["names"]]
    assert "backbone.vit.blocks.0.weight" not in names and "heads.itm.weight" in names


def test_warmup_fraction_or_steps():
    assert resolve_warmup(0.1, 1000) == 100
    assert resolve_warmup(250, 1000) == 250


def test_polynomial_schedule():
    f = lr_multiplier(cfg(lr_sched="polynomial", learning_rate=1e-4, end_lr=0.0, decay_power=1, warmup_steps=10), 110)
    assert f(0) == 0 and f(5) == pytest.approx(0.5) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)


def test_cosine_schedule_reaches_min_lr():
    c = cfg(lr_sched="linear_warmup_cosine_lr", learning_rate=1e-3, warmup_lr=1e-4, min_lr=1e-5, warmup_steps=10)
    f = lr_multiplier(c, 110)
    assert f(0) == pytest.approx(0.1)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(110) == pytest.approx(0.01)


def test_step_schedule_decays_per_epoch():
    c = cfg(lr_sched="linear_warmup_step_lr", learning_rate=1.0, warmup_steps=0, lr_decay_rate=0.5, min_lr=0.0)
    f = lr_multiplier(c, 100, steps_per_epoch=10)
    assert f(9) == 1.0 and f(10) == 0.5 and f(25) == 0.25


def test_scheduler_honours_group_scales():
    model = Toy()
    c = cfg(learning_rate=1e-3, lr_mult_head=10, lr_sched="polynomial", warmup_steps=2, end_lr=0.0)
    optimizer = build_optimizer(param_groups(model, c), c)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(c, 4))
    for _ in range(2):
        optimizer.step()
        sched.step()
    lrs = {g["lr_scale"]: g["lr"] for g in optimizer.param_groups}
    assert lrs[10] == pytest.approx(1e-2) and lrs[1.0] == pytest.approx(1e-3)
    assert all(math.isfinite(v) for v in lrs.values())
