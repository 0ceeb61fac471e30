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
# # 01 · Discovery: where are the massive activations?
#
# *Dominant-Layer ZO* (arXiv 2606.05516) claims that zeroth-order fine-tuning of an LLM is carried by one
# decoder layer, and that this layer can be found before training, by inference alone: it is the **first
# layer whose output carries a massive activation outlier**.
#
# This notebook makes that rule precise and reproducible. For every decoder layer we read the layer's
# OUTPUT (the residual stream, with a forward hook) on a fixed set of calibration passages and record the
# three largest `|h|`, the median `|h|`, and where the largest one sits (hidden dim, token). A layer has an
# activation outlier when **top-1 > 100 and top-1 / median > 1000** (Sun et al. 2024's "massive activation"
# rule; both thresholds are parameters). Because the paper does not publish its threshold, we also report
# which layer a looser rule (ratio > 500) and a whole range of thresholds would pick.

# %%
import pandas as pd
from IPython.display import display

import dlzo
from dlzo.calibration import calibration_texts
from dlzo.experiments import seeds_with_every_lr, select_lr
from dlzo.notebook import grid_results, setup
from dlzo.outliers import profile_activations
from dlzo.paths import repo_root
from dlzo.plotting import (
    outlier_summary_table,
    plot_layer_curves,
    plot_layer_sweep,
    plot_outlier_profile,
    save_figure,
)
from dlzo.sweeps import compare_layer, layer_findings, layer_summary, reference_scores, sweep_runs

