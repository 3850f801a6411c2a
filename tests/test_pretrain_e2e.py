"""End to end: the VLC pretraining command (shrunk), CPU DDP, exact resume, the demo config.

Arrow files are written from the real COCO sample in ../shared/data by the
project's own writer.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from vlt.config import DEMO_TOKENIZER, _loss_names, default_config, ex

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT.parent / "shared" / "data" / "coco"

TINY = dict(encoder_manual_configuration=True, hidden_size=32, num_heads=2, num_layers=2, mlp_ratio=2,
            embedding_size=32, image_size=32, patch_size=16, max_text_len=16, drop_rate=0.0,
            decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2,
            tokenizer=DEMO_TOKENIZER, num_workers=0, per_gpu_batchsize=2, batch_size=2,
            limit_val_batches=2, progress_bar=False, log_every_n_steps=1, warmup_steps=1)


def cli_args(overrides: dict) -> list:
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in overrides.items()]


@pytest.fixture(scope="module")
def coco_arrows(tmp_path_factory):
    if not COCO.is_dir():
        pytest.skip(f"real sample data not found at {COCO}")
    sys.path.insert(0, str(ROOT))
    from data_prep.write_coco_karpathy import make_arrow

    out = tmp_path_factory.mktemp("arrows")
    make_arrow(COCO, out, progress=False)
    return out


@pytest.fixture(scope="module")
def mae_checkpoint(tmp_path_factory):
    """An MAE-format checkpoint ({'model': timm ViT state dict}) of the tiny ViT."""
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2, num_classes=0)
    path = tmp_path_factory.mktemp("mae") / "mae_tiny.pth"
    torch.save({"model": vit.state_dict()}, path)
    return path, vit.state_dict()


def run_py(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_vlc_pretraining_command_shrunk(coco_arrows, mae_checkpoint, tmp_path):
    """`run.py with ... task_mlm_itm_mae ... whole_word_masking=True step25k pretrain_path=... mae_weight=1.0`."""
    ckpt, _ = mae_checkpoint
    overrides = dict(TINY, max_steps=2, val_check_interval=2)
    out = run_py("with", f"data_root={coco_arrows}", "num_gpus=0", "num_nodes=1", "task_mlm_itm_mae",
                 "whole_word_masking=True", "step25k", f"pretrain_path={ckpt}", f"log_dir={tmp_path}",
                 "mae_weight=1.0", "datasets=['coco']", *cli_args(overrides))
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "mlm_itm_mae_seed0_from_scratch" / "version_0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.json").is_file()
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2
    assert saved["hyper_parameters"]["config"]["pretrain_path"] == str(ckpt)
    assert {"mlm", "itm", "mae"} <= {k for k, v in saved["hyper_parameters"]["config"]["loss_names"].items() if v}


def test_missing_arrow_file_names_the_data_prep_command(tmp_path):
    out = run_py("with", f"data_root={tmp_path}", "datasets=['coco']", "num_gpus=0", f"log_dir={tmp_path}",
                 *cli_args(dict(TINY, max_steps=1)))
    assert out.returncode != 0
    assert "write_coco_karpathy.py" in out.stderr


def test_two_process_cpu_ddp(coco_arrows, tmp_path):
    overrides = dict(TINY, max_steps=3, val_check_interval=3, cpu_devices=2, batch_size=4,
                     loss_names=_loss_names({"mlm": 1, "itm": 1}))
    out = run_py("with", f"data_root={coco_arrows}", "num_gpus=0", "datasets=['coco']", f"log_dir={tmp_path}",
                 *cli_args(overrides))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "distributed_backend=gloo" in out.stderr + out.stdout
    ckpt = next(tmp_path.glob("*/version_0/checkpoints/last.ckpt"))
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 3


class LossRecorder:
    """Records the training loss of every step (a Lightning callback)."""

    def __new__(cls):
        import pytorch_lightning as pl

        class _Recorder(pl.Callback):
            def __init__(self):
                self.losses = {}

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                self.losses[trainer.global_step] = float(outputs["loss"])

        return _Recorder()


def _resume_config(data_root, log_dir, **overrides):
    cfg = default_config()
    cfg.update(TINY, datasets=["coco"], data_root=str(data_root), log_dir=str(log_dir), num_gpus=0,
               loss_names=_loss_names({"mlm": 1, "itm": 1, "mae": 1}), use_mae=True, drop_rate=0.1,
               max_steps=8, val_check_interval=1.0, checkpoint_every_n_steps=3, max_epoch=5)
    cfg.update(overrides)
    return cfg


def test_resume_mid_epoch_continues_exactly(coco_arrows, tmp_path):
    from vlt.train import run

    straight = LossRecorder()
    first = run(_resume_config(coco_arrows, tmp_path / "a"), callbacks=[straight])
    mid = Path(first["run_dir"]) / "checkpoints" / "step3.ckpt"
    assert mid.is_file()
    resumed = LossRecorder()
    run(_resume_config(coco_arrows, tmp_path / "b", resume_from=str(mid)), callbacks=[resumed])
    # 59+60 COCO train/restval images -> many batches per epoch, so step 3 is mid-epoch
    assert sorted(resumed.losses) == [4, 5, 6, 7, 8]
    for step, loss in resumed.losses.items():
        assert loss == pytest.approx(straight.losses[step], abs=1e-6), step


def test_demo_named_config_composes():
    values = ex.named_configs["demo"]()
    assert values["datasets"] == ["demo"] and values["num_gpus"] == 0
    assert Path(values["tokenizer"], "vocab.txt").is_file()
