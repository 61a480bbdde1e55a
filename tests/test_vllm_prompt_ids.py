"""What the vLLM backend hands the engine: token ids tokenised once (needs the tokenizer only, not vLLM)."""
from inference.generators.vllm_backend import prompt_token_ids
from inference.resolver import resolve_model_path

from conftest import SMOLLM2

LLAMA3_STYLE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                "{{ m['content'] }}<|eot_id|>{% endfor %}"
                "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def llama3_style_tokenizer():
    """A tokenizer copy that behaves like Llama-3's: every encoding gets a BOS, and the template writes one too."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(SMOLLM2))
    bos = "<|endoftext|>"
    tok.bos_token = bos
    bos_id = tok.convert_tokens_to_ids(bos)
    tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                              special_tokens=[(bos, bos_id)])
    tok.chat_template = LLAMA3_STYLE
    return tok, bos_id


def test_a_template_that_writes_its_bos_reaches_the_engine_with_exactly_one():
    tok, bos_id = llama3_style_tokenizer()
    rendered = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], tokenize=False,
                                       add_generation_prompt=True)
    assert tok(rendered)["input_ids"].count(bos_id) == 2      # text re-tokenised with special tokens: the old path
    ids = prompt_token_ids(tok, "Name a colour.", "chat")
    assert ids.count(bos_id) == 1 and ids[0] == bos_id
    assert tok.decode(ids).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_plain_and_instruction_prompts_get_the_tokenizers_usual_special_tokens():
    tok, bos_id = llama3_style_tokenizer()
    for fmt in ("plain", "instruction"):
        ids = prompt_token_ids(tok, "Name a colour.", fmt)
        assert ids[0] == bos_id and ids.count(bos_id) == 1
    assert "###" in tok.decode(prompt_token_ids(tok, "Name a colour.", "instruction"))
