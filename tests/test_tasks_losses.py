"""The training losses the ZO engine optimises: equal to hand computations on a tiny model, answer tokens only
for the LM loss, usable under inference_mode and with autograd."""

import math

import pytest
import torch
from tasks_support import shared_data, smollm2_tokenizer, tiny_model

from dlzo.losses import make_loss_fn
from dlzo.tasks import load_task_data


def token_logprobs(model, ids: list[int]) -> list[float]:
    """log p(ids[t] | ids[:t]) for t >= 1, from one plain forward."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double().log_softmax(-1)
    return [logits[t - 1, ids[t]].item() for t in range(1, len(ids))]


def answer_logprobs(model, tokenizer, prompt: str, answer: str) -> list[float]:
    """The log-probabilities of the answer's tokens after the prompt (MeZO's option_len tail)."""
    full = tokenizer(prompt + answer)["input_ids"]
    n = len(full) - len(tokenizer(prompt)["input_ids"])
    return token_logprobs(model, full)[-n:]


def test_classification_loss_is_cross_entropy_over_mean_candidate_logprobs():
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    data = load_task_data("cb", data_dir=shared_data())
    batch = data.train[:4]
    expected = 0.0
    for ex in batch:
        candidate_lps = [answer_logprobs(model, tokenizer, data.task.prompt(ex), c)
                         for c in data.task.candidates(ex)]
        scores = [sum(lp) / len(lp) for lp in candidate_lps]
        expected += -(scores[data.task.label(ex)] - math.log(sum(math.exp(s) for s in scores)))
    with torch.inference_mode():
        loss = make_loss_fn(model, tokenizer, data.task)(batch)
    assert loss.shape == () and loss.dtype == torch.float32 and loss.device == model.device
    assert loss.item() == pytest.approx(expected / len(batch), abs=1e-5)


@pytest.mark.parametrize("name", ["copa", "squad"])
def test_lm_loss_counts_answer_tokens_only(name):
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    data = load_task_data(name, data_dir=shared_data())
    batch = data.train[:3]
    answer_lps = [answer_logprobs(model, tokenizer, data.task.prompt(ex), data.task.target(ex))
                  for ex in batch]
    expected = -sum(map(sum, answer_lps)) / sum(map(len, answer_lps))  # mean over the batch's answer tokens
    all_lps = [token_logprobs(model, tokenizer(data.task.prompt(ex) + data.task.target(ex))["input_ids"])
               for ex in batch]
    whole_sequence = -sum(map(sum, all_lps)) / sum(map(len, all_lps))
    with torch.inference_mode():
        loss = make_loss_fn(model, tokenizer, data.task)(batch).item()
    assert loss == pytest.approx(expected, abs=1e-5)
    assert abs(loss - whole_sequence) > 1e-3  # the prompt tokens do not count


def test_deterministic_under_inference_mode():
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    data = load_task_data("sst2", data_dir=shared_data())
    loss_fn = make_loss_fn(model, tokenizer, data.task)
    with torch.inference_mode():
        first, second = loss_fn(data.train[:8]), loss_fn(data.train[:8])
    assert torch.equal(first, second) and not first.requires_grad


@pytest.mark.parametrize("name", ["rte", "copa"])
def test_gradients_flow_with_autograd(name):
    model, tokenizer = tiny_model(seed=1), smollm2_tokenizer()
    data = load_task_data(name, data_dir=shared_data())
    model.zero_grad(set_to_none=True)
    loss = make_loss_fn(model, tokenizer, data.task)(data.train[:4])
    loss.backward()
    weight = model.model.layers[0].mlp.down_proj.weight
    assert loss.requires_grad and weight.grad is not None and weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
