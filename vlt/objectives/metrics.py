"""Metrics of every objective: the metric objects it logs, how one step's output feeds
them, and its share of ``the_metric`` (ViLT's checkpoint-selection score)."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from vlt.evaluation.vqa import VQAScore

ACCURACY_CLASSES = {"itm": lambda config: 2, "mlm": lambda config: config["vocab_size"]}  # classifier objectives
NLVR2_TABLES = ("dev", "test1")  # nlvr2_dev / nlvr2_test1 arrow files, reported separately


def make_metrics(name: str, stage: str, config: dict) -> Dict[str, Metric]:
    """Metric objects of one objective for ``stage`` (train | val | test), keyed as they are logged."""
    metrics: Dict[str, Metric] = {f"{name}_loss": MeanMetric()}
    if name in ACCURACY_CLASSES:
        metrics[f"{name}_accuracy"] = MulticlassAccuracy(ACCURACY_CLASSES[name](config), average="micro")
    elif name == "vqa":
        metrics["vqa_score"] = VQAScore()
    elif name == "nlvr2":
        metrics["nlvr2_accuracy"] = MulticlassAccuracy(2, average="micro")
        if stage != "train":
            for table in NLVR2_TABLES:
                metrics[f"nlvr2_{table}_accuracy"] = MulticlassAccuracy(2, average="micro")
    elif name == "irtr":
        metrics["irtr_accuracy"] = MeanMetric()  # true caption ranked first among its candidates
        if config["irtr_itc_weight"] > 0:
            metrics["irtr_itc_loss"] = MeanMetric()  # the unimodal contrastive term (unweighted)
    return metrics


def update_metrics(name: str, metrics: nn.ModuleDict, out: dict, forward: bool = False) -> List[str]:
    """Feed one step's output to the objective's metrics; return the keys updated.

    ``forward=True`` calls the metrics (batch value kept for on-step logging), else ``update``.
    """
    def feed(key: str, *args) -> None:
        (metrics[key] if forward else metrics[key].update)(*args)
        updated.append(key)

    updated: List[str] = []
    feed(f"{name}_loss", out["loss"].detach())
    if name in ACCURACY_CLASSES:
        if out["labels"].numel():  # an MLM batch may have no masked token
            feed(f"{name}_accuracy", out["logits"].detach().argmax(-1), out["labels"])
    elif name == "vqa":
        if forward or bool(out["targets"].any()):  # test questions have no answers: no score
            feed("vqa_score", out["logits"].detach(), out["targets"])
    elif name == "nlvr2":
        preds = out["logits"].detach().argmax(-1)
        feed("nlvr2_accuracy", preds, out["labels"])
        tables = out.get("table_names")
        if tables is not None and not forward:
            for table in NLVR2_TABLES:
                rows = [i for i, t in enumerate(tables) if str(t).removeprefix("nlvr2_") == table]
                key = f"nlvr2_{table}_accuracy"
                if rows and key in metrics:
                    rows = torch.tensor(rows, device=preds.device)
                    feed(key, preds[rows], out["labels"][rows])
    elif name == "irtr":
        feed("irtr_accuracy", (out["logits"].detach().argmax(-1) == 0).float())
        if "itc_loss" in out and "irtr_itc_loss" in metrics:
            feed("irtr_itc_loss", out["itc_loss"])
    return updated


def the_metric_term(name: str, values: Dict[str, torch.Tensor],
                    recall: Optional[Dict[str, float]] = None) -> Optional[torch.Tensor]:
    """The objective's share of ``the_metric`` (None: no share, e.g. MAE): MLM/ITM accuracy;
    VQA score; mean NLVR2 dev/test1 accuracy; IRTR recall sum (``irtr_rsum``) when recall
    was computed, else the rank accuracy."""
    if name in ACCURACY_CLASSES:
        return values.get(f"{name}_accuracy")
    if name == "vqa":
        return values.get("vqa_score")
    if name == "nlvr2":
        tables = [values[f"nlvr2_{t}_accuracy"] for t in NLVR2_TABLES if f"nlvr2_{t}_accuracy" in values]
        return torch.stack(tables).mean() if tables else values.get("nlvr2_accuracy")
    if name == "irtr":
        if recall and "irtr_rsum" in recall:
            return torch.tensor(recall["irtr_rsum"])
        return values.get("irtr_accuracy")
    return None
