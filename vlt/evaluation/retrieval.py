"""Image-text retrieval evaluation: recall@k over a split's images and captions.

* :func:`recall_at_k` is a pure function of a score matrix (images x texts) and
  the image index of each text: text retrieval (TR: an image queries the texts;
  a hit when any of its captions is in the top k) and image retrieval (IR: a
  caption queries the images; a hit when its image is in the top k). Ties count
  against the query (the gold item is ranked after every other item with an
  equal score), so constant or missing (-inf / NaN) scores never produce hits.
* :func:`evaluate_retrieval` scores the pairs with a model. ``k_test=0`` scores
  every pair with the full joint model (exhaustive: I x T joint passes). With
  ``k_test=k`` a cheap first stage (unimodal embeddings, cosine similarity)
  ranks all pairs, and only each image's top-k texts and each text's top-k
  images are re-scored by the joint model; every pair is scored at most once.
  In the final ranking, re-scored candidates come first (by joint score), the
  rest follow in first-stage order. ``k_test >= max(I, T)`` gives exactly the
  exhaustive scores.
* Under DDP each rank embeds a shard of images and texts and re-scores the pairs
  of its image shard; results are gathered, rank 0 computes the recall and
  broadcasts it. Without a process group everything runs in one process.
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from vlt.evaluation.distributed import all_gather_cat, world_and_rank

logger = logging.getLogger("vlt")

KS = (1, 5, 10)
_CHUNK = 1024


# ---------------------------------------------------------------- recall@k


def _ranks_after_ties(scores: torch.Tensor, gold: torch.Tensor, dim: int) -> torch.Tensor:
    """Per query: how many non-gold candidates score >= the best gold score (0 = the gold is first)."""
    scores = torch.nan_to_num(scores.float(), nan=float("-inf"))
    best = scores.masked_fill(~gold, float("-inf")).amax(dim=dim, keepdim=True)
    return ((scores >= best) & ~gold).sum(dim=dim)


def recall_at_k(scores: torch.Tensor, text_to_image: torch.Tensor, ks: Sequence[int] = KS,
                scores_ir: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Recall@k of text retrieval (``tr_r{k}``) and image retrieval (``ir_r{k}``), and their sum ``irtr_rsum``.

    ``scores``: (I, T), higher = better match, used for TR; ``scores_ir`` (I, T) for
    IR (default ``scores``: two-stage evaluation ranks the two directions over
    different candidates); ``text_to_image``: (T,) image index of each text.
    Images without captions are left out of TR. Values are fractions in [0, 1].
    """
    scores = torch.as_tensor(scores)
    scores_ir = scores if scores_ir is None else torch.as_tensor(scores_ir)
    text_to_image = torch.as_tensor(text_to_image, dtype=torch.long).cpu()
    n_img, n_txt = scores.shape
    if scores_ir.shape != scores.shape or text_to_image.shape != (n_txt,):
        raise ValueError(f"shapes do not match: scores {tuple(scores.shape)}, scores_ir {tuple(scores_ir.shape)}, "
                         f"text_to_image {tuple(text_to_image.shape)}")
    if n_txt and (int(text_to_image.min()) < 0 or int(text_to_image.max()) >= n_img):
        raise ValueError(f"text_to_image must index the {n_img} images")
    tr_hits, ir_hits = torch.zeros(len(ks)), torch.zeros(len(ks))
    tr_count = 0
    kt = torch.tensor(list(ks))
    for start in range(0, n_img, _CHUNK):
        stop = min(start + _CHUNK, n_img)
        gold = text_to_image[None, :] == torch.arange(start, stop)[:, None]
        has_caption = gold.any(dim=1)
        ranks = _ranks_after_ties(scores[start:stop].cpu(), gold, dim=1)[has_caption]
        tr_hits += (ranks[:, None] < kt[None, :]).sum(dim=0)
        tr_count += int(has_caption.sum())
    for start in range(0, n_txt, _CHUNK):
        stop = min(start + _CHUNK, n_txt)
        gold = torch.arange(n_img)[:, None] == text_to_image[None, start:stop]
        ranks = _ranks_after_ties(scores_ir[:, start:stop].cpu(), gold, dim=0)
        ir_hits += (ranks[:, None] < kt[None, :]).sum(dim=0)
    out = {}
    for j, k in enumerate(ks):
        out[f"tr_r{k}"] = float(tr_hits[j]) / max(tr_count, 1)
    for j, k in enumerate(ks):
        out[f"ir_r{k}"] = float(ir_hits[j]) / max(n_txt, 1)
    out["irtr_rsum"] = sum(out.values())
    return out


