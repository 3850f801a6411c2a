"""Collate dataset items into the batch dict of docs/ARCHITECTURE.md: tokenise, MLM-mask, stack."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from vlt.data.tokenizer import load_tokenizer

_FALSE_TEXT = re.compile(r"false_text_\d+")
_RENAMED = {"nlvr2_label": "nlvr2_labels"}
_CONSUMED = {"sample_seed"}
MASK_REPLACE_PROB = 0.8
RANDOM_REPLACE_PROB = 0.1


class Collator:
    """Callable turning a list of dataset items (``None`` = unreadable image) into a batch.

    Texts are padded/truncated to ``max_text_len``. With ``mlm`` the batch also
    gets ``text_ids_mlm`` / ``text_labels_mlm`` from transformers'
    ``DataCollatorForLanguageModeling``: ``mlm_prob`` of the maskable tokens
    ([CLS]/[SEP]/[PAD] never are) become targets, 80% of them [MASK], 10% a
    random token, 10% unchanged; labels are -100 elsewhere. With
    ``whole_word_masking`` the targets are whole words (all word pieces of a
    space-delimited word, chosen through the fast tokenizer's offsets), then
    replaced 80/10/10 per token as in ViLT (transformers itself would use
    [MASK] only). Masks are drawn from a generator seeded by the items'
    ``sample_seed`` values, so a batch is masked identically on every run.
    """

    def __init__(
        self,
        tokenizer: Any,
        max_text_len: int = 40,
        mlm_prob: float = 0.15,
        whole_word_masking: bool = False,
        mlm: bool = True,
        seed: int = 0,
    ):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers tokenise; avoid fork warnings
        if isinstance(tokenizer, (str, Path)):
            tokenizer = load_tokenizer(str(tokenizer))
        self.tokenizer = tokenizer
        self.max_text_len = int(max_text_len)
        self.mlm_prob = float(mlm_prob)
        self.whole_word_masking = bool(whole_word_masking)
        self.mlm = bool(mlm)
        self.seed = int(seed)
        self._fallback_generator = torch.Generator().manual_seed(self.seed)
        self._masker = self._build_masker() if self.mlm else None

    def _build_masker(self):
        from transformers import DataCollatorForLanguageModeling

        if self.whole_word_masking and not self.tokenizer.is_fast:
            raise TypeError("whole_word_masking needs a fast tokenizer (offset mappings)")
        return DataCollatorForLanguageModeling(
            tokenizer=self.tokenizer,
            mlm=True,
            whole_word_mask=self.whole_word_masking,
            mlm_probability=self.mlm_prob,
            # whole-word targets are chosen by transformers with [MASK] only; 80/10/10 is applied after
            mask_replace_prob=1.0 if self.whole_word_masking else MASK_REPLACE_PROB,
            random_replace_prob=0.0 if self.whole_word_masking else RANDOM_REPLACE_PROB,
        )

    # ---- public

    def __call__(self, items: Sequence[dict | None]) -> dict:
        """Batch of the readable items; ``n_corrupt`` counts the dropped ``None`` items.

        A batch whose items were all unreadable is ``{"n_corrupt": n}`` only.
        """
        kept = [item for item in items if item is not None]
        batch: dict[str, Any] = {"n_corrupt": len(items) - len(kept)}
        if not kept:
            return batch
        keys = _common_keys(kept)
        for key in keys:
            if key in _CONSUMED:
                continue
            values = [item[key] for item in kept]
            if key == "text":
                batch.update(self.text_fields(values, _batch_seed(kept, self.seed)))
            elif _FALSE_TEXT.fullmatch(key):
                ids, masks = self.tokenize(values)
                batch[f"{key}_ids"], batch[f"{key}_masks"] = ids, masks
            else:
                batch[_RENAMED.get(key, key)] = _stack(values)
        return batch

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention masks), both (B, max_text_len) long."""
        enc = self._encode(texts, with_offsets=False)
        return enc["input_ids"], enc["attention_mask"]

    def text_fields(self, texts: Sequence[str], seed: int | None = None) -> dict:
        """``text``, ``text_ids``, ``text_masks`` and (with mlm) ``text_ids_mlm``, ``text_labels_mlm``."""
        enc = self._encode(texts, with_offsets=self.mlm and self.whole_word_masking)
        out = {"text": list(texts), "text_ids": enc["input_ids"], "text_masks": enc["attention_mask"]}
        if self.mlm:
            generator = self._generator(seed)
            out["text_ids_mlm"], out["text_labels_mlm"] = self.mask(enc, generator)
        return out

    def mask(self, enc: dict, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked ids, labels) for a tokenised batch with ``special_tokens_mask``."""
        self._masker.generator = generator  # transformers draws its Bernoulli masks from this
        ids, labels = self._masker.torch_mask_tokens(
            enc["input_ids"].clone(),
            special_tokens_mask=enc["special_tokens_mask"],
            offset_mapping=enc.get("offset_mapping"),
        )
        if self.whole_word_masking:
            ids = self._replace_targets(enc["input_ids"], labels != -100, generator)
        return ids, labels

    # ---- helpers

    def _encode(self, texts: Sequence[str], with_offsets: bool) -> dict:
        return self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_text_len,
            return_tensors="pt",
            return_special_tokens_mask=True,
            return_offsets_mapping=with_offsets,
        )

    def _generator(self, seed: int | None) -> torch.Generator:
        if seed is None:
            return self._fallback_generator
        return torch.Generator().manual_seed(seed)

    def _replace_targets(self, ids: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """80% [MASK], 10% random token, 10% unchanged at the ``targets`` positions."""
        ids = ids.clone()
        to_mask = torch.bernoulli(torch.full(ids.shape, MASK_REPLACE_PROB), generator=generator).bool() & targets
        ids[to_mask] = self.tokenizer.mask_token_id
        random_share = RANDOM_REPLACE_PROB / (1 - MASK_REPLACE_PROB)
        to_random = torch.bernoulli(torch.full(ids.shape, random_share), generator=generator).bool()
        to_random &= targets & ~to_mask
        random_ids = torch.randint(len(self.tokenizer), ids.shape, generator=generator)
        ids[to_random] = random_ids[to_random]
        return ids


def _common_keys(items: Sequence[dict]) -> list[str]:
    keys = list(items[0])
    for item in items[1:]:
        if item.keys() != items[0].keys():
            raise ValueError(
                f"items in one batch have different keys ({sorted(items[0])} vs {sorted(item)}); "
                "datasets sharing a loader must be of one kind (captions, vqa or nlvr2) with the same draws"
            )
    return keys


def _batch_seed(items: Sequence[dict], seed: int) -> int | None:
    """Seed mixing the items' ``sample_seed`` values (None if an item has none)."""
    seeds = [item.get("sample_seed") for item in items]
    if any(s is None for s in seeds):
        return None
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, *seeds]).generate_state(1, np.uint64)
    return int(state[0]) & (2**63 - 1)


def _stack(values: list) -> Any:
    """Tensors stacked, ints/bools as a long tensor, floats as a float tensor, anything else a list."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return default_collate(values)  # stacks straight into shared memory inside DataLoader workers
    if isinstance(first, (bool, int, np.integer)):
        return torch.as_tensor([int(v) for v in values], dtype=torch.long)
    if isinstance(first, (float, np.floating)):
        return torch.as_tensor(values, dtype=torch.float32)
    return list(values)
