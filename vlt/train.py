"""Config dict -> datamodule, module and Lightning Trainer; usable without Sacred.

    from vlt.config import default_config
    from vlt.train import run
    cfg = default_config() | {"datasets": ["demo"], "data_root": "demo_data", ...}
    result = run(cfg)
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from vlt.config_check import validate_config

log = logging.getLogger("vlt")

PRECISION_ALIASES = {16: "16-mixed", "16": "16-mixed", 32: "32-true", "32": "32-true",
                     "bf16": "bf16-mixed", 64: "64-true", "64": "64-true"}


def run_name(config: dict) -> str:
    """``<exp_name>_seed<seed>_from_<load_path stem>`` (ViLT/VLC naming)."""
    source = Path(config["load_path"]).stem if config["load_path"] else "scratch"
    return f"{config['exp_name']}_seed{config['seed']}_from_{source}"


def devices_and_strategy(config: dict) -> dict:
    """Trainer arguments for ``num_gpus`` (0 = CPU), ``num_nodes`` and ``cpu_devices``."""
    if config["num_gpus"] > 0:
        accelerator, devices = "gpu", config["num_gpus"]
    else:
        accelerator, devices = "cpu", config["cpu_devices"]
    world = devices * config["num_nodes"]
    # Objectives leave some parameters unused in a step (e.g. the image half of a
    # double pooler under MLM only); DDP must be told or it hangs.
    strategy = "ddp_find_unused_parameters_true" if world > 1 else "auto"
    return {"accelerator": accelerator, "devices": devices, "num_nodes": config["num_nodes"],
            "strategy": strategy, "world_size": world}


def accumulation_steps(config: dict, world_size: int) -> int:
    """Micro-batches per optimizer step so that the effective batch reaches ``batch_size``."""
    per_step = config["per_gpu_batchsize"] * world_size
    return max(1, config["batch_size"] // per_step)


def write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
    os.replace(tmp, path)


class RestoreLoaderPosition(pl.Callback):
    """Hand the checkpointed data-loader position back to the loader on resume.

    Lightning restores loader state only inside its first ``setup_data``; when
    ``configure_optimizers`` asks for ``estimated_stepping_batches`` (ours does),
    that call happens before the checkpoint is restored, the state is parked and
    never applied, and a mid-epoch resume restarts the epoch. Applying it at
    train start, before the epoch's iterator exists, fixes that.
    """

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.fit_loop._load_combined_loader_states()


class PrintValidationSummary(pl.Callback):
    """One plain line of validation metrics per validation run, so logs show learning at a glance."""

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        values = {k.removeprefix("val/"): float(v) for k, v in trainer.callback_metrics.items()
                  if k.startswith("val/") and _is_scalar(v)}
        shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(values.items()))
        print(f"[val] epoch {trainer.current_epoch} step {trainer.global_step}: {shown}", flush=True)


def build_trainer(config: dict, logger: TensorBoardLogger | bool = True, callbacks=()) -> pl.Trainer:
    hw = devices_and_strategy(config)
    checkpoint = ModelCheckpoint(monitor="val/the_metric", mode="max", save_top_k=config["save_top_k"],
                                 save_last=True, filename="epoch{epoch}-step{step}", auto_insert_metric_name=False)
    callbacks = [checkpoint, RestoreLoaderPosition(), PrintValidationSummary(), *callbacks]
    if config["checkpoint_every_n_steps"] > 0:
        callbacks.append(ModelCheckpoint(every_n_train_steps=config["checkpoint_every_n_steps"], save_top_k=-1,
                                         filename="step{step}", auto_insert_metric_name=False))
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return pl.Trainer(
        accelerator=hw["accelerator"], devices=hw["devices"], num_nodes=hw["num_nodes"], strategy=hw["strategy"],
        precision=PRECISION_ALIASES.get(config["precision"], config["precision"]),
        max_epochs=config["max_epoch"], max_steps=config["max_steps"] if config["max_steps"] > 0 else -1,
        accumulate_grad_batches=accumulation_steps(config, hw["world_size"]),
        val_check_interval=config["val_check_interval"], limit_val_batches=config["limit_val_batches"],
        log_every_n_steps=config["log_every_n_steps"], fast_dev_run=config["fast_dev_run"],
        gradient_clip_val=config["gradient_clip_val"] or None, deterministic=config["deterministic"],
        enable_progress_bar=config["progress_bar"], logger=logger, callbacks=callbacks,
        use_distributed_sampler=False,  # vlt samplers shard by rank themselves (and resume mid-epoch)
        default_root_dir=config["log_dir"],
    )


def ensure_demo_data(config: dict) -> None:
    """The embedded demo generates its data on first use, so `run.py with demo` needs nothing else."""
    if "demo" not in config["datasets"]:
        return
    root = Path(config["data_root"] or "demo_data")
    if not (root / "coco_caption_karpathy_train.arrow").is_file():
        from vlt.data.demo import write_demo_arrows

        log.warning("generating the demo dataset into %s", root)
        print(f"generating the demo dataset into {root} ...", flush=True)
        write_demo_arrows(root)
    config["data_root"] = str(root)


def run(config: dict, callbacks=()) -> dict:
    """Train (or, with ``test_only``, evaluate) as the config says; returns paths and final metrics.

    ``callbacks``: extra Lightning callbacks (tests use them to record losses).
    """
    from vlt.data.datamodule import MultiDataModule
    from vlt.module import VLTModule
    from vlt.checkpoints import load_vlt_checkpoint

    config = dict(validate_config(dict(config)))
    ensure_demo_data(config)
    pl.seed_everything(config["seed"], workers=True)
    datamodule = MultiDataModule(config)
    module = VLTModule(config)
    if config["load_path"]:
        load_vlt_checkpoint(module, config["load_path"])

    logger = TensorBoardLogger(save_dir=config["log_dir"], name=run_name(config))
    trainer = build_trainer(config, logger=logger, callbacks=callbacks)
    run_dir = Path(logger.log_dir)
    if trainer.is_global_zero:
        write_json_atomic(run_dir / "config.json", config)

    if config["test_only"]:
        trainer.test(module, datamodule=datamodule)
    else:
        trainer.fit(module, datamodule=datamodule, ckpt_path=config["resume_from"] or None)
    checkpoint = trainer.checkpoint_callback
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if _is_scalar(v)}
    return {"run_dir": str(run_dir), "best_checkpoint": checkpoint.best_model_path if checkpoint else "",
            "last_checkpoint": checkpoint.last_model_path if checkpoint else "", "metrics": metrics,
            "global_step": trainer.global_step}


def _is_scalar(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
