# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-all
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
# # 02 · Propagation: the mechanism, measured layer by layer
#
# Claim 4 of *Dominant-Layer ZO* (arXiv 2606.05516): the dominant layer (the first activation-outlier layer)
# combines **high perturbation sensitivity** with an **early place in the residual stream**, so perturbations
# of its weights **propagate and accumulate** through the later layers and give **strong, stable ZO signals**.
# Reviewers asked for a quantitative test of this that is not circular with the rule that picks the layer.
#
# Here every decoder layer `l` is measured the same way, and no measurement looks at activation magnitudes
# (the outlier rule only labels layers in the plots). `z_l` perturbs every weight of block `l` (the tensors
# single-layer ZO trains), drawn exactly as `ZOEngine.draw` draws it; the loss is MeZO's SST-2 training loss
# on one fixed batch of training examples.
#
# 1. **Sensitivity**: `|L(θ+εz_l) − L(θ)|` over several seeds and three ε; and the curvature along `z_l`,
#    `(L(θ+εz_l) + L(θ−εz_l) − 2L(θ)) / ε²`, whose mean over directions is the trace of the layer's Hessian.
# 2. **Propagation**: how far every decoder layer's output `h_j` moves when only layer `l` is perturbed,
#    `||h'_j − h_j|| / ||h_j||` over the batch's real tokens (forward hooks; a layer × layer matrix).
# 3. **ZO signal**: the projected gradient `g = (L(θ+εz) − L(θ−εz)) / 2ε` (mean `|g|`, its spread over seeds),
#    the exact directional derivative `z·∇_l L` from one autograd backward, the finite-difference error as a
#    function of ε, and the cosine of the averaged estimate `mean_s g_s z_s` with the true layer gradient.
# 4. **First order**: the per-layer gradient norm `||∇_l L||`, which the paper says shows no dominant layer.

# %%
import json
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display
from matplotlib.colors import LogNorm
from scipy.stats import spearmanr

import dlzo
from dlzo.calibration import calibration_texts
from dlzo.experiments import ResultsStore, select_lr
from dlzo.layers import decoder_layers
from dlzo.losses import make_loss_fn
from dlzo.notebook import setup
from dlzo.outliers import profile_activations
from dlzo.paths import repo_root
from dlzo.perturbation import analyze_layers
from dlzo.plotting import layer_axes, plot_layer_curves, save_figure
from dlzo.sweeps import layer_summary, reference_scores, sweep_runs
from dlzo.tasks import load_task_data

# %% tags=["parameters"]
model: str = "smollm2-135m"  # offline key, path or hub id
task: str = "sst2"  # benchmark whose MeZO training loss is measured
num_examples: int = 8  # training examples in the one fixed batch
data_seed: int = 0  # MeZO sampling seed that picks the training examples
num_directions: int = 8  # seeds, i.e. directions z per layer and eps
eps_values: list = [1e-4, 1e-3, 1e-2]  # perturbation scales of the eps ablation
analysis_layers: list = []  # decoder layers to analyse, empty for all
num_texts: int = 10  # calibration passages for the outlier rule that labels layers
max_length: int = 256  # tokens per calibration passage
device: str = ""  # empty picks cuda if available, else cpu
dtype: str = "float32"  # model dtype
threads: int = 0  # torch CPU threads, 0 for the torch default
progress: bool = True  # progress bars
output_dir: str = "."  # where figures/ and results/ go, relative to the repo root

# %%
env = setup(threads=threads or None, progress=progress)
out = repo_root() / output_dir
results_dir = out / "results" / "propagation"
results_dir.mkdir(parents=True, exist_ok=True)
print(f"dlzo {dlzo.__version__} | device: {env['device']} | torch {env['torch']} | "
      f"transformers {env['transformers']} | threads {env['threads']}")

lm, tokenizer = dlzo.load_model(model, dtype=dtype, device=device, progress=progress)
data = load_task_data(task, seed=data_seed, num_train=num_examples, num_dev=0, num_test=0)
batch = data.train[:num_examples]
loss_fn = make_loss_fn(lm, tokenizer, data.task)
n_layers = len(decoder_layers(lm))
layers = [int(i) for i in analysis_layers] or list(range(n_layers))
seeds = list(range(num_directions))
print(f"{model}: {n_layers} decoder layers | {task}: {len(batch)} training examples (seed {data_seed}) | "
      f"{len(layers)} layers x {len(eps_values)} eps x {len(seeds)} seeds")

