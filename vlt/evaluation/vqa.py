"""VQA evaluation: the VQA score metric and the official submission file.

VQA score of a question = the soft score (0.3/0.6/0.9/1.0 for 1/2/3/4+ of the
10 annotators; written by ``data_prep/write_vqa.py``) of the predicted answer,
0 when the prediction is not among the question's answers; averaged over questions.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

import torch
from torchmetrics import Metric

from vlt.evaluation.distributed import all_gather_cat

LABEL_FILE = "vqav2_labels.json"


def vqa_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft score of each question's argmax answer, (B,)."""
    return targets.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1).float()


class VQAScore(Metric):
    """Mean VQA score; sum/count states reduce correctly across DDP ranks."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("score", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.score += vqa_scores(logits, targets).sum().double()
        self.count += logits.shape[0]

    def compute(self) -> torch.Tensor:
        return (self.score / self.count.clamp_min(1)).float()


def load_answer_labels(data_root: str | os.PathLike) -> List[str]:
    """The answer vocabulary (index = label) written beside the arrows by ``data_prep/write_vqa.py``."""
    path = Path(data_root) / LABEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: it is written by data_prep/write_vqa.py together with "
                                "the vqav2_*.arrow files and maps answer labels to answer strings")
    with open(path) as fh:
        labels = json.load(fh)
    if not isinstance(labels, list) or not all(isinstance(a, str) for a in labels):
        raise ValueError(f"{path} should hold a JSON list of answer strings")
    return labels


class VQASubmission:
    """Collects (question_id, predicted label) per step; gathers across ranks and writes the JSON.

    The file is ``[{"question_id": int, "answer": str}, ...]``, one entry per
    question id (duplicates from the padded last DDP shard are dropped), sorted
    by question id, written atomically by rank 0.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._ids: List[torch.Tensor] = []
        self._preds: List[torch.Tensor] = []

    def update(self, question_ids: torch.Tensor, logits: torch.Tensor) -> None:
        self._ids.append(question_ids.detach().long().flatten())
        self._preds.append(logits.detach().argmax(dim=1).long())

    def gather(self, device=None) -> Dict[int, int]:
        """{question_id: label} over all ranks (every rank gets the full mapping)."""
        device = device or (self._ids[0].device if self._ids else "cpu")
        pairs = torch.stack([torch.cat(self._ids), torch.cat(self._preds)], dim=1) if self._ids \
            else torch.zeros(0, 2, dtype=torch.long, device=device)
        pairs = all_gather_cat(pairs.to(device)).cpu()
        return {int(q): int(p) for q, p in pairs.tolist()}

    @staticmethod
    def entries(predictions: Dict[int, int], labels: Sequence[str]) -> List[dict]:
        out = []
        for qid in sorted(predictions):
            label = predictions[qid]
            if not 0 <= label < len(labels):
                raise ValueError(f"predicted label {label} outside the {len(labels)} answers of {LABEL_FILE}; "
                                 "vqav2_label_size does not match the label file")
            out.append({"question_id": qid, "answer": labels[label]})
        return out

    def write(self, path: str | os.PathLike, labels: Sequence[str], device=None, is_global_zero: bool = True):
        """Gather (a collective: call on every rank) and write ``path`` on rank 0; returns the entries."""
        entries = self.entries(self.gather(device), labels)
        if is_global_zero:
            write_json_atomic(Path(path), entries)
        return entries


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
