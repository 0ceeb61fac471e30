"""Figures: seaborn/matplotlib plots of dlzo results, saved reproducibly to ``figures/``.

PNG output is byte-stable; PDF gets ``CreationDate: None`` so reruns do not change the file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from .paths import repo_root

PDF_METADATA = {"CreationDate": None, "Creator": "dlzo", "Producer": "dlzo"}
PNG_METADATA = {"Software": "dlzo"}


def figures_dir(folder: str | Path | None = None) -> Path:
    """``folder`` if given, else ``<repo>/figures`` (else ``./figures`` outside a checkout)."""
    if folder is None:
        root = repo_root()
        folder = (root / "figures") if root is not None else Path("figures")
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig, name: str, folder: str | Path | None = None, dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``<name>.png`` and ``<name>.pdf`` with deterministic metadata; return the paths."""
    target = figures_dir(folder)
    paths = [target / f"{name}.png", target / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=dpi, bbox_inches="tight", metadata=PNG_METADATA)
    fig.savefig(paths[1], bbox_inches="tight", metadata=PDF_METADATA)
    return paths


def plot_outlier_profile(profile, ax=None, min_abs: float = 100.0, min_ratio: float = 1000.0,
                         loose_ratio: float | None = 500.0, title: str | None = None):
    """Top-1/2/3 and median |h| of every decoder layer's output (log scale), first outlier layer marked."""
    table = profile.table()
    long = table.melt(id_vars="layer", value_vars=["top1", "top2", "top3", "median"], var_name="statistic",
                      value_name="|h|")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    sns.lineplot(data=long, x="layer", y="|h|", hue="statistic", style="statistic", markers=True, dashes=False,
                 ax=ax)
    ax.set_yscale("log")
    strict = profile.first_outlier_layer(min_abs, min_ratio)
    if strict is not None:
        ax.axvline(strict, color="crimson", lw=1.5, ls="--", label=f"first outlier layer ({strict}, ratio>{min_ratio:g})")
    if loose_ratio is not None:
        loose = profile.first_outlier_layer(min_abs, loose_ratio)
        if loose is not None and loose != strict:
            ax.axvline(loose, color="darkorange", lw=1.2, ls=":", label=f"looser rule ({loose}, ratio>{loose_ratio:g})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("decoder layer (0-based)")
    ax.set_ylabel("|h| of layer output")
    ax.set_title(title or str(profile.model_name))
    ax.legend(fontsize=8, loc="best")
    return ax


def outlier_summary_table(profiles: dict) -> pd.DataFrame:
    """One row per model: layers, first outlier layer (strict and loose), the channel and token it sits on."""
    rows = []
    for name, profile in profiles.items():
        table = profile.table()
        strict = profile.first_outlier_layer()
        summary = profile.summary()
        row = {"model": name, "layers": profile.num_layers, "first_outlier_layer": strict,
               "loose_rule_layer": summary["first_outlier_layer_loose"]}
        if strict is not None:
            at = table.loc[strict]
            row.update({"top1": round(float(at["top1"]), 1), "ratio": round(float(at["ratio"]), 1),
                        "channel": int(at["channel"]), "token_pos": int(at["token_pos"]), "token": at["token"]})
        rows.append(row)
    return pd.DataFrame(rows)


def plot_layer_sweep(summary: pd.DataFrame, refs: pd.DataFrame | None = None, strict_layer: int | None = None,
                     loose_layer: int | None = None, ax=None, title: str | None = None, ylabel: str = "test score"):
    """Single-layer ZO score per layer (mean ± std over seeds), with full MeZO and zero-shot as bands and
    the first outlier layers (strict, loose) marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.6))
    part = summary.sort_values("layer")
    ax.errorbar(part["layer"], part["mean"], yerr=part["std"], fmt="o-", ms=4, capsize=2, color="tab:blue",
                label="single-layer ZO (mean ± std over seeds)")
    if refs is not None:
        styles = {"full": ("tab:green", "full MeZO"), "zero_shot": ("gray", "zero-shot")}
        for _, row in refs.iterrows():
            color, label = styles.get(row["kind"], ("black", row["kind"]))
            std = 0.0 if pd.isna(row["std"]) else row["std"]
            ax.axhline(row["mean"], color=color, lw=1.2, label=f"{label} ({row['mean']:.1f})")
            ax.axhspan(row["mean"] - std, row["mean"] + std, color=color, alpha=0.12)
    mark_outlier_layers(ax, strict_layer, loose_layer)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trained decoder layer (0-based)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_layer_curves(curves: dict[str, pd.DataFrame], strict_layer: int | None = None, ax=None,
                      ylabel: str = "test score", legend_title: str | None = None):
    """Several single-layer sweeps of one task on one axis: ``curves`` maps a label (e.g. "ZO, lr 1e-3",
    "first order") to that sweep's :func:`dlzo.sweeps.layer_summary`; each draws its per-layer mean, and the
    strict first outlier layer is marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.4))
    data = pd.concat([summary.assign(curve=label) for label, summary in curves.items()], ignore_index=True)
    sns.lineplot(data=data, x="layer", y="mean", hue="curve", marker="o", ax=ax)
    mark_outlier_layers(ax, strict_layer)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trained decoder layer (0-based)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, title=legend_title)
    return ax


def mark_outlier_layers(ax, strict_layer: int | None = None, loose_layer: int | None = None):
    """Labelled vertical lines at the first outlier layer by the strict rule (crimson, dashed) and by the looser
    rule (orange, dotted; drawn only where it differs). Either may be ``None`` (no such layer)."""
    if strict_layer is not None:
        ax.axvline(strict_layer, color="crimson", ls="--", lw=1.3, label=f"first outlier layer, strict ({strict_layer})")
    if loose_layer is not None and loose_layer != strict_layer:
        ax.axvline(loose_layer, color="darkorange", ls=":", lw=1.3, label=f"looser rule ({loose_layer})")
    return ax


def layer_axes(axes, strict_layer: int | None = None, loose_layer: int | None = None, xlabel: str = "decoder layer",
               legend_title: str | None = None) -> None:
    """Finish per-layer plots: on each of ``axes`` mark the outlier layers, label the x axis, draw the legend."""
    for ax in axes if hasattr(axes, "__iter__") else [axes]:
        mark_outlier_layers(ax, strict_layer, loose_layer)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8, title=legend_title)
