# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Ablations: which part of the recipe matters?
#
# The paper's ablations change one thing at a time about dominant-layer ZO: which rule picks the layer,
# adding a second layer, keeping only the MLP, keeping only the top-1% outlier channels, freezing those
# channels, and the lr / ε. Every variant here runs with the same seeds as the dominant layer itself and is
# read as a **paired difference** from it (mean, bootstrap CI, Wilcoxon p).
#
# Sources (SmolLM2-135M, H200, MeZO protocol, 1000 steps, batch 16): the all-layer SST-2 sweep and the
# RTE/COPA controls of notebook 01 (strict vs loose rule), the lr probe (lr sensitivity), notebook 02's
# ε study (signal quality vs ε), and `experiments/ablations_smollm2.yaml` (the within-layer variants; the
# coverage line says how much of it has run — render what exists, `recompute=True` runs the rest).

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

import dlzo
from dlzo.ablations import (
    lr_curves,
    rule_comparison,
    versus_reference,
    with_variant_labels,
    zero_shot_test_score,
)
from dlzo.experiments import grid_runs, load_grid
from dlzo.notebook import grid_results, setup
from dlzo.paths import repo_root
from dlzo.plotting import save_figure
from dlzo.sweeps import sweep_runs

# %% tags=["parameters"]
ablation_grid: str = "experiments/ablations_smollm2.yaml"  # the within-layer variants, a grid file
sweep_grid: str = "experiments/layer_sweep_smollm2.yaml"  # the single-layer sweep (strict vs loose rule)
controls_grid: str = "experiments/controls_smollm2.yaml"  # RTE and COPA controls, empty to skip
lr_probe_grids: list = ["experiments/lr_probe_smollm2.yaml", "experiments/lr_probe_qwen2.5-0.5b.yaml",
                         "experiments/lr_probe_qwen2.5-0.5b_ieee.yaml"]  # lr probes, one panel each
propagation_dir: str = "results/propagation"  # notebook 02's tables (the eps study), empty to skip
strict_layer: int = 11  # the strict rule's layer of the model (notebook 01)
loose_layer: int = 2  # the loose rule's layer of the model (notebook 01)
device: str = ""  # empty picks cuda if available, else cpu
dtype: str = "float32"  # model dtype for recomputed runs
threads: int = 0  # torch CPU threads, 0 for the torch default
progress: bool = True  # progress bars
output_dir: str = "."  # where figures/ and results/ go, relative to the repo root
recompute: bool = False  # run missing cells of the ablation grid here; False renders the committed results

# %%
env = setup(threads=threads or None, progress=progress)
root = repo_root()
out = root / output_dir
grid, ablations = grid_results(ablation_grid, recompute, output_dir, device, dtype, progress)
devices = sorted(ablations["device"].unique()) if len(ablations) else []
print(f"dlzo {dlzo.__version__} | device: {env['device']} (this kernel) | ablation runs on {', '.join(devices) or 'none yet'}")

# %% [markdown]
# ## Strict vs loose outlier rule
# SmolLM2's activation profile has two stages (notebook 01): the strict rule (top-1 > 100 and ratio > 1000)
# picks layer 11, a ratio of 500 picks layer 2. Same seeds, same lr (1e-3), one row per task.

# %% tags=["nbval-check-output"]
cols = ["task", "a", "b", "n_pairs", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "wins", "losses", "p_value"]
_, sweep = grid_results(sweep_grid)
rules = [rule_comparison(sweep_runs(sweep), strict_layer, loose_layer)] if len(sweep) else []
_, controls = grid_results(controls_grid)
if len(controls) and {"dominant", "loose_layer"} <= set(controls["method"]):
    rules += [versus_reference(controls[controls["method"].isin(["dominant", "loose_layer"])], reference="loose_layer")]
rule_table = pd.concat(rules) if rules else pd.DataFrame(columns=cols)
print(rule_table[cols].round(3).to_string(index=False))

# %% [markdown]
# ## Learning-rate sensitivity
# Test accuracy after 1000 steps per lr (SST-2, seed 0): an early, the dominant and a late layer, and full
# MeZO, on SmolLM2-135M (layers 2, 11, 20) and on Qwen2.5-0.5B (layers 2 = its strict first outlier layer,
# 12, 20; once with TF32 products, once in IEEE float32 as a control). A single lr for every layer is the
# largest caveat of a layer sweep. The dotted line is zero-shot: a run whose dev score never beats it keeps
# its zero-shot checkpoint (the best checkpoint is chosen on dev).

