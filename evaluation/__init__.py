"""Evaluation: dataset loaders, cached corpus encoding + faiss search, pytrec_eval metrics, the retrieval evaluator,
baselines, CLI."""
from .data import LoadReport, RetrievalDataset, load_dataset
from .evaluator import RetrievalEvaluator, RetrievalResult
from .metrics import METRIC_ORDER, evaluate_run, per_query_metrics

__all__ = ["LoadReport", "METRIC_ORDER", "RetrievalDataset", "RetrievalEvaluator", "RetrievalResult", "evaluate_run",
           "load_dataset", "per_query_metrics"]
