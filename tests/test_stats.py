import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dlzo.errors import DlzoError
from dlzo.stats import (
    bootstrap_ci,
    comparison_table,
    equivalence_test,
    paired_comparison,
    paired_equivalence,
    summarize,
    wilcoxon,
)


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


def test_equivalence_is_two_one_sided_wilcoxon_tests_against_the_margin():
    diffs = np.random.default_rng(1).normal(0.2, 0.5, size=20)
    res = equivalence_test(diffs, margin=1.0)
    assert res["p_lower"] == pytest.approx(sps.wilcoxon(diffs + 1.0, alternative="greater").pvalue)
    assert res["p_upper"] == pytest.approx(sps.wilcoxon(diffs - 1.0, alternative="less").pvalue)
    assert res["p_value"] == max(res["p_lower"], res["p_upper"]) and res["equivalent"] is True
    assert res["ci_level"] == pytest.approx(0.90) and res["ci_low"] < res["mean_diff"] < res["ci_high"]
    assert res["smallest_margin"] == pytest.approx(max(abs(res["ci_low"]), abs(res["ci_high"])))
    assert res["smallest_margin"] < 1.0  # equivalent at 1.0, so the 90% CI fits inside ±1
    assert equivalence_test(diffs, margin=1.0) == res  # the bootstrap is seeded


def test_a_shifted_or_too_noisy_difference_is_not_equivalent():
    rng = np.random.default_rng(2)
    shifted = equivalence_test(rng.normal(1.5, 0.5, size=20), margin=1.0)
    assert shifted["equivalent"] is False and shifted["p_upper"] > 0.5 > 0.05 > shifted["p_lower"]
    noisy = equivalence_test(rng.normal(0.0, 5.0, size=8), margin=1.0)
    assert noisy["equivalent"] is False and noisy["smallest_margin"] > 1.0
    # a wider margin than the differences ever reach: equivalent
    assert equivalence_test(rng.normal(0.0, 0.3, size=12), margin=3.0)["equivalent"] is True


def test_paired_equivalence_pairs_runs_and_refuses_bad_margins():
    diffs = [0.5, -0.25, 0.0, 0.75, -0.5, 0.25, 0.1, -0.1, 0.3]
    res = paired_equivalence(results(diffs), "dominant", "full", margin=2.0)
    assert res["a"] == "dominant" and res["b"] == "full" and res["n_pairs"] == 9
    assert res["mean_diff"] == pytest.approx(np.mean(diffs)) and res["equivalent"] is True
    for margin in (0.0, -1.0, float("nan")):
        with pytest.raises(DlzoError, match="margin must be a positive number"):
            equivalence_test(diffs, margin)
    with pytest.raises(DlzoError, match="alpha must lie"):
        equivalence_test(diffs, 1.0, alpha=0.5)
    with pytest.raises(DlzoError, match="No paired runs"):
        equivalence_test([], 1.0)
