"""Reading a single-layer ZO sweep: score per layer, where single-layer ZO starts to work, the best layer.

A layer sweep (``experiments/layer_sweep_*.yaml``) trains every decoder layer alone with the same lr,
steps and seeds, next to full MeZO and zero-shot. These helpers turn its results table into the
numbers the paper's claim is about:

* the per-layer mean ± std over seeds (and a bootstrap CI of the mean);
* the *onset* layer: the first layer whose mean score comes within ``margin`` points of full MeZO's mean;
* the *best* layer (highest mean score) and where the first outlier layer ranks among all layers;
* paired comparisons (by seed) of a chosen layer with full MeZO and with a random other layer.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .errors import DlzoError
from .recipes import random_layer
from .stats import bootstrap_ci, paired_comparison

RUN_KINDS = {"zero_shot": "zero_shot", "mezo_full": "full", "fo_full": "full"}  # every other method: "layer"


def layer_of(trained_layers: str) -> int | None:
    """The single trained layer of a run (``"[11]"`` → 11), ``None`` for zero-shot / whole-model runs."""
    layers = json.loads(trained_layers) if isinstance(trained_layers, str) else trained_layers
    if layers and len(layers) == 1 and isinstance(layers[0], int):
        return int(layers[0])
    return None


def sweep_runs(table: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """The sweep's rows with a ``layer`` column (single-layer runs) and a ``kind``: layer / full (full MeZO, or
    full first-order AdamW in a first-order sweep) / zero_shot; with ``task``, only that task's rows (a sweep
    grid may hold several tasks)."""
    if table.empty:
        raise DlzoError("The sweep's results table is empty; run the sweep (or set recompute) first.")
    df = (table if task is None else table[table["task"] == task]).copy()
    if task is not None and df.empty:
        tasks = ", ".join(sorted(table["task"].unique()))
        raise DlzoError(f"The sweep has no {task!r} runs; choose one of: {tasks}.")
    df["layer"] = df["trained_layers"].map(layer_of)
    df["kind"] = df["method"].map(lambda m: RUN_KINDS.get(m, "layer"))
    return df


def layer_summary(runs: pd.DataFrame, metric: str = "test_score") -> pd.DataFrame:
    """Per (model, task, layer): mean, std, n and a 95% bootstrap CI of ``metric`` over seeds."""
    layers = runs[runs["kind"] == "layer"]
    rows = []
    for (model, task, layer), group in layers.groupby(["model", "task", "layer"]):
        values = group[metric].to_numpy(dtype=float)
        low, high = bootstrap_ci(values)
        rows.append({"model": model, "task": task, "layer": int(layer), "mean": values.mean(),
                     "std": values.std(ddof=1) if len(values) > 1 else 0.0, "n": len(values),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def reference_scores(runs: pd.DataFrame, metric: str = "test_score") -> pd.DataFrame:
    """Mean and std of full MeZO and zero-shot per (model, task)."""
    ref = runs[runs["kind"].isin(["full", "zero_shot"])]
    return ref.groupby(["model", "task", "kind"])[metric].agg(["mean", "std", "count"]).reset_index()


def onset_layer(summary: pd.DataFrame, full_mean: float, margin: float = 2.0) -> int | None:
    """The first layer whose mean comes within ``margin`` points of full MeZO's mean (None if none does)."""
    hits = summary.sort_values("layer")
    hits = hits[hits["mean"] >= full_mean - margin]
    return int(hits["layer"].iloc[0]) if len(hits) else None


def layer_findings(runs: pd.DataFrame, strict_layer: int | None, loose_layer: int | None,
                   metric: str = "test_score", margin: float = 2.0) -> pd.DataFrame:
    """One row per (model, task): outlier layers vs onset layer vs best layer, and their scores."""
    summary = layer_summary(runs, metric)
    refs = reference_scores(runs, metric).set_index(["model", "task", "kind"])
    rows = []
    for (model, task), part in summary.groupby(["model", "task"]):
        full = refs["mean"].get((model, task, "full"), np.nan)
        zero = refs["mean"].get((model, task, "zero_shot"), np.nan)
        ranked = part.sort_values("mean", ascending=False).reset_index(drop=True)
        best = ranked.iloc[0]
        row = {"model": model, "task": task, "layers_run": len(part), "zero_shot": zero, "full_mezo": full,
               "strict_outlier_layer": strict_layer, "loose_outlier_layer": loose_layer,
               "onset_layer": onset_layer(part, full, margin) if np.isfinite(full) else None,
               "best_layer": int(best["layer"]), "best_layer_score": best["mean"]}
        for name, layer in (("strict", strict_layer), ("loose", loose_layer)):
            at = part[part["layer"] == layer]
            row[f"{name}_layer_score"] = float(at["mean"].iloc[0]) if len(at) else np.nan
            matches = ranked.index[ranked["layer"] == layer]
            row[f"{name}_layer_rank"] = int(matches[0]) + 1 if len(matches) else None
        rows.append(row)
    return pd.DataFrame(rows)


def compare_layer(runs: pd.DataFrame, layer: int, metric: str = "test_score", n_layers: int | None = None) -> pd.DataFrame:
    """Paired (by seed) comparisons of single-layer ZO on ``layer`` with full MeZO and with the seed's
    random other layer (:func:`dlzo.recipes.random_layer` over ``n_layers`` layers, default: the sweep's),
    taken from the same sweep runs."""
    out = []
    for (model, task), part in runs.groupby(["model", "task"]):
        chosen = part[(part["kind"] == "layer") & (part["layer"] == layer)].assign(method="layer")
        n_layers = n_layers or int(part["layer"].max()) + 1
        randoms = [part[(part["kind"] == "layer") & (part["seed"] == seed)
                        & (part["layer"] == random_layer(int(seed), n_layers, layer))]
                   for seed in sorted(chosen["seed"].unique())]
        random_runs = pd.concat(randoms).assign(method="random_layer") if randoms else pd.DataFrame()
        full = part[part["kind"] == "full"].assign(method="full")
        both = pd.concat([chosen, random_runs, full])
        for other, alternative in (("full", "less"), ("full", "two-sided"), ("random_layer", "greater")):
            if (both["method"] == other).any() and len(chosen):
                res = paired_comparison(both, "layer", other, pair_on=["model", "task", "seed"], value=metric,
                                        alternative=alternative)
                out.append({"model": model, "task": task, "layer": layer, **res})
    return pd.DataFrame(out)
