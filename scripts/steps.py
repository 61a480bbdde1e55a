"""The steps of a round, declared once: the driver's plan and option check and the report's sizes come from here.

Each step names its entry point (``python -m <module>``), the dataclasses its options fill, its folder under
``round_k`` (the queries of round 1 serve every round), the steps whose outputs it reads, and what it is: a data
stage (a ``StageRun`` manifest with item counts, generation environment), a trainer (the training environment:
LLaMA-Factory, torchrun) or the round's evaluation.
"""
from __future__ import annotations

import dataclasses
import importlib
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from inference.config import EmbeddingCacheArguments


@dataclass
class RoundArguments(EmbeddingCacheArguments):
    """What the self-boost driver and a round's evaluation share, declared once: the dataset, its prompt task and
    evaluated split, and the base models round 1 starts from (and the evaluation compares against)."""
    dataset: str = field(default="", metadata={"help": "dataset folder (BEIR, AIR-Bench or corpus.json)"})
    task: str = field(default="scifact", metadata={"help": "prompt task (configs/prompts)"})
    split: str = field(default="test", metadata={"help": "the split whose qrels evaluate each round"})
    base_retriever: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={
        "help": "the retriever round 1 starts from"})
    base_generator: str = field(default="HuggingFaceTB/SmolLM2-135M-Instruct", metadata={
        "help": "the generator round 1 starts from"})
    generator_backend: str = field(default="hf", metadata={"help": "hf | openai | vllm"})


@dataclass(frozen=True)
class Step:
    name: str
    module: str
    argument_classes: tuple[str, ...]    # "module:Class", imported only when option names are needed
    folder: str                          # under round_k
    upstream: tuple[str, ...] = ()
    kind: str = "stage"                  # stage | training | evaluation
    first_round_only: bool = False       # the pseudo-queries are written once and reused by every round
    samples_queries: bool = False        # the report shows a sample of its kept and dropped pseudo-queries

    @property
    def training(self) -> bool:
        return self.kind == "training"

    def classes(self) -> tuple[type, ...]:
        return tuple(getattr(importlib.import_module(spec.split(":")[0]), spec.split(":")[1])
                     for spec in self.argument_classes)

    def option_names(self) -> set[str]:
        return {f.name for cls in self.classes() for f in dataclasses.fields(cls)}

    def directory(self, run_dir: Path, k: int) -> Path:
        return Path(run_dir) / ("round_1" if self.first_round_only else f"round_{k}") / self.folder


STEPS = (
    Step("queries", "data_generation.generate_queries",
         ("data_generation.generate_queries:GenerateQueriesArguments",), "synthetic/queries",
         first_round_only=True, samples_queries=True),
    Step("generator_data", "data_generation.generate_generator_data",
         ("data_generation.generate_generator_data:GeneratorDataArguments",), "synthetic/generator_data",
         upstream=("queries",)),
    Step("train_generator", "finetune.generator.train", ("finetune.generator.train:GeneratorTrainArguments",),
         "generator", upstream=("generator_data",), kind="training"),
    Step("retriever_data", "data_generation.generate_retriever_data",
         ("data_generation.generate_retriever_data:RetrieverDataArguments",), "synthetic/retriever_data",
         upstream=("queries", "train_generator"), samples_queries=True),
    Step("distill", "data_generation.generate_retriever_distill_data",
         ("data_generation.generate_retriever_distill_data:DistillDataArguments",), "synthetic/distill",
         upstream=("retriever_data", "train_generator")),
    Step("train_retriever", "finetune.retriever.train",
         ("finetune.retriever.arguments:RetrieverModelArguments",
          "finetune.retriever.arguments:RetrieverTrainDataArguments",
          "finetune.retriever.arguments:RetrieverTrainingArguments", "finetune.cli:RunArguments"),
         "retriever", upstream=("retriever_data", "distill"), kind="training"),  # distill's rows when distilling
    Step("evaluate", "scripts.evaluate_round", ("scripts.evaluate_round:RoundEvaluationArguments",), "eval",
         upstream=("train_generator", "train_retriever"), kind="evaluation"),
)
STEP_NAMES = tuple(s.name for s in STEPS)
BY_NAME = {s.name: s for s in STEPS}


def torchrun_command(nproc: int, module: str, argv: list[str]) -> list[str]:
    """``torchrun`` of this interpreter's environment on a port free now: a fixed or pid-derived port collides
    with another torchrun on the same machine (two runs, or a test suite running in parallel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", str(nproc),
            "--master_port", str(port), "-m", module, *argv]
