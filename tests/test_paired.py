"""Paired passes: one forward computes the θ+εz and θ−εz passes of a single-layer ZO step, for every supported
family (logits equal two separate forwards to float tolerance), and the ZO engine with ``paired_passes``
estimates what the two-forward engine estimates, restores θ bit-exactly, and falls back for multi-layer
selections."""

import pytest
import torch
from helpers import FAMILIES, tiny_model
from tasks_support import shared_data, smollm2_tokenizer
from tasks_support import tiny_model as tiny_llama_smollm2_vocab

from dlzo.layers import decoder_layers
from dlzo.losses import make_loss_fn
from dlzo.paired import PairedPasses
from dlzo.selection import Selection
from dlzo.tasks import load_task_data
from dlzo.zo import ZOEngine


@pytest.mark.parametrize("family", FAMILIES)
def test_one_paired_forward_equals_the_two_passes(family):
    model = tiny_model(family)
    layer = 1
    params = [p for p in decoder_layers(model)[layer].parameters()]
    before = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(0)
    deltas = [0.05 * torch.randn(p.shape, generator=gen) for p in params]
    plus = [b + d for b, d in zip(before, deltas)]
    minus = [b - d for b, d in zip(before, deltas)]
    ids = torch.randint(1, 100, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding in one row
    with torch.inference_mode():
        with PairedPasses(model, layer, params, plus, minus):
            paired = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        separate = []
        for values in (plus, minus):
            torch._foreach_copy_(params, values)
            separate.append(model(input_ids=ids, attention_mask=mask, use_cache=False).logits)
        torch._foreach_copy_(params, before)
    assert paired.shape[0] == 6
    torch.testing.assert_close(paired[:3], separate[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(paired[3:], separate[1], atol=1e-5, rtol=1e-5)
    assert "forward" not in vars(decoder_layers(model)[layer])  # hooks gone after the block
    with torch.inference_mode():
        assert model(input_ids=ids).logits.shape[0] == 3


@pytest.mark.parametrize("task", ["sst2", "copa"])
def test_engine_with_paired_passes_estimates_the_same_step(task):
    model, tokenizer = tiny_llama_smollm2_vocab(), smollm2_tokenizer()
    data = load_task_data(task, seed=0, data_dir=shared_data())
    loss_fn = make_loss_fn(model, tokenizer, data.task)
    batch = data.train[:6]
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    paired = ZOEngine(Selection(layers=[1]).apply(model, tokenizer), eps=1e-2, directions=2, paired_passes=True)
    plain = ZOEngine(Selection(layers=[1]).apply(model, tokenizer), eps=1e-2, directions=2, share_prefix=True)
    assert paired.paired_layer == 1 and plain.paired_layer is None
    a, b = paired.estimate(loss_fn, batch, [4, 5]), plain.estimate(loss_fn, batch, [4, 5])
    torch.testing.assert_close(torch.tensor(a.loss_plus), torch.tensor(b.loss_plus), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(a.loss_minus), torch.tensor(b.loss_minus), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(a.g), torch.tensor(b.g), atol=2e-3, rtol=1e-3)
    assert all(torch.equal(p, state[n]) for n, p in model.named_parameters())  # θ restored bit for bit


def test_selections_over_several_layers_use_two_forwards():
    model, tokenizer = tiny_llama_smollm2_vocab(), smollm2_tokenizer()
    assert ZOEngine(Selection(layers=[0, 1]).apply(model, tokenizer), paired_passes=True).paired_layer is None
    assert ZOEngine(Selection(layers=[1]).apply(model, tokenizer), paired_passes=True,
                    one_sided=True).paired_layer is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_paired_graph_replays_the_eager_paired_forward():
    from dlzo.bench import _paired_graph_check

    model, tokenizer = tiny_llama_smollm2_vocab(), smollm2_tokenizer()
    model.to("cuda")
    try:
        data = load_task_data("sst2", seed=0, data_dir=shared_data())
        loss_fn, batch = make_loss_fn(model, tokenizer, data.task), data.train[:8]
        check = _paired_graph_check(model, loss_fn, batch, loss_fn.pack(batch).padded(), 1)
        assert "paired_failed" not in check, check
        assert check["paired_graph_vs_eager_max_abs_diff"] < 1e-6 and check["paired_vs_two_forwards_max_abs_diff"] < 1e-5
    finally:
        model.to("cpu")
