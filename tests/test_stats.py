import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dlzo.errors import DlzoError
from dlzo.stats import bootstrap_ci, comparison_table, paired_comparison, summarize, wilcoxon


def results(diffs, base=70.0):
    rows = []
    for i, d in enumerate(diffs):
        task, seed = divmod(i, 3)
        rows.append({"model": "m", "task": f"t{task}", "seed": seed, "method": "full", "test_score": base + i})
        rows.append({"model": "m", "task": f"t{task}", "seed": seed, "method": "dominant", "test_score": base + i + d})
    return pd.DataFrame(rows)


def test_summarize_mean_std():
    df = pd.DataFrame({"method": ["a", "a", "a", "b"], "test_score": [1.0, 2.0, 3.0, 5.0]})
    out = summarize(df, ["method"]).set_index("method")
    assert out.loc["a", "mean"] == 2.0 and out.loc["a", "std"] == pytest.approx(1.0) and out.loc["a", "n"] == 3
    assert out.loc["b", "std"] == 0.0


def test_paired_comparison_matches_scipy():
    diffs = [1.5, 0.5, 2.0, -0.5, 1.0, 3.0, 0.25, 1.25, 2.5]
    df = results(diffs)
    res = paired_comparison(df, "dominant", "full", alternative="greater")
    expected = sps.wilcoxon(diffs, alternative="greater")
    assert res["p_value"] == pytest.approx(expected.pvalue)
    assert res["n_pairs"] == 9 and res["wins"] == 8 and res["losses"] == 1
    assert res["mean_diff"] == pytest.approx(np.mean(diffs))
    assert res["ci_low"] < res["mean_diff"] < res["ci_high"]
    table = comparison_table(df, [("dominant", "full", "greater"), ("dominant", "full", "less")])
    assert table["p_value"].iloc[0] < 0.05 < table["p_value"].iloc[1]


def test_identical_methods_give_p_one_and_zero_ci():
    res = paired_comparison(results([0.0] * 6), "dominant", "full")
    assert res["p_value"] == 1.0 and res["ci_low"] == res["ci_high"] == 0.0 and res["ties"] == 6


def test_errors_are_one_sentence():
    df = results([1.0, 2.0])
    with pytest.raises(DlzoError, match="no runs of method 'lora'"):
        paired_comparison(df, "lora", "full")
    dup = pd.concat([df, df])
    with pytest.raises(DlzoError, match="several runs per"):
        paired_comparison(dup, "dominant", "full")
    with pytest.raises(DlzoError, match="No paired runs"):
        wilcoxon([])


def test_bootstrap_ci_is_deterministic_and_covers_the_mean():
    values = np.random.default_rng(0).normal(2.0, 1.0, size=30)
    assert bootstrap_ci(values) == bootstrap_ci(values)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
