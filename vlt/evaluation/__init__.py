"""Evaluation of downstream tasks: VQA score and submission file, retrieval recall@k (exhaustive or k_test)."""
from vlt.evaluation.retrieval import (KS, ModelScorer, RetrievalData, build_retrieval_data, evaluate_retrieval,
                                      recall_at_k, score_matrices)
from vlt.evaluation.vqa import VQAScore, VQASubmission, load_answer_labels, vqa_scores

__all__ = ["KS", "ModelScorer", "RetrievalData", "VQAScore", "VQASubmission", "build_retrieval_data",
           "evaluate_retrieval", "load_answer_labels", "recall_at_k", "score_matrices", "vqa_scores"]
