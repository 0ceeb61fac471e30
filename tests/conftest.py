"""Shared fixtures: tiny models (see helpers.py), a byte tokenizer, the real default model."""

from __future__ import annotations

import os

import pytest
import torch
import transformers
from helpers import ByteTokenizer

torch.set_num_threads(int(os.environ.get("DLZO_TEST_THREADS", "1")))
transformers.logging.set_verbosity_error()


@pytest.fixture
def byte_tokenizer():
    return ByteTokenizer()


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M (fp32, CPU), loaded once per test session."""
    from dlzo.models import load_model

    return load_model("smollm2-135m")
