"""VLTModule: objective weighting, reseeding, metrics/logging through a real Trainer, learning."""
import sys
import types
import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from test_models import make_batch, tiny_config
from vlt.checkpoints import load_vlt_checkpoint
from vlt.config import _loss_names
from vlt.module import VLTModule


class AdamWModule(VLTModule):
    """Plain AdamW so these tests do not depend on the schedule in vlt.optim."""

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=1e-3)


def _loader(batches):
    """Pre-built batches, yielded as they are."""
    return DataLoader(batches, batch_size=None, shuffle=False)


def _trainer(tmp_path, **kwargs):
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    default_root_dir=str(tmp_path))
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|not attached|self.log).*")
        yield


def test_total_is_the_weighted_sum():
    cfg = tiny_config(loss_names=_loss_names({"mlm": 2.0, "itm": 0.5, "mae": 3.0}), mae_weight=0.25)
    module = VLTModule(cfg)
    batch = make_batch()
    module.on_train_batch_start(batch, 0)
    outputs = module.compute_objectives(batch)
    expected = 2.0 * outputs["mlm"]["loss"] + 0.5 * outputs["itm"]["loss"] + 3.0 * 0.25 * outputs["mae"]["loss"]
    torch.testing.assert_close(module.total_loss(outputs), expected)
    module.on_train_batch_start(batch, 0)
    torch.testing.assert_close(module.training_step(batch, 0), expected)  # same seed -> same step


def test_zero_weight_objective_builds_nothing_and_has_no_effect():
    module = VLTModule(tiny_config(loss_names=_loss_names({"mlm": 1, "itm": 0, "mae": 0})))
    assert set(module.heads) == {"mlm"} and module.mae_decoder is None
    assert set(module.train_metrics) == {"mlm_loss", "mlm_accuracy"}
    outputs = module.compute_objectives(make_batch())
    assert set(outputs) == {"mlm"}
    assert torch.equal(module.total_loss(outputs), outputs["mlm"]["loss"])
    assert not any(k.startswith(("heads.itm", "mae_decoder")) for k in module.state_dict())


def test_mae_without_use_mae_is_rejected():
    with pytest.raises(ValueError, match="use_mae"):
        VLTModule(tiny_config(use_mae=False))
    with pytest.raises(ValueError, match="not implemented"):
        VLTModule(tiny_config(loss_names=_loss_names({"mpp": 1})))


def test_reseeding_makes_a_step_independent_of_earlier_rng_use():
    module = VLTModule(tiny_config(drop_rate=0.1)).train()  # dropout on: it must be reproducible too
    batch = make_batch()
    module.on_train_batch_start(batch, 0)
    first = module.compute_objectives(batch)
    torch.rand(1000)  # e.g. validation or a data-loader start consumed random numbers
    module.on_train_batch_start(batch, 0)
    second = module.compute_objectives(batch)
    for name in first:
        assert torch.equal(first[name]["loss"], second[name]["loss"]), name
    assert torch.equal(first["itm"]["labels"], second["itm"]["labels"])
    assert torch.equal(first["mae"]["mask"], second["mae"]["mask"])


class _StopAt(pl.Callback):
    def __init__(self, step, path):
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def test_resumed_fit_reproduces_the_uninterrupted_one(tmp_path):
    """Dropout, MAE masks and ITM swaps after a resume equal those of a run that never stopped."""
    cfg = tiny_config(drop_rate=0.1)
    batches = [make_batch(seed=i) for i in range(2)]  # one epoch = 2 steps; resume at an epoch boundary

    def fit(max_steps, callbacks=(), ckpt_path=None):
        torch.manual_seed(0)
        module = AdamWModule(cfg)
        _trainer(tmp_path, max_steps=max_steps, limit_val_batches=0, callbacks=list(callbacks)).fit(
            module, train_dataloaders=_loader(batches), ckpt_path=ckpt_path)
        return module

    straight = fit(4)
    fit(4, [_StopAt(2, tmp_path / "mid.ckpt")])
    torch.rand(123)  # whatever ran in between must not matter
    resumed = fit(4, ckpt_path=tmp_path / "mid.ckpt")
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    module = VLTModule(tiny_config()).train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    batch = make_batch(batch_size=8)
    losses = []
    for step in range(30):
        module.on_train_batch_start(batch, step)
        loss = module.total_loss(module.compute_objectives(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    start, end = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert end < 0.85 * start, losses


def test_fit_logs_metrics_and_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    module = AdamWModule(cfg)
    batches = [dict(make_batch(seed=i), n_corrupt=i) for i in range(3)]
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=2, val_check_interval=3)
    trainer.fit(module, train_dataloaders=_loader(batches), val_dataloaders=_loader(batches[:2]))
    metrics = trainer.callback_metrics
    for key in ("train/mlm_loss", "train/itm_accuracy", "train/mae_loss", "train/loss", "val/mlm_loss",
                "val/mlm_accuracy", "val/itm_accuracy", "val/mae_loss", "val/the_metric"):
        assert key in metrics, key
    torch.testing.assert_close(metrics["val/the_metric"], metrics["val/mlm_accuracy"] + metrics["val/itm_accuracy"])
    assert metrics["train/n_corrupt"].item() == 0 + 1 + 2

    ckpt_path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["hidden_size"] == 32
    for key in ("backbone.vit.blocks.0.attn.qkv.weight", "backbone.vit.pos_embed", "mae_decoder.decoder_embed.weight",
                "heads.mlm.decoder.bias", "heads.itm.fc.weight"):
        assert key in ckpt["state_dict"], key

    fresh = VLTModule(ckpt["hyper_parameters"]["config"])
    load_vlt_checkpoint(fresh, ckpt_path)
    module.eval(), fresh.eval()
    batch = make_batch(seed=7)
    with torch.no_grad():
        torch.testing.assert_close(module(batch)["cls_feats"], fresh(batch)["cls_feats"], atol=0, rtol=0)


def test_validation_numbers_are_reproducible_and_match_hand_accuracy(tmp_path):
    module = AdamWModule(tiny_config())
    batch = make_batch()
    module.eval()
    module.on_validation_batch_start(batch, 0)
    with torch.no_grad():
        out = module.compute_objectives(batch)
    hand_mlm = (out["mlm"]["logits"].argmax(-1) == out["mlm"]["labels"]).float().mean()
    results = [_trainer(tmp_path).validate(module, _loader([batch]), verbose=False)[0] for _ in range(2)]
    assert results[0] == results[1]
    assert results[0]["val/mlm_accuracy"] == pytest.approx(hand_mlm.item())
    assert results[0]["val/mae_loss"] == pytest.approx(out["mae"]["loss"].item(), rel=1e-5)


def test_the_metric_is_negative_mae_loss_for_mae_only(tmp_path):
    module = AdamWModule(tiny_config(loss_names=_loss_names({"mae": 1})))
    assert set(module.heads) == set()
    result = _trainer(tmp_path).validate(module, _loader([make_batch()]), verbose=False)[0]
    assert result["val/the_metric"] == pytest.approx(-result["val/mae_loss"])


def test_configure_optimizers_delegates_to_vlt_optim(monkeypatch):
    seen = []
    fake = types.ModuleType("vlt.optim")
    fake.configure_optimizers = lambda module: seen.append(module) or "optimizers"
    monkeypatch.setitem(sys.modules, "vlt.optim", fake)
    module = VLTModule(tiny_config())
    assert module.configure_optimizers() == "optimizers" and seen == [module]