# ---------------------------------------------------------------- evaluation data


@dataclass
class RetrievalData:
    """A split's images (``images[i]`` -> item with ``image``), tokenised captions and their image index."""

    images: Dataset
    text_ids: torch.Tensor
    text_masks: torch.Tensor
    text_to_image: torch.Tensor
    name: str = ""

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_texts(self) -> int:
        return len(self.text_to_image)


def build_retrieval_data(name: str, split: str, config: dict) -> RetrievalData:
    """Images and captions of caption dataset ``name``'s ``split`` (val transforms, no false draws)."""
    from vlt.data.collate import Collator
    from vlt.data.datasets import build_dataset

    base = dict(config, draw_false_image=0, draw_false_text=0)
    images = build_dataset(name, split, {**base, "image_only": True})
    texts = build_dataset(name, split, {**base, "image_only": False})
    if images is None or texts is None or len(texts) == 0:
        raise FileNotFoundError(f"retrieval evaluation needs {name!r} {split} files with captions "
                                f"under data_root={config.get('data_root')!r}")
    # The data package keeps each caption's arrow row in `_sample_rows` and the image rows in `_image_rows`.
    image_rows = np.asarray(images._image_rows)
    caption_rows = np.asarray(texts._sample_rows)
    positions = np.searchsorted(image_rows, caption_rows)
    if (positions >= len(image_rows)).any() or (image_rows[np.minimum(positions, len(image_rows) - 1)]
                                                != caption_rows).any():
        raise RuntimeError(f"{name} {split}: captions refer to rows missing from the image list")
    collator = Collator(config["tokenizer"], max_text_len=config["max_text_len"], mlm=False)
    ids, masks = collator.tokenize([texts.read_text(i) for i in range(len(texts))])
    return RetrievalData(images, ids, masks, torch.as_tensor(positions, dtype=torch.long), name)


