"""Evaluation: dataset loaders, cached corpus encoding + faiss search, pytrec_eval metrics, baselines, CLI."""
from .data import LoadReport, RetrievalDataset, load_dataset
from .metrics import METRIC_ORDER, evaluate_run, per_query_metrics

__all__ = ["LoadReport", "METRIC_ORDER", "RetrievalDataset", "evaluate_run", "load_dataset", "per_query_metrics"]
