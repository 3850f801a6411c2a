"""Collator (tokenising, MLM masking, stacking, corrupt samples) and tokenizer loading."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from vlt.data.collate import Collator
from vlt.data.tokenizer import TokenizerUnavailableError, load_tokenizer, minilm_dir

L = 24
WORDS = "a man rides a red bike down the busy street next to two dogs and a small child".split()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(minilm_dir()))


def caption_item(i: int, text: str | None = None, size: int = 8) -> dict:
    return {
        "sample_seed": 1000 + i,
        "image_index": i,
        "text_index": i,
        "image": torch.full((3, size, size), float(i)),
        "text": text if text is not None else " ".join(WORDS[i % 5 :] + WORDS[: i % 5]),
        "false_image_0": torch.zeros(3, size, size),
        "false_text_0": "another caption",
    }


# ---------------------------------------------------------------- tokenizer


def test_minilm_tokenizer_is_fast_bert_uncased(tokenizer):
    assert tokenizer.is_fast and len(tokenizer) == 30522
    assert tokenizer.tokenize("Photosynthesis") == ["photos", "##yn", "##thesis"]
    assert load_tokenizer(str(minilm_dir())) is tokenizer  # cached


def test_unavailable_tokenizer_error_says_how_to_fix(tmp_path):
    for name in (str(tmp_path / "no_such_dir"), "no-such-org/no-such-tokenizer"):
        with pytest.raises(TokenizerUnavailableError, match="tokenizer=") as info:
            load_tokenizer(name)
        assert "offline" in str(info.value) and "minilm_dir" in str(info.value)


# ---------------------------------------------------------------- batch layout


def test_batch_keys_and_shapes(tokenizer):
    batch = Collator(tokenizer, max_text_len=L)([caption_item(i) for i in range(4)])
    assert batch["n_corrupt"] == 0
    assert batch["image"].shape == batch["false_image_0"].shape == (4, 3, 8, 8)
    for key in ("text_ids", "text_masks", "text_ids_mlm", "text_labels_mlm", "false_text_0_ids", "false_text_0_masks"):
        assert batch[key].shape == (4, L) and batch[key].dtype == torch.long, key
    assert batch["image_index"].tolist() == [0, 1, 2, 3] and batch["text_index"].dtype == torch.long
    assert batch["text"][1] == caption_item(1)["text"]
    assert "sample_seed" not in batch and "false_text_0" not in batch
    assert batch["text_ids"][0, 0] == tokenizer.cls_token_id
    n_tokens = len(tokenizer(batch["text"][0])["input_ids"])
    assert batch["text_masks"][0].sum() == n_tokens and batch["text_ids"][0, n_tokens - 1] == tokenizer.sep_token_id


def test_long_text_is_truncated_with_sep(tokenizer):
    batch = Collator(tokenizer, max_text_len=8)([caption_item(0, " ".join(WORDS * 3))])
    assert batch["text_ids"].shape == (1, 8) and batch["text_masks"].all()
    assert batch["text_ids"][0, -1] == tokenizer.sep_token_id


def test_vqa_and_nlvr2_fields(tokenizer):
    vqa = [{"image": torch.zeros(3, 4, 4), "text": "what?", "vqa_targets": torch.rand(5), "question_id": 7 + i,
            "vqa_answers": ["yes"] * i, "sample_seed": i} for i in range(3)]
    batch = Collator(tokenizer, max_text_len=L, mlm=False)(vqa)
    assert batch["vqa_targets"].shape == (3, 5) and batch["question_id"].tolist() == [7, 8, 9]
    assert batch["vqa_answers"] == [[], ["yes"], ["yes", "yes"]]
    assert "text_ids_mlm" not in batch
    nlvr2 = [{"image_0": torch.zeros(3, 4, 4), "image_1": torch.ones(3, 4, 4), "text": "two dogs", "nlvr2_label": i % 2,
              "identifier": f"dev-{i}", "table_name": "nlvr2_dev", "sample_seed": i} for i in range(2)]
    batch = Collator(tokenizer, max_text_len=L)(nlvr2)
    assert batch["nlvr2_labels"].tolist() == [0, 1] and batch["image_1"].shape == (2, 3, 4, 4)
    assert batch["identifier"] == ["dev-0", "dev-1"] and batch["table_name"] == ["nlvr2_dev"] * 2


def test_none_items_dropped_and_counted(tokenizer):
    collator = Collator(tokenizer, max_text_len=L)
    batch = collator([caption_item(0), None, caption_item(2), None])
    assert batch["n_corrupt"] == 2 and batch["image"].shape[0] == 2
    assert batch["image_index"].tolist() == [0, 2]
    assert collator([None, None]) == {"n_corrupt": 2}


def test_items_of_different_kinds_rejected(tokenizer):
    vqa_like = {**caption_item(1), "vqa_targets": torch.zeros(3)}
    with pytest.raises(ValueError, match="different keys"):
        Collator(tokenizer, max_text_len=L)([caption_item(0), vqa_like])


# ---------------------------------------------------------------- masking


def masking_counts(batch, tokenizer):
    ids, mlm, labels, masks = batch["text_ids"], batch["text_ids_mlm"], batch["text_labels_mlm"], batch["text_masks"]
    special = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (masks == 0)
    target = labels != -100
    return ids, mlm, labels, special, target


def test_mlm_statistics(tokenizer):
    items = [caption_item(i) for i in range(3000)]
    batch = Collator(tokenizer, max_text_len=L, mlm_prob=0.15)(items)
    ids, mlm, labels, special, target = masking_counts(batch, tokenizer)
    assert not (target & special).any()  # [CLS]/[SEP]/[PAD] never targets
    assert torch.equal(mlm[~target], ids[~target])  # non-targets untouched
    assert torch.equal(labels[target], ids[target])  # labels are the original tokens
    rate = target.sum() / (~special).sum()
    assert 0.14 < rate < 0.16
    n = target.sum()
    as_mask = (mlm[target] == tokenizer.mask_token_id).sum() / n
    unchanged = (mlm[target] == ids[target]).sum() / n
    assert 0.77 < as_mask < 0.83 and 0.08 < unchanged < 0.12 and 0.08 < 1 - as_mask - unchanged < 0.12


def test_whole_word_masking_masks_all_pieces(tokenizer):
    text = "the electroencephalography of a photosynthesis unbelievably fast"
    pieces = tokenizer(text)["input_ids"][1:-1]
    word_of = []  # word number of each word piece
    for w, word in enumerate(text.split()):
        word_of += [w] * len(tokenizer.tokenize(word))
    assert len(word_of) == len(pieces) and len(word_of) > len(text.split()) + 5
    items = [caption_item(i, text) for i in range(2000)]
    batch = Collator(tokenizer, max_text_len=L, whole_word_masking=True)(items)
    target = batch["text_labels_mlm"][:, 1 : 1 + len(pieces)] != -100
    word_of = torch.tensor(word_of)
    for w in range(len(text.split())):
        in_word = target[:, word_of == w]
        assert (in_word.all(dim=1) | ~in_word.any(dim=1)).all(), f"word {w} partially masked"
    word_rate = target[:, torch.unique_consecutive(word_of, return_counts=True)[1].cumsum(0) - 1].float().mean()
    assert 0.13 < word_rate < 0.17
    mlm, ids = batch["text_ids_mlm"], batch["text_ids"]
    all_target = batch["text_labels_mlm"] != -100
    as_mask = (mlm[all_target] == tokenizer.mask_token_id).float().mean()
    assert 0.76 < as_mask < 0.84  # ViLT-style 80/10/10 on the chosen pieces
    assert (mlm[all_target] == ids[all_target]).float().mean() < 0.15


def test_masking_reproducible_from_sample_seeds(tokenizer):
    collator = Collator(tokenizer, max_text_len=L)
    items = [caption_item(i) for i in range(64)]
    a, b = collator(items), Collator(tokenizer, max_text_len=L)(items)
    assert torch.equal(a["text_ids_mlm"], b["text_ids_mlm"])
    reseeded = [{**item, "sample_seed": item["sample_seed"] + 1} for item in items]
    assert not torch.equal(a["text_labels_mlm"], collator(reseeded)["text_labels_mlm"])


def test_global_rng_untouched_by_masking(tokenizer):
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    Collator(tokenizer, max_text_len=L)([caption_item(i) for i in range(8)])
    assert torch.equal(torch.rand(2), expected)