# %% [markdown]
# ## Which layers the outlier rule names
# Only used to label the plots: the strict rule (top-1 |h| > 100 and > 1000x the median, notebook 01) and the
# looser ratio > 500.

# %% tags=["nbval-check-output"]
profile = profile_activations(lm, tokenizer, calibration_texts(None, n=num_texts), max_length=max_length,
                              progress=progress)
strict_layer = profile.first_outlier_layer(100.0, 1000.0)
loose_layer = profile.first_outlier_layer(100.0, 500.0)
print(f"first outlier layer: strict {strict_layer}, loose {loose_layer}")


# %% [markdown]
# ## Run the measurements
# One clean forward (its layer outputs stay on the device), one forward + backward for the gradients of all
# layers, then for each layer, ε and seed the two forwards `θ ± εz_l`; the hooks compare the `+` forward's
# layer outputs with the clean ones. Layers below `l` are computed once per layer (prefix sharing: their
# outputs are bit-identical in every forward). The parameters come back bit-identical.

# %%
start = time.perf_counter()
analysis = analyze_layers(lm, loss_fn, batch, layers=layers, seeds=seeds, eps=eps_values, progress=progress)
elapsed = time.perf_counter() - start
ref_eps = analysis.reference_eps()
summary = analysis.summary(ref_eps)
for name in ("signals", "propagation", "gradients", "cosines"):
    getattr(analysis, name).to_csv(results_dir / f"{name}.csv", index=False)
summary.to_csv(results_dir / "summary.csv", index=False)
(results_dir / "run.json").write_text(json.dumps({
    "model": model, "task": task, "num_examples": len(batch), "data_seed": data_seed, "seeds": seeds,
    "eps": [float(e) for e in eps_values], "layers": layers, "dtype": dtype, "device": env["device"],
    "threads": env["threads"], "loss_base": analysis.loss_base, "strict_outlier_layer": strict_layer,
    "loose_outlier_layer": loose_layer, "seconds": round(elapsed, 1)}, indent=1) + "\n")
print(f"clean loss {analysis.loss_base:.4f} | reference eps {ref_eps:g} | "
      f"{len(analysis.signals)} directions measured")

# %% [markdown]
# ## 1 · First-order gradient and ZO signal per layer
# For an exact directional derivative, `E[g²] = ||∇_l L||²`: the ZO signal of a layer *is* its gradient norm
# (mean `|g|` ≈ 0.80·`||∇_l L||`), and the spread of `g` over seeds is proportional to it, so the
# coefficient of variation is the same for every layer. The left panel checks this identity layer by layer;
# the right one shows the gradient per parameter (all SmolLM2 blocks have the same size, so the two have the
# same shape there).

# %%
sig_ref = analysis.signals[np.isclose(analysis.signals["eps"], ref_eps)].assign(abs_g=lambda d: d["g"].abs())
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
sns.lineplot(data=sig_ref, x="layer", y="abs_g", errorbar="sd", marker="o", ax=axes[0],
             label=f"ZO |g| (eps {ref_eps:g}), mean and sd over seeds")
axes[0].plot(summary["layer"], summary["grad_norm"], "k-s", ms=4, label="first order ||grad_l L||")
axes[0].plot(summary["layer"], math.sqrt(2 / math.pi) * summary["grad_norm"], color="gray", ls=":",
             label="0.80 ||grad_l L|| (expected mean |g|)")
axes[0].set_ylabel("magnitude")
axes[0].set_title("ZO signal vs the layer gradient")
axes[1].plot(summary["layer"], summary["grad_rms"], "k-s", ms=4, label="||grad_l L|| / sqrt(#params)")
axes[1].set_ylabel("rms gradient per parameter")
axes[1].set_title("first-order gradient, normalised")
layer_axes(axes, strict_layer, loose_layer)
fig.tight_layout()
save_figure(fig, "02_zo_signal", out / "figures")
plt.show()

