"""``dlzo bench``: time every kind of training step side by side on one batch (see :mod:`dlzo.bench`)."""

from __future__ import annotations

import argparse
import json

from ..models import pick_device
from ..paths import atomic_write_text
from .common import add_model_args, setup_torch


def add_parser(sub) -> None:
    from ..bench import CASES

    p = sub.add_parser(
        "bench",
        help="time forward, MeZO's published step, dlzo full/dominant/LoRA steps and an AdamW step side by side",
        description="Benchmark the training steps of one model on one batch of a task, in one process: "
        "medians after warm-up, phase breakdown, peak memory, and the ratios between cases.",
    )
    add_model_args(p)
    p.add_argument("--task", default="sst2", help="task whose training batch is used (default sst2)")
    p.add_argument("--data-dir", default=None, help="benchmark data folder (default: $DLZO_DATA_DIR)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per step (default 16)")
    p.add_argument("--layer", default="dominant", help="the single layer to train: an index or 'dominant'")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of: {', '.join(CASES)}")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats per case (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per case")
    p.add_argument("--tf32", action="store_true",
                   help="let float32 matrix products use TF32 tensor cores on the GPU (recorded in the JSON)")
    p.add_argument("--json", dest="json_path", default=None, help="also write the table and ratios as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import benchmark, environment, graph_check, precision_check
    from ..errors import DlzoError
    from ..losses import make_loss_fn
    from ..models import load_model
    from ..outliers import profile_activations
    from ..tasks import load_task_data

    setup_torch(args)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    device = pick_device(args.device)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=device, progress=args.progress)
    data = load_task_data(args.task, seed=0, data_dir=args.data_dir)
    if len(data.train) < args.batch_size:
        raise DlzoError(f"{args.task} has only {len(data.train)} training examples; lower --batch-size.")
    batch = data.train[: args.batch_size]
    if args.layer == "dominant":
        layer = profile_activations(model, tokenizer).first_outlier_layer()
        if layer is None:
            raise DlzoError("No layer passes the strict outlier rule; pass --layer N.")
    else:
        layer = int(args.layer)
    table = benchmark(model, tokenizer, lambda m: make_loss_fn(m, tokenizer, data.task), batch, layer, cases=cases,
                      warmup=args.warmup, repeats=args.repeats, progress=args.progress)
    env = environment(device)
    check = graph_check(model, make_loss_fn(model, tokenizer, data.task), batch, layer)
    precision = precision_check(model, make_loss_fn(model, tokenizer, data.task), batch, layer) if args.tf32 else {}
    print(f"model {args.model} | task {args.task} | batch {args.batch_size} | layer {layer} | {env['device']} | "
          f"threads {env['threads']} | dtype {args.dtype} | matmul {env['float32_matmul']}")
    shown = table.drop(columns=["repeats"]).round(2)
    print(shown.to_string())
    for name, value in table.attrs["ratios"].items():
        print(f"{name}: {value:.2f}" if value is not None else f"{name}: n/a")
    if check:
        print("CUDA graphs vs eager on the padded batch: " + ", ".join(f"{k} {v}" for k, v in check.items()))
    if precision:
        print(f"TF32 vs IEEE float32, projected gradient g of layer {layer}: max relative difference "
              f"{precision['g_max_rel_diff']:.2e} over {len(precision['g_ieee'])} seeds")
    if args.json_path:
        payload = {"environment": env, "model": args.model, "task": args.task, "batch_size": args.batch_size,
                   "layer": layer, "dtype": args.dtype, "cases": json.loads(table.reset_index().to_json(orient="records")),
                   "ratios": table.attrs["ratios"], "graph_check": check,
                   "precision_check": precision}
        atomic_write_text(args.json_path, json.dumps(payload, indent=1))
    return 0