# %% tags=["parameters"]
models: list = ["smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "qwen2.5-1.5b"]  # offline keys, paths or hub ids
texts: str = ""  # calibration text: empty for the built-in passages, a text file, or task:NAME
num_texts: int = 10  # passages used
max_length: int = 256  # tokens per passage
min_abs: float = 100.0  # strict rule: top-1 |h| above this
min_ratio: float = 1000.0  # strict rule: top-1 / median |h| above this
loose_ratio: float = 500.0  # the looser rule reported beside it
device: str = ""  # empty picks cuda if available, else cpu; or cpu, cuda, auto
dtype: str = "float32"  # model dtype for profiling
threads: int = 0  # torch CPU threads, 0 for the torch default
progress: bool = True  # progress bars
output_dir: str = "."  # where figures/ and results/ go, relative to the repo root
sweep_grids: list = ["experiments/layer_sweep_smollm2.yaml", "experiments/layer_sweep_qwen2.5-0.5b.yaml"]  # single-layer sweeps (one model each); grids without results are skipped
controls_grid: str = "experiments/controls_smollm2.yaml"  # RTE and COPA controls, empty to skip
lr_sweep_grid: str = "experiments/layer_lr_sweep_smollm2.yaml"  # every layer with its own lr (SST-2), empty to skip
recompute: bool = False  # run missing grid cells here; False renders the committed results

# %%
env = setup(threads=threads or None, progress=progress)
out = repo_root() / output_dir
(out / "results" / "outliers").mkdir(parents=True, exist_ok=True)
passages = calibration_texts(texts or None, n=num_texts)
print(f"dlzo {dlzo.__version__} | device: {env['device']} | torch {env['torch']} | "
      f"transformers {env['transformers']} | threads {env['threads']}")
print(f"{len(passages)} calibration passages, first: {passages[0][:80]!r}...")

# %% [markdown]
# ## Profile every model
# Each profile is a table with one row per decoder layer. It is saved as JSON under
# `results/outliers/` so later notebooks (and readers) can use it without rerunning a model.

# %%
profiles = {}
for name in models:
    model, tokenizer = dlzo.load_model(name, dtype=dtype, device=device, progress=progress)
    profiles[name] = profile_activations(model, tokenizer, passages, max_length=max_length, progress=progress)
    profiles[name].to_json(out / "results" / "outliers" / f"{name.replace('/', '__')}.json")
    del model

# %% [markdown]
# ## The first outlier layer of each model
# `first_outlier_layer` uses the strict rule; `loose_rule_layer` uses ratio > 500. `channel` and
# `token_pos` locate the largest activation in that layer.

# %% tags=["nbval-check-output"]
summary = outlier_summary_table(profiles)
print(summary.to_string(index=False))

# %% [markdown]
# ## Top-1/2/3 and median |h| per layer
# A massive activation is a jump of the top curves by orders of magnitude while the median stays put.

# %%
import matplotlib.pyplot as plt  # noqa: E402

n = len(profiles)
fig, axes = plt.subplots(n, 1, figsize=(7.5, 3.4 * n), squeeze=False)
for ax, (name, profile) in zip(axes[:, 0], profiles.items()):
    plot_outlier_profile(profile, ax=ax, min_abs=min_abs, min_ratio=min_ratio, loose_ratio=loose_ratio, title=name)
fig.tight_layout()
save_figure(fig, "01_outlier_profiles", out / "figures")
plt.show()

# %% [markdown]
# ## The layer tables
# Rounded per-layer statistics (mean over passages as Sun et al.; `ratio_min` is the smallest ratio over
# passages, i.e. whether the outlier is present in *every* passage).

# %%
for name, profile in profiles.items():
    cols = ["layer", "top1", "top2", "top3", "median", "ratio", "ratio_min", "channel", "token_pos", "token"]
    print(f"== {name}")
    display(profile.table()[cols].round(2))

# %% [markdown]
# ## How sensitive is "the first outlier layer" to the threshold?
# The paper names no threshold. The scan shows which layer each ratio threshold picks (top-1 > 100 kept),
# for the mean over passages and for the strictest passage.

# %% tags=["nbval-check-output"]
scan = pd.concat({name: p.threshold_scan() for name, p in profiles.items()}, names=["model"]).reset_index(level=0)
print(scan.pivot(index="min_ratio", columns="model", values="first_layer_mean").to_string())

# %% [markdown]
# ## Reading the result
# * **SmolLM2-135M has two stages.** Hidden dim 507 already carries ~700 on the first token in layers 2-8
#   (ratio 400-770), fades at layers 9-10, and jumps to ~22,000 at layer 11 (ratio > 10,000). The strict rule
#   picks layer 11; a ratio threshold of 300-500 picks layer 2. Which of the two is the *dominant* layer for
#   ZO is an empirical question that the layer sweep of this notebook series answers, not the rule.
# * **Qwen2.5-0.5B** has one clean onset at layer 2 (dim 62, first token); every threshold from 100 to 2000
#   agrees. **Qwen2.5-1.5B** starts at layer 1. **Gemma-3-270M** carries a massive activation on `<bos>`
#   from layer 0 on and grows to ~1e5; its first outlier layer is 0 whatever the threshold.
# * The massive activation sits on the first token in every model here, as Sun et al. report for LLaMA-2.

# %% [markdown]
# ## Which single layer carries ZO fine-tuning? A sweep over every layer
# The rule above is only interesting if the layer it picks is the one where single-layer ZO works. So we
# train **each decoder layer alone** with MeZO's estimator (ZO-SGD, ε = 1e-3, batch 16, 1000 steps, the
# lowest-dev-loss checkpoint, MeZO's data protocol) with three seeds, next to full-model MeZO and zero-shot.
# One lr for every layer (1e-3), chosen on dev among {1e-5, 1e-4, 1e-3} on layers 2, 11 and 20
# (`results/lr_probe_smollm2`); full MeZO uses 1e-5, the best of {1e-7, 1e-6, 1e-5}. With
# `recompute=False` (the default) this renders the committed results; `recompute=True` runs whatever cells
# of the grid are missing, on this machine (the committed sweeps ran on H200s over several GPU sessions:
# 288 SmolLM2 runs and 78 Qwen runs; SmolLM2's SST-2 part, 96 runs, takes ~15 minutes with 16 worker processes).

# %%
root = repo_root()
sweeps = {}  # model -> (grid, runs, strict layer, loose layer): every sweep grid that has results
not_run = []
for grid_file in sweep_grids:
    grid, table = grid_results(grid_file, recompute, output_dir, device, dtype, progress)
    if not len(table):
        not_run.append(grid_file)
    else:
        name = grid["models"][0]
        profile = profiles.get(name)
        strict = profile.first_outlier_layer(min_abs, min_ratio) if profile else None
        loose = profile.first_outlier_layer(min_abs, loose_ratio) if profile else None
        sweeps[name] = (grid, sweep_runs(table), strict, loose)
for grid, runs, _, _ in sweeps.values():
    print(f"{len(runs)} runs of {grid['name']} on {', '.join(sorted(runs['device'].unique()))}, "
          f"{grid['steps']} steps each, seeds {sorted(int(x) for x in runs['seed'].unique())}")
print(f"not run yet: {', '.join(not_run) or 'none'}")

# %%
panels = [(name, task_name) for name, (_, runs, _, _) in sweeps.items() for task_name in sorted(runs["task"].unique())]
fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.8 * len(panels)), squeeze=False)
for ax, (name, task_name) in zip(axes[:, 0], panels, strict=True):
    _, runs, strict, loose = sweeps[name]
    on_task = runs[runs["task"] == task_name]
    plot_layer_sweep(layer_summary(on_task), reference_scores(on_task), strict, loose, ax=ax,
                     title=f"{name}: single-layer ZO on {task_name}")
fig.tight_layout()
save_figure(fig, "01_layer_sweep", out / "figures")
plt.show()

