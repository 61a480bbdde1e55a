#!/usr/bin/env bash
# The README's reranker table: bundled MiniLM first stage on SciFact, then each reranker on the same queries.
#   experiments/reranker_table.sh            (DATA=dir OUT=dir MAX_QUERIES=100 TOP_K=20 to change)
# 1. labelled rows from SciFact *train* qrels (negatives from the bi-encoder's top 30), 25% of the train queries
#    held out by query;
# 2. a cross-encoder trained from the bundled MiniLM on them (torchrun, 2 processes, 19 min);
# 3. the harness on all held-out train queries (cross-encoder vs bi-encoder) and on test (all rerankers).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
TORCHRUN=$(dirname "$PY")/torchrun
DATA=${DATA:-../shared/data/scifact}
OUT=${OUT:-runs/rerankers}
Q=${MAX_QUERIES:-100}
K=${TOP_K:-20}
set -x
"$PY" -m data_generation.rows_from_qrels --dataset "$DATA" --split train --output_dir "$OUT/rows" \
  --holdout_fraction 0.25 --num_negatives 15 --negative_ranks 0,30
OMP_NUM_THREADS=1 "$TORCHRUN" --nproc_per_node 2 -m finetune.rerank --config configs/cpu-demo/train_reranker.yaml \
  --train_data "$OUT/rows/train.jsonl" --output_dir "$OUT/cross-encoder"
"$PY" -m evaluation.evaluate --dataset "$DATA" --split train --query_ids_file "$OUT/rows/heldout_query_ids.txt" \
  --reranker "$OUT/cross-encoder" --rerank_top_k "$K" --output "$OUT/heldout_cross_encoder.json"
"$PY" -m evaluation.evaluate --dataset "$DATA" --split test --max_queries "$Q" \
  --reranker "$OUT/cross-encoder" --rerank_top_k "$K" --output "$OUT/test_cross_encoder.json"
"$PY" -m evaluation.evaluate --dataset "$DATA" --split test --max_queries "$Q" \
  --reranker sentence-transformers/all-MiniLM-L6-v2 --rerank_type colbert --rerank_top_k "$K" \
  --output "$OUT/test_colbert_zero_shot.json"
"$PY" -m evaluation.evaluate --dataset "$DATA" --split test --max_queries $((Q / 2)) \
  --reranker HuggingFaceTB/SmolLM2-135M-Instruct --rerank_type llm --rerank_top_k $((K / 2)) --rerank_batch_size 8 \
  --rerank_max_length 320 --output "$OUT/test_llm_zero_shot.json"