class _ImageShard(Dataset):
    """(position, image tensor or None) for the given image positions."""

    def __init__(self, images: Dataset, positions: Sequence[int]):
        self.images, self.positions = images, [int(p) for p in positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        item = self.images[self.positions[i]]
        return self.positions[i], (None if item is None else item["image"])


def _collate_images(items):
    kept = [(p, x) for p, x in items if x is not None]
    missing = [p for p, x in items if x is None]
    positions = torch.tensor([p for p, _ in kept], dtype=torch.long)
    images = torch.stack([x for _, x in kept]) if kept else None
    return positions, images, missing


def _image_batches(data: RetrievalData, positions: Sequence[int], batch_size: int,
                   num_workers: int) -> Iterator[Tuple[torch.Tensor, Optional[torch.Tensor], list]]:
    loader = DataLoader(_ImageShard(data.images, positions), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate_images)
    yield from loader


# ---------------------------------------------------------------- model scores


class ModelScorer:
    """Pair scores and unimodal embeddings from a vlt backbone.

    ``joint``: the rank head on the pooled feature of a joint pass, or, without a
    rank head, the ITM head's "matched" logit. ``embed_text`` / ``embed_image``:
    unimodal first-token features, projected by a contrastive head when given,
    L2-normalised (the cheap first stage).
    """

    def __init__(self, backbone: nn.Module, rank_head: Optional[nn.Module] = None,
                 itm_head: Optional[nn.Module] = None, itc_head: Optional[nn.Module] = None):
        if rank_head is None and itm_head is None:
            raise ValueError("retrieval scoring needs a rank head (loss_names.irtr > 0) or an ITM head")
        self.backbone, self.rank_head, self.itm_head, self.itc_head = backbone, rank_head, itm_head, itc_head

    @classmethod
    def from_module(cls, module: nn.Module) -> "ModelScorer":
        heads = module.heads
        get = lambda name: heads[name] if name in heads else None  # noqa: E731
        return cls(module.backbone, get("irtr"), get("itm"), get("irtr_itc"))

    def joint(self, text_ids: torch.Tensor, text_masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        cls_feats = self.backbone(text_ids, text_masks, images)["cls_feats"]
        if self.rank_head is not None:
            return self.rank_head(cls_feats).float()
        return self.itm_head(cls_feats)[:, 1].float()

    def embed_text(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        from vlt.objectives.irtr import unimodal_features

        feats = unimodal_features(self.backbone, text_ids, text_masks)
        return self.itc_head.embed_text(feats) if self.itc_head is not None else F.normalize(feats, dim=-1)

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        from vlt.objectives.irtr import unimodal_features

        feats = unimodal_features(self.backbone, image=images)
        return self.itc_head.embed_image(feats) if self.itc_head is not None else F.normalize(feats, dim=-1)


# ---------------------------------------------------------------- two-stage evaluation


def _scatter_rows(n: int, index: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    out = rows.new_zeros((n, rows.shape[1]))
    out[index] = rows
    return out


def _first_stage(scorer, data: RetrievalData, my_images, batch_size: int, num_workers: int, device,
                 context) -> Tuple[torch.Tensor, torch.Tensor, list]:
    """Normalised embeddings of all images (I, D) and texts (T, D), gathered over ranks; missing image positions."""
    world, rank = world_and_rank()
    idx, embs, missing = [], [], []
    for positions, images, gone in _image_batches(data, my_images, batch_size, num_workers):
        missing += gone
        if images is not None:
            with context():
                embs.append(scorer.embed_image(images.to(device)).float())
            idx.append(positions.to(device))
    my_texts = torch.arange(rank, data.n_texts, world)
    t_idx, t_embs = [], []
    for chunk in my_texts.split(batch_size):
        with context():
            t_embs.append(scorer.embed_text(data.text_ids[chunk].to(device), data.text_masks[chunk].to(device)).float())
        t_idx.append(chunk.to(device))
    dim = (embs or t_embs)[0].shape[1]
    cat = lambda xs, shape: torch.cat(xs) if xs else torch.zeros(shape, device=device)  # noqa: E731
    image_emb = _scatter_rows(data.n_images, all_gather_cat(cat(idx, (0,)).long()),
                              all_gather_cat(cat(embs, (0, dim))))
    text_emb = _scatter_rows(data.n_texts, all_gather_cat(cat(t_idx, (0,)).long()),
                             all_gather_cat(cat(t_embs, (0, dim))))
    missing = all_gather_cat(torch.tensor(missing, dtype=torch.long, device=device)).tolist()
    return image_emb, text_emb, missing


def _cheap_scores(image_emb: torch.Tensor, text_emb: torch.Tensor, missing: list) -> torch.Tensor:
    """(I, T) first-stage similarities on the CPU; unreadable images at -inf."""
    rows = [(image_emb[s:s + _CHUNK] @ text_emb.t()).cpu() for s in range(0, len(image_emb), _CHUNK)]
    cheap = torch.cat(rows) if rows else torch.zeros(0, len(text_emb))
    if missing:
        cheap[missing] = float("-inf")
    return cheap


def _candidates(cheap: torch.Tensor, k_test: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Boolean (I, T) masks: each image's top-k texts (TR) and each text's top-k images (IR)."""
    n_img, n_txt = cheap.shape
    tr = torch.zeros_like(cheap, dtype=torch.bool)
    ir = torch.zeros_like(cheap, dtype=torch.bool)
    tr.scatter_(1, cheap.topk(min(k_test, n_txt), dim=1).indices, True)
    ir.scatter_(0, cheap.topk(min(k_test, n_img), dim=0).indices, True)
    return tr, ir


def _score_pairs(scorer, data: RetrievalData, my_images, candidates: Callable[[int], torch.Tensor],
                 batch_size: int, pair_batch_size: int, num_workers: int, device, context):
    """Joint scores of (image, candidate texts) for this rank's images: (image idx, text idx, score), missing."""
    text_ids, text_masks = data.text_ids.to(device), data.text_masks.to(device)
    out_i, out_t, out_s, missing = [], [], [], []
    for positions, images, gone in _image_batches(data, my_images, batch_size, num_workers):
        missing += gone
        if images is None:
            continue
        images = images.to(device)
        per_image = [candidates(int(p)) for p in positions]
        local = torch.cat([torch.full((len(c),), j, dtype=torch.long) for j, c in enumerate(per_image)])
        texts = torch.cat(per_image)
        for sl in torch.arange(len(texts)).split(pair_batch_size):
            li, ti = local[sl].to(device), texts[sl].to(device)
            with context():
                out_s.append(scorer.joint(text_ids[ti], text_masks[ti], images[li]).float())
            out_i.append(positions[local[sl]].to(device))
            out_t.append(ti)
    cat = lambda xs, dtype: torch.cat(xs) if xs else torch.zeros(0, dtype=dtype, device=device)  # noqa: E731
    return cat(out_i, torch.long), cat(out_t, torch.long), cat(out_s, torch.float32), missing


def _below(cheap: torch.Tensor, full: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Re-scored entries where ``mask``, the rest in first-stage order below the lowest re-scored one (per query)."""
    finite_cheap = cheap.masked_fill(~torch.isfinite(cheap), 0.0)
    top = finite_cheap.amax(dim=dim, keepdim=True)
    low = torch.nan_to_num(full, nan=float("inf")).masked_fill(~mask, float("inf")).amin(dim=dim, keepdim=True)
    low = torch.where(torch.isfinite(low), low, torch.zeros_like(low))
    return torch.where(mask, full, cheap - top + low - 1.0)


@torch.no_grad()
def score_matrices(scorer, data: RetrievalData, k_test: int = 0, batch_size: int = 32, pair_batch_size: int = 256,
                   device="cpu", num_workers: int = 0, context: Callable = nullcontext):
    """Final (I, T) score matrices for text retrieval and image retrieval; a collective under DDP.

    Returns ``(tr_scores, ir_scores, info)``; the matrices exist on rank 0 only (None
    elsewhere). ``info``: ``pairs_scored`` (joint passes over all ranks),
    ``first_stage_s``, ``rerank_s`` (wall time on this rank) and, with ``k_test > 0``
    on rank 0, ``first_stage`` (the (I, T) cheap similarities).
    """
    world, rank = world_and_rank()
    my_images = list(range(rank, data.n_images, world))
    start = time.perf_counter()
    cheap = tr_mask = ir_mask = None
    missing: list = []
    if k_test > 0:
        image_emb, text_emb, missing = _first_stage(scorer, data, my_images, batch_size, num_workers, device, context)
        cheap = _cheap_scores(image_emb, text_emb, missing)
        tr_mask, ir_mask = _candidates(cheap, k_test)
        union = tr_mask | ir_mask
        candidates = lambda i: union[i].nonzero().squeeze(1)  # noqa: E731
    else:
        every = torch.arange(data.n_texts)
        candidates = lambda i: every  # noqa: E731
    first = time.perf_counter()
    img, txt, score, gone = _score_pairs(scorer, data, my_images, candidates, batch_size, pair_batch_size,
                                         num_workers, device, context)
    img, txt, score = all_gather_cat(img).cpu(), all_gather_cat(txt).cpu(), all_gather_cat(score).cpu()
    if k_test == 0:
        missing = all_gather_cat(torch.tensor(gone, dtype=torch.long, device=device)).tolist()
    if missing and rank == 0:
        logger.warning("%s: %d unreadable image(s) count as misses in retrieval", data.name, len(set(missing)))
    info = {"pairs_scored": float(len(score)), "first_stage_s": first - start,
            "rerank_s": time.perf_counter() - first}
    if rank != 0:
        return None, None, info
    full = torch.full((data.n_images, data.n_texts), float("nan"))
    full[img, txt] = score
    if k_test == 0:
        return full, full, info
    info["first_stage"] = cheap
    return _below(cheap, full, tr_mask, dim=1), _below(cheap, full, ir_mask, dim=0), info


def evaluate_retrieval(scorer, data: RetrievalData, k_test: int = 0, batch_size: int = 32,
                       pair_batch_size: int = 256, device="cpu", num_workers: int = 0,
                       ks: Sequence[int] = KS, context: Callable = nullcontext) -> Dict[str, float]:
    """Recall@k of ``scorer`` on ``data`` (see the module docstring); a collective under DDP.

    Returns the recall values (the same on every rank) plus ``pairs_scored``,
    ``first_stage_s``, ``rerank_s`` and ``eval_s`` (wall time on this rank).
    ``context`` wraps model calls (e.g. the trainer's autocast).
    """
    world, rank = world_and_rank()
    start = time.perf_counter()
    tr_scores, ir_scores, info = score_matrices(scorer, data, k_test, batch_size, pair_batch_size, device,
                                                num_workers, context)
    names = [f"tr_r{k}" for k in ks] + [f"ir_r{k}" for k in ks] + ["irtr_rsum"]
    result = torch.zeros(len(names), dtype=torch.float64)
    if rank == 0:
        metrics = recall_at_k(tr_scores, data.text_to_image, ks, scores_ir=ir_scores)
        result = torch.tensor([metrics[n] for n in names], dtype=torch.float64)
    if world > 1:
        result = result.to(device)
        dist.broadcast(result, src=0)
    out = dict(zip(names, result.cpu().tolist()))
    out.update({k: v for k, v in info.items() if k != "first_stage"}, eval_s=time.perf_counter() - start)
    return out
