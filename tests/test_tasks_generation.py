"""Greedy generation for SQuAD/DROP: left-padded batch, at most 50 new tokens, stop at newline/EOS, strip."""

import pytest
import torch
from tasks_support import shared_data, smollm2, smollm2_tokenizer

from dlzo.generation import generate_answers, newline_token_ids
from dlzo.tasks import load_task_data


class ScriptedModel:
    """Stands in for a causal LM: ``generate`` appends fixed continuations and records its call."""

    device = torch.device("cpu")

    def __init__(self, continuations: list[list[int]], eos: int):
        self.continuations = continuations
        self.config = type("Config", (), {"max_position_embeddings": 512})()
        self.generation_config = type("GenerationConfig", (), {"eos_token_id": eos})()

    def generate(self, input_ids, attention_mask, generation_config):
        self.call = (input_ids, attention_mask, generation_config)
        width = max(len(c) for c in self.continuations)
        tail = [c + [generation_config.pad_token_id] * (width - len(c)) for c in self.continuations]
        return torch.cat([input_ids, torch.tensor(tail)], dim=1)


def test_answers_stop_at_newline_or_eos_and_are_stripped():
    tokenizer = smollm2_tokenizer()

    def encode(text: str) -> list[int]:
        return tokenizer(text)["input_ids"]

    continuations = [encode(" Denver Broncos\nQuestion: who?"),
                     encode(" 24–10") + [tokenizer.eos_token_id] + encode(" after eos"),
                     encode(" a.\n\nb")]
    model = ScriptedModel(continuations, eos=tokenizer.eos_token_id)
    answers = generate_answers(model, tokenizer, ["Answer:", "Score? Answer:", "Q"])
    assert answers == ["Denver Broncos", "24–10", "a."]
    input_ids, attention_mask, config = model.call
    assert attention_mask.tolist()[2][:-1] == [0] * (input_ids.shape[1] - 1)  # left padding
    assert input_ids[2, -1].item() == encode("Q")[0]
    assert config.do_sample is False and config.num_beams == 1 and config.max_new_tokens == 50
    assert set(newline_token_ids(tokenizer)) | {tokenizer.eos_token_id} <= set(config.eos_token_id)
    assert tokenizer.convert_tokens_to_ids("Ċ") in config.eos_token_id  # "\n"


def test_newline_tokens():
    tokenizer = smollm2_tokenizer()
    ids = newline_token_ids(tokenizer)
    assert all("\n" in tokenizer.decode([i]) for i in ids)
    assert tokenizer("\n\n")["input_ids"][0] in ids and tokenizer("Yes")["input_ids"][0] not in ids


@pytest.mark.real_model
def test_batched_generation_equals_one_at_a_time_on_smollm2():
    model, tokenizer = smollm2()
    data = load_task_data("squad", data_dir=shared_data())
    prompts = [data.task.prompt(ex) for ex in data.test[:3]]
    with torch.inference_mode():
        batched = generate_answers(model, tokenizer, prompts)
        single = [generate_answers(model, tokenizer, [p])[0] for p in prompts]
    assert batched == single
    assert all(a and "\n" not in a and a == a.strip() for a in batched)
