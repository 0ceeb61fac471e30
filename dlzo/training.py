"""The ZO training loop, seed-log replay and resume.

::

    selection = Selection(layers="dominant")
    result = train(model, selection, loss_fn, train_examples, ZOConfig(steps=1000, lr=1e-4), eval_fn=eval_fn,
                   out_dir="runs/sst2", tokenizer=tokenizer)
    tensors = replay(fresh_model, selection, "runs/sst2/log.jsonl")   # == the trained parameters, bit for bit

Contracts: ``loss_fn(batch: list[dict]) -> 0-dim tensor`` runs the model forward (called under
``torch.inference_mode()``); ``eval_fn(model) -> dict`` returns at least ``{"loss": float, "score": float}``.

Each step draws a batch (epochs of a seeded permutation, last partial batch dropped) and one seed per
direction from the run's own numpy generators, estimates with :class:`~dlzo.zo.ZOEngine`, and updates
with the chosen ZO optimizer. Every ``eval_every`` steps (and at the start and the end) ``eval_fn`` runs
on the dev set; the best selected tensors by ``best_by`` (default the lowest dev loss, as the paper)
are kept in memory and put back into the model at the end. A step whose loss is NaN/Inf is refused
(no update, a warning); ``max_refused`` of them in a row stop the run with a :class:`DlzoError`.

With ``out_dir`` the run writes ``log.jsonl`` (see :mod:`dlzo.runfiles`), an atomic
``checkpoint.safetensors`` (selected tensors, optimizer state, RNG states, best snapshot, step) every
``checkpoint_every`` steps, and at the end ``trained.safetensors`` (the returned selected tensors) and
``result.json``. ``resume=True`` continues from the checkpoint and ends bit-identical to a run that was
never interrupted.

A ZO run's whole state is also in its log: the seeds and projected gradients of every step. With
``checkpoints=False`` a run writes only ``log.jsonl`` (and ``result.json``), a few hundred bytes per step
whatever the model size, and ``resume=True`` rebuilds the state from the log (:func:`resume_from_log`: the
logged updates re-applied without any forward pass, the data and seed generators advanced step by step and
checked against the logged seeds, the best snapshot taken on the way) and continues, again bit-identical.
That is how a sweep survives being cut into short jobs (``dlzo sweep --run-logs``): a killed run loses only
its unlogged steps, and the log is small enough to carry from machine to machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import DlzoError
from .models import float32_matmul
from .optim import make_optimizer
from .paths import atomic_write_text
from .progress import progress_bar
from .runfiles import CHECKPOINT_NAME, LOG_NAME, RunLog, load_checkpoint, read_log, save_checkpoint
from .selection import Selected, Selection
from .zo import ZOEngine

BEST_CRITERIA = ("loss", "score")
# config fields that may change when a run is resumed (they do not change the trajectory)
RESUMABLE_CHANGES = ("steps", "max_refused", "share_prefix", "cuda_graphs", "paired_passes", "loop_graphs")


@dataclass
class ZOConfig:
    """Hyper-parameters of a ZO run (MeZO's defaults where it has one)."""

    steps: int = 1000
    lr: float = 1e-6
    eps: float = 1e-3
    batch_size: int = 16
    seed: int = 0
    optimizer: str = "sgd"  # sgd | momentum | adam | sign
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    directions: int = 1  # q: directions averaged per step
    one_sided: bool = False
    share_prefix: bool = True  # compute the frozen layers below the selection once per step (same results)
    cuda_graphs: bool = False  # GPU: replay CUDA graphs of the forwards (same kernels; padded shapes, dlzo.graphs)
    paired_passes: bool = False  # one-layer selections: both signs in one forward (dlzo.paired; float rounding)
    loop_graphs: bool = True  # GPU: replay CUDA graphs of the perturbation/update loops (same bits, dlzo.loop_graphs)
    eval_every: int | None = None  # None: evaluate at the start and the end only
    eval_at_start: bool = True  # the zero-shot model is a candidate for "best" too
    best_by: str = "loss"  # loss (lowest dev loss) | score (highest dev score)
    checkpoint_every: int | None = None  # None: at every evaluation
    max_refused: int = 5  # consecutive non-finite steps that stop the run

    def __post_init__(self):
        self.betas = tuple(self.betas)
        checks = [
            (self.steps >= 0, f"steps={self.steps} must be non-negative."),
            (self.lr >= 0, f"The learning rate {self.lr} must be non-negative."),
            (self.batch_size >= 1, f"batch_size={self.batch_size} must be at least 1."),
            (self.best_by in BEST_CRITERIA, f"best_by={self.best_by!r} must be 'loss' or 'score'."),
            (self.eval_every is None or self.eval_every >= 1, "eval_every must be a positive number of steps."),
            (self.checkpoint_every is None or self.checkpoint_every >= 1,
             "checkpoint_every must be a positive number of steps."),
            (self.max_refused >= 1, "max_refused must be at least 1."),
        ]
        for ok, message in checks:
            if not ok:
                raise DlzoError(message)


@dataclass
class TrainResult:
    """What a run returns (and writes as ``result.json``)."""

    steps: int  # steps taken
    returned_step: int  # the step whose parameters the model holds now (the best one when evaluating)
    best_step: int | None
    best: dict | None  # eval metrics at best_step
    final: dict | None  # eval metrics at the last step
    zero_shot: dict | None  # eval metrics before training
    evals: list[dict]
    refused_steps: int
    num_parameters: int  # trainable entries of the selection
    wall_time_s: float
    device: str
    threads: int
    log_path: str | None
    out_dir: str | None
    records: list[dict] = field(default_factory=list, repr=False)  # the whole log, in memory

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("records")
        return out


# ---------------------------------------------------------------------------------------------- shared pieces
def run_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The run's two numpy generators, (data order, direction seeds), independent of each other: every
    selection, model and batch size sees the same direction seeds for the same run seed."""
    data, seeds = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(data), np.random.default_rng(seeds)


class BatchSampler:
    """Batches of example indices: epochs of a permutation from the run's generator, last partial batch dropped."""

    def __init__(self, num_examples: int, batch_size: int, rng: np.random.Generator):
        self.batches_per_epoch(num_examples, batch_size)
        self.num_examples, self.batch_size, self.rng = num_examples, batch_size, rng
        self.order = np.empty(0, dtype=np.int64)
        self.cursor = 0

    @staticmethod
    def batches_per_epoch(num_examples: int, batch_size: int) -> int:
        """Full batches in one pass over ``num_examples`` (the last partial batch is dropped); at least one."""
        if num_examples < batch_size:
            raise DlzoError(
                f"The training set has {num_examples} examples, fewer than one batch of {batch_size}; "
                "lower the batch size or add examples."
            )
        return num_examples // batch_size

    def next(self) -> list[int]:
        if self.cursor + self.batch_size > len(self.order):
            self.order = self.rng.permutation(self.num_examples)
            self.cursor = 0
        batch = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return [int(i) for i in batch]

    def state(self) -> tuple[dict, torch.Tensor]:
        return {"rng": self.rng.bit_generator.state, "cursor": self.cursor}, torch.from_numpy(self.order.copy())

    def load(self, state: dict, order: torch.Tensor) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.cursor = int(state["cursor"])
        self.order = order.numpy().astype(np.int64)


class BestKeeper:
    """The best evaluation so far by dev loss (lower) or dev score (higher), with a snapshot of the tensors.

    A non-finite (or missing) value never beats a finite one; ties keep the earlier step.
    """

    def __init__(self, by: str = "loss"):
        self.by = by
        self.step: int | None = None
        self.metrics: dict | None = None
        self.tensors: list[torch.Tensor] | None = None

    def _rank(self, metrics: dict) -> float:
        value = metrics.get(self.by)
        if value is None or not math.isfinite(value):
            return math.inf
        return value if self.by == "loss" else -value

    def offer(self, step: int, metrics: dict, snapshot: Callable[[], list[torch.Tensor]]) -> bool:
        """Keep ``snapshot()`` if ``metrics`` beat the best so far."""
        if self.metrics is not None and not self._rank(metrics) < self._rank(self.metrics):
            return False
        self.step, self.metrics, self.tensors = step, dict(metrics), snapshot()
        return True


def evaluate(eval_fn: Callable, model) -> dict:
    """Run ``eval_fn(model)`` under inference mode; check it returns 'loss' and 'score'; numbers become floats."""
    with torch.inference_mode():
        metrics = eval_fn(model)
    if not isinstance(metrics, dict) or "loss" not in metrics or "score" not in metrics:
        raise DlzoError("eval_fn must return a dict with at least 'loss' and 'score'; fix the evaluation function.")
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        out[key] = float(value) if is_number else value
    return out


def _write_json_atomic(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, allow_nan=False, default=str))


