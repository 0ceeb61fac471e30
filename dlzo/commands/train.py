"""``dlzo train``: ZO (or first-order) fine-tuning of a parameter selection on a benchmark task."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import DlzoError
from ..models import pick_device
from .common import add_model_args, setup_torch

DEFAULT_MODULES = "attention,mlp"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a parameter selection (default: the dominant layer) with ZO steps",
        description="Zeroth-order (MeZO) fine-tuning of the selected parameters: two forwards per step, an fp32 "
        "master copy, a per-step JSONL log that replays the run, atomic checkpoints (--resume). "
        "--method fo runs the first-order AdamW baseline over the same selection.",
    )
    add_model_args(p)
    p.add_argument("--task", default="sst2", help="benchmark task: sst2, rte, cb, boolq, wsc, multirc, copa, squad, drop")
    p.add_argument("--data-dir", default=None,
                   help="folder with <task>/{train,validation}.jsonl (default: $DLZO_DATA_DIR, else the hub)")
    p.add_argument("--num-train", type=int, default=1000, help="training examples (MeZO sampling, default 1000)")
    p.add_argument("--num-dev", type=int, default=None, help="dev examples (default: MeZO's, 500; CB/COPA 100)")
    p.add_argument("--num-test", type=int, default=1000, help="test examples scored at the end (default 1000)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay CUDA graphs of the ZO forwards (GPU only; same kernels on padded batches)")
    p.add_argument("--paired-passes", action="store_true",
                   help="single-layer selections: the + and - forwards as one forward (float rounding differs)")
    p.add_argument("--no-loop-graphs", dest="loop_graphs", action="store_false",
                   help="run the perturbation/update loops eagerly on a GPU too (by default they replay CUDA graphs, "
                   "checked bit for bit against the eager loops)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel ZO under torchrun: each rank runs its shard of every batch")
    sel = p.add_argument_group("selection")
    sel.add_argument("--select", default="dominant",
                     help="dominant (first outlier layer), all (whole model), or layer indices like 11 or 2,11")
    sel.add_argument("--modules", default=DEFAULT_MODULES, help="inside the layers: attention, mlp or both")
    sel.add_argument("--no-norms", dest="norms", action="store_false", help="leave the layers' norm weights frozen")
    sel.add_argument("--sparse", type=float, default=None, help="Sparse-MeZO: train this fraction of smallest |w|")
    sel.add_argument("--lora-r", type=int, default=None, help="train LoRA adapters of this rank instead")
    sel.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA alpha (default 16)")
    sel.add_argument("--lora-targets", default="q_proj,v_proj", help="LoRA target modules (default q_proj,v_proj)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--method", choices=["zo", "fo"], default="zo", help="zo (default) or fo (AdamW baseline)")
    opt.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000)")
    opt.add_argument("--lr", type=float, default=1e-6,
                     help="learning rate (default 1e-6, MeZO's full-model value; one layer takes far more, "
                     "e.g. 1e-4 to 1e-3)")
    opt.add_argument("--eps", type=float, default=1e-3, help="ZO perturbation scale (default 1e-3)")
    opt.add_argument("--batch-size", type=int, default=16, help="examples per step (default 16)")
    opt.add_argument("--seed", type=int, default=0, help="seed of data sampling, batches and directions")
    opt.add_argument("--optimizer", choices=["sgd", "momentum", "adam", "sign"], default="sgd",
                     help="ZO update rule (default sgd, MeZO's)")
    opt.add_argument("--weight-decay", type=float, default=0.0, help="weight decay on matrices (default 0)")
    opt.add_argument("--directions", type=int, default=1, help="ZO directions averaged per step (default 1)")
    opt.add_argument("--one-sided", action="store_true", help="one-sided difference (L(θ+εz) - L(θ)) / ε")
    opt.add_argument("--eval-every", type=int, default=None, help="evaluate on dev every N steps (and at the end)")
    opt.add_argument("--epochs", type=int, default=None,
                     help="train this many passes over the training set with a dev evaluation after each, in place "
                     "of --steps and --eval-every (MeZO's first-order runs: --method fo --batch-size 8 --epochs 5)")
    opt.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps (default: at evals)")
    opt.add_argument("--best-by", choices=["loss", "score"], default="loss",
                     help="keep the parameters with the lowest dev loss (default) or the highest dev score")
    p.add_argument("--out", required=True, help="run folder: log.jsonl, checkpoint, trained.safetensors, result.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.set_defaults(func=run)


def parse_selection(args: argparse.Namespace):
    """The :class:`~dlzo.selection.Selection` the selection flags describe."""
    from ..selection import LoraSpec, Selection

    filtered = args.modules != DEFAULT_MODULES or not args.norms
    if args.select == "all":
        if filtered:
            raise DlzoError("--modules and --no-norms apply inside chosen layers; pass --select with layer indices.")
        layers = "all"
    elif args.select == "dominant":
        layers = "dominant"
    else:
        try:
            layers = [int(part) for part in args.select.split(",")]
        except ValueError:
            raise DlzoError(
                f"--select {args.select!r} is not valid; use dominant, all, or comma-separated layer indices like 2,11."
            ) from None
    modules = tuple(m.strip() for m in args.modules.split(",") if m.strip())
    if args.lora_r is not None:
        if filtered or args.sparse is not None:
            raise DlzoError("--lora-r chooses adapters through --lora-targets; drop --modules, --no-norms and --sparse.")
        lora = LoraSpec(r=args.lora_r, alpha=args.lora_alpha, targets=tuple(args.lora_targets.split(",")))
        return Selection(layers=layers, lora=lora)
    return Selection(layers=layers, modules=modules, norms=args.norms, sparse=args.sparse)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import dev_eval_fn, evaluate
    from ..first_order import FOConfig, train_first_order
    from ..losses import make_loss_fn
    from ..models import load_model
    from ..paths import atomic_write_text
    from ..tasks import load_task_data
    from ..training import ZOConfig, train

    setup_torch(args)
    if args.num_train < 1 or (args.num_dev is not None and args.num_dev < 1) or args.num_test < 0:
        raise DlzoError("--num-train and --num-dev must be positive and --num-test non-negative.")
    selection = parse_selection(args)
    common = dict(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                  weight_decay=args.weight_decay, eval_every=args.eval_every, best_by=args.best_by)
    if args.method == "zo":
        config = ZOConfig(eps=args.eps, optimizer=args.optimizer, directions=args.directions,
                          one_sided=args.one_sided, checkpoint_every=args.checkpoint_every,
                          cuda_graphs=args.cuda_graphs, paired_passes=args.paired_passes,
                          loop_graphs=args.loop_graphs, **common)
    else:
        if args.resume or args.distributed:
            raise DlzoError("First-order runs neither resume nor shard; drop --resume/--distributed or use --method zo.")
        config = FOConfig(**common)
    rank, device = 0, pick_device(args.device)
    if args.distributed:
        from ..distributed import init_from_env

        rank, _world, device = init_from_env()
    data = load_task_data(args.task, seed=args.seed, data_dir=args.data_dir, num_train=args.num_train,
                          num_dev=args.num_dev, num_test=args.num_test)
    if args.epochs is not None:
        from ..recipes import epoch_schedule

        config.steps, config.eval_every = epoch_schedule(args.epochs, len(data.train), args.batch_size)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=device, progress=args.progress)
    selected = selection.apply(model, tokenizer)
    say = (lambda *a, **k: print(*a, **k)) if rank == 0 else (lambda *a, **k: None)
    say(f"model: {args.model}   task: {data.task.name} ({len(data.train)} train, {len(data.dev)} dev, "
        f"{len(data.test)} test)   selection: layers={selected.layers if selected.layers is not None else 'all'} "
        f"({len(selected.params)} tensors, {selected.num_parameters:,} parameters)   method: {args.method}",
        file=sys.stderr)
    for note in data.deviations:
        say(f"note: {note}", file=sys.stderr)
    loss_fn = make_loss_fn(selected.model, tokenizer, data.task)
    if args.distributed:
        from ..distributed import ShardedLoss

        loss_fn = ShardedLoss(loss_fn)
    eval_fn = dev_eval_fn(tokenizer, data.task, data.dev)
    out = args.out if rank == 0 else None  # one run folder; every rank holds the same parameters
    if args.method == "zo":
        result = train(model, selected, loss_fn, data.train, config, eval_fn=eval_fn, out_dir=out,
                       resume=args.resume, progress=args.progress and rank == 0)
    else:
        result = train_first_order(model, selected, loss_fn, data.train, config, eval_fn=eval_fn, out_dir=out,
                                   progress=args.progress)
    for label, metrics in (("zero-shot", result.zero_shot), ("final", result.final), ("best", result.best)):
        if metrics is not None:
            score = "n/a" if metrics.get("score") is None else f"{metrics['score']:.2f}"
            say(f"{label:>9}: dev loss {metrics['loss']:.4f}   dev {data.task.metric} {score}")
    if data.test and rank == 0:
        test = evaluate(selected.model, tokenizer, data.task, data.test, with_loss=False)
        say(f"     test: {data.task.metric} {test['score']:.2f} on {test['n']} examples (returned parameters)")
        if out:
            atomic_write_text(Path(out) / "test.json",
                              json.dumps({k: v for k, v in test.items() if k != "predictions"}, indent=1))
    say(f"returned step {result.returned_step} of {result.steps}; {result.wall_time_s:.1f} s on {result.device} "
        f"({result.threads} threads); wrote {args.out}")
    return 0
