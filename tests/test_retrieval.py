"""Retrieval recall@k (hand-computed matrices) and the two-stage k_test evaluation, single process and DDP."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from vlt.evaluation.retrieval import RetrievalData, evaluate_retrieval, recall_at_k

# 3 images with 2 captions each.
TEXT_TO_IMAGE = torch.tensor([0, 0, 1, 1, 2, 2])
SCORES = torch.tensor([
    [0.9, 0.1, 0.8, 0.2, 0.3, 0.4],  # image 0: its best caption (0.9) is first               -> TR rank 0
    [0.7, 0.6, 0.5, 0.1, 0.2, 0.3],  # image 1: two other captions score above its best (0.5) -> TR rank 2
    [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],  # image 2: four captions above its best (0.1)            -> TR rank 4
])
# IR ranks (column-wise, gold image of each caption): t0 0, t1 2, t2 1, t3 2, t4 2, t5 2.


def test_recall_at_k_matches_hand_computed_values():
    out = recall_at_k(SCORES, TEXT_TO_IMAGE, ks=(1, 2, 5))
    expected = {"tr_r1": 1 / 3, "tr_r2": 1 / 3, "tr_r5": 1.0, "ir_r1": 1 / 6, "ir_r2": 2 / 6, "ir_r5": 1.0}
    for key, value in expected.items():
        assert out[key] == pytest.approx(value), key
    assert out["irtr_rsum"] == pytest.approx(sum(expected.values()))
    default = recall_at_k(SCORES, TEXT_TO_IMAGE)
    assert set(default) == {"tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "irtr_rsum"}


def test_ties_and_missing_scores_count_against_the_query():
    flat = recall_at_k(torch.zeros(3, 6), TEXT_TO_IMAGE, ks=(1, 4, 5))
    # TR: 4 other captions tie with the gold, so the gold is 5th; IR: 2 other images tie, gold 3rd.
    assert (flat["tr_r1"], flat["tr_r4"], flat["tr_r5"]) == (0.0, 0.0, 1.0)
    assert (flat["ir_r1"], flat["ir_r4"], flat["ir_r5"]) == (0.0, 1.0, 1.0)
    missing = SCORES.clone()
    missing[0] = float("nan")  # image 0 was never scored
    out = recall_at_k(missing, TEXT_TO_IMAGE, ks=(1,))
    assert out["tr_r1"] == 0.0  # image 0's hit is gone
    assert out["ir_r1"] == pytest.approx(1 / 6)  # caption 0 misses; caption 2 now wins (NaN beats nothing)


def test_images_without_captions_are_left_out_of_text_retrieval():
    scores = torch.cat([SCORES, torch.zeros(1, 6)])  # a 4th image with no caption
    assert recall_at_k(scores, TEXT_TO_IMAGE, ks=(1,))["tr_r1"] == pytest.approx(1 / 3)


def test_recall_at_k_checks_shapes():
    with pytest.raises(ValueError, match="shapes"):
        recall_at_k(SCORES, TEXT_TO_IMAGE[:5])
    with pytest.raises(ValueError, match="index"):
        recall_at_k(SCORES, torch.tensor([0, 0, 1, 1, 2, 3]))


# ---------------------------------------------------------------- two-stage evaluation on a table "model"


class ToyImages(Dataset):
    """Image i is a 1x2x2 tensor filled with i; ``broken`` ones are unreadable (None)."""

    def __init__(self, n, broken=()):
        self.n, self.broken = n, set(broken)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return None if i in self.broken else {"image": torch.full((1, 2, 2), float(i))}


class TableScorer:
    """Joint score = table[image, text]; first-stage similarity = cheap[image, text] (via embeddings)."""

    def __init__(self, table, cheap):
        self.table, self.image_emb, self.text_emb = table, cheap, torch.eye(cheap.shape[1])

    def joint(self, text_ids, text_masks, images):
        return self.table[images[:, 0, 0, 0].long(), text_ids[:, 0]]

    def embed_text(self, text_ids, text_masks):
        return self.text_emb[text_ids[:, 0]]

    def embed_image(self, images):
        return self.image_emb[images[:, 0, 0, 0].long()]


N_IMG, PER_IMAGE = 12, 3
N_TXT = N_IMG * PER_IMAGE


def toy(cheap_noise=0.0, broken=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    text_to_image = torch.arange(N_IMG).repeat_interleave(PER_IMAGE)
    gold = torch.arange(N_IMG)[:, None] == text_to_image[None, :]
    table = torch.randn(N_IMG, N_TXT, generator=g) + 1.2 * gold
    cheap = table + cheap_noise * torch.randn(N_IMG, N_TXT, generator=g)
    data = RetrievalData(ToyImages(N_IMG, broken), torch.arange(N_TXT)[:, None], torch.ones(N_TXT, 1, dtype=torch.long),
                         text_to_image, "toy")
    return data, TableScorer(table, cheap), table


def _recall(out):
    return {k: v for k, v in out.items() if k.startswith(("tr_", "ir_", "irtr_"))}


def test_exhaustive_scores_every_pair_and_matches_recall_at_k():
    data, scorer, table = toy()
    out = evaluate_retrieval(scorer, data, k_test=0, batch_size=5, pair_batch_size=7)
    assert out["pairs_scored"] == N_IMG * N_TXT
    assert _recall(out) == pytest.approx(recall_at_k(table, data.text_to_image))


def test_k_test_covering_everything_equals_exhaustive():
    data, scorer, _ = toy(cheap_noise=3.0)  # a poor first stage does not matter when k covers all
    exhaustive = evaluate_retrieval(scorer, data, k_test=0, batch_size=5, pair_batch_size=7)
    everything = evaluate_retrieval(scorer, data, k_test=max(N_IMG, N_TXT), batch_size=5, pair_batch_size=7)
    assert _recall(everything) == _recall(exhaustive)
    assert everything["pairs_scored"] == N_IMG * N_TXT


def test_k_test_equals_exhaustive_when_the_first_stage_holds_the_winners():
    data, scorer, _ = toy(cheap_noise=0.0)  # first stage ranks exactly like the joint model
    exhaustive = evaluate_retrieval(scorer, data, k_test=0, batch_size=5, pair_batch_size=7)
    for k in (1, 3):
        fast = evaluate_retrieval(scorer, data, k_test=k, batch_size=5, pair_batch_size=7)
        assert _recall(fast) == pytest.approx(_recall(exhaustive)), k  # beyond top-k: first-stage order
        assert fast["pairs_scored"] <= k * (N_IMG + N_TXT) < N_IMG * N_TXT


def test_k_test_only_rescored_candidates_change_the_order():
    data, scorer, table = toy(cheap_noise=1.0)
    out = evaluate_retrieval(scorer, data, k_test=2, batch_size=5, pair_batch_size=7)
    cheap = scorer.image_emb
    tr_top = cheap.topk(2, dim=1).indices  # each image's 2 candidates, re-ranked by the table
    best = table.gather(1, tr_top).argmax(dim=1)
    first = tr_top[torch.arange(N_IMG), best]
    hand_tr_r1 = (data.text_to_image[first] == torch.arange(N_IMG)).float().mean().item()
    assert out["tr_r1"] == pytest.approx(hand_tr_r1)


def test_unreadable_images_count_as_misses():
    data, scorer, table = toy(broken=(3,))
    expected = table.clone()
    expected[3] = float("-inf")
    for k in (0, 4):
        out = evaluate_retrieval(scorer, data, k_test=k, batch_size=5, pair_batch_size=7)
        if k == 0:
            assert _recall(out) == pytest.approx(recall_at_k(expected, data.text_to_image))
        assert out["pairs_scored"] < N_IMG * N_TXT


def _ddp_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        data, scorer, _ = toy(cheap_noise=0.5, broken=(5,))
        results = {k: _recall(evaluate_retrieval(scorer, data, k_test=k, batch_size=4, pair_batch_size=16))
                   for k in (0, 2)}
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_shards_give_the_single_process_result(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    data, scorer, _ = toy(cheap_noise=0.5, broken=(5,))
    single = {k: _recall(evaluate_retrieval(scorer, data, k_test=k)) for k in (0, 2)}
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for k in (0, 2):
            assert got[k] == pytest.approx(single[k]), (rank, k)
