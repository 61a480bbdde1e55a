"""Load retrieval datasets from disk, validating every row.

Formats, detected from the folder's files:

- **BEIR**: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
  ``qrels/<split>.tsv`` (``query-id  corpus-id  score`` with a header line).
- **AIR-Bench / FlagEmbedding local**: ``corpus.jsonl`` (``id``, optional ``title``, ``text``),
  ``<split>_queries.jsonl`` (``id``, ``text``), ``<split>_qrels.jsonl`` (``qid``, ``docid``, ``relevance``)
  or ``<split>_qrels.tsv``.
- **Reference** (Reinforced-IR ``data/<ds>/corpus.json``): a JSON array of strings; ids are list positions.
  It has no queries or qrels, so it serves the data-generation stages only.

Malformed lines, missing fields, an empty corpus or a missing split raise :class:`UserError` naming file,
line and field. Qrels naming unknown query or document ids are counted in ``LoadReport`` and dropped, not
fatal. Duplicate ids are an error (which of two documents would a qrel mean?).
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from inference.errors import UserError
from inference.io import iter_jsonl, require_str

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    qrels_rows: int = 0
    unknown_query_ids: int = 0
    unknown_doc_ids: int = 0
    queries_without_qrels: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RetrievalDataset:
    name: str
    path: str
    format: str
    corpus: dict[str, dict]                     # id → {"title": str, "text": str}
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    split: str | None = None
    report: LoadReport = field(default_factory=LoadReport)
    corpus_file: str = ""

    @property
    def doc_ids(self) -> list[str]:
        return list(self.corpus.keys())

    def evaluated_query_ids(self) -> list[str]:
        """Queries with at least one judgement (BEIR evaluates only those)."""
        return [q for q in self.queries if q in self.qrels]


def detect_format(path: Path) -> str:
    if (path / "corpus.jsonl").is_file():
        if (path / "queries.jsonl").is_file() or (path / "qrels").is_dir():
            return "beir"
        if any(path.glob("*_queries.jsonl")):
            return "air-bench"
        return "beir"
    if (path / "corpus.json").is_file():
        return "reference"
    raise UserError("not a dataset folder: expected corpus.jsonl (BEIR / AIR-Bench) or corpus.json (reference)",
                    file=path)


def load_corpus_jsonl(path: Path) -> dict[str, dict]:
    corpus: dict[str, dict] = {}
    for lineno, row in iter_jsonl(path):
        doc_id = require_str(row, "_id", path, lineno, allow_empty=False, aliases=("id", "docid", "doc_id"))
        text = require_str(row, "text", path, lineno, aliases=("contents",))
        title = row.get("title") or ""
        if not isinstance(title, str):
            raise UserError(f"expected a string, got {type(title).__name__}", file=path, line=lineno, field="title")
        if doc_id in corpus:
            raise UserError(f"duplicate document id {doc_id!r}", file=path, line=lineno, field="_id")
        if not text.strip() and not title.strip():
            raise UserError("document has neither title nor text", file=path, line=lineno, field="text")
        corpus[doc_id] = {"title": title, "text": text}
    if not corpus:
        raise UserError("corpus is empty", file=path)
    return corpus


def load_corpus_json_list(path: Path) -> dict[str, dict]:
    """The reference's ``corpus.json``: a JSON array of document strings (ids = positions)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"not valid UTF-8 (byte {exc.start})", file=path) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"malformed JSON ({exc.msg})", file=path, line=exc.lineno) from None
    if not isinstance(data, list):
        raise UserError("expected a JSON array of document strings", file=path)
    corpus = {}
    for i, doc in enumerate(data):
        if not isinstance(doc, str):
            raise UserError(f"item {i}: expected a string, got {type(doc).__name__}", file=path)
        corpus[str(i)] = {"title": "", "text": doc}
    if not corpus:
        raise UserError("corpus is empty", file=path)
    return corpus


