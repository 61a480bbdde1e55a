"""Text helpers shared by the stages: token budgets, output clean-up, copy detection."""
from __future__ import annotations

import re

from inference.prompts import truncate_to_tokens  # noqa: F401  (the stages' budget helper lives with the prompts)

# "Generated claim:", "The scientific claim is:", "Here is the query:" ...
_LABEL = re.compile(r"^\s*(?:here\s+is\s+)?(?:the\s+|a\s+|an\s+)?(?:generated\s+)?(?:[a-z\-]+\s+){0,3}?"
                    r"(?:query|claim|question|title|answer|output)(?:\s+is)?\s*:\s*", re.IGNORECASE)
# "This abstract supports the claim that X" → "X"; "The claim is "X"" → "X".
_META_PREFIX = re.compile(
    r"^(?:this|the)\s+(?:\w+\s+)?(?:abstract|document|passage|study|paper|text|article)\s+(?:\w+\s+){0,2}?"
    r"(?:supports|suggests|shows|states|indicates|refutes|argues|provides\s+evidence\s+(?:supporting|for))"
    r"\s+(?:the\s+(?:claim|idea|hypothesis|notion|view)\s+)?(?:that\s+)?"
    r"|^(?:the\s+)?(?:findings|results)\s+(?:of\s+(?:this|the)\s+\w+\s+)?(?:suggest|show|indicate|demonstrate)s?\s+that\s+"
    r"|^(?:the\s+|a\s+)?(?:scientific\s+)?claim\s+is\s+(?:that\s+)?"
    r"|^a\s+(?:single\s+|one-)?sentence[^:\"]{0,40}:\s*",
    re.IGNORECASE)
_WORD = re.compile(r"\w+")


def clean_generated_query(text: str) -> str:
    """First non-empty line, without a leading label ("Generated claim:") or wrapping quotes."""
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            line = _LABEL.sub("", line, count=1).strip()
            clause = _META_PREFIX.sub("", line, count=1)
            if clause != line:  # a clause lifted out of "This abstract supports the claim that ...": capitalise
                clause = clause.strip().strip("\"'`*“”").strip()
                return clause[:1].upper() + clause[1:]
            return line.strip("\"'`*“”").strip()
    return ""


def normalize_for_dedup(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def copies_document(query: str, passage: str, n: int = 4, threshold: float = 0.9, min_words: int = 6) -> bool:
    """True when nearly all of the query's word n-grams appear verbatim in the passage (a copied sentence)."""
    q = _WORD.findall(query.lower())
    if len(q) < min_words:
        return False
    p = _WORD.findall(passage.lower())
    grams_p = {tuple(p[i:i + n]) for i in range(len(p) - n + 1)}
    grams_q = [tuple(q[i:i + n]) for i in range(len(q) - n + 1)]
    return bool(grams_q) and sum(g in grams_p for g in grams_q) / len(grams_q) >= threshold


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def is_repetitive(text: str, n: int = 3, max_repeats: int = 2) -> bool:
    """Degenerate loops ("the gene for the gene for ..."): some word n-gram occurs more than ``max_repeats`` times."""
    words = _WORD.findall(text.lower())
    counts: dict[tuple, int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] > max_repeats:
            return True
    return False


def mentions_source(text: str, passage_type: str) -> bool:
    """A query that talks about "the document" / "this abstract" instead of its content."""
    kinds = {"document", "passage", "abstract", "article", "text", *passage_type.lower().split()}
    return re.search(r"\b(?:the|this|that|given|provided)\s+(?:" + "|".join(map(re.escape, sorted(kinds))) + r")\b",
                     text, re.IGNORECASE) is not None
