"""VLTModule: the one-tower backbone, its heads and objectives, metrics and optimiser hook."""
from __future__ import annotations

from typing import Dict, Mapping

import pytorch_lightning as pl
import torch
import torch.nn as nn

from vlt.checkpoints import load_mae_pretrained
from vlt.models import ITMHead, MAEDecoder, MLMHead
from vlt.models.build import build_backbone
from vlt.objectives import Passes, compute_itm, compute_mae, compute_mlm
from vlt.objectives.metrics import make_metrics, the_metric_term, update_metrics
from vlt import downstream


# Evaluation order is fixed: it decides RNG consumption.
SUPPORTED_OBJECTIVES = ("mlm", "itm", "mae", "vqa", "nlvr2", "irtr")


def plain(value):
    """Sacred's read-only containers -> plain dict/list, so checkpoints load with ``weights_only=True``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed (distinct tuples give distinct streams in practice)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2 ** 63)
    return seed


class VLTModule(pl.LightningModule):
    """Backbone + task heads; ``loss_names`` weights pick the objectives (0 = off).

    Checkpoint layout: ``backbone.*`` (see vlt.models.build; OneTowerBackbone keeps timm names under
    ``backbone.vit.``), ``mae_decoder.*`` (MAE names), ``heads.<objective>.*``;
    ``hyper_parameters["config"]`` holds the run config.
    """

    def __init__(self, config: dict):
        super().__init__()
        config = plain(config)
        self.save_hyperparameters({"config": config})
        self.config = config
        self.loss_weights = {k: float(w) for k, w in config["loss_names"].items() if float(w) != 0}
        unsupported = sorted(set(self.loss_weights) - set(SUPPORTED_OBJECTIVES))
        if unsupported:
            raise ValueError(f"objective(s) {unsupported} are not implemented by VLTModule "
                             f"(supported: {list(SUPPORTED_OBJECTIVES)})")
        if "mae" in self.loss_weights and not (config["use_mae"] and config["is_pretrain"]):
            raise ValueError("loss_names['mae'] > 0 needs use_mae=True and is_pretrain=True "
                             "(without them images are never masked)")
        self.objectives = [name for name in SUPPORTED_OBJECTIVES if name in self.loss_weights]

        self.backbone = build_backbone(config)  # one-tower (timm / HF encoder) or two-tower; applies freeze_*
        self.mae_decoder = None
        if "mae" in self.loss_weights:
            self.mae_decoder = MAEDecoder(config, self.backbone.hidden_size, self.backbone.num_patches,
                                          self.backbone.patch_size)
        self.heads = nn.ModuleDict()
        if "mlm" in self.loss_weights:
            self.heads["mlm"] = MLMHead(self.backbone.hidden_size, config["vocab_size"],
                                        tied_weight=self.backbone.word_embeddings)  # None: untied decoder
        if "itm" in self.loss_weights:
            self.heads["itm"] = ITMHead(self.backbone.cls_dim)
        downstream.build_heads(config, self.backbone, self.heads, self.objectives)  # vqa / nlvr2 / irtr

        # One metric set per stage; Lightning/torchmetrics handle DDP reduction of their states.
        self.train_metrics = self._make_metrics("train")
        self.val_metrics = self._make_metrics("val")
        self.test_metrics = self._make_metrics("test")
        self.vqa_submission = downstream.VQASubmission()  # test-split predictions -> submission JSON

        if config["pretrain_path"]:
            load_mae_pretrained(self.backbone, self.mae_decoder, config["pretrain_path"])

    def _make_metrics(self, stage: str) -> nn.ModuleDict:
        metrics = nn.ModuleDict()
        for name in self.objectives:
            metrics.update(make_metrics(name, stage, self.config))
        return metrics

    # ------------------------------------------------------------------ forward

    def forward(self, batch: dict) -> dict:
        """Plain (unmasked) joint encoding of ``text_ids`` and ``image``."""
        return self.backbone(batch["text_ids"], batch["text_masks"], batch["image"])

    def compute_objectives(self, batch: dict) -> Dict[str, dict]:
        """Run every enabled objective on the batch, sharing backbone passes between them."""
        passes = Passes(self.backbone, batch, mlm_on="mlm" in self.loss_weights,
                        mae_on="mae" in self.loss_weights, mask_ratio=self.config["mask_ratio"])
        outputs = {}
        for name in self.objectives:
            if name == "mlm":
                outputs[name] = compute_mlm(passes, self.heads["mlm"])
            elif name == "itm":
                outputs[name] = compute_itm(passes, self.heads["itm"])
            elif name == "mae":
                outputs[name] = compute_mae(passes, self.mae_decoder, self.backbone.patch_size,
                                            self.config["norm_pix_loss"])
            else:
                outputs[name] = downstream.compute(name, passes, self.heads, self.config)
        return outputs

    def total_loss(self, outputs: Dict[str, dict]) -> torch.Tensor:
        """sum_i w_i * loss_i, the MAE term additionally scaled by ``mae_weight`` (VLC)."""
        total = 0.0
        for name, out in outputs.items():
            weight = self.loss_weights[name] * (self.config["mae_weight"] if name == "mae" else 1.0)
            total = total + weight * out["loss"]
        return total

    # ------------------------------------------------------------------ metrics

    def _update_metrics(self, metrics: nn.ModuleDict, outputs: Dict[str, dict]) -> None:
        for name, out in outputs.items():
            update_metrics(name, metrics, out)

    def _log_n_corrupt(self, stage: str, batch: dict, batch_size: int) -> None:
        if "n_corrupt" in batch:
            n = torch.as_tensor(batch["n_corrupt"], dtype=torch.float32, device=self.device)
            self.log(f"{stage}/n_corrupt", n, on_step=False, on_epoch=True, reduce_fx="sum",
                     sync_dist=True, batch_size=batch_size)

    # ------------------------------------------------------------------ reseeding

    def _reseed(self, *parts: int) -> None:
        torch.manual_seed(_seed(self.config["seed"], *parts))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """Reseed the global torch RNG from (seed, optimizer step, micro-batch, rank).

        Why: dropout, MAE masks and ITM swaps then depend only on where training is,
        not on what drew random numbers before (validation, data-loader start-up,
        logging). A run resumed from a checkpoint (Lightning does not store the RNG
        state) therefore draws exactly what the uninterrupted run drew, and ranks /
        accumulated micro-batches draw different masks.
        """
        accumulate = getattr(self._trainer, "accumulate_grad_batches", 1) if self._trainer else 1
        self._reseed(1, self.global_step, batch_idx % max(int(accumulate), 1), self.global_rank)

    def on_validation_batch_start(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Same batch, same masks/ITM swaps in every validation run, so val numbers are comparable."""
        self._reseed(2, dataloader_idx, batch_idx, self.global_rank)

    def on_test_batch_start(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._reseed(3, dataloader_idx, batch_idx, self.global_rank)

    # ------------------------------------------------------------------ steps

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        outputs = self.compute_objectives(batch)
        loss = self.total_loss(outputs)
        batch_size = batch["text_ids"].shape[0]
        for name, out in outputs.items():
            for key in update_metrics(name, self.train_metrics, out, forward=True):
                self.log(f"train/{key}", self.train_metrics[key], on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, sync_dist=True, batch_size=batch_size)
        self._log_n_corrupt("train", batch, batch_size)
        return loss

    def _eval_step(self, stage: str, batch: dict, return_outputs: bool = False):
        outputs = self.compute_objectives(batch)
        self._update_metrics(getattr(self, f"{stage}_metrics"), outputs)
        self._log_n_corrupt(stage, batch, batch["text_ids"].shape[0])
        loss = self.total_loss(outputs)
        return (loss, outputs) if return_outputs else loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        loss, outputs = self._eval_step("test", batch, return_outputs=True)
        if "vqa" in outputs:
            self.vqa_submission.update(batch["question_id"], outputs["vqa"]["logits"])
        return loss

    def _log_epoch(self, stage: str, recall=None) -> None:
        """Log the epoch values and ``<stage>/the_metric`` (ViLT's checkpoint selection score).

        the_metric = sum over objectives of their score: accuracy (mlm, itm), VQA score,
        mean NLVR2 dev/test1 accuracy, IRTR recall sum (``recall``) or rank accuracy;
        with no scored objective (MAE only) it is -MAE loss.
        """
        for key, value in (recall or {}).items():
            self.log(f"{stage}/{key}", float(value), sync_dist=False)
        metrics = getattr(self, f"{stage}_metrics")
        values = {}
        for key, metric in metrics.items():
            if metric.update_called:
                values[key] = metric.compute()
                self.log(f"{stage}/{key}", values[key], sync_dist=False)
            metric.reset()
        terms = [t.to(self.device) for name in self.objectives
                 if (t := the_metric_term(name, values, recall)) is not None]
        if terms:
            the_metric = torch.stack(terms).sum()
        elif "mae_loss" in values:
            the_metric = -values["mae_loss"]
        else:
            the_metric = torch.zeros((), device=self.device)
        self.log(f"{stage}/the_metric", the_metric, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self._recall("val"))

    def on_test_epoch_start(self) -> None:
        self.vqa_submission.reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self._recall("test"))
        if "vqa" in self.loss_weights:
            downstream.write_vqa_submission(self)

    def _recall(self, stage: str):
        """Retrieval recall@k when ``get_recall_metric`` (not during the sanity check), else None."""
        if not self.config["get_recall_metric"] or self.trainer.sanity_checking:
            return None
        return downstream.recall_evaluation(self, stage)

    def after_load_path(self, state: dict, source_config) -> list:
        """Called by ``load_vlt_checkpoint``: task-specific starts from a pretraining checkpoint."""
        return downstream.init_from_pretrained(self, state, source_config)

    # ------------------------------------------------------------------ optimiser

    def configure_optimizers(self):
        from vlt.optim import configure_optimizers

        return configure_optimizers(self)
