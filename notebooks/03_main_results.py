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
# # 03 · Main results: the dominant layer against full MeZO, a random layer and zero-shot
#
# The paper's headline: tuning only the dominant layer (the first activation-outlier layer) with MeZO
# **matches or beats full-model MeZO** on nine tasks, on average (LLaMA2-7B 72.44 vs 71.87; Qwen3-8B 85.67 vs
# 84.52). Here the same comparison runs on a model anyone can run, with what the paper's reviewers asked
# for: several seeds, mean ± std, and paired tests (by task and seed) — "dominant ≥ full MeZO" and
# "dominant > a random other layer" (the control the paper lacks).
#
# **What the committed run is.** `experiments/main_core_smollm2.yaml` on SmolLM2-135M (dominant layer 11),
# the seven classification tasks × {zero-shot, full MeZO, dominant layer, random layer} × 3 seeds, 1000
# steps, batch 16, ε 1e-3, MeZO's data protocol, on one H200. One lr per method (the SST-2 probe's:
# 1e-3 for a single layer, 1e-5 for full MeZO), **not** tuned per task: a deviation from the MeZO protocol.
# The grid is only partly run (the coverage table below says exactly which cells exist); every table is
# computed from the finished runs only, and tasks missing a method are left out of the averages.
# `experiments/main_smollm2.yaml` is the full protocol (lr grid picked on dev, nine tasks, LoRA,
# Sparse-MeZO and first-order rows) for a GPU box with a few hours; it already holds these 84 runs (adopted:
# same settings, same run keys), and this notebook renders it with `-p main_grid experiments/main_smollm2.yaml`
# (each method's lr picked on dev per task, below).

# %%
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import display

import dlzo
from dlzo.errors import DlzoError
from dlzo.experiments import grid_runs
from dlzo.main_results import (
    METHOD_ORDER,
    PAPER_AVERAGES,
    chosen_lrs,
    claim_tests,
    coverage,
    method_table,
    ordered_methods,
    tuned_runs,
)
from dlzo.notebook import grid_results, setup
from dlzo.paths import repo_root
from dlzo.plotting import save_figure

# %% tags=["parameters"]
main_grid: str = "experiments/main_core_smollm2.yaml"  # the main-results grid file
device: str = ""  # empty picks cuda if available, else cpu
dtype: str = "float32"  # model dtype for recomputed runs
threads: int = 0  # torch CPU threads, 0 for the torch default
progress: bool = True  # progress bars
output_dir: str = "."  # where figures/ and results/ go, relative to the repo root
recompute: bool = False  # run missing grid cells here; False renders the committed results

# %%
env = setup(threads=threads or None, progress=progress)
root = repo_root()
out = root / output_dir
grid, table = grid_results(main_grid, recompute, output_dir, device, dtype, progress)
if not len(table):
    raise DlzoError(f"{grid['name']} has no finished runs yet; run `dlzo sweep {main_grid}` (a GPU box) or set "
                    "recompute=True.")
print(f"dlzo {dlzo.__version__} | device: {env['device']} (this kernel) | results of {grid['name']}: {len(table)} "
      f"runs on {', '.join(sorted(table['device'].unique()))}")

# %% [markdown]
# ## What has run
# Finished runs against the grid, per task and method (3 seeds each when complete).

# %% tags=["nbval-check-output"]
cov = coverage(table, grid_runs(grid))
done = cov.pivot(index="task", columns="method", values="done").reindex(grid["tasks"])
print(done[ordered_methods(done.columns)].to_string())
print(f"{int(cov['done'].sum())} of {int(cov['planned'].sum())} runs finished")

# %% [markdown]
# ## The lr of each method, picked on dev
# Where a method ran with several lrs (the full protocol's grid), only the runs of the lr with the best mean
# dev score over seeds are kept, per task (MeZO's protocol; test scores never enter the choice). A grid with
# one lr per method keeps every run.

# %% tags=["nbval-check-output"]
table = tuned_runs(table)
print(chosen_lrs(table).to_string())