# %% [markdown]
# ## 2 · Perturbation sensitivity and curvature
# `|L(θ+εz_l) − L(θ)|` grows linearly in ε while the first-order term `ε·z·∇L` dominates; the symmetric part
# `(L₊ + L₋ − 2L)/ε²` estimates the curvature `z_lᵀ H_l z_l` (mean `tr H_l`; its spread over directions is
# `sqrt(2)·||H_l||_F`, so single directions scatter widely and the band is the standard error of the mean).
# The smallest ε cannot resolve the curvature in fp32 (the loss differences fall below the loss's rounding),
# so the right panel shows the larger ones.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
sig = analysis.signals.assign(eps_label=lambda d: d["eps"].map(lambda e: f"{e:g}"))
sns.lineplot(data=sig, x="layer", y="sensitivity", hue="eps_label", errorbar="sd", marker="o", ax=axes[0])
axes[0].set_yscale("log")
axes[0].set_ylabel("|L(theta + eps z) - L(theta)|")
axes[0].set_title("sensitivity (mean and sd over seeds)")
curv = sig[sig["eps"] >= min(1e-3, max(eps_values))]
sns.lineplot(data=curv, x="layer", y="curvature", hue="eps_label", errorbar="se", marker="o", ax=axes[1])
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set_yscale("symlog", linthresh=1.0)
axes[1].set_ylabel("(L+ + L- - 2L) / eps^2")
axes[1].set_title("curvature along z (mean and s.e. over seeds)")
layer_axes(axes, strict_layer, loose_layer, legend_title="eps")
fig.tight_layout()
save_figure(fig, "02_sensitivity", out / "figures")
plt.show()

# %% [markdown]
# ## 3 · Propagation through the residual stream
# Row `l`, column `j`: the relative change of layer `j`'s output when only layer `l` is perturbed (mean over
# seeds, reference ε). Everything left of the diagonal is exactly zero (white): a layer cannot move what comes
# before it. The left map is token-wise (the mean over real tokens of `||Δh_t|| / ||h_t||`); the right one
# is the Frobenius ratio over all real tokens, which a massive-activation token dominates: where the outlier
# appears, `||h_j||` jumps and the ratio drops although nothing downstream changed less.

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
for ax, stat, title in zip(axes, ["rel_change_token", "rel_change"], ["token-wise", "Frobenius, all tokens"],
                           strict=True):
    matrix = analysis.propagation_matrix(ref_eps, stat)
    positive = matrix.where(matrix > 0)
    values = positive.to_numpy()[np.isfinite(positive.to_numpy())]
    sns.heatmap(positive, ax=ax, cmap="viridis", norm=LogNorm(values.min(), values.max()),
                cbar_kws={"label": "||h' - h|| / ||h||"})
    ax.set_xlabel("downstream layer j (output)")
    ax.set_ylabel("perturbed layer l")
    ax.set_title(f"relative change, {title} (eps {ref_eps:g})")
    for layer, color in ((strict_layer, "crimson"), (loose_layer, "darkorange")):
        if layer in matrix.index:  # the outlier layers' rows
            row = list(matrix.index).index(layer)
            ax.axhline(row + 0.5, color=color, lw=1.0, ls="--")
fig.tight_layout()
save_figure(fig, "02_propagation_heatmap", out / "figures")
plt.show()

# %% [markdown]
# Along each row: the change right at the perturbed layer (`prop_self`), at the last layer (`prop_last`), and
# their ratio, the **amplification** (> 1: the perturbation grows on its way down the stream).

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
axes[0].plot(summary["layer"], summary["prop_self"], "o-", label="at the perturbed layer")
axes[0].plot(summary["layer"], summary["prop_last"], "s-", label=f"at the last layer ({n_layers - 1})")
axes[0].set_yscale("log")
axes[0].set_ylabel("token-wise relative change")
axes[1].plot(summary["layer"], summary["amplification"], "o-", color="purple")
axes[1].axhline(1, color="k", lw=0.8)
axes[1].set_ylabel("last layer / perturbed layer")
axes[1].set_title("amplification downstream")
layer_axes(axes, strict_layer, loose_layer, xlabel="perturbed layer")
fig.tight_layout()
save_figure(fig, "02_propagation_profile", out / "figures")
plt.show()

