"""hf backend throughput (new tokens/s): batch 1 vs batched, same prompts, one run.

    python benchmarks/generate.py [--prompts 32] [--batch_size 32] [--max_new_tokens 64]

Prompts are generator prompts P for SciFact claims (the stage B/D workload). Greedy decoding, so both
settings produce the same amount of text; the batched run goes first half the time (order alternates with
--repeats). Goal: batched ≥ 3× batch 1 on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.generators import load_generator  # noqa: E402
from inference.prompts import generator_prompt, get_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    task = get_task("scifact")
    claims = []
    with open(Path(args.data) / "queries.jsonl") as fh:
        for line in fh:
            claims.append(json.loads(line)["text"])
            if len(claims) == args.prompts:
                break
    prompts = [generator_prompt(c, task.task_instruction, task.answer_type) for c in claims]
    gen = load_generator("HuggingFaceTB/SmolLM2-135M-Instruct", backend="hf", show_progress=False)
    gen.generate(prompts[:2], max_new_tokens=8)  # warm-up
    rates = {}
    for r in range(args.repeats):
        order = [1, args.batch_size] if r % 2 == 0 else [args.batch_size, 1]
        for bs in order:
            gen.batch_size = bs
            tokens0, start = gen.stats.new_tokens, time.perf_counter()
            gen.generate(prompts, max_new_tokens=args.max_new_tokens)
            seconds = time.perf_counter() - start
            tok, sec = rates.get(bs, (0, 0.0))
            rates[bs] = (tok + gen.stats.new_tokens - tokens0, sec + seconds)
    print(f"{len(prompts)} SciFact generator prompts, greedy, max_new_tokens {args.max_new_tokens}, "
          f"SmolLM2-135M on CPU")
    for bs, (tok, sec) in sorted(rates.items()):
        print(f"  batch {bs:3d}: {tok / sec:6.1f} new tokens/s ({tok} tokens in {sec:.1f}s)")
    ratio = (rates[args.batch_size][0] / rates[args.batch_size][1]) / (rates[1][0] / rates[1][1])
    print(f"  ratio batched / batch 1: {ratio:.2f}  (goal >= 3.0)")


if __name__ == "__main__":
    main()
