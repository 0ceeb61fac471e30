"""Reading ablations: each variant against the dominant layer (paired by seed), lr curves, strict vs loose rule.

The paper's ablations (its Table 6 and the layer combinations) change one thing about the dominant-layer
recipe at a time: add a second layer, keep only the MLP, keep only the top-1% outlier channels, freeze
those channels, pick the layer with a looser outlier rule, change lr or ε. Every variant runs with the same
seeds as the dominant layer itself, so each is read as a paired difference from it.
"""

from __future__ import annotations

import pandas as pd

from .errors import DlzoError
from .stats import paired_comparison, paired_comparison_if_possible


def versus_reference(table: pd.DataFrame, reference: str = "dominant", metric: str = "test_score",
                     alternative: str = "two-sided") -> pd.DataFrame:
    """One row per (task, variant): the variant against ``reference`` paired by (model, task, seed)
    (mean difference variant − reference, bootstrap CI, Wilcoxon p); variants without pairs are skipped. A
    variant that ran with several lrs (an lr sensitivity row) is read once per lr, as ``"<variant> lr=<lr>"``."""
    if table.empty or reference not in set(table["method"]):
        raise DlzoError(f"The results have no {reference!r} runs to compare the variants with; run them first.")
    table = with_variant_labels(table)
    rows = []
    for task, part in table.groupby("task", sort=False):
        for variant in dict.fromkeys(part["method"]):
            if variant == reference:
                continue
            res = paired_comparison_if_possible(part, variant, reference, ["model", "task", "seed"], metric,
                                                alternative)
            if res is not None:
                rows.append({"task": task, **res})
    return pd.DataFrame(rows)


def with_variant_labels(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each method that ran with several lrs split into one label per lr,
    ``"<method> lr=<lr>"`` (an lr sensitivity row is several variants, one per lr); others keep their name."""
    if table.empty or "lr" not in table:
        return table
    several = table.groupby("method")["lr"].transform("nunique") > 1
    return table.assign(method=table["method"].where(
        ~several, table["method"] + " lr=" + table["lr"].map(lambda v: f"{v:g}")))


def lr_curves(table: pd.DataFrame, metric: str = "test_score") -> pd.DataFrame:
    """Mean ``metric`` per (task, method, lr) over seeds: the lr sensitivity of each method."""
    trained = table[table["lr"] > 0]
    if trained.empty:
        raise DlzoError("The results have no trained runs (lr > 0) to draw lr curves from.")
    return trained.groupby(["task", "method", "lr"])[metric].agg(mean="mean", n="count").reset_index()


def zero_shot_test_score(table: pd.DataFrame, metric: str = "test_score") -> float | None:
    """The zero-shot model's test score, read off runs whose best dev checkpoint is step 0: those keep the
    untouched weights, so their test score is the zero-shot one. None when every run improved on dev."""
    if "best_step" not in table:
        return None
    kept = table.loc[table["best_step"] == 0, metric].dropna()
    if kept.empty:
        return None
    if kept.nunique() > 1:
        raise DlzoError("Runs that kept their step-0 weights disagree on the test score; they mix models or "
                        "test sets, so draw one table per model and task.")
    return float(kept.iloc[0])


def rule_comparison(runs: pd.DataFrame, strict_layer: int, loose_layer: int, metric: str = "test_score") -> pd.DataFrame:
    """The strict rule's layer against the loose rule's layer in a single-layer sweep (``sweep_runs`` rows),
    paired by seed, per task (two-sided)."""
    layers = runs[(runs["kind"] == "layer") & runs["layer"].isin([strict_layer, loose_layer])]
    named = layers.assign(method=layers["layer"].map({strict_layer: f"strict_layer_{strict_layer}",
                                                      loose_layer: f"loose_layer_{loose_layer}"}))
    if named["method"].nunique() < 2:
        raise DlzoError(f"The sweep lacks layer {strict_layer} or {loose_layer}; run both before comparing rules.")
    rows = [{"task": task, **paired_comparison(part, f"strict_layer_{strict_layer}", f"loose_layer_{loose_layer}",
                                               ["model", "task", "seed"], metric, "two-sided")}
            for task, part in named.groupby("task")]
    return pd.DataFrame(rows)
