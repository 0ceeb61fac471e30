"""Greedy answers for SQuAD and DROP, as MeZO generates them: at most 50 new tokens, stop at a newline or
EOS, strip.

Prompts are left-truncated to ``max_length - 50`` tokens (MeZO's budget for the answer) and left-padded
into one batch. Generation stops at EOS or at any token whose text contains a newline; the answer is the
decoded text up to its first newline, stripped. (MeZO's code stops only at the exact "\\n" token, so a
merged token such as "\\n\\n" would let it run on; cutting at the first newline is what "stop at \\n"
means.)
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .scoring import context_length, num_leading_special, truncate_left

MAX_NEW_TOKENS = 50  # MeZO's --max_new_tokens


@lru_cache(maxsize=8)
def newline_token_ids(tokenizer) -> tuple[int, ...]:
    """Every token id whose decoded text contains a newline (computed once per tokenizer)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return tuple(i for i, text in enumerate(texts) if "\n" in text)


def stop_token_ids(model, tokenizer) -> list[int]:
    """The ids that end an answer: the newline tokens and the EOS ids of the tokenizer and the model."""
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None:
        eos.append(tokenizer.eos_token_id)
    return sorted(set(newline_token_ids(tokenizer)) | set(eos))


def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = MAX_NEW_TOKENS,
                     max_length: int | None = None) -> list[str]:
    """Greedy answers to ``prompts``, generated as one left-padded batch (module docstring)."""
    from transformers import GenerationConfig

    budget = context_length(model, max_length) - max_new_tokens
    keep_first = num_leading_special(tokenizer)
    encoded = [truncate_left(tokenizer(p)["input_ids"], budget, keep_first) for p in prompts]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for r, ids in enumerate(encoded):
        input_ids[r, width - len(ids):] = torch.tensor(ids)
        attention_mask[r, width - len(ids):] = 1
    stops = stop_token_ids(model, tokenizer)
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=stops,
                              pad_token_id=pad)
    output = model.generate(input_ids=input_ids.to(model.device),
                            attention_mask=attention_mask.to(model.device), generation_config=config)
    stop_set = set(stops)
    answers = []
    for row in output[:, width:].tolist():
        end = next((i + 1 for i, token in enumerate(row) if token in stop_set), len(row))
        text = tokenizer.decode(row[:end], skip_special_tokens=True)
        answers.append(text.split("\n", 1)[0].strip())
    return answers