# %% [markdown]
# ### First outlier layer vs where single-layer ZO starts to work vs the best layer
# `onset_layer`: the first layer whose mean test score is within 2 points of full MeZO. `*_rank`: the
# rank of that layer's mean among all layers (1 = best).

# %% tags=["nbval-check-output"]
findings = {name: layer_findings(runs, strict, loose) for name, (_, runs, strict, loose) in sweeps.items()}
for name, table in findings.items():
    print(f"{name}:")
    print(table.round(1).T.to_string(), end="\n\n")

# %% [markdown]
# ### Paired tests (by seed)
# The first outlier layer against full MeZO (two-sided, and H1 "worse than full MeZO") and against a random
# other layer per seed (H1 "better"); and the same for each task's best layer. With three seeds a
# Wilcoxon test cannot go below p = 0.125 (one-sided): read the bootstrap CI of the mean paired difference.

# %% tags=["nbval-check-output"]
cols = ["task", "layer", "b", "alternative", "n_pairs", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "p_value"]
for name, (_, runs, strict, _) in sweeps.items():
    n_layers = profiles[name].num_layers if name in profiles else None
    tests = pd.concat([compare_layer(runs[runs["task"] == row.task], layer, n_layers=n_layers)
                       for row in findings[name].itertuples() for layer in sorted({strict, int(row.best_layer)} - {None})])
    print(f"{name}:")
    print(tests[cols].round(3).to_string(index=False), end="\n\n")

# %% [markdown]
# ### RTE and COPA: the outlier layers against controls
# A smaller grid (`experiments/controls_smollm2.yaml`, complete: 30 runs): the strict and the loose rule's
# layer, a random non-dominant layer per seed, full MeZO and zero-shot, 3 seeds, lr 1e-3 (single layers) and
# 1e-5 (full MeZO). On RTE every method ends within seed noise of zero-shot's 46.6 (layer 11 48.9 ± 2.9, the
# highest; full MeZO 43.9 ± 1.6, the lowest); on COPA layer 11 is the lowest (58.0 ± 1.0, below zero-shot's
# 61.0 in 3 of 3 seeds) and full MeZO (63.7) and a random layer (63.3) the highest. Its RTE runs of layers 11
# and 2 are runs of their own (other run keys than the every-layer sweep's, other leases), and all 6 reproduce
# the sweep's test scores: the 5 made with the same CUDA-graph setting bit for bit in every loss and score; the
# sixth (layer 11, seed 0) is an older row, run before CUDA graphs existed, with eager forwards on unpadded
# batches, whose float rounding differs (README): its losses differ in the fifth digit (dev score 53.2 vs 53.4).

# %%
_, controls = grid_results(controls_grid)
if len(controls):
    view = controls.groupby(["task", "method"])["test_score"].agg(["mean", "std", "count"]).round(1)
    display(view)

# %% [markdown]
# ### Every layer with its own lr (SST-2)
# The sweeps above give every layer of a model the same lr, so a layer whose ZO signal is larger also takes
# larger steps. `experiments/layer_lr_sweep_smollm2.yaml` gives each SmolLM2 layer its own lr, picked on dev
# among {3e-4, 1e-3, 3e-3} (mean dev score over seeds; test never enters), 3 seeds; its 1e-3 runs are the
# sweep's above. While the grid runs, the lr is picked and both curves are scored on the seeds on which every
# layer has run every lr (`seeds_with_every_lr`), so no layer is judged on more seeds than another; once the
# grid is complete those are all three. Drawn once the grid holds more than one lr.

# %% tags=["nbval-check-output"]
lr_grid, lr_table = grid_results(lr_sweep_grid)
lr_seeds = seeds_with_every_lr(lr_table)  # none for an empty table
if lr_seeds and lr_table["lr"].nunique() > 1:
    lr_model = lr_grid["models"][0]
    _, lr_fixed, lr_strict, lr_loose = sweeps[lr_model]
    lr_task = lr_grid["tasks"][0]
    print(f"{len(lr_table)} runs in the per-layer lr grid; lr picked and scored on seeds {lr_seeds}")
    even = lr_table[lr_table["seed"].isin(lr_seeds)]
    tuned = sweep_runs(select_lr(even, by="dev_score"), task=lr_task)
    fixed = lr_fixed[(lr_fixed["task"] == lr_task) & lr_fixed["seed"].isin(lr_seeds)]
    tuned = pd.concat([tuned, fixed[fixed["kind"] != "layer"]])  # full MeZO and zero-shot from the sweep
    curves = {"one lr (1e-3) for every layer": layer_summary(fixed),
              "each layer's own lr, picked on dev": layer_summary(tuned)}
    ax = plot_layer_curves(curves, lr_strict, ylabel=f"{lr_task} test accuracy (%)")
    save_figure(ax.figure, "01_layer_lr_sweep", out / "figures")
    plt.show()
    chosen = tuned[tuned["kind"] == "layer"].groupby("layer")["lr"].first()
    print("lr picked on dev per layer:", {int(k): float(v) for k, v in chosen.items()})
    print("one lr for every layer:")
    print(layer_findings(fixed, lr_strict, lr_loose).round(1).T.to_string())
    print("each layer's own lr:")
    print(layer_findings(tuned, lr_strict, lr_loose).round(1).T.to_string())
