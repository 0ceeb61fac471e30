"""``dlzo eval``: zero-shot scores of a model on the paper's benchmarks, under MeZO's protocol."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch

from ..errors import DlzoError
from ..models import pick_device
from ..tasks import MEZO_NUM_TEST, TASK_NAMES, get_task
from .common import add_model_args, setup_torch


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on the benchmarks (MeZO prompts, sampling and metrics)",
        description="Score a model on the MeZO test split of each task: accuracy by candidate log-likelihood "
        "(SST-2, RTE, CB, BoolQ, WSC, MultiRC, COPA), F1 by greedy generation (SQuAD, DROP). Prints one "
        "row per task with the deviations from MeZO's protocol (fallback splits, capped test sets).",
    )
    add_model_args(p)
    p.add_argument("--task", default="all",
                   help=f"'all' (the nine: {','.join(TASK_NAMES)}) or a comma-separated list (wic optional)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--data-dir", default=None,
                   help="local benchmark data folder (default: $DLZO_DATA_DIR, else the hub)")
    p.add_argument("--num-test", default=str(MEZO_NUM_TEST),
                   help=f"test examples: N for every task, or task=N,... for some (default {MEZO_NUM_TEST}, "
                   "MeZO's; fewer where validation is smaller)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per forward (default 16)")
    p.add_argument("--max-length", type=int, default=None,
                   help="token limit of an input (default 2048, MeZO's, or the model's context if shorter)")
    p.add_argument("--calibrate", action="store_true", help="SFC calibration of candidate scores")
    p.add_argument("--no-loss", dest="with_loss", action="store_false",
                   help="skip the teacher-forced loss forward of SQuAD/DROP (their loss stays empty)")
    p.add_argument("--json", dest="json_path", default=None, help="also write the results as JSON here")
    p.set_defaults(func=run)


def parse_tasks(text: str) -> list[str]:
    """``all`` or a comma-separated list of task names, each checked."""
    if text.strip().lower() == "all":
        return list(TASK_NAMES)
    names = [get_task(name).name for name in text.split(",") if name.strip()]
    if not names:
        raise DlzoError("--task is empty; pass 'all' or task names such as sst2,rte.")
    return names


def parse_num_test(text: str) -> int | dict[str, int]:
    """``N`` (every task) or ``task=N,...`` (the others keep MeZO's 1000); every number positive."""
    try:
        if "=" in text:
            caps = {get_task(name).name: int(value)
                    for name, value in (item.split("=", 1) for item in text.split(",") if item.strip())}
            numbers = list(caps.values())
        else:
            caps = int(text)
            numbers = [caps]
    except ValueError:
        raise DlzoError(f"--num-test {text!r} is not N or task=N,...; e.g. --num-test 200 or "
                        "squad=200,drop=200.") from None
    if min(numbers, default=0) < 1:
        raise DlzoError("--num-test needs positive numbers of examples.")
    return caps


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_tasks
    from ..models import load_model

    setup_torch(args)
    names = parse_tasks(args.task)
    num_test = parse_num_test(args.num_test)
    if args.batch_size < 1:
        raise DlzoError("--batch-size must be a positive integer.")
    device = pick_device(args.device)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=device, progress=args.progress)
    start = time.perf_counter()
    table = evaluate_tasks(model, tokenizer, names, seed=args.seed, data_dir=args.data_dir, num_test=num_test,
                           batch_size=args.batch_size, calibrate=args.calibrate, max_length=args.max_length,
                           with_loss=args.with_loss, progress=args.progress)
    total = time.perf_counter() - start
    mode = "SFC-calibrated" if args.calibrate else "zero-shot"
    print(f"model: {args.model}   device: {device}   threads: {torch.get_num_threads()}   "
          f"seed: {args.seed}   {mode}")
    shown = table.copy()
    for column, digits in (("score", 1), ("em", 1), ("loss", 3), ("seconds", 0)):
        shown[column] = shown[column].map(lambda v, d=digits: "" if v is None or v != v else f"{v:.{d}f}")
    print(shown.to_string(index=False))
    print(f"total: {total:.0f} s")
    if args.json_path:
        record = {
            "model": args.model, "dtype": args.dtype, "device": device,
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "seed": args.seed, "num_test": num_test, "batch_size": args.batch_size,
            "calibrate": args.calibrate, "with_loss": args.with_loss, "total_seconds": total,
            "torch": torch.__version__, "transformers": version("transformers"),
            "results": table.attrs["results"],
        }
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