# %% [markdown]
# ## 4 · How good is the finite difference, and how well does the ZO estimate point?
# Left: the ε ablation, `|g − z·∇L| / rms(z·∇L)` (median over seeds) per layer. Too small an ε drowns the loss
# difference in fp32 rounding, too large a one adds curvature and higher-order terms. Right: the cosine of
# the averaged estimate `mean_s g_s z_s` with `∇_l L`, next to what exact directional derivatives give with
# the same `S` directions, `sqrt(S / (d + S + 1))`, and the mean `|cos|` of a random direction,
# ≈ `sqrt(2/(πd))`.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
fd = analysis.signals.groupby(["layer", "eps"], as_index=False)["fd_error"].median()
fd["eps_label"] = fd["eps"].map(lambda e: f"{e:g}")
sns.lineplot(data=fd, x="layer", y="fd_error", hue="eps_label", marker="o", ax=axes[0])
axes[0].set_yscale("log")
axes[0].set_ylabel("|g - z.grad| / rms(z.grad)")
axes[0].set_title("finite-difference error (median over seeds)")
layer_axes(axes[0], strict_layer, loose_layer, legend_title="eps")
cos = analysis.cosines.assign(eps_label=lambda d: d["eps"].map(lambda e: f"{e:g}"))
sns.lineplot(data=cos, x="layer", y="cosine", hue="eps_label", marker="o", ax=axes[1])
ideal = cos.drop_duplicates("layer")
axes[1].plot(ideal["layer"], ideal["cos_ideal"], "k--", lw=1, label="exact, same S")
axes[1].plot(ideal["layer"], ideal["cos_random"], "k:", lw=1, label="random direction")
axes[1].set_ylabel("cos(mean g z, grad_l L)")
axes[1].set_title(f"direction quality, S = {len(seeds)}")
layer_axes(axes[1], strict_layer, loose_layer)
fig.tight_layout()
save_figure(fig, "02_fd_error_cosine", out / "figures")
plt.show()

# %% [markdown]
# ## The per-layer numbers
# Three significant digits, at the reference ε. `g_abs/grad_norm` should sit near 0.80 (fewer seeds scatter
# it); `cosine` near `cos_ideal`; `prop_*` are token-wise relative changes.


# %% tags=["nbval-check-output"]
def sig3(frame: pd.DataFrame) -> pd.DataFrame:
    """Every float to three significant digits."""
    return frame.apply(lambda col: col.map(lambda v: float(f"{v:.3g}")) if col.dtype.kind == "f" else col)


columns = ["layer", "grad_norm", "g_abs", "g_std", "sensitivity", "sensitivity_std", "cosine", "prop_self",
           "prop_last", "amplification"]
print(f"eps {ref_eps:g}, {len(seeds)} seeds, {len(batch)} examples, clean loss {analysis.loss_base:.3g}")
print(sig3(summary[columns]).to_string(index=False))

# %% [markdown]
# The ε ablation in numbers: median finite-difference error and mean sensitivity per layer and ε, and the
# curvature at the largest ε.

# %%
ablation = analysis.signals.groupby(["layer", "eps"]).agg(
    fd_error=("fd_error", "median"), sensitivity=("sensitivity", "mean"), curvature=("curvature", "mean"))
display(sig3(ablation.reset_index()).pivot(index="layer", columns="eps"))

# %% [markdown]
# ## Relation to the single-layer ZO sweep
# `results/layer_sweep_smollm2` holds a GPU sweep that ZO-tuned each SmolLM2 layer alone on SST-2 (1000 steps,
# 3 seeds; test accuracy). The Spearman correlation across the analysed layers tells which mechanism measure,
# if any, predicts which layer trains best. Shown only for SmolLM2 on SST-2.

