"""Time one ZO step restricted to one decoder layer against a full-model ZO step, side by side.

Same model, same batch of SST-2 prompts, same process; the kinds of step alternate after a warm-up, and
the median of each is reported with its phases (perturb / forward / update). lr=0 keeps the model
unchanged, so every repeat measures the same work. A third kind re-implements the published MeZO step
(princeton-nlp/MeZO, large_models/trainer.py: global-RNG reseed, ``param.data = param.data + s·z·ε`` for
+1, -2, +1, then a regenerated update) over the full model, as the reference the engine must beat.

    PYTHONPATH=. HF_HUB_OFFLINE=1 DLZO_DATA_DIR=../shared/data python scripts/zo_step_timing.py \
        --threads 2 --repeats 7 --json results/zo_step_timing_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from dlzo import Selection, ZOEngine, load_model
from dlzo.commands.train import sst2_until_dlzo_tasks
from dlzo.optim import make_optimizer


def mezo_published_step(named_params, loss, batch, seed: int, eps: float, lr: float, weight_decay: float = 0.0):
    """One step of MeZO's published ZO-SGD (zo_step + zo_update), phases timed like the engine's."""
    times = {"perturb": 0.0, "forward": 0.0}

    def perturb(scale):
        start = time.perf_counter()
        torch.manual_seed(seed)
        for _, param in named_params:
            z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
            param.data = param.data + scale * z * eps
        times["perturb"] += time.perf_counter() - start

    def forward():
        start = time.perf_counter()
        with torch.inference_mode():
            value = float(loss(batch))
        times["forward"] += time.perf_counter() - start
        return value

    perturb(1)
    plus = forward()
    perturb(-2)
    minus = forward()
    perturb(1)
    g = (plus - minus) / (2 * eps)
    start = time.perf_counter()
    torch.manual_seed(seed)
    for name, param in named_params:
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
        if "bias" not in name and "layer_norm" not in name and "layernorm" not in name:
            param.data = param.data - lr * (g * z + weight_decay * param.data)
        else:
            param.data = param.data - lr * (g * z)
    times["update"] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layer", type=int, default=11)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, device=args.device)
    train, _, loss_fn, _ = sst2_until_dlzo_tasks(tokenizer, None, 1000, 1, seed=0)
    batch, loss = train[: args.batch_size], loss_fn(model)
    kinds = {f"layer {args.layer}": Selection(layers=[args.layer]), "full model": Selection()}
    engines = {}
    for name, selection in kinds.items():
        engine = ZOEngine(selection.apply(model), eps=1e-3)
        engines[name] = (engine, make_optimizer("sgd", engine.masters))
    mezo = "full, MeZO code"
    named_params = list(model.named_parameters())
    times = {name: [] for name in [*kinds, mezo]}

    def step(name: str, seed: int) -> dict:
        start = time.perf_counter()
        if name == mezo:
            phases = mezo_published_step(named_params, loss, batch, seed, eps=1e-3, lr=0.0)
            return {"step": time.perf_counter() - start, **phases}
        engine, optimizer = engines[name]
        estimate = engine.estimate(loss, batch, [seed])
        update = engine.update(optimizer, [seed], estimate.g, lr=0.0)
        return {"step": time.perf_counter() - start, **estimate.times, "update": update}

    for name in times:  # warm-up
        step(name, 0)
    for repeat in range(args.repeats):
        for name in times:
            times[name].append(step(name, repeat + 1))
    summary = {}
    for name, runs in times.items():
        summary[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        summary[name]["parameters"] = engines[name][0].selected.num_parameters if name in engines else sum(
            p.numel() for _, p in named_params)
    layer, full = summary[f"layer {args.layer}"], summary["full model"]
    report = {
        "model": args.model, "device": args.device, "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "repeats": args.repeats,
        "median_seconds": summary, "speedup": full["step"] / layer["step"],
        "speedup_vs_mezo_code": summary[mezo]["step"] / layer["step"],
    }
    for name, s in summary.items():
        print(f"{name:>15}: {s['parameters']:>11,} params  step {s['step']:.3f} s  (perturb {s['perturb']:.3f}, "
              f"forward {s['forward']:.3f}, update {s['update']:.3f})")
    print(f"full / layer: {report['speedup']:.2f}x   MeZO code (full) / layer: {report['speedup_vs_mezo_code']:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
