"""The fusion formula, exact chunked search, and faiss −1 padding."""
import numpy as np
import pytest

from inference.fusion import fuse_embeddings
from inference.search import exact_search, results_to_run


def test_fusion_formula_is_0_8_query_plus_0_2_augmentation():
    q = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    a = np.array([[0.0, 1.0], [4.0, 0.0]], dtype=np.float32)
    fused = fuse_embeddings(q, a)
    np.testing.assert_allclose(fused, [[0.8, 0.2], [0.8, 1.6]], atol=1e-7)
    assert fused.dtype == np.float32
    # Not re-normalised (as in the reference): the scale carries through to the dot product.
    d = np.array([[1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(fused @ d.T, 0.8 * (q @ d.T) + 0.2 * (a @ d.T), atol=1e-6)


def test_fusion_averages_several_augmentations_and_checks_weight():
    q = np.zeros((1, 2), np.float32)
    a = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)  # two samples for one query
    np.testing.assert_allclose(fuse_embeddings(q, a, weight=0.5), [[0.25, 0.25]])
    with pytest.raises(ValueError):
        fuse_embeddings(q, a[:, 0], weight=1.5)


def test_chunked_search_equals_brute_force():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(1000, 16)).astype(np.float32)
    queries = rng.normal(size=(7, 16)).astype(np.float32)
    scores, ids = exact_search(queries, docs, top_k=25, chunk_size=128)
    brute = queries @ docs.T
    expected = np.argsort(-brute, axis=1)[:, :25]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, 1), rtol=1e-5, atol=1e-5)


def test_top_k_larger_than_corpus_never_returns_padding():
    docs = np.eye(3, dtype=np.float32)
    scores, ids = exact_search(np.ones((2, 3), np.float32), docs, top_k=10, chunk_size=2)
    assert ids.shape == (2, 3) and (ids >= 0).all()
    run = results_to_run(scores, ids, ["a", "b"], ["x", "y", "z"])
    assert set(run["a"]) == {"x", "y", "z"}
    # A −1 that does reach the conversion is dropped, never mapped to the last document.
    run = results_to_run(np.array([[1.0, 0.0]]), np.array([[0, -1]]), ["a"], ["x", "y", "z"])
    assert run == {"a": {"x": 1.0}}
