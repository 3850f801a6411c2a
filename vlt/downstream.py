"""Downstream objectives of :class:`vlt.module.VLTModule`: VQAv2, NLVR2 and image-text retrieval.

Everything task-specific the module needs lives here, so the module stays a thin
dispatcher: heads (``heads.vqa``, ``heads.nlvr2``, ``heads.irtr`` and, with
``irtr_itc_weight > 0``, ``heads.irtr_itc``), the objective call, metrics and
initialisation from a pretraining checkpoint, the recall evaluation and the VQA
submission file. Metrics of every objective are in vlt.objectives.metrics.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from vlt.evaluation.vqa import VQASubmission, load_answer_labels
from vlt.models.heads import ContrastiveHead, NLVR2Head, RankHead, VQAHead
from vlt.objectives.irtr import compute_irtr
from vlt.objectives.nlvr2 import compute_nlvr2
from vlt.objectives.vqa import compute_vqa

logger = logging.getLogger("vlt")

ITC_EMBED_DIM = 256


# ---------------------------------------------------------------- heads and objectives


def build_heads(config: dict, backbone: nn.Module, heads: nn.ModuleDict, objectives) -> None:
    """Add the heads of the enabled downstream objectives to ``heads``."""
    cls_dim = backbone.cls_dim
    if "vqa" in objectives:
        heads["vqa"] = VQAHead(cls_dim, config["vqav2_label_size"])
    if "nlvr2" in objectives:
        heads["nlvr2"] = NLVR2Head(cls_dim)
    if "irtr" in objectives:
        heads["irtr"] = RankHead(cls_dim)
        if config["irtr_itc_weight"] > 0:
            heads["irtr_itc"] = ContrastiveHead(backbone.hidden_size, min(ITC_EMBED_DIM, backbone.hidden_size))


def compute(name: str, passes, heads: nn.ModuleDict, config: dict) -> dict:
    if name == "vqa":
        return compute_vqa(passes, heads["vqa"])
    if name == "nlvr2":
        return compute_nlvr2(passes, heads["nlvr2"])
    if name == "irtr":
        itc = heads["irtr_itc"] if "irtr_itc" in heads else None
        return compute_irtr(passes, heads["irtr"], itc, config["irtr_itc_weight"],
                            config["irtr_in_batch_negatives"])
    raise KeyError(name)


# ---------------------------------------------------------------- loading a pretraining checkpoint


@torch.no_grad()
def init_from_pretrained(module: nn.Module, state: Dict[str, torch.Tensor], source_config: Optional[dict]) -> List[str]:
    """Task-specific starts after ``load_path`` loaded a checkpoint that was not trained on the task.

    * ``heads.irtr`` starts from the checkpoint's ITM "matched" row (ViLT);
    * NLVR2: the second-image token type (row 2) starts as a copy of the image row (1)
      when the checkpoint never trained it (no NLVR2 in its ``loss_names``), as ViLT does.
    Returns a description of each initialisation made.
    """
    done = []
    source_losses = (source_config or {}).get("loss_names", {}) or {}
    heads = module.heads
    if "irtr" in heads and "heads.irtr.fc.weight" not in state and "heads.itm.fc.weight" in state:
        heads["irtr"].init_from_itm(state["heads.itm.fc.weight"], state["heads.itm.fc.bias"])
        done.append("heads.irtr <- heads.itm matched row")
    names = ("token_type_embeddings", "cross_modal_token_type_embeddings")  # one-tower / two-tower
    token_types = next((getattr(module.backbone, n) for n in names if hasattr(module.backbone, n)), None)
    if "nlvr2" in heads and token_types is not None and token_types.weight.shape[0] > 2 \
            and not source_losses.get("nlvr2", 0):
        token_types.weight[2].copy_(token_types.weight[1])
        done.append("token_type_embeddings row 2 <- row 1 (second NLVR2 image)")
    return done


# ---------------------------------------------------------------- epoch-end evaluation


def _precision_context(module):
    trainer = getattr(module, "_trainer", None)
    plugin = getattr(trainer, "precision_plugin", None) if trainer is not None else None
    return plugin.forward_context if plugin is not None and hasattr(plugin, "forward_context") else nullcontext


def recall_evaluation(module, stage: str) -> Dict[str, float]:
    """Recall@1/5/10 (TR and IR) and their sum on the ``stage`` split of each configured caption dataset.

    One dataset: plain keys (``ir_r1`` ...). Several: ``<name>_ir_r1`` ... plus the
    plain keys holding their mean. A collective under DDP (every rank must call it).
    """
    from vlt.evaluation.retrieval import ModelScorer, build_retrieval_data, evaluate_retrieval

    config = module.config
    split = "val" if stage == "val" else config["test_split"]
    cache = module.__dict__.setdefault("_retrieval_data", {})
    batch = config["eval_batch_size"] or config["per_gpu_batchsize"]
    pair_batch = batch * (1 + max(config["draw_false_text"], 0))  # as many joint passes as a training step
    scorer = ModelScorer.from_module(module)
    results: Dict[str, Dict[str, float]] = {}
    for name in config["datasets"]:
        if (name, split) not in cache:
            cache[(name, split)] = build_retrieval_data(name, split, config)
        data = cache[(name, split)]
        out = evaluate_retrieval(scorer, data, k_test=config["k_test"], batch_size=batch, pair_batch_size=pair_batch,
                                 device=module.device, num_workers=config["num_workers"],
                                 context=_precision_context(module))
        logger.info("%s %s retrieval (k_test=%d): %s", name, split, config["k_test"],
                    ", ".join(f"{k}={v:.4g}" for k, v in out.items()))
        results[name] = {k: v for k, v in out.items() if k.startswith(("ir_", "tr_", "irtr_"))}
    if len(results) == 1:
        return next(iter(results.values()))
    merged = {f"{name}_{k}": v for name, res in results.items() for k, v in res.items()}
    for key in next(iter(results.values())):
        merged[key] = sum(res[key] for res in results.values()) / len(results)
    return merged


def submission_path(module, split: str) -> Path:
    """``<run dir>/vqa_submission_<split>.json`` (the logger's version directory when there is one)."""
    trainer = module.trainer
    run_dir = trainer.logger.log_dir if trainer.logger is not None and trainer.logger.log_dir else \
        trainer.default_root_dir
    return Path(run_dir) / f"vqa_submission_{split}.json"


def write_vqa_submission(module) -> Optional[Path]:
    """Gather the test predictions of all ranks and write ``vqa_submission_<test_split>.json`` (rank 0).

    A collective under DDP. Returns the path (None when nothing was predicted).
    """
    submission: VQASubmission = module.vqa_submission
    split = module.config["test_split"]
    labels = load_answer_labels(module.config["data_root"])
    path = submission_path(module, split)
    entries = submission.write(path, labels, device=module.device, is_global_zero=module.trainer.is_global_zero)
    submission.reset()
    if not entries:
        return None
    if module.trainer.is_global_zero:
        logger.info("VQA submission for %s: %d questions -> %s", split, len(entries), path)
    return path
