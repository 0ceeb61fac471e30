"""The step benchmark: every kind of training step of one model on one batch, measured side by side.

In ONE process, with the same model, batch and sequence lengths, :func:`benchmark` times (warm-up, then
the median of ``repeats``):

=========================  =====================================================================================
``forward``                one inference forward of the training loss
``two_forwards``           two of them: the floor of any two-point ZO step
``mezo_published_full``    MeZO's published step (princeton-nlp/MeZO ``zo_step`` + ``zo_update``): global-RNG
                           reseeding, ``p.data = p.data + scale * eps * z`` per parameter, all parameters
``dlzo_full``              dlzo's ZO step on every parameter (fp32 masters, own generator; on a GPU the
                           perturbation and update loops replay CUDA graphs, :mod:`dlzo.loop_graphs`)
``dlzo_full_eager_loops``  GPU only: ``dlzo_full`` with eager perturbation and update loops
``dlzo_dominant``          dlzo's ZO step on the dominant layer, prefix shared
``dlzo_dominant_no_prefix``  the same without prefix sharing
``dlzo_lora_full``         ZO on LoRA adapters of every layer
``dlzo_lora_dominant``     ZO on LoRA adapters of the dominant layer, prefix shared
``fo_adamw_full``          one first-order AdamW step (forward + backward + update) on every parameter
``two_forwards_graphed``   GPU only: two forwards replayed from a CUDA graph (:mod:`dlzo.graphs`)
``dlzo_full_graphed``      GPU only: ``dlzo_full`` with CUDA-graph forwards
``dlzo_dominant_graphed``  GPU only: ``dlzo_dominant`` with CUDA-graph forwards (prefix shared inside the graphs)
``dlzo_dominant_paired``   the dominant-layer step with both signs in one forward (:mod:`dlzo.paired`)
``dlzo_dominant_paired_graphed``  GPU only: the same replayed from a CUDA graph
=========================  =====================================================================================

The graphed cases run on a CUDA device only (elsewhere they would repeat the eager ones); :func:`graph_check`
says how far their losses are from the eager forward's on the same padded batch.

Each case also reports its phase breakdown (forward / perturb / update; ZO cases) and peak memory (CUDA
allocator peak on a GPU; peak resident set size on the CPU, Linux only), and the ratios that matter are
computed from medians measured in this one run. On a GPU the allocator counts whole blocks, which can be up to
1 MiB larger than the tensor they hold; ``peak_requested_mb`` / ``start_requested_mb`` count the bytes the
tensors asked for. Cases that rebind the parameters' storage (MeZO's ``p.data = p.data + ...``) run after all
the others, so that every other case sees the weights in the blocks they were loaded into (session 7's
allocator snapshot, ``results/bench/memory``: after the published case ~300 MiB of fp32 weights lived in
blocks it had allocated, and the next cases started 12-25 MB higher).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from .experiments import free_device_memory
from .models import float32_matmul
from .progress import progress_bar
from .selection import LoraSpec, Selection
from .zo import ZOEngine, synchronize

CASES = ("forward", "two_forwards", "mezo_published_full", "dlzo_full", "dlzo_full_eager_loops", "dlzo_dominant",
         "dlzo_dominant_no_prefix", "dlzo_lora_full", "dlzo_lora_dominant", "fo_adamw_full", "two_forwards_graphed",
         "dlzo_full_graphed", "dlzo_dominant_graphed", "dlzo_dominant_paired", "dlzo_dominant_paired_graphed")
# cases that only a CUDA device runs (on the CPU they would repeat the eager ones)
GPU_ONLY = ("dlzo_full_eager_loops", "two_forwards_graphed", "dlzo_full_graphed", "dlzo_dominant_graphed",
            "dlzo_dominant_paired_graphed")
# cases that leave the weights in new storage (``p.data = ...``): they run last (memory of the other cases)
REBINDS_PARAMETERS = ("mezo_published_full",)


def mezo_published_step(model, loss_fn, batch, eps: float, lr: float, seed: int) -> tuple[float, dict]:
    """One step exactly as MeZO's trainer does it (``zo_step`` then ``zo_update``, weight decay 0)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    times = {}

    def perturb(scale):
        torch.manual_seed(seed)
        for _, p in params:
            z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device, dtype=p.data.dtype)
            p.data = p.data + scale * z * eps

    def forward():
        with torch.inference_mode():
            return loss_fn(batch).detach()

    t0 = time.perf_counter()
    perturb(1)
    t1 = time.perf_counter()
    loss1 = forward()
    t2 = time.perf_counter()
    perturb(-2)
    t3 = time.perf_counter()
    loss2 = forward()
    g = ((loss1 - loss2) / (2 * eps)).item()
    t5 = time.perf_counter()
    perturb(1)
    torch.manual_seed(seed)  # zo_update
    for _, p in params:
        z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device, dtype=p.data.dtype)
        p.data = p.data - lr * (g * z)
    synchronize(p.device)
    t6 = time.perf_counter()
    # on a GPU the forwards run asynchronously: their time shows up where the loss is read (.item())
    times.update(perturb=(t1 - t0) + (t3 - t2), forward=(t2 - t1) + (t5 - t3), update=t6 - t5)
    return g, times


