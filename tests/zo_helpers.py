"""Tiny models, data and loss functions for the ZO-engine tests (also imported by the resume subprocess)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

TINY = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)


def tiny_llama(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> LlamaForCausalLM:
    """A randomly initialised 4-layer LLaMA (same weights for the same seed), in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**{**TINY, **overrides}))
    return model.to(dtype).eval()


def forbid_weight_loading(monkeypatch) -> None:
    """Make any ``AutoModelForCausalLM.from_pretrained`` fail the test: code that should read a model's config
    alone (``dlzo.models.layer_count``, ``dlzo sweep --list``) must not load its weights."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model's weights were loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def token_examples(n: int = 64, length: int = 12, vocab: int = 128, seed: int = 0) -> list[dict]:
    """Sequences with a learnable pattern: token t+1 = (token t + step) mod vocab, a per-sequence step in 1..3."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, vocab, (n,), generator=gen)
    steps = torch.randint(1, 4, (n,), generator=gen)
    ids = (starts[:, None] + steps[:, None] * torch.arange(length)[None, :]) % vocab
    return [{"input_ids": row} for row in ids]


def _next_token_loss(model, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, logits, ids): cross-entropy in at least fp32 (fp64 for fp64 models: transformers' own loss
    upcasts to fp32 only, which would hide the tiny loss differences of the gradient tests)."""
    ids = torch.stack([ex["input_ids"] for ex in batch]).to(model.device)
    logits = model(input_ids=ids).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    return loss, logits, ids


def lm_loss_fn(model):
    """Next-token cross-entropy of ``model`` on a batch of ``token_examples``."""

    def loss_fn(batch):
        return _next_token_loss(model, batch)[0]

    return loss_fn


def lm_eval_fn(examples):
    """Dev loss and next-token accuracy on ``examples``."""

    def eval_fn(model):
        loss, logits, ids = _next_token_loss(model, examples)
        accuracy = (logits[:, :-1].argmax(-1) == ids[:, 1:]).float().mean()
        return {"loss": float(loss.detach()), "score": float(accuracy)}

    return eval_fn


def saved_tiny_sst2_setup(root, sentences: list[str], sizes=(("train", 40), ("validation", 16))):
    """A tiny Llama with SmolLM2's tokenizer saved under ``root/model`` and an SST-2 data folder under
    ``root/data`` (sentence ``i`` = ``sentences[i % len]``, label ``i`` even), for end-to-end CLI tests."""
    import json
    from pathlib import Path

    from dlzo import load_model

    root = Path(root)
    _, tokenizer = load_model("smollm2-135m")
    model = tiny_llama(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2,
                       num_key_value_heads=1)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    (root / "data" / "sst2").mkdir(parents=True)
    for split, n in sizes:
        lines = [json.dumps({"idx": i, "sentence": sentences[i % len(sentences)] + " ", "label": int(i % 2 == 0)})
                 for i in range(n)]
        (root / "data" / "sst2" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root
