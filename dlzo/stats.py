"""Statistics for the paper's claims: mean ± std over seeds, paired Wilcoxon tests, bootstrap CIs.

"Dominant layer matches or exceeds full MeZO" is a claim about *paired* runs (same model, task and
seed). :func:`paired_comparison` pairs two methods' runs, reports the mean paired difference with a
bootstrap confidence interval, and a Wilcoxon signed-rank test (scipy) in the direction asked. A
one-sided test that fails to reject does not show equivalence: read it with the CI, or test "matches"
itself with :func:`equivalence_test` / :func:`paired_equivalence` (two one-sided tests against a margin
stated in advance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import DlzoError


def summarize(df: pd.DataFrame, by: list[str], value: str = "test_score") -> pd.DataFrame:
    """Mean, std (ddof=1), n and min/max of ``value`` per group."""
    if value not in df:
        raise DlzoError(f"The results table has no column {value!r}; available: {', '.join(df.columns)}.")
    grouped = df.groupby(by, sort=False)[value]
    out = grouped.agg(mean="mean", std="std", n="count", min="min", max="max").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def format_mean_std(mean: float, std: float, digits: int = 1) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy.stats.bootstrap); a single value gives (v, v)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise DlzoError("Cannot bootstrap an empty set of values.")
    if values.size == 1 or np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = sps.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                        method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilcoxon(differences, alternative: str = "two-sided") -> tuple[float, float]:
    """Wilcoxon signed-rank test of paired differences; (statistic, p). All-zero differences give p = 1."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        raise DlzoError("No paired runs to test.")
    if np.all(d == 0):
        return 0.0, 1.0
    res = sps.wilcoxon(d, zero_method="zsplit", alternative=alternative)
    return float(res.statistic), float(res.pvalue)


def equivalence_test(differences, margin: float, alpha: float = 0.05, seed: int = 0) -> dict:
    """Two one-sided tests (TOST) that paired differences lie within ``±margin``: "A matches B" as a claim.

    H0 is "the difference is at most −margin or at least +margin"; it is rejected at level ``alpha`` when both
    Wilcoxon signed-rank tests reject: ``d + margin > 0`` (``p_lower``) and ``d − margin < 0`` (``p_upper``);
    ``p_value`` is the larger of the two. As with any Wilcoxon test the location tested is the differences'
    pseudo-median. Beside it, the ``1 − 2·alpha`` bootstrap CI of the mean difference (90% for alpha 0.05, the
    interval TOST corresponds to) and ``smallest_margin``, the tightest ``±margin`` that CI fits in: the
    margin a reader can claim equivalence at, whatever margin was asked.
    """
    if not margin > 0:
        raise DlzoError(f"The equivalence margin must be a positive number of points, not {margin!r}.")
    if not 0 < alpha < 0.5:
        raise DlzoError(f"alpha must lie between 0 and 0.5, not {alpha!r}.")
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        raise DlzoError("No paired runs to test.")
    _, p_lower = wilcoxon(d + margin, "greater")
    _, p_upper = wilcoxon(d - margin, "less")
    low, high = bootstrap_ci(d, confidence=1 - 2 * alpha, seed=seed)
    p = max(p_lower, p_upper)
    return {"n_pairs": int(d.size), "mean_diff": float(d.mean()), "margin": float(margin), "p_lower": p_lower,
            "p_upper": p_upper, "p_value": p, "equivalent": bool(p < alpha), "ci_low": low, "ci_high": high,
            "ci_level": 1 - 2 * alpha, "smallest_margin": float(max(abs(low), abs(high)))}


