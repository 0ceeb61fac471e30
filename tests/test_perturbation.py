"""The mechanism measurements: exact directional derivatives, causal propagation, restore, determinism."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_model
from zo_helpers import lm_loss_fn, tiny_llama, token_examples

from dlzo import DlzoError
from dlzo.perturbation import (
    HiddenStateProbe,
    analyze_layers,
    directional_derivatives,
    layer_gradients,
    random_direction_cosine,
    select_layer,
    spsa_cosine,
)
from dlzo.selection import Selection
from dlzo.zo import ZOEngine


def analyze(model, **options):
    options = {"seeds": range(3), "eps": (1e-4, 1e-3, 1e-2), "progress": False, **options}
    return analyze_layers(model, lm_loss_fn(model), token_examples(6), **options)


def test_directional_derivative_from_autograd_matches_a_tiny_eps_finite_difference_in_fp64():
    """GPT-2 computes everything in the model's dtype (LLaMA's RMSNorm and softmax drop to fp32), so in fp64
    the central difference agrees with z·∇L to rounding at ε=1e-6, and its error grows as ε² above that."""
    model = tiny_model("gpt2").double()
    analysis = analyze(model, eps=(1e-6, 1e-5, 1e-4), propagation=False)
    errors = analysis.signals.groupby("eps")["fd_error"].max()
    assert errors[1e-6] < 1e-7
    assert 50 < errors[1e-4] / errors[1e-5] < 200  # O(ε²) truncation error
    # the z regenerated for z·∇L is the z ZOEngine perturbs with (same generator order as draw)
    loss_fn, batch = lm_loss_fn(model), token_examples(6)
    _, grads = layer_gradients(model, loss_fn, batch, [2])
    engine = ZOEngine(select_layer(model, 2), eps=1e-6)
    estimate = engine.estimate(loss_fn, batch, [11])
    assert directional_derivatives(engine, grads[2], [11])[0] == pytest.approx(estimate.g[0], rel=1e-7)


def test_llama_directional_derivative_matches_within_its_fp32_internals():
    model = tiny_llama(dtype=torch.float64)
    analysis = analyze(model, eps=(1e-4,), propagation=False)
    assert analysis.signals["fd_error"].max() < 1e-3
    assert (np.sign(analysis.signals["g"]) == np.sign(analysis.signals["dir_deriv"])).all()


def test_layer_gradients_are_the_autograd_gradients_and_leave_the_model_alone():
    model = tiny_llama()
    loss_fn, batch = lm_loss_fn(model), token_examples(6)
    loss, grads = layer_gradients(model, loss_fn, batch, [1, 3])
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        assert loss == float(loss_fn(batch))
    loss_fn(batch).backward()
    for layer in (1, 3):
        names = select_layer(model, layer).names
        params = dict(model.named_parameters())
        assert [tuple(g.shape) for g in grads[layer]] == [tuple(params[n].shape) for n in names]
        for name, g in zip(names, grads[layer], strict=True):
            torch.testing.assert_close(g, params[name].grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_propagation_is_zero_before_the_perturbed_layer_and_nonzero_from_it(share_prefix):
    model = tiny_llama()
    analysis = analyze(model, share_prefix=share_prefix)
    for stat in ("rel_change", "rel_change_token"):
        for eps in (1e-4, 1e-2):
            matrix = analysis.propagation_matrix(eps, stat).to_numpy()
            assert matrix.shape == (4, 4) and not np.isnan(matrix).any()
            rows, cols = np.indices(matrix.shape)
            assert (matrix[cols < rows] == 0).all()  # layers before the perturbed one: bit-identical outputs
            assert (matrix[cols >= rows] > 0).all()
        small, large = analysis.propagation_matrix(1e-4, stat), analysis.propagation_matrix(1e-2, stat)
        assert (large.to_numpy()[cols >= rows] > small.to_numpy()[cols >= rows]).all()
    # one row per (layer, eps, seed, downstream); prefix sharing changes nothing, bit for bit
    assert len(analysis.propagation) == 4 * 3 * 3 * 4
    if share_prefix:
        plain = analyze(model, share_prefix=False)
        pd.testing.assert_frame_equal(analysis.propagation, plain.propagation, check_exact=True)
        pd.testing.assert_frame_equal(analysis.signals, plain.signals, check_exact=True)


def test_sensitivity_grows_with_eps():
    analysis = analyze(tiny_llama())
    table = analysis.signals.groupby(["layer", "eps"])["sensitivity"].mean().unstack("eps")
    assert (table[1e-3] > 3 * table[1e-4]).all() and (table[1e-2] > 3 * table[1e-3]).all()
    assert (analysis.signals["loss_plus"] != analysis.signals["loss_base"]).all()


def test_parameters_are_bit_identical_and_flags_untouched_after_every_analysis():
    for dtype in (torch.float32, torch.bfloat16):
        model = tiny_llama(dtype=dtype)
        model.model.embed_tokens.weight.requires_grad_(False)  # a user's own freezing survives
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        analyze(model, layers=[0, 2], seeds=[5, 6])
        layer_gradients(model, lm_loss_fn(model), token_examples(4))
        for name, param in model.named_parameters():
            assert torch.equal(param, before[name]), name
            assert param.requires_grad == flags[name] and param.grad is None
        assert not any("forward" in vars(layer) for layer in model.model.layers)  # prefix sharing undone
        assert not any(layer._forward_hooks for layer in model.model.layers)  # probe hooks removed
        assert not model.model._forward_pre_hooks


def test_results_are_deterministic_and_leave_the_global_rng_alone():
    model = tiny_llama()
    state = torch.random.get_rng_state()
    first, second = analyze(model), analyze(model)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name in ("signals", "propagation", "gradients", "cosines"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), check_exact=True)
    other = analyze(model, seeds=[10, 11, 12])
    assert not np.allclose(other.signals["g"], first.signals["g"])


def test_tables_and_summary_fit_together():
    model = tiny_llama()
    analysis = analyze(model, seeds=range(4))
    n = 4 * 3 * 4
    assert len(analysis.signals) == n and len(analysis.gradients) == 4 and len(analysis.cosines) == 12
    sig = analysis.signals
    assert np.allclose(sig["g"], (sig["loss_plus"] - sig["loss_minus"]) / (2 * sig["eps"]))
    dims = analysis.gradients["num_params"]
    assert (dims == sum(s.count for s in Selection(layers=[0]).apply(tiny_llama()).params)).all()
    assert np.allclose(analysis.gradients["grad_rms"], analysis.gradients["grad_norm"] / np.sqrt(dims))
    summary = analysis.summary()
    assert summary["layer"].tolist() == [0, 1, 2, 3] and (summary["eps"] == 1e-3).all()
    diag = np.diag(analysis.propagation_matrix(stat="rel_change_token").to_numpy())
    assert np.allclose(summary["prop_self"], diag)
    # with 4 directions of ~9k dims the ZO cosine is tiny but positive where the finite difference is accurate
    cos = analysis.cosines[analysis.cosines["eps"] == 1e-4]
    assert (cos["cosine"] > 0).all() and np.allclose(cos["cosine"], cos["cos_exact"], rtol=1e-2)
    assert analysis.summary(1e-2)["eps"].iloc[0] == 1e-2


def test_expected_cosines_match_monte_carlo():
    assert random_direction_cosine(1) == pytest.approx(1.0)
    assert random_direction_cosine(2) == pytest.approx(2 / math.pi)
    assert random_direction_cosine(10**6) == pytest.approx(math.sqrt(2 / (math.pi * 10**6)), rel=1e-5)
    gen = torch.Generator().manual_seed(0)
    d, s, trials = 40, 5, 4000
    v = torch.randn(d, generator=gen, dtype=torch.float64)
    z = torch.randn(trials, s, d, generator=gen, dtype=torch.float64)
    estimate = ((z @ v)[..., None] * z).mean(1)  # mean_s (z_s·v) z_s
    cos = (estimate @ v) / (estimate.norm(dim=1) * v.norm())
    assert float(cos.mean()) == pytest.approx(spsa_cosine(d, s), rel=0.05)
    random = torch.randn(trials, d, generator=gen, dtype=torch.float64)
    assert float(((random @ v) / (random.norm(dim=1) * v.norm())).abs().mean()) == pytest.approx(
        random_direction_cosine(d), rel=0.05)


def test_probe_counts_real_tokens_only():
    """Right-padded rows: a different pad id changes only padded positions, which the mask leaves out."""
    model = tiny_llama()
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    other = ids.clone()
    other[1, 3:] = 44
    with HiddenStateProbe(model) as probe, torch.inference_mode():
        with probe.record():
            model(input_ids=ids, attention_mask=mask)
        with probe.compare():
            model(input_ids=other, attention_mask=mask)
        assert (probe.changes == 0).all()
        with pytest.raises(DlzoError, match="batch changed"), probe.compare():
            model(input_ids=other)
    with HiddenStateProbe(model) as probe, torch.inference_mode():
        with probe.record():
            model(input_ids=ids)
        with probe.compare():
            model(input_ids=other)  # no mask: every position counts, and the "padded" ones moved
        assert (probe.changes > 0).all()
    with pytest.raises(DlzoError, match="clean forward"), HiddenStateProbe(model) as probe:
        with probe.compare():
            pass


def test_user_errors_are_one_sentence_dlzo_errors():
    model = tiny_llama()
    with pytest.raises(DlzoError, match="positive"):
        analyze(model, eps=(1e-3, 0.0))
    with pytest.raises(DlzoError, match="seed"):
        analyze(model, seeds=[])
    with pytest.raises(DlzoError, match="repeats a layer"):
        analyze(model, layers=[1, 1])
    with pytest.raises(DlzoError, match="out of range"):
        analyze(model, layers=[7])
    with pytest.raises(DlzoError, match="empty"):
        analyze_layers(model, lm_loss_fn(model), [], progress=False)
    analysis = analyze(model, layers=[3], seeds=[1], propagation=False)
    assert analysis.propagation.empty
    with pytest.raises(DlzoError, match="was not analysed"):
        analysis.summary(eps=0.5)
    with pytest.raises(DlzoError, match="propagation=True"):
        analysis.propagation_matrix()
    model.train()
    with pytest.raises(DlzoError, match="eval"):
        analyze(model)