class _PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or the process's peak RSS (reset first, Linux)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        self.start_mb = self.start_requested_mb = self.peak_requested_mb = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
            self.start_requested_mb = _requested_mb(self.device, "current")
        else:
            try:
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")  # resets VmHWM
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.peak_requested_mb = _requested_mb(self.device, "peak")
        else:
            self.peak_mb = _vm_hwm_mb()


def _requested_mb(device, which: str) -> float | None:
    """The bytes the live tensors asked for (``current``) or their peak since the reset, in MiB (CUDA)."""
    value = torch.cuda.memory_stats(device).get(f"requested_bytes.all.{which}")
    return value / 2**20 if value is not None else None


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _time_case(step: Callable[[int], dict | None], device, warmup: int, repeats: int) -> dict:
    for i in range(warmup):
        step(i)
    synchronize(device)
    walls, phases = [], []
    with _PeakMemory(torch.device(device)) as memory:
        for i in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            out = step(warmup + i)
            synchronize(device)
            walls.append(time.perf_counter() - start)
            if out:
                phases.append(out)
    row = {"median_ms": 1000 * statistics.median(walls), "min_ms": 1000 * min(walls),
           "iqr_ms": 1000 * float(np.subtract(*np.percentile(walls, [75, 25]))), "repeats": repeats,
           "peak_mb": memory.peak_mb, "start_mb": memory.start_mb, "peak_requested_mb": memory.peak_requested_mb,
           "start_requested_mb": memory.start_requested_mb}
    for phase in ("forward", "perturb", "update"):
        values = [p[phase] for p in phases if phase in p]
        row[f"{phase}_ms"] = 1000 * statistics.median(values) if values else None
    return row


def benchmark(model, tokenizer, loss_factory: Callable, batch: list, dominant_layer: int, cases=CASES,
              eps: float = 1e-3, lr: float = 1e-7, warmup: int = 3, repeats: int = 10,
              progress: bool = False) -> pd.DataFrame:
    """Time each case on ``batch``; ``loss_factory(model) -> loss_fn``. Returns one row per case with ratios.

    The model is restored to its original weights (kept on the host, so they do not count in the peaks)
    between cases, and LoRA adapters are removed after their cases."""
    device = model.get_input_embeddings().weight.device
    pristine = {n: p.detach().to("cpu", copy=True) for n, p in model.state_dict().items()}
    rows = []
    if device.type != "cuda":
        cases = [c for c in cases if c not in GPU_ONLY]
    cases = list(cases)
    run_order = [c for c in cases if c not in REBINDS_PARAMETERS] + [c for c in cases if c in REBINDS_PARAMETERS]
    for case in progress_bar(run_order, enabled=progress, desc="bench"):
        model.load_state_dict(pristine)
        for p in model.parameters():
            p.requires_grad_(True)
        step, cleanup = _make_step(case, model, tokenizer, loss_factory, batch, dominant_layer, eps, lr)
        rows.append({"case": case, **_time_case(step, device, warmup, repeats)})
        cleanup()
        del step, cleanup
        free_device_memory()  # no case's leftovers count in the next case's peak
    model.load_state_dict(pristine)
    table = pd.DataFrame(rows).set_index("case").loc[cases]  # rows in the order asked for
    return add_ratios(table)