def pair_runs(df: pd.DataFrame, method_a: str, method_b: str, pair_on: list[str], value: str = "test_score",
              method_col: str = "method") -> pd.DataFrame:
    """Rows ``pair_on + [a, b, diff]`` for every unit where both methods have a run."""
    missing = [m for m in (method_a, method_b) if m not in set(df[method_col])]
    if missing:
        raise DlzoError(f"The results table has no runs of method {missing[0]!r}; run it before comparing.")
    a = df[df[method_col] == method_a].set_index(pair_on)[value].rename(method_a)
    b = df[df[method_col] == method_b].set_index(pair_on)[value].rename(method_b)
    for name, side in ((method_a, a), (method_b, b)):
        if side.index.has_duplicates:
            raise DlzoError(f"Method {name!r} has several runs per {pair_on}; select one lr per method first.")
    paired = pd.concat([a, b], axis=1, join="inner").reset_index()
    paired["diff"] = paired[method_a] - paired[method_b]
    return paired


def _paired_or_refuse(df: pd.DataFrame, method_a: str, method_b: str, pair_on: list[str] | None, value: str,
                      method_col: str) -> pd.DataFrame:
    """:func:`pair_runs` on (model, task, seed) unless told otherwise, refusing a comparison with no pair."""
    paired = pair_runs(df, method_a, method_b, pair_on or ["model", "task", "seed"], value, method_col)
    if paired.empty:
        raise DlzoError(f"No unit has runs of both {method_a!r} and {method_b!r}; check the grid.")
    return paired


COMPARISON_COLUMNS = ("a", "b", "n_pairs", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "wins", "ties",
                      "losses", "alternative", "wilcoxon_stat", "p_value")  # the keys of paired_comparison


def paired_comparison(df: pd.DataFrame, method_a: str, method_b: str, pair_on: list[str] | None = None,
                      value: str = "test_score", alternative: str = "greater", confidence: float = 0.95,
                      method_col: str = "method") -> dict:
    """Compare method A with method B over paired runs (default pairs: model, task, seed).

    ``alternative="greater"`` tests H1: A > B; ``"less"`` H1: A < B (a small p means A is worse, so a large
    p with a CI around 0 is what "A matches B" looks like).
    """
    paired = _paired_or_refuse(df, method_a, method_b, pair_on, value, method_col)
    stat, p = wilcoxon(paired["diff"], alternative)
    low, high = bootstrap_ci(paired["diff"], confidence)
    return {
        "a": method_a,
        "b": method_b,
        "n_pairs": int(len(paired)),
        "mean_a": float(paired[method_a].mean()),
        "mean_b": float(paired[method_b].mean()),
        "mean_diff": float(paired["diff"].mean()),
        "ci_low": low,
        "ci_high": high,
        "wins": int((paired["diff"] > 0).sum()),
        "ties": int((paired["diff"] == 0).sum()),
        "losses": int((paired["diff"] < 0).sum()),
        "alternative": alternative,
        "wilcoxon_stat": stat,
        "p_value": p,
    }


def paired_comparison_if_possible(df: pd.DataFrame, method_a: str, method_b: str, pair_on: list[str] | None = None,
                                  value: str = "test_score", alternative: str = "greater") -> dict | None:
    """:func:`paired_comparison`, or ``None`` where it cannot be made (no paired runs, a method missing): for
    tables built from a partly run grid, which compare whatever has been run."""
    try:
        return paired_comparison(df, method_a, method_b, pair_on, value, alternative)
    except DlzoError:
        return None


def comparison_table(df: pd.DataFrame, pairs: list[tuple[str, str, str]], pair_on: list[str] | None = None,
                     value: str = "test_score") -> pd.DataFrame:
    """Several :func:`paired_comparison` results, one row each; ``pairs`` holds (a, b, alternative)."""
    rows = [paired_comparison(df, a, b, pair_on, value, alt) for a, b, alt in pairs]
    return pd.DataFrame(rows)


def paired_equivalence(df: pd.DataFrame, method_a: str, method_b: str, margin: float,
                       pair_on: list[str] | None = None, value: str = "test_score", alpha: float = 0.05,
                       method_col: str = "method") -> dict:
    """:func:`equivalence_test` of method A against method B over paired runs (default pairs: model, task,
    seed): does A match B within ``±margin`` points?"""
    paired = _paired_or_refuse(df, method_a, method_b, pair_on, value, method_col)
    return {"a": method_a, "b": method_b, **equivalence_test(paired["diff"], margin, alpha)}