def _identity(config: ZOConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES}


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=list))


# ---------------------------------------------------------------------------------------------- training
def train(
    model,
    selection: Selection | Selected,
    loss_fn: Callable[[list], torch.Tensor],
    train_examples: Sequence[dict],
    config: ZOConfig | None = None,
    eval_fn: Callable | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    tokenizer=None,
    dominant_layer: int | None = None,
    checkpoints: bool = True,
) -> TrainResult:
    """Fine-tune the selected parameters of ``model`` with ZO steps; see the module docstring.

    ``checkpoints=False`` (with ``out_dir``): write the log and ``result.json`` only; ``resume`` replays the log."""
    from . import __version__

    config = config or ZOConfig()
    start_time = time.perf_counter()
    selected = selection if isinstance(selection, Selected) else selection.apply(model, tokenizer, dominant_layer)
    model = selected.model
    engine = ZOEngine(selected, config.eps, config.directions, config.one_sided, config.share_prefix,
                      config.cuda_graphs, config.paired_passes, config.loop_graphs)
    optimizer = make_optimizer(config.optimizer, engine.masters, config.weight_decay, momentum=config.momentum,
                               betas=config.betas, eps=config.adam_eps)
    data_rng, seed_rng = run_rngs(config.seed)
    sampler = BatchSampler(len(train_examples), config.batch_size, data_rng)
    best = BestKeeper(config.best_by)
    header = {
        "type": "config",
        "dlzo_version": __version__,
        "config": _jsonable(asdict(config)),
        "selection": selected.describe(),
        "num_train": len(train_examples),
        "model": str(getattr(model, "dlzo_name", getattr(getattr(model, "config", None), "_name_or_path", ""))),
        "dtype": str(selected.params[0].param.dtype).replace("torch.", ""),
        "device": str(engine.device),
        "float32_matmul": float32_matmul(engine.device),  # "tf32" when float32 products ran on TF32 tensor cores
    }
    step, refused_in_row, refused_total, evals, elapsed_before = 0, 0, 0, [], 0.0
    records: list[dict] = []

    out = Path(out_dir) if out_dir is not None else None
    log_path = out / LOG_NAME if out else None
    checkpoint_path = out / CHECKPOINT_NAME if out else None
    resuming = bool(out and resume and checkpoint_path.is_file())
    logged = read_log(log_path) if out and resume and not resuming and log_path.is_file() else []
    from_log = bool(logged)
    pending_eval = None
    if out and not resuming and not from_log:
        if log_path.is_file() and not resume:
            raise DlzoError(
                f"{str(out)!r} already holds a run; pass resume=True (--resume) to continue it or choose "
                "a new out_dir."
            )
        log_path.unlink(missing_ok=True)  # resume=True without a checkpoint: the run restarts from step 0
    if resuming:
        tensors, state = load_checkpoint(checkpoint_path, engine.device)
        _check_resumable(state, config, header)
        n = len(engine.masters)
        engine.load_masters([tensors[f"master.{i}"] for i in range(n)])
        opt_tensors = {k[len("opt."):]: v for k, v in tensors.items() if k.startswith("opt.")}
        optimizer.load_state_dict(opt_tensors, state["optimizer"])
        sampler.load(state["sampler"], tensors["data.order"])
        seed_rng.bit_generator.state = state["seed_rng"]
        if state["best"] is not None:
            best.step, best.metrics = state["best"]["step"], state["best"]["metrics"]
            best.tensors = [tensors[f"best.{i}"] for i in range(n)]
        step, refused_in_row, refused_total = state["step"], state["refused_in_row"], state["refused_total"]
        evals, elapsed_before = state["evals"], state["elapsed_s"]
        RunLog.truncate(log_path, state["log_bytes"])
        records = read_log(log_path)
    elif from_log:
        restored = resume_from_log(log_path, logged, config, header, engine, optimizer, sampler, seed_rng, best)
        records, step, evals = restored["records"], restored["step"], restored["evals"]
        refused_in_row, refused_total = restored["refused_in_row"], restored["refused_total"]
        elapsed_before = restored["elapsed_s"]
        evaluated = {e["step"] for e in evals}
        due = is_due(step, config.eval_every, config.steps) if step else config.eval_at_start
        if eval_fn is not None and due and step not in evaluated:
            pending_eval = step  # the run stopped between this step's update and its evaluation

    log = RunLog(log_path) if out else None

    def record(entry: dict) -> None:
        records.append(entry)
        if log is not None:
            log.write(entry)

    def run_eval(at_step: int) -> None:
        metrics = evaluate(eval_fn, model)
        evals.append({"step": at_step, **metrics})
        improved = best.offer(at_step, metrics, engine.snapshot)
        record({"type": "eval", "step": at_step, **metrics, "best": improved})

    def checkpoint() -> None:
        tensors = {f"master.{i}": m for i, m in enumerate(engine.masters)}
        opt_tensors, opt_scalars = optimizer.state_dict()
        tensors.update({f"opt.{k}": v for k, v in opt_tensors.items()})
        sampler_state, order = sampler.state()
        tensors["data.order"] = order
        if best.tensors is not None:
            tensors.update({f"best.{i}": t for i, t in enumerate(best.tensors)})
        log.sync()
        state = {
            "step": step,
            "identity": _identity(config),
            "selection": header["selection"],
            "device": header["device"],
            "num_train": header["num_train"],
            "optimizer": opt_scalars,
            "sampler": sampler_state,
            "seed_rng": seed_rng.bit_generator.state,
            "best": None if best.step is None else {"step": best.step, "metrics": best.metrics},
            "refused_in_row": refused_in_row,
            "refused_total": refused_total,
            "evals": evals,
            "elapsed_s": elapsed_before + time.perf_counter() - start_time,
            "log_bytes": log.size(),
        }
        save_checkpoint(checkpoint_path, tensors, state)

    bar = progress_bar(total=config.steps, initial=step, enabled=progress, desc="zo", unit="step")
    try:
        if not resuming and not from_log:
            record(header)
            if eval_fn is not None and config.eval_at_start:
                run_eval(0)
        if pending_eval is not None:
            run_eval(pending_eval)
        while step < config.steps:
            step += 1
            batch = [train_examples[i] for i in sampler.next()]
            seeds = [int(s) for s in seed_rng.integers(0, 2**31, size=config.directions)]
            est = engine.estimate(loss_fn, batch, seeds)
            if est.finite:
                update_time = engine.update(optimizer, seeds, est.g, config.lr)
                refused_in_row = 0
            else:
                update_time = 0.0
                refused_in_row += 1
                refused_total += 1
                warnings.warn(f"step {step}: the loss is not finite; the step is refused (no update).", stacklevel=2)
            single = config.directions == 1
            entry = {
                "type": "step",
                "step": step,
                "seed": seeds[0] if single else seeds,
                "g": est.g[0] if single else est.g,
                "loss_plus": est.loss_plus[0] if single else est.loss_plus,
            }
            if est.one_sided:
                entry["loss_base"] = est.loss_base
            else:
                entry["loss_minus"] = est.loss_minus[0] if single else est.loss_minus
            entry.update({
                "lr": config.lr,
                "refused": not est.finite,
                "time_perturb": est.times["perturb"],
                "time_forward": est.times["forward"],
                "time_update": update_time,
            })
            record(entry)
            if refused_in_row >= config.max_refused:
                on_disk = checkpoint_path is not None and checkpoint_path.is_file()
                where = f" (the last good checkpoint is {checkpoint_path})" if on_disk else ""
                raise DlzoError(
                    f"The loss was not finite for {refused_in_row} steps in a row (last at step {step}); lower the "
                    f"learning rate or eps, or use a float32 model{where}."
                )
            if eval_fn is not None and is_due(step, config.eval_every, config.steps):
                run_eval(step)
            if out and checkpoints and is_due(step, config.checkpoint_every or config.eval_every, config.steps):
                checkpoint()
            bar.update(1)
            bar.set_postfix(loss=f"{est.loss_plus[0]:.4f}")
        if out and checkpoints and not checkpoint_path.is_file():
            checkpoint()  # a zero-step run still leaves a resumable checkpoint
        if best.tensors is not None:
            engine.load_masters(best.tensors)  # the model returns holding the best evaluated tensors
        return finish_run(selected, engine.masters, best, step, evals, refused_total, records, record, out,
                          elapsed_before + time.perf_counter() - start_time, engine.device,
                          save_tensors=checkpoints)
    finally:
        bar.close()
        if log is not None:
            log.close()


