"""Which allocations are resident when a bench case starts its timed repeats (CUDA only).

Session 6's H200 bench showed every float32 ZO case starting 20-25 MB above the forward case beyond its
masters, and bfloat16 not. This records the CUDA allocator's history through `dlzo.bench.benchmark` and,
at the moment each case reads `start_mb`, lists the live blocks that the forward case did not have,
grouped by the innermost dlzo / transformers / torch frame that allocated them.

    python3 tools/gpu-lease/memsnap.py --dtype float32 --out memsnap_fp32.txt
    python3 tools/gpu-lease/memsnap.py --dtype float32 --published-first --out memsnap_fp32_old_order.txt
"""

import argparse
import collections

import torch

from dlzo import bench
from dlzo.losses import make_loss_fn
from dlzo.models import load_model
from dlzo.tasks import load_task_data

CASES = ["forward", "mezo_published_full", "dlzo_dominant", "dlzo_lora_dominant"]


def live_blocks():
    """(address, size, frames, requested size) of every allocated block in the allocator snapshot."""
    out = []
    for segment in torch.cuda.memory._snapshot()["segments"]:
        address = segment["address"]
        for block in segment["blocks"]:
            if block["state"] == "active_allocated":
                out.append((address, block["size"], block.get("frames", []),
                            block.get("requested_size", block["size"])))
            address += block["size"]
    return out


def where(frames) -> str:
    keep = [f for f in frames if any(s in f["filename"] for s in ("dlzo", "transformers", "peft"))]
    chosen = keep[:3] if keep else frames[:3]
    return " <- ".join(f"{f['filename'].split('site-packages/')[-1].split('/code/')[-1]}:{f['line']} {f['name']}"
                       for f in chosen) or "(allocated before recording)"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--layer", type=int, default=11)
    parser.add_argument("--out", required=True)
    parser.add_argument("--published-first", action="store_true",
                        help="run the cases in the order given (MeZO's published case second), as before session 7")
    args = parser.parse_args()
    if args.published_first:
        bench.REBINDS_PARAMETERS = ()
    torch.cuda.memory._record_memory_history(stacks="python", max_entries=200000)
    model, tokenizer = load_model("smollm2-135m", dtype=args.dtype, device="cuda", progress=False)
    data = load_task_data("sst2", seed=0)
    batch = data.train[:16]
    seen, lines, current = {}, [], []
    original_enter, original_make_step = bench._PeakMemory.__enter__, bench._make_step

    def make_step(case, *rest):  # the bench runs the cases in its own order (weight-rebinding ones last)
        current.append(case)
        return original_make_step(case, *rest)

    def enter(self):
        result = original_enter(self)
        seen[current[-1]] = (self.start_mb, live_blocks())
        return result
    bench._make_step = make_step
    bench._PeakMemory.__enter__ = enter
    table = bench.benchmark(model, tokenizer, lambda m: make_loss_fn(m, tokenizer, data.task), batch, args.layer,
                            cases=CASES, warmup=3, repeats=3)
    base = {(a, s) for a, s, _, _ in seen["forward"][1]}
    lines.append(f"dtype {args.dtype} layer {args.layer} torch {torch.__version__}; cases ran in the order {current}")
    columns = [c for c in ("median_ms", "start_mb", "peak_mb", "start_requested_mb", "peak_requested_mb")
               if c in table]
    lines.append(table[columns].round(2).to_string())
    for case in CASES:
        start_mb, blocks = seen[case]
        slack = sum(size - requested for _, size, _, requested in blocks) / 2**20
        lines.append(f"{case}: {slack:.2f} MiB of the live blocks is allocator rounding (block size - requested)")
    for case in CASES[1:]:
        start_mb, blocks = seen[case]
        extra = [(s, where(f)) for a, s, f, _ in blocks if (a, s) not in base]
        groups = collections.Counter()
        for size, place in extra:
            groups[place] += size
        lines.append(f"\n== {case}: start {start_mb:.2f} MB (forward {seen['forward'][0]:.2f}); "
                     f"{len(extra)} blocks not live in forward, {sum(s for s, _ in extra) / 2**20:.2f} MiB")
        for place, size in groups.most_common(12):
            lines.append(f"  {size / 2**20:8.2f} MiB  {place}")
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
