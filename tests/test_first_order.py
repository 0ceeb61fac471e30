"""The first-order AdamW baseline: it learns, and it touches only the selection."""

import math

import pytest
import torch
from zo_helpers import lm_eval_fn, lm_loss_fn, tiny_llama, token_examples

from dlzo.errors import DlzoError
from dlzo.first_order import FOConfig, train_first_order
from dlzo.selection import ChannelMask, Selection

TRAIN, DEV = token_examples(64), token_examples(16, seed=1)


def test_first_order_reduces_the_loss_and_touches_only_the_selection(tmp_path):
    model = tiny_llama()
    selected = Selection(layers=[1], channels=ChannelMask(channels=list(range(16)), mode="frozen")).apply(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = FOConfig(steps=40, lr=1e-2, weight_decay=0.1, eval_every=10)
    result = train_first_order(model, selected, lm_loss_fn(model), TRAIN, config, eval_fn=lm_eval_fn(DEV),
                               out_dir=tmp_path, progress=False)
    assert result.best["loss"] < result.zero_shot["loss"] - 0.1
    assert lm_eval_fn(DEV)(model)["loss"] == result.best["loss"]  # the best evaluated parameters are back
    masks = {s.name: s.mask for s in selected.params}
    for name, param in model.named_parameters():
        if name not in masks:
            assert torch.equal(param, before[name]), name
        elif masks[name] is not None:  # frozen channels stay, despite weight decay
            assert torch.equal(param[~masks[name]], before[name][~masks[name]]), name
            assert not torch.equal(param[masks[name]], before[name][masks[name]]), name
        else:
            assert not torch.equal(param, before[name]), name
    assert (tmp_path / "trained.safetensors").is_file() and (tmp_path / "result.json").is_file()


def test_first_order_full_model_with_a_constant_schedule_logs_every_step():
    model = tiny_llama()
    result = train_first_order(model, Selection(), lm_loss_fn(model), TRAIN,
                               FOConfig(steps=10, lr=1e-3, schedule="constant"), progress=False)
    steps = [r for r in result.records if r["type"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 11)) and {r["lr"] for r in steps} == {1e-3}
    assert steps[-1]["loss"] < steps[0]["loss"]


def test_first_order_refuses_a_float16_model_before_touching_it(tmp_path):
    model = tiny_llama().to(torch.float16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(DlzoError, match=r"cannot train a float16 model .*--dtype bfloat16"):
        train_first_order(model, Selection(layers=[1]), lm_loss_fn(model), TRAIN, FOConfig(steps=2),
                          out_dir=tmp_path / "run", progress=False)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert not (tmp_path / "run").exists()  # no half-written run folder


def test_first_order_trains_a_bfloat16_model():
    model = tiny_llama().to(torch.bfloat16)
    result = train_first_order(model, Selection(), lm_loss_fn(model), TRAIN, FOConfig(steps=10, lr=1e-3),
                               progress=False)
    steps = [r for r in result.records if r["type"] == "step"]
    assert all(math.isfinite(r["loss"]) for r in steps) and steps[-1]["loss"] < steps[0]["loss"]
