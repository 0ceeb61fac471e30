import pytest
import torch
from helpers import FAMILIES, tiny_model
from zo_helpers import lm_loss_fn, token_examples

from dlzo.errors import DlzoError
from dlzo.prefix import PrefixSharing, first_selected_layer
from dlzo.selection import Selection
from dlzo.training import ZOConfig, train
from dlzo.zo import ZOEngine


def losses(model, layer, share, **options):
    engine = ZOEngine(Selection(layers=[layer]).apply(model), eps=1e-3, share_prefix=share, **options)
    est = engine.estimate(lm_loss_fn(model), token_examples(8), list(range(3, 3 + engine.directions)))
    return est.g, est.loss_plus, est.loss_minus, est.loss_base


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_gives_bit_identical_losses_for_every_family(family):
    model = tiny_model(family)
    plain = losses(model, 2, share=False)
    engine = ZOEngine(Selection(layers=[2]).apply(model), eps=1e-3, share_prefix=True)
    assert engine.prefix_layer == 2
    assert losses(model, 2, share=True) == plain
    from dlzo.layers import decoder_layers

    assert not any("forward" in vars(layer) for layer in decoder_layers(model))  # hooks removed


@pytest.mark.parametrize("options", [{"directions": 3}, {"one_sided": True}])
def test_shared_prefix_with_several_directions_and_one_sided(options):
    model = tiny_model("llama")
    assert losses(model, 3, share=True, **options) == losses(model, 3, share=False, **options)


def test_prefix_layers_are_really_skipped():
    model = tiny_model("llama")
    calls = []
    model.model.layers[0].mlp.register_forward_hook(lambda *a: calls.append(1))
    loss_fn = lm_loss_fn(model)
    batch = token_examples(4)
    with PrefixSharing(model, 2) as prefix, torch.inference_mode():
        with prefix.record():
            first = loss_fn(batch)
        with prefix.replay():
            second = loss_fn(batch)
    assert calls == [1] and torch.equal(first, second)  # layer 0 computed once
    with pytest.raises(DlzoError, match="different batch"), PrefixSharing(model, 2) as prefix:
        with prefix.record(), torch.inference_mode():
            loss_fn(batch)
        with prefix.replay(), torch.inference_mode():
            loss_fn(token_examples(2))


def test_nothing_to_share_below_layer_zero_or_outside_layers():
    model = tiny_model("llama")
    assert first_selected_layer(model, Selection().apply(model).names) is None
    assert ZOEngine(Selection(layers=[0]).apply(model), share_prefix=True).prefix_layer is None
    assert first_selected_layer(model, Selection(layers=[1, 3]).apply(model).names) == 1
    with pytest.raises(DlzoError, match="first trained layer"):
        PrefixSharing(model, 0)


def test_training_with_and_without_prefix_sharing_is_bit_identical():
    results = []
    for share in (True, False):
        model = tiny_model("llama")
        train(model, Selection(layers=[2]), lm_loss_fn(model), token_examples(32),
              ZOConfig(steps=6, lr=1e-2, batch_size=8, share_prefix=share), progress=False)
        results.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))
