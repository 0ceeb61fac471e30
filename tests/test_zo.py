"""The SPSA estimator: unbiased along the selection, exactly zero outside it, exact restore in every dtype."""

import copy

import pytest
import torch
import torch.nn.functional as F
from zo_helpers import lm_loss_fn, tiny_llama, token_examples

from dlzo import DlzoError
from dlzo.optim import make_optimizer
from dlzo.selection import ChannelMask, Selection
from dlzo.zo import ZOEngine

SMALL = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_averaged_estimate_aligns_with_the_autograd_gradient_and_is_zero_outside_the_selection():
    """ĝ = mean_j g_j z_j over q directions, read off as the change a ZO-SGD step (lr=1) makes to the whole
    model, against the autograd gradient of the same loss restricted to the selection (fp64, ε=1e-6)."""
    base = tiny_llama(dtype=torch.float64, **SMALL)
    batch = token_examples(n=2, length=8)
    reference = copy.deepcopy(base)
    lm_loss_fn(reference)(batch).backward()
    gradient = torch.cat([p.grad.flatten() for p in reference.parameters()])
    cosines = []
    for q in (30, 150, 1500):
        model = copy.deepcopy(base)
        selected = Selection(layers=[1], channels=ChannelMask(channels=[0, 1, 2])).apply(model)
        masks = {id(s.param): s.mask for s in selected.params}
        inside = torch.cat([masks[id(p)].flatten() if id(p) in masks else torch.zeros(p.numel(), dtype=torch.bool)
                            for p in model.parameters()])
        before = flat(model)
        engine = ZOEngine(selected, eps=1e-6, directions=q)
        seeds = list(range(1000 * q, 1000 * q + q))
        estimate = engine.estimate(lm_loss_fn(model), batch, seeds)
        engine.update(make_optimizer("sgd", engine.masters), seeds, estimate.g, lr=1.0)
        step = before - flat(model)  # = ĝ (up to rounding) inside, exactly 0 outside
        assert torch.all(step[~inside] == 0)
        assert step[inside].abs().min() > 0
        cosines.append(F.cosine_similarity(step, gradient * inside, dim=0).item())
    assert cosines[0] < cosines[1] < cosines[2]
    assert cosines[2] > 0.9, cosines


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("options", [{}, {"one_sided": True}, {"directions": 3}])
def test_restore_after_perturbation_is_bit_exact(dtype, options):
    model = tiny_llama(dtype=dtype)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for selection in (Selection(), Selection(layers=[1], channels=ChannelMask(channels=[0, 5], mode="frozen"))):
        engine = ZOEngine(selection.apply(model), eps=1e-2, **options)
        estimate = engine.estimate(lm_loss_fn(model), token_examples(8), list(range(engine.directions)))
        assert estimate.finite and len(estimate.g) == engine.directions
        assert estimate.loss_plus[0] != (estimate.loss_base if engine.one_sided else estimate.loss_minus[0])
        for name, param in model.named_parameters():
            assert torch.equal(param, before[name]), name


def test_the_published_in_place_round_trip_drifts_in_fp16_and_the_master_copy_does_not():
    """MeZO's θ += εz ; θ -= 2εz ; θ += εz does not give θ back in fp16 (MeZO issue #42)."""
    model = tiny_llama(dtype=torch.float16)
    before = [p.detach().clone() for p in model.parameters()]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            state = gen.get_state()
            for scale in (1e-3, -2e-3, 1e-3):
                gen.set_state(state)
                p.add_(torch.randn(p.shape, generator=gen).to(p.dtype), alpha=scale)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    model = tiny_llama(dtype=torch.float16)
    engine = ZOEngine(Selection().apply(model), eps=1e-3)
    engine.estimate(lm_loss_fn(model), token_examples(4), [0])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_directions_are_reproducible_per_seed_and_leave_the_global_rng_alone():
    model = tiny_llama()
    engine = ZOEngine(Selection(layers=[0]).apply(model), eps=1e-3)
    state = torch.random.get_rng_state()
    first, again, other = list(engine.draw(7)), list(engine.draw(7)), list(engine.draw(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    estimate = engine.estimate(lm_loss_fn(model), token_examples(4), [7])
    engine.update(make_optimizer("sgd", engine.masters), [7], estimate.g, lr=1e-3)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_one_sided_and_two_sided_projected_gradients_agree_for_a_small_eps():
    """Both estimate the directional derivative ∇L·z; the one-sided one with an O(ε) bias (fp64 model,
    but transformers' attention softmax runs in fp32, so ε cannot go far below 1e-5)."""
    model = tiny_llama(dtype=torch.float64)
    loss_fn, batch = lm_loss_fn(model), token_examples(4)
    two = ZOEngine(Selection(layers=[1]).apply(model), eps=1e-5).estimate(loss_fn, batch, [3])
    one = ZOEngine(Selection(layers=[1]).apply(model), eps=1e-5, one_sided=True).estimate(loss_fn, batch, [3])
    assert one.g[0] == pytest.approx(two.g[0], rel=1e-3)
    assert one.loss_minus is None and two.loss_base is None


def test_update_moves_only_selected_entries_of_half_precision_models_through_the_fp32_master():
    model = tiny_llama(dtype=torch.bfloat16)
    selected = Selection(layers=[1], channels=ChannelMask(channels=[2, 9])).apply(model)
    engine = ZOEngine(selected, eps=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    engine.update(make_optimizer("sgd", engine.masters, weight_decay=0.1), [1], [50.0], lr=1e-2)
    for s, master in zip(selected.params, engine.masters, strict=True):
        assert master.dtype == torch.float32
        assert torch.equal(s.param, master.to(torch.bfloat16))
        assert torch.equal(s.param[~s.mask], before[s.name][~s.mask])
        assert not torch.equal(s.param[s.mask], before[s.name][s.mask])
    chosen = set(selected.names)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n not in chosen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_perturbation_writes_the_bits_of_the_reference_formula(dtype):
    from dlzo.zo import _perturbed

    torch.manual_seed(0)
    model = tiny_llama(**SMALL).to(dtype)
    engine = ZOEngine(Selection(layers=[1], channels=ChannelMask(channels=[0, 3], mode="frozen")).apply(model), eps=1e-3)
    assert any(m is not None for m in engine.masks) and any(m is None for m in engine.masks)
    engine.write_perturbed(seed=7, scale=-1e-3)
    expected = [_perturbed(master, mask, z, -1e-3).to(dtype)
                for master, mask, z in zip(engine.masters, engine.masks, engine.draw(7), strict=True)]
    assert all(torch.equal(p, e) for p, e in zip(engine.params, expected, strict=True))
    engine.restore()


def test_engine_errors():
    selected = Selection(layers=[0]).apply(tiny_llama())
    with pytest.raises(DlzoError, match="eps"):
        ZOEngine(selected, eps=0)
    with pytest.raises(DlzoError, match="one seed per direction"):
        ZOEngine(selected, directions=2).estimate(lambda b: torch.tensor(0.0), [], [1])