# %%
sweep_table = ResultsStore(repo_root() / "results" / "layer_sweep_smollm2").table()
relation = None
if model == "smollm2-135m" and task == "sst2" and len(sweep_table):
    sweep = sweep_runs(sweep_table, task=task)
    accuracy = sweep[sweep["kind"] == "layer"].groupby("layer")["test_score"].mean().rename("sweep_test_acc")
    joined = summary.set_index("layer").join(accuracy, how="inner")
    measures = ["grad_norm", "g_abs", "sensitivity", "curvature", "prop_self", "prop_last", "amplification",
                "fd_error", "cosine"]
    if len(joined) >= 4:
        rows = []
        for measure in measures:
            rho, pval = spearmanr(joined[measure], joined["sweep_test_acc"])
            rows.append({"measure": measure, "spearman_rho": round(float(rho), 3),
                         "p_value": float(f"{pval:.2g}")})
        relation = pd.DataFrame(rows)
        display(relation)
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for ax, measure in zip(axes, ["g_abs", "curvature", "amplification"], strict=True):
            ax.scatter(joined[measure], joined["sweep_test_acc"], c=joined.index, cmap="viridis")
            for layer, row in joined.iterrows():
                ax.annotate(str(layer), (row[measure], row["sweep_test_acc"]), fontsize=7,
                            color="crimson" if layer == strict_layer else "black")
            if measure == "curvature":
                ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlabel(f"{measure} (eps {ref_eps:g})")
            ax.set_ylabel("sweep test accuracy (%)")
        fig.tight_layout()
        save_figure(fig, "02_sweep_relation", out / "figures")
        plt.show()
print("sweep relation:", "computed" if relation is not None else "not available for these settings")

# %% [markdown]
# ## First-order single-layer sweep beside the ZO sweep
# The paper says first-order fine-tuning has no dominant layer. `experiments/fo_layer_sweep_smollm2.yaml`
# trains every layer alone with AdamW (MeZO's fine-tuning budget: 625 steps at batch 8, lr picked per layer on
# dev) beside full-model AdamW; this cell draws it next to the ZO sweep once its results exist.

# %% tags=["nbval-check-output"]
fo_table = ResultsStore(repo_root() / "results" / "fo_layer_sweep_smollm2").table()
if model == "smollm2-135m" and task == "sst2" and len(fo_table) and len(sweep_table):
    fo = sweep_runs(select_lr(fo_table, by="dev_score"), task=task)
    curves = {"ZO (MeZO-SGD, lr 1e-3)": layer_summary(sweep), "first order (AdamW, lr on dev)": layer_summary(fo)}
    ax = plot_layer_curves(curves, strict_layer, ylabel=f"{task} test accuracy (%)")
    save_figure(ax.figure, "02_fo_vs_zo_layers", out / "figures")
    plt.show()
    print(pd.DataFrame({label: c.set_index("layer")["mean"] for label, c in curves.items()}).round(1).to_string())
    single = fo[fo["kind"] == "layer"]
    seeds = single.groupby("layer")["seed"].nunique()
    print(f"first order: {len(single)} single-layer runs, {seeds.min()}–{seeds.max()} seeds per layer; "
          f"full AdamW {reference_scores(fo).set_index('kind')['mean'].round(1).to_dict()}")
else:
    print("first-order layer sweep: not run yet (experiments/fo_layer_sweep_smollm2.yaml)")

