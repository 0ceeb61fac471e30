"""The first-order baseline: AdamW with autograd over the same :class:`~dlzo.selection.Selection`.

The paper's FO rows (full fine-tuning, and single-layer FT for the FO-vs-ZO layer comparison) with the
ZO loop's shape: the same batch sampler and seed, evaluation every ``eval_every`` steps, the best
tensors by dev loss (or score) kept and restored, the same log and result files. Defaults follow the
MeZO repository's FO runs through the HF Trainer: AdamW, linear decay to zero, gradient clipping at 1.0.
Differences: the model stays in eval mode (no dropout), as in the ZO runs, so both sides see the same
function; parameters stay in the model's dtype (the paper's FO runs use bf16; float16 is refused, since
AdamW's state underflows there); there is no resume
(FO runs are short). Masked selections (channel masks, sparse) zero the gradient outside the mask and
put the frozen entries back after each step, so weight decay cannot move them either.

::

    result = train_first_order(model, Selection(layers=[11]), loss_fn, train, FOConfig(steps=625, lr=5e-5),
                               eval_fn=eval_fn)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .errors import DlzoError
from .progress import progress_bar
from .runfiles import LOG_NAME, RunLog
from .selection import Selected, Selection
from .training import BEST_CRITERIA, BatchSampler, BestKeeper, evaluate, finish_run, is_due, run_rngs

SCHEDULES = ("linear", "constant")


@dataclass
class FOConfig:
    """Hyper-parameters of a first-order run (MeZO's FO baseline: AdamW, lr in {1e-5, 5e-5, 8e-5}, batch 8)."""

    steps: int = 625  # 5 epochs of 1000 examples at batch 8
    lr: float = 5e-5
    batch_size: int = 8
    seed: int = 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    schedule: str = "linear"  # linear: decay to 0 over `steps` (HF Trainer's default) | constant
    eval_every: int | None = None
    eval_at_start: bool = True
    best_by: str = "loss"

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.steps < 0 or self.batch_size < 1 or self.lr < 0:
            raise DlzoError("steps must be >= 0, batch_size >= 1 and the learning rate >= 0.")
        if self.schedule not in SCHEDULES:
            raise DlzoError(f"Unknown schedule {self.schedule!r}; use 'linear' or 'constant'.")
        if self.best_by not in BEST_CRITERIA:
            raise DlzoError(f"best_by={self.best_by!r} must be 'loss' or 'score'.")
        if self.eval_every is not None and self.eval_every < 1:
            raise DlzoError("eval_every must be a positive number of steps.")


def _refuse_float16(model) -> None:
    """AdamW on float16 parameters breaks: its second moment underflows and eps 1e-8 rounds to 0 in float16, so
    the first update divides by zero and the loss turns NaN (seen on SmolLM2 at step 2). Refuse it up front."""
    if any(p.dtype == torch.float16 for p in model.parameters()):
        raise DlzoError("First-order AdamW cannot train a float16 model (its state underflows and the loss turns "
                        "NaN); load it in bfloat16 or float32 (--dtype bfloat16, as the paper's FO runs).")


def train_first_order(
    model,
    selection: Selection | Selected,
    loss_fn: Callable[[list], torch.Tensor],
    train_examples: Sequence[dict],
    config: FOConfig | None = None,
    eval_fn: Callable | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    tokenizer=None,
    dominant_layer: int | None = None,
):
    """Fine-tune the selected parameters with AdamW and autograd; returns a :class:`~dlzo.training.TrainResult`."""
    config = config or FOConfig()
    start_time = time.perf_counter()
    _refuse_float16(selection.model if isinstance(selection, Selected) else model)
    selected = selection if isinstance(selection, Selected) else selection.apply(model, tokenizer, dominant_layer)
    model = selected.model
    params = [s.param for s in selected.params]
    masked = [(s.param, s.mask, s.param.detach().clone()) for s in selected.params if s.mask is not None]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas,
                                  eps=config.adam_eps)
    total = max(config.steps, 1)
    decay = (lambda s: 1.0 - s / total) if config.schedule == "linear" else (lambda s: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    data_rng, _ = run_rngs(config.seed)
    sampler = BatchSampler(len(train_examples), config.batch_size, data_rng)
    best = BestKeeper(config.best_by)
    device = params[0].device
    out = Path(out_dir) if out_dir is not None else None
    if out and (out / LOG_NAME).is_file():
        raise DlzoError(f"{str(out)!r} already holds a run; choose a new out_dir.")
    log = RunLog(out / LOG_NAME) if out else None
    records, evals, refused = [], [], 0

    def record(entry: dict) -> None:
        records.append(entry)
        if log is not None:
            log.write(entry)

    def snapshot() -> list[torch.Tensor]:
        return [p.detach().clone() for p in params]

    def run_eval(at_step: int) -> None:
        metrics = evaluate(eval_fn, model)
        evals.append({"step": at_step, **metrics})
        improved = best.offer(at_step, metrics, snapshot)
        record({"type": "eval", "step": at_step, **metrics, "best": improved})

    record({"type": "config", "method": "first_order", "config": asdict(config), "selection": selected.describe(),
            "num_train": len(train_examples), "device": str(device)})
    bar = progress_bar(total=config.steps, enabled=progress, desc="fo", unit="step")
    step = 0
    try:
        if eval_fn is not None and config.eval_at_start:
            run_eval(0)
        while step < config.steps:
            step += 1
            batch = [train_examples[i] for i in sampler.next()]
            lr = scheduler.get_last_lr()[0]
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            for param, mask, _ in masked:
                if param.grad is not None:
                    param.grad.mul_(mask)
            t1 = time.perf_counter()
            value = float(loss.detach())
            grad_norm = None
            if math.isfinite(value):
                if config.max_grad_norm is not None:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
                optimizer.step()
                with torch.no_grad():
                    for param, mask, frozen in masked:
                        param.copy_(torch.where(mask, param, frozen))
            else:
                refused += 1
                warnings.warn(f"step {step}: the loss is not finite; the step is refused (no update).", stacklevel=2)
            scheduler.step()
            record({"type": "step", "step": step, "loss": value, "lr": lr, "grad_norm": grad_norm,
                    "refused": not math.isfinite(value), "time_forward_backward": t1 - t0,
                    "time_update": time.perf_counter() - t1})
            if eval_fn is not None and is_due(step, config.eval_every, config.steps):
                run_eval(step)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
        if best.tensors is not None:
            with torch.no_grad():
                torch._foreach_copy_(params, best.tensors)
        return finish_run(selected, params, best, step, evals, refused, records, record, out,
                          time.perf_counter() - start_time, device)
    finally:
        bar.close()
        if log is not None:
            log.close()
