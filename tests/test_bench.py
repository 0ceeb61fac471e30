import pytest
import torch
from zo_helpers import lm_loss_fn, tiny_llama, token_examples

from dlzo.bench import CASES, GPU_ONLY, benchmark, graph_check, mezo_published_step, precision_check


def test_benchmark_times_every_case_and_leaves_the_model_as_it_was():
    model = tiny_llama()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    table = benchmark(model, None, lm_loss_fn, token_examples(8), dominant_layer=2, warmup=1, repeats=2)
    assert list(table.index) == [c for c in CASES if c not in GPU_ONLY]  # graphed cases: CUDA only
    assert (table["median_ms"] > 0).all() and (table["peak_mb"].notna()).all()
    assert table.loc["dlzo_dominant", "forward_ms"] is not None and table.loc["forward", "forward_ms"] != table.loc[
        "forward", "forward_ms"]  # plain forwards have no phase breakdown (NaN)
    ratios = table.attrs["ratios"]
    assert set(ratios) >= {"dominant_vs_two_forwards", "published_full_vs_dominant", "published_full_vs_dlzo_full"}
    assert all(v > 0 for v in ratios.values())
    assert "dominant_requested_peak_vs_forward_requested_peak" not in ratios  # requested bytes: CUDA only
    assert table["peak_requested_mb"].isna().all()
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[n], after[n]) for n in before)  # LoRA removed too


def test_cases_that_rebind_the_weights_run_last_and_rows_keep_the_order_asked(monkeypatch):
    import dlzo.bench as bench

    ran = []
    real = bench._make_step

    def recording(case, *args):
        ran.append(case)
        return real(case, *args)
    monkeypatch.setattr(bench, "_make_step", recording)
    model = tiny_llama()
    cases = ["mezo_published_full", "forward", "dlzo_dominant"]
    table = benchmark(model, None, lm_loss_fn, token_examples(4), dominant_layer=1, cases=cases, warmup=0,
                      repeats=1)
    assert ran == ["forward", "dlzo_dominant", "mezo_published_full"]  # p.data = ... moves the weights' storage
    assert list(table.index) == cases


def test_published_mezo_step_follows_the_reference_update():
    model = tiny_llama()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    g, times = mezo_published_step(model, lm_loss_fn(model), token_examples(4), eps=1e-3, lr=1e-2, seed=7)
    assert set(times) == {"perturb", "forward", "update"}
    torch.manual_seed(7)  # MeZO regenerates z from the step's seed, parameter by parameter
    for name, param in model.named_parameters():
        z = torch.normal(mean=0, std=1, size=param.shape)
        torch.testing.assert_close(param.detach(), params[name] - 1e-2 * g * z, rtol=0, atol=1e-5)


def test_graph_and_precision_checks_are_empty_off_the_gpu():
    model = tiny_llama()
    assert graph_check(model, lm_loss_fn(model), token_examples(4), dominant_layer=2) == {}
    assert precision_check(model, lm_loss_fn(model), token_examples(4), layer=2) == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 needs a GPU")
def test_precision_check_compares_the_zo_signal_under_tf32_and_restores_everything():
    model = tiny_llama().to("cuda")
    before = {n: t.clone() for n, t in model.state_dict().items()}
    flag = torch.backends.cuda.matmul.allow_tf32
    out = precision_check(model, lm_loss_fn(model), token_examples(8), layer=2, seeds=(1, 2))
    assert len(out["g_ieee"]) == len(out["g_tf32"]) == 2 and out["g_max_rel_diff"] >= 0
    assert torch.backends.cuda.matmul.allow_tf32 == flag
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())