# %% tags=["nbval-check-output"]
probes = [(load_grid(root / g)["name"], grid_results(g)[1]) for g in lr_probe_grids]
probes = [(name, table) for name, table in probes if len(table)]
for name, table in probes:
    matmul = ", ".join(sorted(table["float32_matmul"].dropna().unique())) if "float32_matmul" in table else "ieee"
    print(f"{name} ({table['model'].iloc[0]}, float32 products: {matmul}; zero-shot dev "
          f"{table['zero_shot_dev_score'].iloc[0]:.1f}) -- test accuracy")
    print(lr_curves(table).pivot(index="lr", columns="method", values="mean").round(1).to_string(), end="\n\n")

# %%
if probes:
    fig, axes = plt.subplots(1, len(probes), figsize=(4.6 * len(probes), 3.6), squeeze=False, sharey=True)
    for ax, (name, table) in zip(axes[0], probes, strict=True):
        sns.lineplot(data=lr_curves(table), x="lr", y="mean", hue="method", marker="o", ax=ax)
        zero_shot = zero_shot_test_score(table)
        if zero_shot is not None:
            ax.axhline(zero_shot, color="grey", linestyle=":", label="zero-shot")
        ax.set_xscale("log")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, "04_lr_sensitivity", out / "figures")
    plt.show()

# %% [markdown]
# ## ε sensitivity of the ZO signal (notebook 02)
# Per layer and ε, over notebook 02's directions: the median |g| (the projected gradient a ZO step uses) and
# the median finite-difference error of g against the exact directional derivative (autograd), for the
# strict and loose layers, the layers around the strict one, and SST-2's best layer (17).

# %% tags=["nbval-check-output"]
signals_csv = root / propagation_dir / "signals.csv" if propagation_dir else None
if signals_csv and signals_csv.is_file():
    signals = pd.read_csv(signals_csv).assign(abs_g=lambda d: d["g"].abs())
    shown = signals[signals["layer"].isin(sorted({loose_layer, strict_layer - 1, strict_layer, strict_layer + 1, 17}))]
    print(shown.groupby(["layer", "eps"])[["abs_g", "fd_error"]].median().unstack("eps").round(4).to_string())

# %% [markdown]
# ## Inside the dominant layer and layer combinations
# Each variant minus the dominant layer, paired by seed (two-sided). `dominant_plus_last`: layers 11 and
# 29; `dominant_plus_loose`: 2 and 11; `dominant_mlp_only`: the MLP of layer 11; `top1pct_channels`: only
# the MLP channels carrying the top-1% activations; `channels_frozen`: layer 11 with those channels frozen.

# %% tags=["nbval-check-output"]
print(f"{grid['name']}: {len(ablations)} of {len(grid_runs(grid))} runs finished")
if len(ablations) and "dominant" in set(ablations["method"]):
    variants = versus_reference(ablations)
    print(variants[cols].round(3).to_string(index=False))

