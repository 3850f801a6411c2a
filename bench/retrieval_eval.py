"""Retrieval evaluation cost: exhaustive joint scoring vs ``k_test`` re-ranking, same model, same data.

Data: the demo shapes-and-captions val split (``--images`` images x 5 captions;
200 x 1000 by default), written into a temporary directory.
Model: a tiny one-tower ViT (hidden 64, 2 layers, 64 px images, patch 16),
random by default. ``--train_steps N`` first finetunes it on the demo train
split with IRTR (rank head over 1 true + 3 false captions) plus the unimodal
contrastive term (``irtr_itc_weight=1``) that trains the cheap first stage (on
2 CPU cores 300 steps take minutes and leave the joint head near chance).

For each mode the table gives: joint passes, first-stage and re-rank wall time,
speed-up over exhaustive, recall@1/5/10 (TR, IR), and "winners held": the share
of queries whose exhaustive top-min(k, 10) items are all among the k re-scored
candidates (TR / IR). k_test recall equals exhaustive recall when the candidates hold the
exhaustive winners (see tests/test_retrieval.py).

A briefly trained (or random) joint model and its own first stage rarely agree, so
the "fitted" rows also show the condition under which k_test must match exhaustive
recall: a contrastive head is fitted, on frozen unimodal features, to the
exhaustive joint scores of this very set (``--fit_steps``; a construct for the
benchmark, not a training recipe), and the k_test runs are repeated with it.

    python bench/retrieval_eval.py [--k_test 5 10 12 20] [--train_steps 0] [--fit_steps 3000] [--images 200]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from vlt.checkpoints import load_vlt_checkpoint  # noqa: E402
from vlt.config import DEMO_TOKENIZER, _loss_names, default_config  # noqa: E402
from vlt.data.demo import write_demo_arrows  # noqa: E402
from vlt.evaluation.retrieval import ModelScorer, build_retrieval_data, recall_at_k, score_matrices  # noqa: E402
from vlt.models.heads import ContrastiveHead  # noqa: E402
from vlt.module import VLTModule  # noqa: E402
from vlt.objectives.irtr import unimodal_features  # noqa: E402


def bench_config(data_root: str, log_dir: str, train_steps: int) -> dict:
    cfg = default_config()
    cfg.update(
        exp_name="bench_irtr", datasets=["demo"], data_root=data_root, log_dir=log_dir, tokenizer=DEMO_TOKENIZER,
        max_text_len=16, image_size=64, patch_size=16, encoder_manual_configuration=True, hidden_size=64,
        num_heads=4, num_layers=2, mlp_ratio=4, embedding_size=64, drop_rate=0.0,
        train_transform_keys=["pixelbert"], val_transform_keys=["pixelbert"],
        loss_names=_loss_names({"irtr": 1}), irtr_itc_weight=1.0, draw_false_text=3, draw_false_image=0,
        is_pretrain=False, use_mae=False, per_gpu_batchsize=32, batch_size=32, eval_batch_size=64,
        learning_rate=1e-3, lr_sched="linear_warmup_cosine_lr", warmup_steps=0.1, max_steps=max(train_steps, 1),
        max_epoch=100, num_gpus=0, num_workers=0, limit_val_batches=0, progress_bar=False, log_every_n_steps=50,
        seed=0,
    )
    return cfg


def train(cfg: dict) -> VLTModule:
    from vlt.train import run

    result = run(cfg)
    module = VLTModule(cfg)
    load_vlt_checkpoint(module, result["last_checkpoint"])
    return module


def winners_held(exhaustive: torch.Tensor, cheap: torch.Tensor, k: int) -> tuple[float, float]:
    """Share of image queries (TR) / text queries (IR) whose exhaustive top-m (m = min(k, 10)) items
    are all among the first-stage top-k (then recall@1..m equals the exhaustive one)."""
    m = min(k, 10)

    def held(dim: int) -> float:
        best = exhaustive.topk(m, dim=dim).indices
        picked = torch.zeros_like(cheap, dtype=torch.bool).scatter_(dim, cheap.topk(k, dim=dim).indices, True)
        return picked.gather(dim, best).all(dim=dim).float().mean().item()

    return held(1), held(0)


@torch.no_grad()
def _unimodal(module: VLTModule, data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([data.images[i]["image"] for i in range(data.n_images)])
    image_feats = torch.cat([unimodal_features(module.backbone, image=x) for x in images.split(batch_size)])
    text_feats = torch.cat([unimodal_features(module.backbone, ids, masks) for ids, masks in
                            zip(data.text_ids.split(batch_size), data.text_masks.split(batch_size))])
    return image_feats, text_feats


def fit_first_stage(module: VLTModule, data, joint: torch.Tensor, steps: int, batch_size: int) -> ContrastiveHead:
    """A contrastive head whose similarities rank like ``joint`` (I, T) on this set (listwise KL, both directions)."""
    image_feats, text_feats = _unimodal(module, data, batch_size)
    head = ContrastiveHead(image_feats.shape[1], 64)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    z = (joint - joint.mean()) / joint.std().clamp_min(1e-6)
    target_tr, target_ir = (z / 0.1).softmax(dim=1), (z / 0.1).softmax(dim=0)
    for _ in range(steps):
        sim = head.scale() * head.embed_image(image_feats) @ head.embed_text(text_feats).t()
        loss = -(target_tr * sim.log_softmax(dim=1)).sum(dim=1).mean() \
            - (target_ir * sim.log_softmax(dim=0)).sum(dim=0).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return head.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k_test", type=int, nargs="+", default=[5, 10, 12, 20])
    parser.add_argument("--train_steps", type=int, default=0)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--train_images", type=int, default=2000)
    parser.add_argument("--fit_steps", type=int, default=3000, help="0: skip the fitted-first-stage rows")
    parser.add_argument("--pair_batch_size", type=int, default=512)
    args = parser.parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        write_demo_arrows(tmp, num_train=max(args.train_images, 2), num_val=args.images, num_test=2)
        cfg = bench_config(tmp, str(Path(tmp) / "logs"), args.train_steps)
        start = time.perf_counter()
        if args.train_steps > 0:
            module = train(cfg)
            print(f"trained {args.train_steps} steps in {time.perf_counter() - start:.1f} s")
        else:
            torch.manual_seed(0)
            module = VLTModule(cfg)
            print("random (untrained) model")
        module.eval()
        data = build_retrieval_data("demo", "val", cfg)
        scorer = ModelScorer.from_module(module)
        common = dict(batch_size=cfg["eval_batch_size"], pair_batch_size=args.pair_batch_size,
                      num_workers=cfg["num_workers"])
        print(f"data: {data.n_images} images x {data.n_texts} texts; torch threads {torch.get_num_threads()}")

        rows = []
        full, _, info = score_matrices(scorer, data, k_test=0, **common)
        base_time = info["first_stage_s"] + info["rerank_s"]
        rows.append(("exhaustive", info, recall_at_k(full, data.text_to_image), None))
        for k in args.k_test:
            tr_scores, ir_scores, info = score_matrices(scorer, data, k_test=k, **common)
            held = winners_held(full, info["first_stage"], k)
            rows.append((f"k_test={k}", info, recall_at_k(tr_scores, data.text_to_image, scores_ir=ir_scores), held))
        if args.fit_steps > 0:
            head = fit_first_stage(module, data, full, args.fit_steps, cfg["eval_batch_size"])
            fitted = ModelScorer(module.backbone, scorer.rank_head, scorer.itm_head, head)
            for k in args.k_test:
                tr_scores, ir_scores, info = score_matrices(fitted, data, k_test=k, **common)
                held = winners_held(full, info["first_stage"], k)
                rows.append((f"k_test={k}, fitted", info,
                             recall_at_k(tr_scores, data.text_to_image, scores_ir=ir_scores), held))

    header = ("| mode | joint pairs | first stage s | re-rank s | total s | speed-up | TR r1/r5/r10 | "
              "IR r1/r5/r10 | winners held TR/IR |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, info, rec, held in rows:
        total = info["first_stage_s"] + info["rerank_s"]
        tr = "/".join(f"{100 * rec[f'tr_r{k}']:.1f}" for k in (1, 5, 10))
        ir = "/".join(f"{100 * rec[f'ir_r{k}']:.1f}" for k in (1, 5, 10))
        held_s = "-" if held is None else f"{100 * held[0]:.0f}% / {100 * held[1]:.0f}%"
        print(f"| {name} | {int(info['pairs_scored'])} | {info['first_stage_s']:.2f} | {info['rerank_s']:.2f} | "
              f"{total:.2f} | {base_time / total:.1f}x | {tr} | {ir} | {held_s} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