# %% [markdown]
# ## The table: test accuracy, mean ± std over seeds (number of seeds)
# Zero-shot depends on the seed only where the test sample does: BoolQ and MultiRC have no local train split,
# so their train/dev/test are drawn per seed from the validation data; elsewhere its std is 0.

# %% tags=["nbval-check-output"]
methods = [m for m in METHOD_ORDER if m in set(table["method"])]
numbers, text = method_table(table, methods)
print(text.to_string())

# %% [markdown]
# ## The claims, tested by seed
# `two-sided` asks whether the dominant layer differs from full MeZO; `less` whether it is worse (a small p
# means worse); `greater` (against the random layer) whether it is better. With 3 pairs a Wilcoxon test
# cannot reach p < 0.125 (one-sided) or 0.25 (two-sided): read the bootstrap CI of the mean paired
# difference, and the pooled row (`all`), which pairs over tasks and seeds.

# %% tags=["nbval-check-output"]
tests = claim_tests(table)
cols = ["task", "a", "b", "alternative", "n_pairs", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "wins",
        "losses", "p_value"]
print(tests[cols].round(3).to_string(index=False))

# %%
fig, ax = plt.subplots(figsize=(9, 4))
shown = table[table["method"].isin(methods)]
sns.stripplot(data=shown, x="task", y="test_score", hue="method", hue_order=methods, dodge=True, ax=ax, size=5,
              order=[t for t in grid["tasks"] if t in set(shown["task"])])
sns.pointplot(data=shown, x="task", y="test_score", hue="method", hue_order=methods, dodge=0.6, ax=ax,
              errorbar=None, markers="_", linestyles="none", legend=False,
              order=[t for t in grid["tasks"] if t in set(shown["task"])])
ax.set_ylabel("test accuracy (%)")
ax.set_title(f"{grid['models'][0]}: every seed (dots) and the mean (bars)")
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
fig.tight_layout()
save_figure(fig, "03_main_results", out / "figures")
plt.show()

# %% [markdown]
# ## The paper's averages, for context
# Nine-task averages from the paper (7B–8B models, 10k steps, fp16, lr tuned): a different scale, shown
# only so a reader can see what the claim looks like there. They are **the paper's numbers, not ours**.

# %%
display(PAPER_AVERAGES)

# %% [markdown]
# ## Reading the result (committed run: SmolLM2-135M, H200; all 84 runs)
# * **Dominant layer ≈ full MeZO, on average.** Pooled over the 21 (task, seed) pairs of the seven tasks:
#   58.2 vs 58.6, −0.4 points (95% CI −2.6 to 1.7), 9 wins / 3 ties / 9 losses, two-sided p = 0.93. Per task
#   it is not a tie: SST-2 72.4 ± 1.5 vs 71.5 ± 1.8 and CB 61.9 vs 62.5 are even, WSC stays at the majority
#   class 57.7 for every method, COPA loses 8 points (55.7 vs 63.7, 3/3 seeds), RTE wins 7 (48.7 vs 41.6,
#   3/3 seeds — but full MeZO there falls *below* zero-shot 46.6, so this is full MeZO failing, not the layer
#   learning), BoolQ and MultiRC are within seed noise (−0.4, −2.1).
# * **A random other layer beats the dominant layer.** SST-2 75.0 ± 2.6, CB 67.9 ± 3.1, COPA 63.3 ± 2.1;
#   pooled over 21 pairs: −2.6 points (95% CI −4.6 to −0.6), 3 wins / 3 ties / 15 losses, one-sided p
#   (dominant > random) = 0.997. Only RTE goes the other way (48.7 vs 45.6, both at chance); BoolQ and
#   MultiRC lose 3 of 3 seeds each (−1.8, −3.0). The all-layer sweep of notebook 01 says the same on SST-2:
#   layer 11 is mid-pack, layers 15–17 are best.
# * **RTE, BoolQ, MultiRC**: nothing beats zero-shot by more than seed noise in 1000 steps at these lrs
#   (BoolQ 57.5 → 57.6–59.3; MultiRC 55.8 → 53.4–56.4). The paper's +2 points at 7B are not a regime a 135M
#   model reaches; on Qwen2.5-0.5B every single layer does move SST-2 at lr 1e-5 (notebooks 01 and 04).