def load_queries_jsonl(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for lineno, row in iter_jsonl(path):
        qid = require_str(row, "_id", path, lineno, allow_empty=False, aliases=("id", "qid", "query_id"))
        text = require_str(row, "text", path, lineno, allow_empty=False, aliases=("query",))
        if qid in queries:
            raise UserError(f"duplicate query id {qid!r}", file=path, line=lineno, field="_id")
        queries[qid] = text
    return queries


def _relevance(value: str, path: Path, lineno: int, field_name: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise UserError(f"expected an integer relevance, got {value!r}", file=path, line=lineno,
                        field=field_name) from None


def load_qrels_tsv(path: Path) -> list[tuple[str, str, int, int]]:
    """Rows ``(qid, docid, relevance, line)``. The header line is optional; 3 or 4 (TREC) columns."""
    rows = []
    try:
        fh = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise UserError("file not found", file=path) from None
    with fh:
        try:
            for lineno, parts in enumerate(csv.reader(fh, delimiter="\t"), start=1):
                if not parts or not "".join(parts).strip():
                    continue
                if lineno == 1 and parts[0].strip().lower() in {"query-id", "qid", "query_id"}:
                    continue
                if len(parts) == 4:  # TREC: qid 0 docid rel
                    parts = [parts[0], parts[2], parts[3]]
                if len(parts) != 3:
                    raise UserError(f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(parts)}",
                                    file=path, line=lineno)
                qid, did, rel = (p.strip() for p in parts)
                if not qid:
                    raise UserError("is empty", file=path, line=lineno, field="query-id")
                if not did:
                    raise UserError("is empty", file=path, line=lineno, field="corpus-id")
                rows.append((qid, did, _relevance(rel, path, lineno, "score"), lineno))
        except UnicodeDecodeError as exc:
            raise UserError(f"not valid UTF-8 (byte {exc.start})", file=path) from None
    return rows


def load_qrels_jsonl(path: Path) -> list[tuple[str, str, int, int]]:
    rows = []
    for lineno, row in iter_jsonl(path):
        qid = require_str(row, "qid", path, lineno, allow_empty=False, aliases=("query-id", "query_id"))
        did = require_str(row, "docid", path, lineno, allow_empty=False, aliases=("corpus-id", "doc_id", "pid"))
        rel = row.get("relevance", row.get("score", 1))
        rows.append((qid, did, _relevance(rel, path, lineno, "relevance"), lineno))
    return rows


def build_qrels(rows: list[tuple[str, str, int, int]], queries: dict[str, str], corpus: dict[str, dict],
                report: LoadReport, path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for qid, did, rel, _ in rows:
        report.qrels_rows += 1
        if qid not in queries:
            report.unknown_query_ids += 1
            continue
        if did not in corpus:
            report.unknown_doc_ids += 1
            continue
        qrels.setdefault(qid, {})[did] = rel
    if report.unknown_query_ids or report.unknown_doc_ids:
        logger.warning("%s: %d qrels row(s) name unknown query ids and %d unknown document ids; they are skipped",
                       path, report.unknown_query_ids, report.unknown_doc_ids)
    if rows and not qrels:
        raise UserError("no qrels row names a known query and document", file=path)
    return qrels


def _split_files(path: Path, fmt: str, split: str) -> tuple[Path, Path]:
    if fmt == "beir":
        qrels = path / "qrels" / f"{split}.tsv"
        queries = path / "queries.jsonl"
        if not qrels.is_file():
            available = sorted(p.stem for p in (path / "qrels").glob("*.tsv")) if (path / "qrels").is_dir() else []
            raise UserError(f"split {split!r} not found (available: {', '.join(available) or 'none'})", file=qrels)
        return queries, qrels
    queries = path / f"{split}_queries.jsonl"
    qrels = path / f"{split}_qrels.jsonl"
    if not qrels.is_file():
        qrels = path / f"{split}_qrels.tsv"
    if not queries.is_file() or not qrels.is_file():
        available = sorted(p.name.split("_queries")[0] for p in path.glob("*_queries.jsonl"))
        raise UserError(f"split {split!r} not found (available: {', '.join(available) or 'none'})",
                        file=path / f"{split}_queries.jsonl")
    return queries, qrels


def load_dataset(path: str | Path, split: str | None = "test") -> RetrievalDataset:
    """Load a dataset folder; with ``split`` also its queries and qrels (queries limited to judged ones)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError("dataset folder not found", file=path)
    fmt = detect_format(path)
    if fmt == "reference":
        corpus = load_corpus_json_list(path / "corpus.json")
        return RetrievalDataset(name=path.name, path=str(path), format=fmt, corpus=corpus,
                                corpus_file=str(path / "corpus.json"))
    corpus = load_corpus_jsonl(path / "corpus.jsonl")
    ds = RetrievalDataset(name=path.name, path=str(path), format=fmt, corpus=corpus, split=split,
                          corpus_file=str(path / "corpus.jsonl"))
    if split is None:
        return ds
    queries_file, qrels_file = _split_files(path, fmt, split)
    all_queries = load_queries_jsonl(queries_file)
    rows = load_qrels_tsv(qrels_file) if qrels_file.suffix == ".tsv" else load_qrels_jsonl(qrels_file)
    ds.qrels = build_qrels(rows, all_queries, corpus, ds.report, qrels_file)
    ds.queries = {qid: all_queries[qid] for qid in all_queries if qid in ds.qrels}
    return ds