def _nothing() -> None:
    return None


def _make_step(case, model, tokenizer, loss_factory, batch, dominant, eps, lr):
    """``(step(i) -> phase times or None, cleanup())`` for one case."""
    from .optim import make_optimizer

    loss_fn = loss_factory(model)
    if case == "two_forwards_graphed":
        from .graphs import GraphedLoss

        graphed = GraphedLoss(loss_fn)

        def step(_i):
            run = graphed.prepare(batch)
            for _ in range(2):
                float(run(0))
        return step, _nothing
    if case in ("forward", "two_forwards"):
        n = 1 if case == "forward" else 2

        def step(_i):
            with torch.inference_mode():
                for _ in range(n):
                    float(loss_fn(batch))
        return step, _nothing
    if case == "mezo_published_full":
        return (lambda i: mezo_published_step(model, loss_fn, batch, eps, lr, seed=1000 + i)[1]), _nothing
    if case == "fo_adamw_full":
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

        def step(_i):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            optimizer.step()

        def cleanup():
            optimizer.state.clear()
            model.zero_grad(set_to_none=True)
        return step, cleanup
    selections = {
        "dlzo_full": Selection(),
        "dlzo_full_eager_loops": Selection(),
        "dlzo_dominant": Selection(layers=[dominant]),
        "dlzo_dominant_no_prefix": Selection(layers=[dominant]),
        "dlzo_lora_full": Selection(lora=LoraSpec()),
        "dlzo_lora_dominant": Selection(layers=[dominant], lora=LoraSpec()),
        "dlzo_full_graphed": Selection(),
        "dlzo_dominant_graphed": Selection(layers=[dominant]),
        "dlzo_dominant_paired": Selection(layers=[dominant]),
        "dlzo_dominant_paired_graphed": Selection(layers=[dominant]),
    }
    selected = selections[case].apply(model, tokenizer, dominant)
    engine = ZOEngine(selected, eps=eps, share_prefix=case != "dlzo_dominant_no_prefix",
                      cuda_graphs=case.endswith("_graphed"), paired_passes="_paired" in case,
                      loop_graphs=case != "dlzo_full_eager_loops")
    optimizer = make_optimizer("sgd", engine.masters)

    def step(i):
        est = engine.estimate(loss_fn, batch, [1000 + i])
        update = engine.update(optimizer, est.seeds, est.g, lr)
        return {"forward": est.times["forward"], "perturb": est.times["perturb"], "update": update}

    def cleanup():
        if selected.model is not model:  # peft wrapper: take the adapters out again
            selected.model.unload()
    return step, cleanup


RATIOS = {
    "dominant_vs_two_forwards": ("dlzo_dominant", "two_forwards"),
    "published_full_vs_dominant": ("mezo_published_full", "dlzo_dominant"),
    "published_full_vs_dlzo_full": ("mezo_published_full", "dlzo_full"),
    "published_full_vs_dlzo_full_eager_loops": ("mezo_published_full", "dlzo_full_eager_loops"),
    "dlzo_full_vs_dominant": ("dlzo_full", "dlzo_dominant"),
    "dominant_no_prefix_vs_prefix": ("dlzo_dominant_no_prefix", "dlzo_dominant"),
    "dominant_peak_vs_forward_peak": ("dlzo_dominant", "forward"),
    "dominant_graphed_vs_two_forwards": ("dlzo_dominant_graphed", "two_forwards"),
    "published_full_vs_dominant_graphed": ("mezo_published_full", "dlzo_dominant_graphed"),
    "published_full_vs_dlzo_full_graphed": ("mezo_published_full", "dlzo_full_graphed"),
    "dominant_graphed_peak_vs_forward_peak": ("dlzo_dominant_graphed", "forward"),
    "published_full_vs_dominant_paired_graphed": ("mezo_published_full", "dlzo_dominant_paired_graphed"),
    "dominant_paired_graphed_peak_vs_forward_peak": ("dlzo_dominant_paired_graphed", "forward"),
    "fo_full_peak_vs_forward_peak": ("fo_adamw_full", "forward"),
    "dominant_requested_peak_vs_forward_requested_peak": ("dlzo_dominant", "forward"),
}


