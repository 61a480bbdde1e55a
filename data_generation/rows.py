"""Training rows: the one schema every producer writes and every trainer reads.

A retriever / reranker training row (one JSON object per line)::

    query       str                     the (pseudo-)query
    pos, neg    [str]                   positive and negative passages
    pos_ids     [doc id]                aligned with ``pos`` (absent in user files: optional)
    neg_ids     [doc id]                aligned with ``neg``
    pos_scores  [float]                 teacher scores aligned with ``pos`` / ``neg`` (knowledge distillation)
    neg_scores  [float]
    answer      str                     the generator's answer to ``query`` (augmented training, answer loss)

plus whatever the producer records for people (``id``, ``doc_id``, ``pos_rank``, ``neg_answer``, ``ranking``).
Producers: stage D (:mod:`generate_retriever_data`), stage E (:mod:`generate_retriever_distill_data`) and
:mod:`rows_from_qrels`. Readers: the retriever and reranker trainers, through :func:`read_training_row`, which
also accepts the Open-Retrievals pairwise format ``{query, positive, negative}`` (a string or a list each) and
rows written before ids were lists (``pos_id``: one id).
"""
from __future__ import annotations

from inference.embedder import document_text
from inference.errors import UserError


def training_row(query: str, pos: list[str], neg: list[str], *, pos_ids: list[str], neg_ids: list[str],
                 pos_scores: list[float] | None = None, neg_scores: list[float] | None = None, **extra) -> dict:
    """A row in the schema above; ids and scores must align with their passages."""
    aligned = {"pos_ids": (pos_ids, pos), "neg_ids": (neg_ids, neg), "pos_scores": (pos_scores, pos),
               "neg_scores": (neg_scores, neg)}
    for name, (values, passages) in aligned.items():
        if values is not None and len(values) != len(passages):
            raise ValueError(f"{name} has {len(values)} entries for {len(passages)} passages")
    row = {**extra, "query": query, "pos": list(pos), "neg": list(neg), "pos_ids": list(pos_ids),
           "neg_ids": list(neg_ids)}
    if pos_scores is not None and neg_scores is not None:
        row.update(pos_scores=list(pos_scores), neg_scores=list(neg_scores))
    return row


def candidate_ids(row: dict) -> list[str] | None:
    """The ids of ``pos[:1] + neg`` (the candidates stage E ranks), or None when the row carries no ids."""
    if "neg_ids" not in row:
        return None
    first = row.get("pos_ids") or ([row["pos_id"]] if "pos_id" in row else None)
    return None if not first else [first[0], *row["neg_ids"]]


def _as_list(value, path, lineno, field) -> list[str]:
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise UserError(f"expected a list of passages, got {type(value).__name__}", file=path, line=lineno,
                        field=field)
    out = []
    for v in value:
        if isinstance(v, dict):
            v = document_text(v)
        if not isinstance(v, str):
            raise UserError(f"expected passage strings, got {type(v).__name__}", file=path, line=lineno, field=field)
        out.append(v)
    return out


def read_training_row(row: dict, path, lineno: int, need_scores: bool) -> dict:
    """``{query, pos, neg, answer[, pos_scores, neg_scores]}`` from a row in either format, or one clear error."""
    if not isinstance(row.get("query"), str) or not row["query"].strip():
        raise UserError("missing or empty", file=path, line=lineno, field="query")
    pos_field = "pos" if "pos" in row else "positive"
    neg_field = "neg" if "neg" in row else "negative"
    if pos_field not in row:
        raise UserError("missing (pos or positive)", file=path, line=lineno, field="pos")
    pos = _as_list(row[pos_field], path, lineno, pos_field)
    neg = _as_list(row.get(neg_field, []), path, lineno, neg_field)
    if not pos:
        raise UserError("no positive passage", file=path, line=lineno, field=pos_field)
    out = {"query": row["query"], "pos": pos, "neg": neg, "answer": row.get("answer")}
    if need_scores:
        for name, n in (("pos_scores", len(pos)), ("neg_scores", len(neg))):
            scores = row.get(name)
            if not isinstance(scores, list) or len(scores) != n or not all(
                    isinstance(s, (int, float)) for s in scores):
                raise UserError(f"knowledge distillation needs {n} numeric scores (run "
                                "generate_retriever_distill_data, or set knowledge_distillation false)",
                                file=path, line=lineno, field=name)
        out["pos_scores"], out["neg_scores"] = row["pos_scores"], row["neg_scores"]
    return out
