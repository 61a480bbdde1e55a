"""experiments.transfer_check: an adapted retriever and its base through plain sentence-transformers on other corpora."""
import json

import pytest

from conftest import MINILM, write_beir
from inference.errors import UserError
from experiments.transfer_check import main, passes


def test_transfer_check_scores_both_models_as_the_evaluator_does(tmp_path, minilm):
    from evaluation.evaluator import RetrievalEvaluator
    from inference.resolver import resolve_model_path

    data = write_beir(tmp_path / "tiny")
    out = tmp_path / "check"
    argv = ["--round_retriever", resolve_model_path(MINILM), "--datasets", str(data), "--output_dir", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    corpus = results["corpora"]["tiny/test"]
    ours = RetrievalEvaluator.from_dataset(data, "test")(minilm)  # our Embedder, the evaluate CLI's scoring
    assert corpus["base"]["ndcg@10"] == pytest.approx(ours.metrics["ndcg@10"], abs=1e-6)
    assert corpus["adapted"] == corpus["base"] and corpus["comparison"]["delta"] == 0 and corpus["passes"]
    assert "| tiny/test | 3 |" in (out / "results.md").read_text()


def test_a_loss_beyond_the_limit_fails_the_check():
    assert passes(-0.005, 0.5) and passes(0.01, 0.5) and not passes(-0.0051, 0.5) and not passes(-0.02, 1.0)


def test_a_missing_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="not a model folder"):
        main(["--round_retriever", str(tmp_path / "nope"), "--datasets", str(tmp_path),
              "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UserError, match="not a model folder"):  # the old name --model is an alias
        main(["--model", str(tmp_path / "nope"), "--datasets", str(tmp_path), "--output_dir", str(tmp_path / "o")])
