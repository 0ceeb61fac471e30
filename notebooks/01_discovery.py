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

# %% [markdown] papermill={"duration": 0.00302, "end_time": "2026-11-29T02:05:12.667358+00:00", "exception": false, "start_time": "2026-11-29T02:05:12.664338+00:00", "status": "completed"}
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

# %% papermill={"duration": 2.61936, "end_time": "2026-11-29T02:05:15.289588+00:00", "exception": false, "start_time": "2026-11-29T02:05:12.670228+00:00", "status": "completed"}
import pandas as pd
from IPython.display import display

import dlzo
from dlzo.calibration import calibration_texts
from dlzo.notebook import setup
from dlzo.outliers import profile_activations
from dlzo.paths import repo_root
from dlzo.plotting import outlier_summary_table, plot_outlier_profile, save_figure

# %% papermill={"duration": 0.007654, "end_time": "2026-11-29T02:05:15.299356+00:00", "exception": false, "start_time": "2026-11-29T02:05:15.291702+00:00", "status": "completed"} tags=["parameters"]
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

# %% papermill={"duration": 0.006856, "end_time": "2026-11-29T02:05:15.308003+00:00", "exception": false, "start_time": "2026-11-29T02:05:15.301147+00:00", "status": "completed"} tags=["injected-parameters"]
# Parameters
models = ["smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "qwen2.5-1.5b"]
num_texts = 10
max_length = 256
dtype = "float32"
threads = 0
progress = True
output_dir = "."


# %% papermill={"duration": 0.613868, "end_time": "2026-11-29T02:05:15.923637+00:00", "exception": false, "start_time": "2026-11-29T02:05:15.309769+00:00", "status": "completed"}
env = setup(threads=threads or None, progress=progress)
out = repo_root() / output_dir
(out / "results" / "outliers").mkdir(parents=True, exist_ok=True)
passages = calibration_texts(texts or None, n=num_texts)
print(f"dlzo {dlzo.__version__} | device: {env['device']} | torch {env['torch']} | "
      f"transformers {env['transformers']} | threads {env['threads']}")
print(f"{len(passages)} calibration passages, first: {passages[0][:80]!r}...")

# %% [markdown] papermill={"duration": 0.001516, "end_time": "2026-11-29T02:05:15.927088+00:00", "exception": false, "start_time": "2026-11-29T02:05:15.925572+00:00", "status": "completed"}
# ## Profile every model
# Each profile is a table with one row per decoder layer. It is saved as JSON under
# `results/outliers/` so later notebooks (and readers) can use it without rerunning a model.

# %% papermill={"duration": 31.298348, "end_time": "2026-11-29T02:05:47.226917+00:00", "exception": false, "start_time": "2026-11-29T02:05:15.928569+00:00", "status": "completed"}
profiles = {}
for name in models:
    model, tokenizer = dlzo.load_model(name, dtype=dtype, device=device, progress=progress)
    profiles[name] = profile_activations(model, tokenizer, passages, max_length=max_length, progress=progress)
    profiles[name].to_json(out / "results" / "outliers" / f"{name.replace('/', '__')}.json")
    del model

# %% [markdown] papermill={"duration": 0.001879, "end_time": "2026-11-29T02:05:47.231076+00:00", "exception": false, "start_time": "2026-11-29T02:05:47.229197+00:00", "status": "completed"}
# ## The first outlier layer of each model
# `first_outlier_layer` uses the strict rule; `loose_rule_layer` uses ratio > 500. `channel` and
# `token_pos` locate the largest activation in that layer.

# %% papermill={"duration": 0.115647, "end_time": "2026-11-29T02:05:47.348620+00:00", "exception": false, "start_time": "2026-11-29T02:05:47.232973+00:00", "status": "completed"} tags=["nbval-check-output"]
summary = outlier_summary_table(profiles)
print(summary.to_string(index=False))

# %% [markdown] papermill={"duration": 0.002438, "end_time": "2026-11-29T02:05:47.353403+00:00", "exception": false, "start_time": "2026-11-29T02:05:47.350965+00:00", "status": "completed"}
# ## Top-1/2/3 and median |h| per layer
# A massive activation is a jump of the top curves by orders of magnitude while the median stays put.

# %% papermill={"duration": 2.573744, "end_time": "2026-11-29T02:05:49.929404+00:00", "exception": false, "start_time": "2026-11-29T02:05:47.355660+00:00", "status": "completed"}
import matplotlib.pyplot as plt  # noqa: E402

n = len(profiles)
fig, axes = plt.subplots(n, 1, figsize=(7.5, 3.4 * n), squeeze=False)
for ax, (name, profile) in zip(axes[:, 0], profiles.items()):
    plot_outlier_profile(profile, ax=ax, min_abs=min_abs, min_ratio=min_ratio, loose_ratio=loose_ratio, title=name)
fig.tight_layout()
save_figure(fig, "01_outlier_profiles", out / "figures")
plt.show()

# %% [markdown] papermill={"duration": 0.002781, "end_time": "2026-11-29T02:05:49.935181+00:00", "exception": false, "start_time": "2026-11-29T02:05:49.932400+00:00", "status": "completed"}
# ## The layer tables
# Rounded per-layer statistics (mean over passages as Sun et al.; `ratio_min` is the smallest ratio over
# passages, i.e. whether the outlier is present in *every* passage).

# %% papermill={"duration": 0.078569, "end_time": "2026-11-29T02:05:50.016442+00:00", "exception": false, "start_time": "2026-11-29T02:05:49.937873+00:00", "status": "completed"}
for name, profile in profiles.items():
    cols = ["layer", "top1", "top2", "top3", "median", "ratio", "ratio_min", "channel", "token_pos", "token"]
    print(f"== {name}")
    display(profile.table()[cols].round(2))

# %% [markdown] papermill={"duration": 0.00356, "end_time": "2026-11-29T02:05:50.025946+00:00", "exception": false, "start_time": "2026-11-29T02:05:50.022386+00:00", "status": "completed"}
# ## How sensitive is "the first outlier layer" to the threshold?
# The paper names no threshold. The scan shows which layer each ratio threshold picks (top-1 > 100 kept),
# for the mean over passages and for the strictest passage.

# %% papermill={"duration": 0.399367, "end_time": "2026-11-29T02:05:50.428841+00:00", "exception": false, "start_time": "2026-11-29T02:05:50.029474+00:00", "status": "completed"} tags=["nbval-check-output"]
scan = pd.concat({name: p.threshold_scan() for name, p in profiles.items()}, names=["model"]).reset_index(level=0)
print(scan.pivot(index="min_ratio", columns="model", values="first_layer_mean").to_string())

# %% [markdown] papermill={"duration": 0.003586, "end_time": "2026-11-29T02:05:50.436566+00:00", "exception": false, "start_time": "2026-11-29T02:05:50.432980+00:00", "status": "completed"}
# ## Reading the result
# * **SmolLM2-135M has two stages.** Hidden dim 507 already carries ~700 on the first token in layers 2-8
#   (ratio 400-770), fades at layers 9-10, and jumps to ~22,000 at layer 11 (ratio > 10,000). The strict rule
#   picks layer 11; a ratio threshold of 300-500 picks layer 2. Which of the two is the *dominant* layer for
#   ZO is an empirical question that the layer sweep of this notebook series answers, not the rule.
# * **Qwen2.5-0.5B** has one clean onset at layer 2 (dim 62, first token); every threshold from 100 to 2000
#   agrees. **Qwen2.5-1.5B** starts at layer 1. **Gemma-3-270M** carries a massive activation on `<bos>`
#   from layer 0 on and grows to ~1e5; its first outlier layer is 0 whatever the threshold.
# * The massive activation sits on the first token in every model here, as Sun et al. report for LLaMA-2.