# %%
if len(ablations):
    shown = with_variant_labels(ablations)
    order = ["dominant"] + sorted(set(shown["method"]) - {"dominant"})
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) + 1.5))
    sns.stripplot(data=shown, y="method", x="test_score", hue="task", order=order, dodge=True, ax=ax, size=6)
    for task, colour in zip(shown["task"].unique(), sns.color_palette(), strict=False):
        reference = shown[(shown["method"] == "dominant") & (shown["task"] == task)]["test_score"].mean()
        ax.axvline(reference, color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("test accuracy (%)")
    ax.set_ylabel("")
    ax.set_title("every variant, every seed (dotted: the whole dominant layer's mean per task)")
    fig.tight_layout()
    save_figure(fig, "04_ablations", out / "figures")
    plt.show()

# %% [markdown]
# ## Reading the result (committed runs: SmolLM2-135M and Qwen2.5-0.5B, H200)
# * **The strict rule's layer beats the loose rule's on SST-2** by 13 points (71.5 vs 58.3, 3 of 3 seeds),
#   but on COPA the loose layer 2 is ahead (61.0 vs 58.0, 3 of 3 seeds) and neither beats zero-shot (61.0),
#   and on RTE the strict layer is ahead by 3.4 (48.9 vs 45.5, 2 of 3 seeds, CI −0.4 to 6.5) with both at
#   chance (zero-shot 46.6): which outlier layer "is dominant" depends on the task, and on SST-2 neither is
#   the best layer (15–17, notebook 01). (The controls grid's RTE rows are reruns of the sweep's, same result.)
# * **The dominant layer is the one that works at the smallest lr.** At 1e-4 layer 11 already reaches 71.1
#   while layers 2 and 20 stay at 55; at 1e-3 layer 20 catches up and passes it (72.9 vs 71.6); at 1e-5
#   every single layer stays near zero-shot, and full MeZO needs 1e-5 (71.4). With layer 11's gradient the
#   largest of all layers (notebook 02), a fixed lr moves it furthest: part of its "dominance" is a step-size
#   effect, which only a per-layer lr grid can separate from anything deeper.
# * **On Qwen2.5-0.5B every probed layer needs a ten-times smaller lr than on SmolLM2, and then the strict
#   first outlier layer (2) learns too.** At 1e-5: layer 2 60.0 → 72.6, layer 12 74.3, layer 20 78.7 (dev
#   still rising at step 1000 for all three). At 1e-4 only layer 12 learns (73.4 TF32 / 73.9 IEEE float32);
#   layer 2 and (with TF32) layer 20 keep their zero-shot checkpoint; at 1e-3 and 1e-2 every layer's dev
#   accuracy falls below zero-shot (47–56 at step 250). So last session's "layer 2 never moves" was an lr
#   artefact: the grid stopped at 1e-4. Full MeZO: 1e-7 78.6, **1e-6 81.2**, 1e-5 diverges (loss ~80, kept
#   at zero-shot). TF32 changes the projected gradient of layer 2 by at most 3.5% (`dlzo bench --tf32`, 5
#   seeds) and the 1e-4 row reads the same in both precisions. One seed, one task: notebook 01's every-layer
#   sweep (lr 1e-5) is where Qwen's layers are compared.
# * **ε**: layer 11 has the largest |g| at every ε and the most accurate finite difference (relative error
#   0.01–0.02% at ε ≤ 1e-3, 1.5% at 1e-2 vs 2–9% for the other layers shown); at ε = 1e-2 the estimate of
#   every other layer degrades more. ε ≤ 1e-3 (MeZO's) is safe for every layer.
# * **Within-layer variants and layer combinations** (complete: 96 runs, 3 seeds each; the within-layer
#   variants at the dominant layer's lr 1e-3). On SST-2, training *less* of layer 11 works *better*, in 3 of
#   3 seeds each: only the MLP channels that carry the top-1% activations 78.9 (+7.3 over the whole layer's
#   71.6, 95% CI 2.1 to 10.2), its MLP alone 77.0 (+5.4, CI 2.5 to 7.1), the layer with those channels
#   frozen 75.3 (+3.7, CI 0.9 to 6.3) — the outlier channels are neither needed nor in the way. A second
#   layer at the single layer's lr 1e-3 (11 + 29, or 2 + 11) collapses to 50.8–51.1, below zero-shot (ZO's
#   variance grows with the number of perturbed parameters); at a smaller lr the pairs learn: **11 + 29
#   reaches 76.8 at 3e-4 (+5.2 over layer 11 alone, CI 3.8 to 7.2, 3 of 3 seeds) and 73.5 at 1e-4 (+2.0,
#   3 of 3)**, while 2 + 11 reaches 72.2 at 3e-4 (+0.7, 1 of 3) and 70.4 at 1e-4 (−1.1). Adding the last
#   layer helps; adding the loose-rule layer 2 does not. The loose-rule layer alone: 56.7 (−14.9, 3 of 3).
#   **Caveat, from notebook 01's per-layer lr sweep:** the whole layer 11 at 3e-4 reaches 78.7 and 78.6
#   (seeds 0–1), what the top-1% channels (78.9) and the MLP (77.0) reach at 1e-3. Fewer perturbed
#   parameters act like a smaller step, so much of "less is more" is step size; the variants ran at 1e-3
#   only.
#   ε 1e-4 and 1e-2 land within 0.4 points of 1e-3; lr 1e-4 reads as 1e-3 (70.9 vs 71.6), 1e-5 stays near
#   zero-shot (56.0) and 1e-2 keeps the zero-shot checkpoint (51.6). With 3 pairs a two-sided Wilcoxon test
#   cannot go below p = 0.25: the CIs and the 3-of-3 counts carry these rows. On COPA the whole dominant
#   layer is the *lowest* of all variants (58.0, below zero-shot 61.0); every other variant ends at
#   58.3–63.3: nothing here learns COPA beyond seed noise.