def add_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Attach the headline ratios (time ratios of medians, memory ratios of peaks) as ``table.attrs``; a ratio
    of a quantity this device does not measure (the requested bytes off a GPU) is left out."""
    ratios = {}
    for name, (a, b) in RATIOS.items():
        if a in table.index and b in table.index:
            column = ("peak_requested_mb" if name.endswith("requested_peak") else
                      "peak_mb" if name.endswith("peak") else "median_ms")
            num, den = (table.loc[a, column], table.loc[b, column]) if column in table.columns else (None, None)
            if pd.notna(num) and pd.notna(den) and den:  # a quantity this device does not measure: no ratio
                ratios[name] = float(num / den)
    table.attrs["ratios"] = ratios
    return table


def graph_check(model, loss_fn, batch: list, dominant_layer: int) -> dict:
    """How far CUDA-graph losses are from the eager forward on the same padded batch (GPU; ``{}`` elsewhere):
    the largest absolute difference over a plain graph and a prefix-shared one (record and replay)."""
    from .graphs import GraphedLoss
    from .prefix import PrefixSharing

    if model.device.type != "cuda":
        return {}
    packed = loss_fn.pack(batch).padded()
    with torch.inference_mode():
        eager = float(loss_fn.compute(packed))
    out = {"eager_loss": eager}
    for name, layer in (("plain", None), ("prefix", dominant_layer or None)):
        graphed = GraphedLoss(loss_fn, prefix_layer=layer)
        run = graphed.prepare(batch)
        if run is None:
            out[f"{name}_failed"] = graphed.failed
            continue
        out[f"{name}_max_abs_diff"] = max(abs(float(run(i)) - eager) for i in (0, 1, 1))
    if dominant_layer:
        with PrefixSharing(model, dominant_layer) as prefix, torch.inference_mode():
            with prefix.record():
                loss_fn.compute(packed)
            with prefix.replay():
                out["eager_prefix_loss"] = float(loss_fn.compute(packed))
    out.update(_paired_graph_check(model, loss_fn, batch, packed, dominant_layer))
    return out


def _paired_graph_check(model, loss_fn, batch: list, packed, layer: int) -> dict:
    """Paired passes (:mod:`dlzo.paired`) on the padded batch (``packed``, from ``batch``): eager vs graphed, and
    vs two plain forwards."""
    from .graphs import GraphedLoss
    from .layers import decoder_layers
    from .paired import PairedPasses

    params = list(decoder_layers(model)[layer].parameters())
    before = [p.detach().clone() for p in params]
    gen = torch.Generator(device=model.device).manual_seed(0)
    deltas = [1e-3 * torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype) for p in params]
    plus = [b + d for b, d in zip(before, deltas, strict=True)]
    minus = [b - d for b, d in zip(before, deltas, strict=True)]
    pair = PairedPasses(model, layer, params, plus, minus)
    try:
        with torch.inference_mode():
            separate = []
            for values in (plus, minus):
                torch._foreach_copy_(params, values)
                separate.append(float(loss_fn.compute(packed)))
            with pair:
                eager = [float(v) for v in loss_fn.compute_pair(packed)]
        graphed = GraphedLoss(loss_fn, paired=pair)
        run = graphed.prepare(batch)
        if run is None:
            return {"paired_failed": graphed.failed}
        replayed = [float(v) for v in run(0)]
        return {"paired_vs_two_forwards_max_abs_diff": max(abs(a - b) for a, b in zip(eager, separate, strict=True)),
                "paired_graph_vs_eager_max_abs_diff": max(abs(a - b) for a, b in zip(replayed, eager, strict=True))}
    finally:
        with torch.no_grad():
            torch._foreach_copy_(params, before)


def precision_check(model, loss_fn, batch: list, layer: int, seeds=(1, 2, 3, 4, 5), eps: float = 1e-3) -> dict:
    """What TF32 matrix products do to the ZO signal (GPU only; ``{}`` elsewhere): the projected gradient
    ``g`` of a ``layer`` step for each seed, once with IEEE float32 products and once with TF32, and the largest
    relative difference. The TF32 setting is restored afterwards."""
    if model.device.type != "cuda" or next(model.parameters()).dtype != torch.float32:
        return {}
    before = torch.backends.cuda.matmul.allow_tf32
    selected = Selection(layers=[layer]).apply(model, None, layer)
    engine = ZOEngine(selected, eps=eps)
    g = {}
    try:
        for mode, allowed in (("ieee", False), ("tf32", True)):
            torch.backends.cuda.matmul.allow_tf32 = allowed
            g[mode] = [engine.estimate(loss_fn, batch, [s]).g[0] for s in seeds]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
        engine.restore()
    return {"g_ieee": g["ieee"], "g_tf32": g["tf32"],
            "g_max_rel_diff": max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(g["ieee"], g["tf32"], strict=True))}


def environment(device) -> dict:
    device = torch.device(device)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "float32_matmul": float32_matmul(device),
    }


def load_bench(path) -> tuple[pd.DataFrame, dict]:
    """A ``dlzo bench --json`` file as (table indexed by case, header with environment and ratios)."""
    import json
    from pathlib import Path

    payload = json.loads(Path(path).read_text())
    table = pd.DataFrame(payload["cases"]).set_index("case")
    header = {k: v for k, v in payload.items() if k != "cases"}
    return table, header


def task_speedups(model, tokenizer, tasks, batch_size: int = 16, dominant_layer: int = 0, data_dir=None,
                  cases=("mezo_published_full", "dlzo_full", "dlzo_dominant"), warmup: int = 1, repeats: int = 5,
                  progress: bool = False) -> pd.DataFrame:
    """Step times of ``cases`` on one training batch of each task, with the batch's mean input length.

    The paper reports the dominant layer's speed-up over full MeZO falling with input length (COPA 4.52x,
    DROP 1.12x): longer inputs make the forwards, which every method pays, a larger share of a step.
    """
    from .losses import make_loss_fn
    from .tasks import load_task_data

    rows = []
    for name in tasks:
        data = load_task_data(name, seed=0, data_dir=data_dir)
        batch = data.train[:batch_size]
        lengths = [len(tokenizer(data.task.prompt(ex)).input_ids) for ex in batch]
        table = benchmark(model, tokenizer, lambda m, t=data.task: make_loss_fn(m, tokenizer, t), batch,
                          dominant_layer, cases=cases, warmup=warmup, repeats=repeats, progress=progress)
        row = {"task": name, "mean_prompt_tokens": float(np.mean(lengths))}
        row.update({f"{case}_ms": float(table.loc[case, "median_ms"]) for case in cases})
        rows.append(row)
    out = pd.DataFrame(rows)
    if {"mezo_published_full", "dlzo_dominant"} <= set(cases):
        out["published_full_vs_dominant"] = out["mezo_published_full_ms"] / out["dlzo_dominant_ms"]
    if {"dlzo_full", "dlzo_dominant"} <= set(cases):
        out["dlzo_full_vs_dominant"] = out["dlzo_full_ms"] / out["dlzo_dominant_ms"]
    return out