else:
    print(f"per-layer lr sweep: not run yet ({lr_sweep_grid or 'skipped'})")

# %% [markdown]
# ## Reading the sweeps (H200; SmolLM2-135M SST-2, COPA and RTE: every layer × 3 seeds; Qwen2.5-0.5B SST-2 3 seeds)
# * **A single layer does match full MeZO**: on SmolLM2 layer 11, the strict first outlier layer, reaches
#   71.5 ± 0.7 against full MeZO's 71.6 ± 1.7 (paired difference −0.15, 95% CI [−1.3, 0.7]) while perturbing
#   2.6% of the parameters. In that sense claim 1 holds here.
# * **But the first outlier layer is not the dominant layer of this model.** Single-layer ZO starts to
#   match full MeZO at layer 7 and peaks at layers 15–17 (layer 17: 81.7 ± 1.9, ten points above full MeZO
#   in every seed); layer 11 ranks 16th of 30 and sits in a local dip, and a random other layer beats it on
#   average by 2.9 points. The looser rule's layer 2 (58.3) is among the worst. Accuracy against depth is a
#   broad hump over the middle of the network, not a spike at the outlier onset.
# * **COPA and RTE (every layer × 3 seeds)** do not separate the layers on a 135M model: on COPA every
#   layer's mean ends within 58.0–64.0 of zero-shot's 61.0 and full MeZO reaches 63.7 ± 2.1 (100 test
#   questions: one question is one point); on RTE within 42.8–49.7 of zero-shot's 46.6, and full MeZO
#   (43.9 ± 1.6) ends below zero-shot (277 examples). Layer 11 is **last of 30 on COPA** (57, 58, 59: every
#   seed below zero-shot and below full MeZO, paired difference −5.7, CI [−7.0, −4.0]; best layers 18 and 15
#   at 64.0) and **third of 30 on RTE** (50.2, 50.9, 45.5: +4.9 over full MeZO, CI [3.2, 6.9], but not above
#   a random other layer, CI [−2.9, 13.0]; best layer 29 at 49.7) — the same signs as notebook 03's main
#   table, with seed 2 pulling RTE's layer 11 back towards the pack.
# * **Second family (Qwen2.5-0.5B, SST-2, lr 1e-5 from notebook 04's probe; all 24 layers and full MeZO
#   × 3 seeds)**: every single layer beats zero-shot (60.0 → 67.0–82.3); full MeZO reaches 80.3 ± 0.9. The
#   strict first outlier layer 2 reaches 76.0 ± 3.5, rank 16 of 24, **below full MeZO in 3 of 3 seeds**
#   (−4.2, CI [−8.6, −0.7]) and not above a random other layer (−2.4, CI [−8.6, 8.5]). The best layers are
#   11 (82.3 ± 0.7, **above full MeZO in 3 of 3 seeds**, +2.0, CI [0.9, 3.7]), 13 (81.9 ± 0.6) and 23
#   (81.7 ± 1.2); the first layer within 2 points of full MeZO is 9. Same picture as SmolLM2: the first
#   outlier layer is not where single-layer ZO works best, the middle of the network is.
# * **Each layer with its own lr (SmolLM2 SST-2, 180 of 270 runs so far; the cell above):** on seed 0, the
#   seed on which every layer has run all three lrs, dev picks 3e-4 for layer 11 and its test accuracy goes
#   from 71.6 to 78.7 — **rank 18 → 3 of 30** (seed 1, run so far for layers 0–14: 72.1 → 78.6 at 3e-4). 13
#   of 30 layers pick an lr other than 1e-3 (3e-4 mostly below layer 14, 3e-3 for five of the last eight);
#   layer 17 stays the best (82.5, at 1e-3). Part of layer 11's middling rank above is its lr: its gradient
#   is the largest of the model (notebook 02), so one lr for every layer oversteps it. Whether it also
#   closes the gap to layers 15–17 over three seeds is what the grid's remaining 90 runs (seeds 1–2) decide.
# * Caveats: the sweeps above use one lr for all layers of a model (SmolLM2 1e-3, Qwen 1e-5), tuned on three
#   layers only; three seeds; a 135M instruct model dequantized from 4-bit. The per-layer lr grid is partial
#   (one seed for every layer), and notebook 02 measures the mechanism the paper proposes.