def resume_from_log(log_path: Path, logged: list[dict], config: ZOConfig, header: dict, engine: ZOEngine, optimizer,
                    sampler: BatchSampler, seed_rng: np.random.Generator, best: BestKeeper) -> dict:
    """Rebuild a ZO run's state from its log alone (``train(..., resume=True)`` without a checkpoint);
    ``logged`` are the records of ``log_path`` (:func:`~dlzo.runfiles.read_log`).

    Every logged step is re-applied to the fresh ``engine`` from its seeds and ``g`` (no forward pass); the
    data sampler and the seed generator are advanced exactly as the run advanced them, and the seeds they
    give must equal the logged ones (else the log belongs to other settings); the best evaluated tensors are
    snapshotted when the replay passes the best step. The log file is rewritten to its complete records (a
    torn last line or an ``end`` record goes). Returns the loop's state: ``records``, ``step``, ``evals``,
    ``refused_in_row``, ``refused_total`` and ``elapsed_s`` (the logged step times).
    """
    records = [r for r in logged if r.get("type") != "end"]
    saved = records[0]
    if saved.get("type") != "config":
        raise DlzoError(f"{str(log_path)!r} does not start with a run's config line; delete it or choose a new out_dir.")
    _check_resumable({"identity": {k: v for k, v in saved["config"].items() if k not in RESUMABLE_CHANGES},
                      **{key: saved.get(key) for key in ("selection", "device", "num_train")}}, config,
                     _jsonable(header))
    evals = [{k: v for k, v in r.items() if k not in ("type", "best")} for r in records if r["type"] == "eval"]
    best_record = next((r for r in reversed(records) if r["type"] == "eval" and r.get("best")), None)
    if best_record is not None:
        best.step = best_record["step"]
        best.metrics = {k: v for k, v in best_record.items() if k not in ("type", "step", "best")}
        if best.step == 0:
            best.tensors = engine.snapshot()
    step, refused_in_row, refused_total, elapsed = 0, 0, 0, 0.0
    for r in (r for r in records if r["type"] == "step"):
        if r["step"] != step + 1:
            raise DlzoError(f"{str(log_path)!r} skips from step {step} to {r['step']}; it cannot be replayed.")
        step = r["step"]
        sampler.next()
        seeds = [int(s) for s in seed_rng.integers(0, 2**31, size=config.directions)]
        if seeds != _as_list(r["seed"]):
            raise DlzoError(f"Step {step} of {str(log_path)!r} used other seeds than these settings draw; resume "
                            "with the run's original settings.")
        if r["refused"]:
            refused_in_row, refused_total = refused_in_row + 1, refused_total + 1
        else:
            apply_logged_step(engine, optimizer, r)
            refused_in_row = 0
        if step == best.step:
            best.tensors = engine.snapshot()
        elapsed += sum(r.get(k) or 0.0 for k in ("time_perturb", "time_forward", "time_update"))
    atomic_write_text(log_path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
    return {"records": records, "step": step, "evals": evals, "refused_in_row": refused_in_row,
            "refused_total": refused_total, "elapsed_s": elapsed}


def _as_list(value) -> list:
    """A step record's ``seed``/``g``: a list for several directions, a number for one."""
    return value if isinstance(value, list) else [value]


def apply_logged_step(engine: ZOEngine, optimizer, record: dict) -> None:
    """Re-apply one logged (not refused) step: the update from its seeds and projected gradients."""
    engine.update(optimizer, _as_list(record["seed"]), _as_list(record["g"]), record["lr"])


def is_due(step: int, every: int | None, last: int) -> bool:
    """Whether an every-N-steps action (evaluation, checkpoint) runs after ``step``; it always runs at the end."""
    return step == last or bool(every and step % every == 0)


def _as_logged(selection: Selection, logged: dict) -> Selection:
    """``selection`` with what the run resolved by profiling (the dominant layer, ranked channels) made explicit."""
    if selection.layers == "dominant" and logged["layers"]:
        selection = dataclasses.replace(selection, layers=logged["layers"])
    if selection.channels is not None and selection.channels.channels is None and logged["channels"]:
        channels = {int(k): v for k, v in logged["channels"].items()}
        selection = dataclasses.replace(selection, channels=dataclasses.replace(selection.channels, channels=channels))
    return selection


def _check_resumable(state: dict, config: ZOConfig, header: dict) -> None:
    saved, now = state["identity"], _jsonable(_identity(config))
    for key in now:
        if saved.get(key) != now[key]:
            raise DlzoError(
                f"The checkpoint was made with {key}={saved.get(key)!r}, not {now[key]!r}; resume with the "
                "original settings (only steps and max_refused may change)."
            )
    for key in ("selection", "device", "num_train"):
        if state[key] != header[key]:
            raise DlzoError(
                f"The checkpoint's {key} differs from this run's; resume with the same model, selection, "
                "data and device."
            )


def finish_run(selected: Selected, tensors: list[torch.Tensor], best: BestKeeper, step: int, evals: list[dict],
               refused: int, records: list[dict], record: Callable[[dict], None], out: Path | None, elapsed: float,
               device: torch.device, save_tensors: bool = True) -> TrainResult:
    """Log the end, write ``trained.safetensors`` (``tensors``: the selected tensors the model now holds;
    unless ``save_tensors`` is off) and ``result.json`` to ``out``, and build the result (shared by the ZO and
    first-order loops)."""
    returned_step = step if best.step is None else best.step
    final = next((e for e in reversed(evals) if e["step"] == step), None)
    zero_shot = next((e for e in evals if e["step"] == 0), None)
    result = TrainResult(
        steps=step,
        returned_step=returned_step,
        best_step=best.step,
        best=best.metrics,
        final=None if final is None else {k: v for k, v in final.items() if k != "step"},
        zero_shot=None if zero_shot is None else {k: v for k, v in zero_shot.items() if k != "step"},
        evals=evals,
        refused_steps=refused,
        num_parameters=selected.num_parameters,
        wall_time_s=elapsed,
        device=str(device),
        threads=torch.get_num_threads(),
        log_path=str(out / LOG_NAME) if out else None,
        out_dir=str(out) if out else None,
        records=records,
    )
    record({"type": "end", "steps": step, "returned_step": returned_step, "best_step": best.step})
    if out and save_tensors:
        from safetensors.torch import save_file

        named = {name: t.detach().cpu().contiguous() for name, t in zip(selected.names, tensors, strict=True)}
        tmp = out / ".trained.safetensors.tmp"
        save_file(named, str(tmp), metadata={"selection": json.dumps(selected.describe())})
        tmp.replace(out / "trained.safetensors")
    if out:
        _write_json_atomic(out / "result.json", result.to_dict())
    return result


# ---------------------------------------------------------------------------------------------- replay
def replay(base_model, selection: Selection | Selected, log, step: int | None = None) -> dict[str, torch.Tensor]:
    """Rebuild a run's trained parameters from the base model and its log, bit for bit.

    ``log`` is a ``log.jsonl`` path or a result's ``records``. No forward pass runs: every logged step is
    re-applied from its seeds and ``g`` values. By default the replay stops at the step whose parameters
    the run returned (its best step when it evaluated, else the last); pass ``step`` to stop elsewhere.
    A ``"dominant"`` layer and ranked outlier channels are taken from the log (no profiling, no tokenizer).
    Returns ``{name: tensor}`` for the selected tensors (in the model's dtype); ``base_model`` is left
    holding them. Replay on the device type the run used (random streams differ between devices).
    """
    records = read_log(log)
    header = records[0]
    if not isinstance(selection, Selected):
        selection = _as_logged(selection, header["selection"])
    selected = selection if isinstance(selection, Selected) else selection.apply(base_model)
    described = selected.describe()
    if any(described[k] != header["selection"][k] for k in ("tensors", "num_parameters", "layers", "channels")):
        raise DlzoError("This selection does not match the one in the log; replay with the run's selection and model.")
    cfg = header["config"]
    engine = ZOEngine(selected, cfg["eps"], cfg["directions"], cfg["one_sided"])
    if engine.device.type != torch.device(header["device"]).type:
        raise DlzoError(f"The run used {header['device']}; replay on that device type (random streams differ).")
    optimizer = make_optimizer(cfg["optimizer"], engine.masters, cfg["weight_decay"], momentum=cfg["momentum"],
                               betas=cfg["betas"], eps=cfg["adam_eps"])
    if step is None:
        ends = [r for r in records if r["type"] == "end"]
        step = ends[-1]["returned_step"] if ends else max((r["step"] for r in records if r["type"] == "step"),
                                                           default=0)
    for r in records:
        if r["type"] == "step" and r["step"] <= step and not r["refused"]:
            apply_logged_step(engine, optimizer, r)
    return {name: p.detach().clone() for name, p in zip(selected.names, engine.params, strict=True)}
