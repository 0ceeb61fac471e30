"""Reading a layer sweep (dlzo.sweeps) on a small synthetic results table: run kinds, the one-task filter, the
per-layer summary, the onset and best layers, and the paired comparisons."""

import json

import pandas as pd
import pytest

from dlzo.errors import DlzoError
from dlzo.recipes import random_layer
from dlzo.sweeps import compare_layer, layer_findings, layer_summary, onset_layer, sweep_runs

N_LAYERS = 4


def table() -> pd.DataFrame:
    """Two tasks × 3 seeds: zero-shot, full MeZO and every layer alone; layer 2 is the best on sst2."""
    rows = []
    for task, shift in (("sst2", 0.0), ("copa", -10.0)):
        for seed in range(3):
            rows.append({"model": "m", "task": task, "seed": seed, "method": "zero_shot", "trained_layers": "[]",
                         "test_score": 50.0 + shift})
            rows.append({"model": "m", "task": task, "seed": seed, "method": "mezo_full",
                         "trained_layers": json.dumps(list(range(N_LAYERS))), "test_score": 80.0 + shift + seed})
            for layer in range(N_LAYERS):
                score = {0: 60.0, 1: 70.0, 2: 81.0, 3: 75.0}[layer] + shift + seed
                rows.append({"model": "m", "task": task, "seed": seed, "method": "layer",
                             "trained_layers": json.dumps([layer]), "test_score": score})
    return pd.DataFrame(rows)


def test_runs_get_a_kind_and_a_layer_and_one_task_can_be_kept():
    runs = sweep_runs(table())
    assert set(runs["kind"]) == {"zero_shot", "full", "layer"} and set(runs["task"]) == {"sst2", "copa"}
    assert runs.loc[runs["kind"] == "layer", "layer"].tolist()[:4] == [0, 1, 2, 3]
    assert runs.loc[runs["kind"] != "layer", "layer"].isna().all()
    sst2 = sweep_runs(table(), task="sst2")
    assert set(sst2["task"]) == {"sst2"} and len(sst2) == len(runs) // 2
    first_order = sweep_runs(table().replace({"method": {"mezo_full": "fo_full", "layer": "fo_layer"}}))
    assert first_order["kind"].tolist() == runs["kind"].tolist()  # a first-order sweep reads the same way


def test_an_unknown_task_or_an_empty_table_is_one_clear_error():
    with pytest.raises(DlzoError, match="no 'rte' runs; choose one of: copa, sst2"):
        sweep_runs(table(), task="rte")
    with pytest.raises(DlzoError, match="empty"):
        sweep_runs(table().iloc[:0])


def test_summary_onset_and_findings():
    runs = sweep_runs(table(), task="sst2")
    summary = layer_summary(runs)
    assert summary["mean"].tolist() == [61.0, 71.0, 82.0, 76.0] and (summary["n"] == 3).all()
    assert summary["std"].tolist() == pytest.approx([1.0] * 4)
    assert onset_layer(summary, full_mean=81.0, margin=2.0) == 2
    assert onset_layer(summary, full_mean=81.0, margin=11.0) == 1  # layer 1 is 10 below
    assert onset_layer(summary, full_mean=99.0) is None
    findings = layer_findings(runs, strict_layer=1, loose_layer=3).iloc[0]
    assert findings["best_layer"] == 2 and findings["strict_layer_rank"] == 3 and findings["loose_layer_rank"] == 2
    assert findings["zero_shot"] == 50.0 and findings["full_mezo"] == 81.0 and findings["layers_run"] == N_LAYERS


def test_paired_comparisons_use_the_seed_random_layer():
    out = compare_layer(sweep_runs(table(), task="sst2"), layer=2).set_index(["b", "alternative"])
    assert len(out) == 3 and (out["n_pairs"] == 3).all() and (out["wins"] == 3).all()
    assert out.loc[("full", "two-sided"), "mean_diff"] == pytest.approx(1.0)
    base = {0: 60.0, 1: 70.0, 3: 75.0}
    randoms = [random_layer(seed, N_LAYERS, 2) for seed in range(3)]
    expected = sum(base[r] + seed for seed, r in enumerate(randoms)) / 3
    assert out.loc[("random_layer", "greater"), "mean_b"] == pytest.approx(expected)
