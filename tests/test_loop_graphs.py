"""Loop graphs (dlzo.loop_graphs): the bit fingerprints that guard them, the CPU engine without them, and on a
GPU (skipped without CUDA) perturbations and ZO-SGD trajectories bit-identical to the eager loops, a fallback
for optimizers they do not cover, and a capture that fails gracefully."""

import warnings

import pytest
import torch
from zo_helpers import lm_loss_fn, tiny_llama, token_examples

from dlzo.loop_graphs import LoopGraphs, fingerprints
from dlzo.optim import make_optimizer
from dlzo.selection import Selection
from dlzo.zo import ZOEngine

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="loop graphs need a GPU")


def test_fingerprints_see_one_flipped_bit_and_a_permutation():
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(64, 32, generator=gen), torch.randn(7, generator=gen).double(),
               torch.randn(9, generator=gen).bfloat16()]
    base = fingerprints(tensors)
    assert base.dtype == torch.int64 and base.shape == (3,)
    assert torch.equal(base, fingerprints([t.clone() for t in tensors]))
    flipped = tensors[0].clone()
    flipped.view(torch.int32)[5, 3] ^= 1  # the last mantissa bit of one entry
    assert not torch.equal(fingerprints([flipped])[0], base[0])
    swapped = tensors[0].clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert not torch.equal(fingerprints([swapped])[0], base[0])
    assert not torch.equal(fingerprints([tensors[2].clone().neg_()])[0], base[2])


def test_cpu_engines_have_no_loop_graphs():
    model = tiny_llama()
    engine = ZOEngine(Selection().apply(model), eps=1e-3)
    assert engine._loops is None
    graphs = LoopGraphs(engine)
    assert not graphs.active and not graphs.perturb(0, 1e-3) and "CUDA" in graphs.failed


def _engines(selection: Selection, **options):
    """Two copies of one tiny CUDA model with an engine each: loop graphs on and off."""
    out = []
    for loop_graphs in (True, False):
        model = tiny_llama().to("cuda").eval()
        out.append(ZOEngine(selection.apply(model), eps=1e-3, loop_graphs=loop_graphs, **options))
    return out


@cuda
@pytest.mark.parametrize("selection", [Selection(), Selection(layers=[1]), Selection(sparse=0.25)],
                         ids=["full", "layer", "sparse-masks"])
def test_graphed_perturbations_are_the_eager_bits(selection):
    graphed, eager = _engines(selection)
    for seed in (0, 1, 12345):
        for scale in (1e-3, -1e-3, 1e-2):
            graphed.write_perturbed(seed, scale)
            eager.write_perturbed(seed, scale)
            assert all(torch.equal(a, b) for a, b in zip(graphed.params, eager.params, strict=True))
    assert graphed._loops.active and len(graphed._loops._perturb) == 3
    graphed.restore()
    assert all(torch.equal(p, m) for p, m in zip(graphed.params, graphed.masters, strict=True))


@cuda
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_graphed_sgd_trajectories_are_the_eager_trajectories(weight_decay):
    graphed, eager = _engines(Selection(), share_prefix=True)
    loss_fns = [lm_loss_fn(e.selected.model) for e in (graphed, eager)]
    optimizers = [make_optimizer("sgd", e.masters, weight_decay) for e in (graphed, eager)]
    batch = token_examples(8)
    for step in range(4):
        lr = 1e-3 if step < 3 else 5e-4  # a second learning rate captures a second update graph
        estimates = [e.estimate(f, batch, [100 + step]) for e, f in zip((graphed, eager), loss_fns, strict=True)]
        assert estimates[0].g == estimates[1].g
        for engine, optimizer, est in zip((graphed, eager), optimizers, estimates, strict=True):
            engine.update(optimizer, est.seeds, est.g, lr)
    assert graphed._loops.active and len(graphed._loops._update) == 2
    assert optimizers[0].steps == optimizers[1].steps == 4
    assert all(torch.equal(a, b) for a, b in zip(graphed.masters, eager.masters, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(graphed.params, eager.params, strict=True))


@cuda
def test_other_optimizers_update_eagerly_with_graphed_perturbations():
    graphed, eager = _engines(Selection(layers=[0]))
    optimizers = [make_optimizer("adam", e.masters) for e in (graphed, eager)]
    for engine, optimizer in zip((graphed, eager), optimizers, strict=True):
        engine.write_perturbed(3, 1e-3)
        engine.update(optimizer, [3], [0.5], 1e-3)
    assert graphed._loops.active and not graphed._loops._update
    assert all(torch.equal(a, b) for a, b in zip(graphed.masters, eager.masters, strict=True))


@cuda
def test_a_failed_capture_falls_back_to_the_eager_loop(monkeypatch):
    graphed, eager = _engines(Selection(layers=[0]))

    def broken(*_args, **_kwargs):
        raise RuntimeError("no capture here")
    monkeypatch.setattr(graphed._loops, "_capture", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed.write_perturbed(5, 1e-3)
    eager.write_perturbed(5, 1e-3)
    assert any("eagerly" in str(w.message) for w in caught) and not graphed._loops.active
    assert all(torch.equal(a, b) for a, b in zip(graphed.params, eager.params, strict=True))
