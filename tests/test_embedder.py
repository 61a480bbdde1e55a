"""Pooling modes, the bundled-model resolver, and the Embedder against sentence-transformers."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.embedder import Embedder, document_text, pool, pooling_from_config
from inference.errors import UserError
from inference.resolver import bundled_minilm_path, resolve_model_path

HIDDEN = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                       [[7.0, 8.0], [9.0, 10.0], [0.0, 0.0]]])


def test_cls_pooling_takes_first_token():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert pool(HIDDEN, mask, "cls").tolist() == [[1.0, 2.0], [7.0, 8.0]]


def test_mean_pooling_ignores_padding():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert pool(HIDDEN, mask, "mean").tolist() == [[3.0, 4.0], [8.0, 9.0]]


def test_last_pooling_right_and_left_padding():
    right = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert pool(HIDDEN, right, "last").tolist() == [[5.0, 6.0], [9.0, 10.0]]
    left = torch.tensor([[1, 1, 1], [0, 1, 1]])  # left padded: every row's last column is real
    assert pool(HIDDEN, left, "last").tolist() == [[5.0, 6.0], [0.0, 0.0]]


def test_resolver_maps_bundled_names_and_passes_others_through(tmp_path):
    minilm = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert Path(minilm) == bundled_minilm_path() and (Path(minilm) / "model.safetensors").is_file()
    assert resolve_model_path("BAAI/bge-large-en-v1.5") == "BAAI/bge-large-en-v1.5"
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)


def test_resolver_converts_smollm2_to_a_loadable_folder(smollm2):
    folder = Path(resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|im_end|>" and tok.eos_token_id == 2
    assert tok.chat_template


def test_embedder_reads_sentence_transformers_settings(minilm):
    assert minilm.pooling_method == "mean" and minilm.normalize is True and minilm.max_length == 256


def test_embedder_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    docs = [{"title": "Insulin", "text": "Insulin lowers blood glucose."}, "A short text.",
            {"title": "", "text": "No title here, only text " * 40}]
    ours = minilm.encode_corpus(docs, batch_size=2)
    st = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    ref = st.encode([document_text(d) for d in docs], convert_to_numpy=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert ours.dtype == np.float32 and ours.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_folder_saved_by_this_sentence_transformers_keeps_its_pooling(tmp_path, monkeypatch):
    """sentence-transformers 6 saves ``pooling_mode: "mean"`` instead of ``pooling_mode_mean_tokens: true``; a
    folder a user saved with ``model.save(path)`` used to load here with CLS pooling (other vectors, ~4 nDCG
    points lower on SciFact), silently. An unknown mode stops with the file named, unless the caller names one."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    # save() imports DeepSpeed, which sets this variable in our environment; restored after the test
    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    st.save(str(tmp_path / "saved"))
    pooling_config = tmp_path / "saved" / "1_Pooling" / "config.json"
    assert json.loads(pooling_config.read_text())["pooling_mode"] == "mean"  # the new format is what we test
    ours = Embedder(str(tmp_path / "saved"), show_progress=False)
    texts = ["Insulin lowers blood glucose.", "A short text."]
    assert ours.pooling_method == "mean"
    np.testing.assert_allclose(ours.encode(texts), st.encode(texts, convert_to_numpy=True), atol=1e-5)

    pooling_config.write_text(json.dumps({"embedding_dimension": 384, "pooling_mode": "max"}))
    with pytest.raises(UserError) as err:
        Embedder(str(tmp_path / "saved"), show_progress=False)
    assert "1_Pooling/config.json" in str(err.value) and "pooling_mode" in str(err.value)
    assert Embedder(str(tmp_path / "saved"), pooling_method="mean", show_progress=False).pooling_method == "mean"


@pytest.mark.parametrize("cfg, expected", [
    ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "mean"),  # sentence-transformers ≤ 5
    ({"pooling_mode_lasttoken": True}, "last"),
    ({"pooling_mode": "cls"}, "cls"),  # sentence-transformers 6
    ({"pooling_mode": ["lasttoken"]}, "last"),
    ({"pooling_mode_max_tokens": True}, None),
    ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, None),  # mean concatenated with max
    ({"pooling_mode": ["mean", "cls"]}, None),
])
def test_pooling_config_either_format(cfg, expected, tmp_path):
    if expected is not None:
        assert pooling_from_config(cfg, tmp_path / "config.json") == expected
    else:
        with pytest.raises(UserError, match="not supported"):
            pooling_from_config(cfg, tmp_path / "config.json")


def test_length_sorting_does_not_change_results(minilm):
    texts = ["a", "b " * 100, "c c c", "d " * 30]
    one_by_one = np.vstack([minilm.encode([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(minilm.encode(texts, batch_size=3), one_by_one, atol=1e-5)


def test_instructions_and_overrides():
    e = Embedder("sentence-transformers/all-MiniLM-L6-v2", pooling_method="cls", normalize=False,
                 query_instruction="query: ", max_length=16, show_progress=False)
    assert (e.pooling_method, e.normalize, e.max_length) == ("cls", False, 16)
    with_instr = e.encode_queries(["insulin"])
    np.testing.assert_allclose(with_instr, e.encode(["query: insulin"]), atol=1e-6)
    assert not np.allclose(with_instr, e.encode(["insulin"]))
    assert e.encode([]).shape == (0, 384)


def test_missing_model_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as err:
        Embedder(str(tmp_path / "no-such-model"), show_progress=False)
    assert "no-such-model" in str(err.value)


def test_bad_pooling_is_a_user_error():
    with pytest.raises(UserError):
        Embedder("sentence-transformers/all-MiniLM-L6-v2", pooling_method="max")


def test_retraining_into_the_same_folder_never_serves_stale_cached_vectors(minilm, tmp_path):
    """The embedding cache is keyed by the weights' content fingerprint, not the folder path (a round's
    retriever retrained into the same folder used to get the old vectors)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from conftest import TINY_CORPUS
    from evaluation.search import encode_corpus_cached

    folder = tmp_path / "retriever"
    shutil.copytree(minilm.path, folder)
    cache = tmp_path / "cache"
    before = encode_corpus_cached(Embedder(str(folder), show_progress=False), TINY_CORPUS, cache)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if "word_embeddings" in k)
    tensors[name] = tensors[name] * 1.5 + 0.01          # "retrained": other weights, same path
    save_file(tensors, weights, metadata={"format": "pt"})
    after = encode_corpus_cached(Embedder(str(folder), show_progress=False), TINY_CORPUS, cache)
    assert len(list(cache.glob("*.npy"))) == 2
    assert not np.allclose(before, after, atol=1e-4)
    fresh = Embedder(str(folder), show_progress=False).encode_corpus(TINY_CORPUS)
    np.testing.assert_allclose(after, fresh, atol=1e-5)
