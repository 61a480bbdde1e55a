"""RAG: the LangChain retriever over Reinforced_IR_Model + a faiss index, and the rag_demo CLI citing documents."""
import json

import numpy as np

from conftest import TINY_CORPUS, run_module


def test_langchain_retriever_returns_documents_in_score_order(minilm):
    from langchain_core.retrievers import BaseRetriever

    from inference import Reinforced_IR_Model
    from inference.rag import CorpusIndex, ReinforcedIRRetriever

    corpus = {d["_id"]: {"title": d["title"], "text": d["text"]} for d in TINY_CORPUS}
    model = Reinforced_IR_Model("sentence-transformers/all-MiniLM-L6-v2", retriever=minilm)
    retriever = ReinforcedIRRetriever(model=model, index=CorpusIndex.build(model, corpus), k=2)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("which organ makes insulin")
    assert [d.metadata["id"] for d in docs][0] == "d3" and len(docs) == 2
    assert docs[0].metadata["score"] >= docs[1].metadata["score"] and "pancreas" in docs[0].page_content
    # the same hits as searching the embeddings directly
    exact = model.search(["which organ makes insulin"], corpus, top_k=2)[0]
    assert [d for d, _ in exact] == [d.metadata["id"] for d in docs]
    np.testing.assert_allclose([s for _, s in exact], [d.metadata["score"] for d in docs], atol=1e-5)


def test_hybrid_search_in_the_model_and_the_langchain_retriever(minilm):
    """BM25 weight 1 gives BM25's order, 0.5 a fusion of both, through both public entry points alike."""
    from inference import Reinforced_IR_Model
    from inference.rag import CorpusIndex, ReinforcedIRRetriever
    from inference.sparse import BM25Index

    corpus = {d["_id"]: {"title": d["title"], "text": d["text"]} for d in TINY_CORPUS}
    model = Reinforced_IR_Model("sentence-transformers/all-MiniLM-L6-v2", retriever=minilm)
    query = "carbon dioxide sugars glucose"      # lexically d6 / d1 / d3; the dense model reads it otherwise
    _, bm25_ids = BM25Index.build(list(corpus.values())).search([query], 3)
    lexical = [list(corpus)[i] for i in bm25_ids[0] if i >= 0]
    assert [d for d, _ in model.search([query], corpus, top_k=3, bm25_weight=1.0)[0]] == lexical[:3]
    hybrid = [d for d, _ in model.search([query], corpus, top_k=3, bm25_weight=0.5)[0]]
    index = CorpusIndex.build(model, corpus, bm25_weight=0.5)
    docs = ReinforcedIRRetriever(model=model, index=index, k=3).invoke(query)
    assert [d.metadata["id"] for d in docs] == hybrid


def test_rag_demo_answers_and_cites(tiny_beir, tmp_path):
    out = tmp_path / "answer.json"
    proc = run_module("scripts.rag_demo", "--dataset", str(tiny_beir), "--question",
                      "Which hormone lowers blood sugar?", "--k", "2", "--max_new_tokens", "32",
                      "--embedding_cache", "none", "--output", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["documents"][0]["id"] == "d3" and result["answer"]
    assert "[1] d3" in proc.stdout and "Answer:" in proc.stdout
