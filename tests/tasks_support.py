"""Shared helpers of the tasks/evaluation tests: the benchmark data folder, SmolLM2, tiny random models."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``$DLZO_DATA_DIR``, else ``../shared/data`` beside the repository; skips the test if neither exists."""
    for candidate in (os.environ.get("DLZO_DATA_DIR"), ROOT.parent / "shared" / "data", "/work/shared/data"):
        if candidate and (Path(candidate) / "sst2").is_dir():
            return Path(candidate)
    pytest.skip("benchmark data not found: set DLZO_DATA_DIR to the shared data folder")


@functools.cache
def smollm2():
    """The real SmolLM2-135M and its tokenizer (no BOS, pad = eos), loaded once."""
    from dlzo.models import load_model

    return load_model("smollm2-135m")


@functools.cache
def smollm2_tokenizer(add_bos: bool = False):
    """SmolLM2's tokenizer; ``add_bos=True`` makes it prepend its BOS like Gemma's does."""
    tokenizer = copy.deepcopy(smollm2()[1])
    tokenizer.add_bos_token = add_bos
    return tokenizer


@functools.cache
def tiny_model(seed: int = 0):
    """A 2-layer random llama over SmolLM2's vocabulary, in eval mode."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def first_validation_row(task: str) -> dict:
    import json

    with (shared_data() / task / "validation.jsonl").open() as handle:
        return json.loads(handle.readline())
