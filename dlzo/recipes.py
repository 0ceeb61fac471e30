"""The methods compared in the paper, as recipes, and the function that runs one grid cell.

Each :class:`Method` says which trainer runs (none, ZO, first-order), on which :class:`Selection`, with
which default lr grid and ε (MeZO's where it has one). :class:`RunContext` loads each model once per
process (every run trains a fresh copy), profiles it once to find its dominant layer, caches task
samples, and :meth:`RunContext.run` turns a :class:`~dlzo.experiments.RunConfig` into one results row.

Method names (``RunConfig.method``) and their options:

=================  =========================================================================================
``zero_shot``      no training
``mezo_full``      ZO on every parameter (MeZO)
``mezo_lora``      ZO on LoRA adapters of every layer (r=8, α=16 on q_proj, v_proj; ε=1e-2)
``sparse_mezo``    ZO on the 25% smallest-|w| entries of each matrix (option ``fraction``)
``dominant``       ZO on the first activation-outlier layer (option ``rule``: ``strict`` | ``loose``)
``dominant_lora``  ZO on LoRA adapters of the dominant layer only
``random_layer``   ZO on one layer drawn per seed, never the dominant one (the control)
``layer``          ZO on ``layers`` (a list), optionally ``modules``, ``norms``, ``channels`` (fraction),
                   ``channel_mode`` (``only`` | ``frozen``), ``lora_r``
``fo_full``        first-order AdamW on every parameter
``fo_layer``       first-order AdamW on ``layers``
=================  =========================================================================================

Options every method takes: ``num_train``, ``num_dev``, ``num_test`` (sample sizes; MeZO's by default),
``dominant_layer`` (skip profiling), ``rule`` (``strict`` | ``loose`` outlier rule for "dominant"),
``optimizer`` (ZO optimizer name), ``recipe`` (the method recipe when the grid label differs), ``epochs``
(train this many passes over the task's training set and evaluate once per pass, in place of the run's
``steps`` and ``eval_every``: MeZO's first-order protocol, 5 epochs with an evaluation per epoch, which
gives CB, COPA and WSC, with fewer than 1000 training examples, fewer steps).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DlzoError
from .experiments import RunConfig, free_device_memory
from .layers import num_layers
from .selection import ChannelMask, LoraSpec, Selection

LOOSE_RATIO = 500.0


@dataclass(frozen=True)
class Method:
    name: str
    trainer: str  # "none" | "zo" | "fo"
    description: str
    lr_grid: tuple[float, ...] = ()
    eps: float = 1e-3


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("zero_shot", "none", "no training"),
        Method("mezo_full", "zo", "MeZO on every parameter", (1e-6, 1e-7)),
        Method("mezo_lora", "zo", "MeZO on LoRA adapters (r=8) of every layer", (1e-4, 5e-5), eps=1e-2),
        Method("sparse_mezo", "zo", "MeZO on the 25% smallest-|w| entries of each matrix", (1e-6, 1e-7)),
        Method("dominant", "zo", "ZO on the first activation-outlier layer", (1e-4, 1e-5)),
        Method("dominant_lora", "zo", "ZO on LoRA adapters of the dominant layer", (1e-3, 1e-4), eps=1e-2),
        Method("random_layer", "zo", "ZO on a random non-dominant layer (control)", (1e-4, 1e-5)),
        Method("layer", "zo", "ZO on the given layers", (1e-4, 1e-5)),
        Method("fo_full", "fo", "first-order AdamW on every parameter", (1e-5, 5e-5)),
        Method("fo_layer", "fo", "first-order AdamW on the given layers", (1e-4, 1e-3)),
    ]
}


def with_recipe_defaults(methods: dict[str, dict]) -> dict[str, dict]:
    """Fill each grid method's missing ``lr`` (the recipe's lr grid) and ``eps`` (the recipe's ε)."""
    filled = {}
    for label, spec in methods.items():
        spec = dict(spec or {})
        recipe = method(spec.get("recipe", label))
        if recipe.trainer != "none":
            spec.setdefault("lr", list(recipe.lr_grid))
            spec.setdefault("eps", recipe.eps)
        filled[label] = spec
    return filled


def epoch_schedule(epochs, num_train: int, batch_size: int) -> tuple[int, int]:
    """``(steps, eval_every)`` of a run given in epochs: ``epochs`` passes over ``num_train`` examples at
    ``batch_size`` (the batch sampler drops an epoch's last partial batch), evaluated after each pass — the
    HF Trainer's ``--num_train_epochs N --evaluation_strategy epoch`` of MeZO's first-order runs."""
    from .training import BatchSampler

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise DlzoError(f"epochs={epochs!r} must be a positive whole number of passes over the training set.")
    per_epoch = BatchSampler.batches_per_epoch(num_train, batch_size)
    return epochs * per_epoch, per_epoch


def method(name: str) -> Method:
    if name not in METHODS:
        raise DlzoError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def random_layer(seed: int, n_layers: int, exclude: int) -> int:
    """The control layer of seed ``seed``: uniform over the layers other than ``exclude``."""
    choices = [i for i in range(n_layers) if i != exclude]
    return int(np.random.default_rng([seed, 7919]).choice(choices))


def build_selection(name: str, options: dict, dominant: int, n_layers: int, seed: int) -> Selection | None:
    """The :class:`Selection` of a method (``None`` for zero-shot)."""
    kind = method(name)
    if kind.trainer == "none":
        return None
    lora = LoraSpec(r=int(options.get("lora_r", 8)), alpha=float(options.get("lora_alpha", 16)))
    if name == "mezo_full" or name == "fo_full":
        return Selection()
    if name == "mezo_lora":
        return Selection(lora=lora)
    if name == "sparse_mezo":
        return Selection(sparse=float(options.get("fraction", 0.25)))
    if name == "dominant":
        return Selection(layers=[dominant])
    if name == "dominant_lora":
        return Selection(layers=[dominant], lora=lora)
    if name == "random_layer":
        return Selection(layers=[random_layer(seed, n_layers, dominant)])
    layers = options.get("layers")
    if layers is None:
        raise DlzoError(f"Method {name!r} needs the option 'layers' (a list of decoder layers).")
    layers = [dominant if layer == "dominant" else int(layer) for layer in layers]
    channels = None
    if options.get("channels"):
        channels = ChannelMask(float(options["channels"]), mode=options.get("channel_mode", "only"))
    return Selection(
        layers=layers,
        modules=tuple(options.get("modules", ("attention", "mlp"))),
        norms=bool(options.get("norms", True)),
        channels=channels,
        lora=lora if options.get("lora_r") else None,
    )


class RunContext:
    """Per-process caches for a sweep: models (pristine copies), dominant layers, task samples."""

    def __init__(self, device: str | None = None, dtype: str = "float32", data_dir=None, progress: bool = False,
                 eval_batch_size: int = 32, cuda_graphs: bool = False, paired_passes: bool = False,
                 run_logs=None, loop_graphs: bool = True):
        from .models import pick_device

        self.device = pick_device(device)
        self.dtype = dtype
        self.data_dir = data_dir
        self.progress = progress
        self.eval_batch_size = eval_batch_size
        self.cuda_graphs = cuda_graphs  # ZO runs replay CUDA graphs of their forwards (GPU)
        self.paired_passes = paired_passes  # single-layer ZO runs do both signs in one forward
        self.loop_graphs = loop_graphs  # GPU: perturbation/update loops replay CUDA graphs (dlzo.loop_graphs)
        # ZO runs keep their log in run_logs/<key>/ and a restarted sweep resumes them from it (no tensors saved)
        self.run_logs = run_logs
        self._models: dict[str, tuple] = {}
        self._profiles: dict[str, object] = {}
        self._data: dict[tuple, object] = {}

    def model(self, name: str):
        from .models import load_model

        if name not in self._models:
            self._models[name] = load_model(name, dtype=self.dtype, device=self.device)
        return self._models[name]

    def profile(self, name: str):
        from .outliers import profile_activations

        if name not in self._profiles:
            model, tokenizer = self.model(name)
            self._profiles[name] = profile_activations(model, tokenizer)
        return self._profiles[name]

    def dominant_layer(self, name: str, rule: str = "strict") -> int:
        profile = self.profile(name)
        layer = profile.first_outlier_layer() if rule == "strict" else profile.first_outlier_layer(min_ratio=LOOSE_RATIO)
        if layer is None:
            raise DlzoError(f"No layer of {name!r} passes the {rule} outlier rule; pass explicit layers instead.")
        return int(layer)

    def data(self, task: str, seed: int, options: dict):
        from .tasks import load_task_data

        key = (task, seed, options.get("num_train", 1000), options.get("num_dev"), options.get("num_test", 1000))
        if key not in self._data:
            self._data[key] = load_task_data(task, seed=seed, data_dir=self.data_dir, num_train=key[2],
                                             num_dev=key[3], num_test=key[4])
        return self._data[key]

    # ------------------------------------------------------------------------------------------ one run
    def run(self, config: RunConfig) -> dict:
        """Train (or not) and evaluate one grid cell; returns the metrics row."""
        from .evaluation import dev_eval_fn, evaluate
        from .first_order import FOConfig, train_first_order
        from .losses import make_loss_fn
        from .models import float32_matmul
        from .tasks import GENERATION
        from .training import ZOConfig, train

        start = time.perf_counter()
        on_gpu = self.device.startswith("cuda")
        if on_gpu:  # the run's peak, from here: this worker's resident model copy included (see peak_gpu_gib)
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        options = config.opts
        recipe_name = options.get("recipe", config.method)
        recipe = method(recipe_name)
        base, tokenizer = self.model(config.model)
        data = self.data(config.task, config.seed, options)
        n_layers = num_layers(base)
        if options.get("dominant_layer") is not None:  # known in advance (skips profiling)
            dominant = int(options["dominant_layer"])
        else:
            dominant = self.dominant_layer(config.model, options.get("rule", "strict"))
        selection = build_selection(recipe_name, options, dominant, n_layers, config.seed)
        model = copy.deepcopy(base)
        task = data.task
        batch = self.eval_batch_size

        # A generation task's dev score needs greedy decoding, and checkpoints are picked on dev loss (teacher
        # forced): during training only the loss is evaluated, and the dev score is decoded once, at the kept
        # checkpoint (the same number as decoding at every evaluation, at 1 dev decoding per run instead of 3)
        decode_once = task.kind == GENERATION
        eval_fn = dev_eval_fn(tokenizer, task, data.dev, batch_size=batch, decode=not decode_once)

        row = {"device": str(torch.cuda.get_device_name(0) if on_gpu else "cpu"),
               "dtype": self.dtype, "dominant_layer": dominant, "deviations": "; ".join(data.deviations),
               "num_train": len(data.train), "num_dev": len(data.dev), "num_test": len(data.test),
               "cuda_graphs": self.cuda_graphs and on_gpu and selection is not None,
               "paired_passes": self.paired_passes and selection is not None,
               "float32_matmul": float32_matmul(self.device)}
        train_time = 0.0
        if selection is not None:
            loss_fn = make_loss_fn(model, tokenizer, task)
            steps, eval_every = config.steps, (config.eval_every or None)
            if options.get("epochs") is not None:
                steps, eval_every = epoch_schedule(options["epochs"], len(data.train), config.batch_size)
            row.update({"train_steps": steps, "eval_every_steps": eval_every})
            if recipe.trainer == "zo":
                zo = ZOConfig(steps=steps, lr=config.lr, eps=config.eps, batch_size=config.batch_size,
                              seed=config.seed, eval_every=eval_every, optimizer=options.get("optimizer", "sgd"),
                              cuda_graphs=self.cuda_graphs, paired_passes=self.paired_passes,
                              loop_graphs=self.loop_graphs)
                out = Path(self.run_logs) / config.key if self.run_logs else None
                result = train(model, selection, loss_fn, data.train, zo, eval_fn=eval_fn, progress=self.progress,
                               tokenizer=tokenizer, dominant_layer=dominant, out_dir=out, resume=True,
                               checkpoints=False)
            else:
                fo = FOConfig(steps=steps, lr=config.lr, batch_size=config.batch_size, seed=config.seed,
                              eval_every=eval_every)
                result = train_first_order(model, selection, loss_fn, data.train, fo, eval_fn=eval_fn,
                                           progress=self.progress, tokenizer=tokenizer, dominant_layer=dominant)
            train_time = result.wall_time_s
            dev_score = (result.best or {}).get("score")
            if decode_once:  # the model holds the kept checkpoint's parameters (result.returned_step)
                dev_score = evaluate(model, tokenizer, task, data.dev, batch_size=batch, with_loss=False)["score"]
            step_times = [step_seconds(r) for r in result.records if r.get("type") == "step"]
            row.update({
                "trained_layers": json_list(_selected_layers(result)),
                "num_parameters": result.num_parameters,
                "best_step": result.best_step,
                "dev_loss": (result.best or {}).get("loss"),
                "dev_score": dev_score,
                "zero_shot_dev_loss": (result.zero_shot or {}).get("loss"),
                "zero_shot_dev_score": (result.zero_shot or {}).get("score"),
                "dev_curve": dev_curve(result.evals),
                "refused_steps": result.refused_steps,
                "step_time_ms": float(np.median(step_times) * 1000) if step_times else None,
            })
        else:
            dev = dev_eval_fn(tokenizer, task, data.dev, batch_size=batch)(model)  # loss and decoded score
            row.update({"dev_loss": dev["loss"], "dev_score": dev["score"], "trained_layers": "[]",
                        "num_parameters": 0})
        test = evaluate(model, tokenizer, task, data.test, batch_size=batch, with_loss=True)
        row.update({"test_score": test["score"], "test_em": test.get("em"), "test_loss": test["loss"],
                    "metric": test["metric"], "train_s": train_time, "total_s": time.perf_counter() - start})
        if on_gpu:  # what the run held at its peak (the caching allocator's reserve, CUDA graph pools too)
            row["peak_gpu_gib"] = round(torch.cuda.max_memory_reserved(torch.device(self.device)) / 2**30, 2)
        del model
        if on_gpu:
            free_device_memory()  # the trained copy can sit in reference cycles (loss closures, graph runners)
        return row


def dev_curve(evals: list[dict]) -> str:
    """Every dev evaluation of a run as JSON ``[[step, loss, score], ...]``: the table then shows why the
    lowest-dev-loss checkpoint won (e.g. a model that grew confidently right, dev loss up and accuracy up,
    loses to step 0), not only which one did. The score is null where it was not computed (a generation
    task's dev score is decoded at the kept checkpoint only: the row's ``dev_score``)."""
    def rounded(value, digits):
        return None if value is None else round(float(value), digits)

    return json.dumps([[e["step"], rounded(e["loss"], 6), rounded(e.get("score"), 4)] for e in evals])


def json_list(values) -> str:
    """``[2, 11]`` for layer indices, ``["all"]`` for the whole model (valid JSON either way)."""
    return json.dumps(list(values))


def _selected_layers(result) -> list[int]:
    header = next((r for r in result.records if r.get("type") == "config"), {})
    layers = header.get("selection", {}).get("layers")  # the resolved layers (None: the whole model)
    return list(layers) if layers else ["all"]


def step_seconds(record: dict) -> float:
    """Wall time of one logged step (ZO: perturb + forward + update; FO: forward-backward + update)."""
    return sum(v for k, v in record.items() if k.startswith("time_") and v is not None)
