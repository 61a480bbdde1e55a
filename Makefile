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

.PHONY: venv test test-all demo demo-full rag-demo rerankers bench clean

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

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --durations=15 tests

# Also the minutes-long checks on the full SciFact corpus (the 0.6451 reference figure).
test-all: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m scripts.demo $(if $(DATA),--data $(DATA)) $(if $(TASK),--task $(TASK))

# The same round with no time budget and every method on the full test split.
demo-full: $(STAMP)
	$(PY) -m scripts.demo --run_config configs/cpu-demo/scifact_full.yaml $(if $(DATA),--data $(DATA)) $(if $(TASK),--task $(TASK))

# Retrieve-then-answer over SciFact with citations; the reranker table of the README.
rag-demo: $(STAMP)
	$(PY) -m scripts.rag_demo $(if $(DATA),--dataset $(DATA))

rerankers: $(STAMP)
	PYTHON=$(PY) bash scripts/reranker_table.sh

bench: $(STAMP)
	$(PY) benchmarks/encode.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/train_retriever.py

clean:
	rm -rf $(VENV) .pytest_cache
