"""Typed arguments for ``python -m finetune.rerank`` (Open-Retrievals' names where it had them)."""
from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class RerankerModelArguments:
    reranker: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={
        "help": "a cross-encoder, or an encoder to start one from", "aliases": ("model_name_or_path",)})
    model_type: str = field(default="cross-encoder", metadata={"help": "cross-encoder | colbert | llm"})
    use_lora: bool = field(default=True, metadata={"help": "llm: train LoRA adapters (merged into the saved model)"})
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    task_instruction: str = field(default="", metadata={"help": "llm: line put before the yes/no question"})
    trust_remote_code: bool = False


@dataclass
class RerankerDataArguments:
    train_data: list[str] = field(default_factory=list, metadata={"help": "JSONL files or folders"})
    train_group_size: int = field(default=8, metadata={"help": "one positive + (group − 1) negatives per query"})
    max_length: int = field(default=256, metadata={"help": "tokens of query + passage (colbert: of the passage)"})
    query_max_len: int = field(default=64, metadata={"help": "colbert: query tokens"})


@dataclass
class RerankerTrainingArguments(TrainingArguments):
    knowledge_distillation: bool = field(default=False, metadata={
        "help": "add KL(teacher ‖ reranker) over each group, from rows with pos_scores/neg_scores (RLGF output, "
                "or rows_from_qrels' base-retriever scores)"})
    teacher_temperature: float = field(default=1.0, metadata={
        "help": "softmax temperature of the teacher scores (cosine scores want ~0.05, RLGF scores 1.0)"})
    output_dir: str = field(default="runs/reranker")
    dataloader_drop_last: bool = True
    remove_unused_columns: bool = False
    ddp_find_unused_parameters: bool = False
    save_safetensors: bool = True
