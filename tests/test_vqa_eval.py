"""VQA evaluation: score metric against hand values, the loss scaling, the submission file."""
import json

import pytest
import torch
import torch.nn.functional as F

from vlt.evaluation.vqa import VQAScore, VQASubmission, load_answer_labels, vqa_scores
from vlt.objectives.vqa import vqa_loss

# 3 questions, 4 answers; soft scores as the writer stores them (0.3 / 0.6 / 0.9 / 1.0).
TARGETS = torch.tensor([[1.0, 0.3, 0.0, 0.0],
                        [0.0, 0.6, 0.9, 0.0],
                        [0.0, 0.0, 0.0, 0.0]])
LOGITS = torch.tensor([[2.0, 1.0, 0.0, 0.0],    # argmax 0 -> 1.0
                       [0.0, 3.0, 1.0, 0.0],    # argmax 1 -> 0.6 (not the best answer, 0.9)
                       [0.0, 0.0, 0.0, 5.0]])   # argmax 3 -> 0.0


def test_vqa_scores_are_the_soft_score_of_the_argmax():
    assert vqa_scores(LOGITS, TARGETS).tolist() == pytest.approx([1.0, 0.6, 0.0])


def test_vqa_score_metric_accumulates_over_batches():
    metric = VQAScore()
    metric.update(LOGITS[:2], TARGETS[:2])
    metric.update(LOGITS[2:], TARGETS[2:])
    assert metric.compute().item() == pytest.approx((1.0 + 0.6 + 0.0) / 3)


def test_vqa_loss_is_bce_summed_over_answers_and_averaged_over_questions():
    per_question = F.binary_cross_entropy_with_logits(LOGITS, TARGETS, reduction="none").sum(dim=1)
    torch.testing.assert_close(vqa_loss(LOGITS, TARGETS), per_question.mean())


def test_submission_has_one_answer_per_question_sorted(tmp_path):
    labels = ["yes", "no", "2", "red"]
    sub = VQASubmission()
    sub.update(torch.tensor([30, 10]), LOGITS[:2])
    sub.update(torch.tensor([20, 10]), LOGITS[[2, 1]])  # 10 again: the padded last DDP shard repeats samples
    path = tmp_path / "run" / "vqa_submission_test.json"
    entries = sub.write(path, labels)
    written = json.loads(path.read_text())
    assert written == entries
    assert [e["question_id"] for e in written] == [10, 20, 30]
    assert {e["question_id"]: e["answer"] for e in written} == {30: "yes", 10: "no", 20: "red"}
    assert all(isinstance(e["question_id"], int) and isinstance(e["answer"], str) for e in written)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_submission_rejects_labels_outside_the_label_file(tmp_path):
    sub = VQASubmission()
    sub.update(torch.tensor([1]), LOGITS[2:])  # predicts label 3
    with pytest.raises(ValueError, match="vqav2_label_size"):
        sub.write(tmp_path / "x.json", ["yes", "no"])


def test_label_file_missing_or_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match="write_vqa.py"):
        load_answer_labels(tmp_path)
    (tmp_path / "vqav2_labels.json").write_text(json.dumps({"yes": 0}))
    with pytest.raises(ValueError, match="list of answer strings"):
        load_answer_labels(tmp_path)
    (tmp_path / "vqav2_labels.json").write_text(json.dumps(["yes", "no"]))
    assert load_answer_labels(tmp_path) == ["yes", "no"]
