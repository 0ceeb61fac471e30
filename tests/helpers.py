"""Tiny random models of every supported family and a byte tokenizer, for fast unit tests."""

from __future__ import annotations

import torch
import transformers

TINY = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4)


def tiny_config(family: str):
    """A tiny random config of one supported family (4 layers, hidden 32)."""
    t = transformers
    llama_like = dict(**TINY, num_key_value_heads=2, max_position_embeddings=128)
    if family == "llama":
        return t.LlamaConfig(**llama_like)
    if family == "mistral":
        return t.MistralConfig(**llama_like)
    if family == "qwen2":
        return t.Qwen2Config(**llama_like)
    if family == "qwen3":
        return t.Qwen3Config(**llama_like, head_dim=8)
    if family == "gemma":
        return t.GemmaConfig(**llama_like, head_dim=8)
    if family == "gemma2":
        return t.Gemma2Config(**llama_like, head_dim=8)
    if family == "gemma3_text":
        return t.Gemma3TextConfig(**llama_like, head_dim=8)
    if family == "opt":
        return t.OPTConfig(vocab_size=128, hidden_size=32, ffn_dim=64, num_hidden_layers=4, num_attention_heads=4,
                           word_embed_proj_dim=32, max_position_embeddings=128)
    if family == "gpt2":
        return t.GPT2Config(vocab_size=128, n_embd=32, n_layer=4, n_head=4, n_positions=128, bos_token_id=0,
                            eos_token_id=0)
    if family == "gpt_neox":
        return t.GPTNeoXConfig(**TINY, max_position_embeddings=128)
    raise ValueError(family)


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "opt", "gpt2", "gpt_neox"]


def tiny_model(family: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family))
    return model.eval()


class ByteTokenizer:
    """A minimal tokenizer for tiny models: one token per byte (mod vocab), right padding."""

    pad_token_id = 0
    padding_side = "right"

    def __init__(self, vocab_size: int = 128):
        self.vocab_size = vocab_size

    def __call__(self, texts, return_tensors="pt", padding=True, truncation=True, max_length=512, **_):
        ids = [[1 + (b % (self.vocab_size - 1)) for b in t.encode()][:max_length] for t in texts]
        width = max(len(i) for i in ids)
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def decode(self, ids):
        return "".join(chr(i) for i in ids)