# %% [markdown]
# ## Reading the result
# (Numbers from the committed full run: SmolLM2-135M, fp32, CPU, 8 SST-2 training examples, 8 seeds,
# ε ∈ {1e-4, 1e-3, 1e-2}, all 30 layers; the CI snapshot runs a subset and need not match.)
#
# **What claim 4 names is there, at the outlier layers, and measured without looking at activations.**
# * *Sensitivity.* Layer 11 has the largest gradient of all 30 layers: `||∇L||` = 7.73 (4.1e-3 per parameter)
#   against 2.5 and 2.9 for its neighbours and a median near 2.5; only the first and last layers come close
#   (0: 6.78, 29: 6.91), and the loose-rule layer 2 shows a smaller peak (5.86). The loss moves accordingly:
#   `|L(θ+εz) − L(θ)|` = 4.8e-3 at ε = 1e-3 for layer 11, 1.2e-3 to 2.3e-3 for layers 15-17, about ten
#   times more per decade of ε for every layer (the first-order regime). Curvature along `z` is highest at
#   layers 11-12 (195 ± 66 and 137 ± 30 at ε = 1e-2, mean ± s.e.; layers 16-29 within ±40 of zero), and the
#   spread of `zᵀHz` (a proxy for `||H_l||_F`) is largest at layers 0, 2 and 11.
# * *Propagation and accumulation.* The token-wise change at the perturbed layer shrinks with depth (0.012 at
#   layer 0, 0.0038 at 11, ~0.003 at 15-17: the residual stream grows). Downstream, most layers' perturbations
#   stay flat or fade (amplification to the last layer 0.7-1.1; 0.90, 0.80, 0.71 for layers 15-17), but
#   **layer 11's grows 2.9-fold** (0.0038 → 0.0111, the second largest change at the output after layer 0),
#   the only layer above 1.7; layers 2 and 28 (1.6) and 1 (1.4) come next. The Frobenius map shows why the
#   outlier matters: perturbing layer 11 changes the massive activation it creates (0.33% of the stream's
#   norm, which that token dominates, flat through layers 11-27), while perturbing any later layer leaves it
#   alone (1e-4). Amplification does not simply follow depth (Spearman ρ = −0.11 with the layer index).
#
# **What "strong, stable ZO signal" reduces to.** The projected gradient is the gradient in disguise: mean
# `|g|` tracks `||∇_l L||` across layers (ρ = 0.90; ratio 0.77 on average against the expected 0.80); its
# relative spread over seeds is the same for every layer (std / mean |g| = 1.0-1.5, Gaussian value 1.25); the
# cosine of the 8-direction estimate with `∇_l L` is 1.0e-3 to 1.7e-3 for every layer (1.1e-3 at layer 11)
# against 1.5e-3 for exact derivatives and 4.2e-4 for a random direction, because it is fixed by the layer
# size and the number of directions, not by the layer. The ε ablation: at MeZO's ε = 1e-3 the finite
# difference is within about 0.5% of `z·∇L` for every layer (1.5e-4 at layer 11); ε = 1e-4 is limited by
# fp32 rounding (errors up to 0.9%, smallest at layer 11, 2e-4), ε = 1e-2 by nonlinearity (20-30% at layers
# 0-1, 9% at 2, 1.5% at 11, at most 5% from layer 3 on). So a layer's ZO signal is strong exactly when its
# first-order gradient is, and layer 11's is the largest here; these measurements cannot by themselves
# explain why first-order fine-tuning would have no dominant layer while ZO has one.
#
# **They do not predict the best layer for ZO on SmolLM2 / SST-2.** In the GPU sweep, layers 15-17 reach
# 79-82% and layer 11 71.5%. Across the 30 layers, sweep accuracy correlates *negatively* with gradient norm
# (ρ = −0.41), mean `|g|` (−0.49), sensitivity (−0.49), change at the output (−0.66) and amplification
# (−0.67); curvature, finite-difference error and cosine show no relation. The best layers have small
# gradients, low sensitivity and perturbations that fade downstream. One confound we cannot remove here: the
# sweep used one learning rate (1e-3) for every layer, so a layer with a larger `|g|` also took larger ZO-SGD
# steps; a per-layer learning-rate sweep would separate signal quality from step size.
#
# **First order has no dominant layer here, as the paper says.** (`results/fo_layer_sweep_smollm2`, H200, complete:
# 186 of 186 runs — 3 seeds on every layer and on full AdamW, each at both lrs.) Every layer trained alone
# with AdamW reaches a mean of 81.1–85.9% on SST-2 (layer 11: 85.4; full AdamW 86.2), a flat band a few points wide, where ZO's single layers span 51.6% (layer 0,
# zero-shot level) to 81.7% (layer 17) with a hump over the middle. The choice of layer matters for ZO and
# hardly at all for first order on this model; which layer is best for ZO is the open question above, not
# whether there is one.
#
# Limits of the propagation measurements: one model, one batch of 8 training examples, 8 directions per layer and ε, fp32 on CPU.
