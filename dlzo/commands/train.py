"""``dlzo train``: ZO (or first-order) fine-tuning of a parameter selection on a benchmark task."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import DlzoError
from .common import add_model_args, resolve_device, setup_torch

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
    p.add_argument("--task", default="sst2", help="benchmark task (for now: sst2)")
    p.add_argument("--data-dir", default=None, help="folder with <task>/{train,validation}.jsonl (default: $DLZO_DATA_DIR)")
    p.add_argument("--num-train", type=int, default=1000, help="training examples sampled with --seed (default 1000)")
    p.add_argument("--num-eval", type=int, default=200, help="dev examples from the validation split (default 200)")
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


def sst2_until_dlzo_tasks(tokenizer, data_dir, num_train: int, num_eval: int, seed: int):
    """PLACEHOLDER for ``dlzo.tasks`` (the tasks issue), which will replace this whole function.

    SST-2 from ``<data_dir>/sst2/{train,validation}.jsonl`` (fields ``sentence``, ``label``): train = the
    first ``num_train`` of a numpy-``seed`` permutation of the train split, dev = the first ``num_eval`` of
    one of the validation split. Prompt ``"{sentence} It was"``, candidates " terrible" / " great"; the
    loss is the cross-entropy over the candidates' log-probabilities (single-token verbalizers only),
    the score is accuracy. Returns ``(train, dev, loss_fn, make_eval_fn)`` where ``loss_fn(model)(batch)``.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ..paths import data_dir as resolve_data_dir

    folder = resolve_data_dir(data_dir) / "sst2"
    splits = {}
    for split in ("train", "validation"):
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            raise DlzoError(f"{path} is missing; put the SST-2 jsonl files in <data_dir>/sst2/.")
        splits[split] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = np.random.default_rng(seed)
    train = [splits["train"][i] for i in rng.permutation(len(splits["train"]))[:num_train]]
    dev_order = np.random.default_rng(seed).permutation(len(splits["validation"]))
    dev = [splits["validation"][i] for i in dev_order[:num_eval]]
    candidates = []
    for word in (" terrible", " great"):
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise DlzoError("This placeholder SST-2 path needs single-token verbalizers; use dlzo.tasks for this model.")
        candidates.append(ids[0])

    def class_logprobs(model, batch):
        prompts = [f"{ex['sentence'].strip()} It was" for ex in batch]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right")
        device = model.get_input_embeddings().weight.device
        last = enc["attention_mask"].sum(dim=1) - 1
        keep = torch.unique(last)  # only the prompts' last positions go through the LM head
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                       logits_to_keep=keep.to(device)).logits
        rows = logits[torch.arange(len(batch)), torch.searchsorted(keep, last).to(device)]
        return F.log_softmax(rows.float(), dim=-1)[:, candidates]

    def loss_fn(model):
        def loss(batch):
            labels = torch.tensor([int(ex["label"]) for ex in batch])
            scores = class_logprobs(model, batch)
            return F.cross_entropy(scores, labels.to(scores.device))

        return loss

    def make_eval_fn(batch_size: int = 32):
        def eval_fn(model):
            total, correct = 0.0, 0
            for start in range(0, len(dev), batch_size):
                batch = dev[start : start + batch_size]
                scores = class_logprobs(model, batch)
                labels = torch.tensor([int(ex["label"]) for ex in batch], device=scores.device)
                total += float(F.cross_entropy(scores, labels, reduction="sum"))
                correct += int((scores.argmax(dim=-1) == labels).sum())
            return {"loss": total / len(dev), "score": correct / len(dev)}

        return eval_fn

    return train, dev, loss_fn, make_eval_fn


def run(args: argparse.Namespace) -> int:
    from ..first_order import FOConfig, train_first_order
    from ..models import load_model
    from ..training import ZOConfig, train

    setup_torch(args)
    if args.task != "sst2":
        raise DlzoError(f"Task {args.task!r} is not available yet; only --task sst2 runs until dlzo.tasks lands.")
    if args.num_train < 1 or args.num_eval < 1:
        raise DlzoError("--num-train and --num-eval must be positive.")
    selection = parse_selection(args)
    common = dict(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                  weight_decay=args.weight_decay, eval_every=args.eval_every, best_by=args.best_by)
    if args.method == "zo":
        config = ZOConfig(eps=args.eps, optimizer=args.optimizer, directions=args.directions,
                          one_sided=args.one_sided, checkpoint_every=args.checkpoint_every, **common)
    else:
        if args.resume:
            raise DlzoError("First-order runs do not resume; drop --resume or use --method zo.")
        config = FOConfig(**common)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=resolve_device(args.device),
                                  progress=args.progress)
    train_set, _dev, loss_fn, make_eval_fn = sst2_until_dlzo_tasks(tokenizer, args.data_dir, args.num_train,
                                                                   args.num_eval, args.seed)
    selected = selection.apply(model, tokenizer)
    print(f"model: {args.model}   selection: layers={selected.layers if selected.layers is not None else 'all'} "
          f"({len(selected.params)} tensors, {selected.num_parameters:,} parameters)   method: {args.method}",
          file=sys.stderr)
    if args.method == "zo":
        result = train(model, selected, loss_fn(model), train_set, config, eval_fn=make_eval_fn(),
                       out_dir=args.out, resume=args.resume, progress=args.progress)
    else:
        result = train_first_order(model, selected, loss_fn(model), train_set, config, eval_fn=make_eval_fn(),
                                   out_dir=args.out, progress=args.progress)
    for label, metrics in (("zero-shot", result.zero_shot), ("final", result.final), ("best", result.best)):
        if metrics is not None:
            print(f"{label:>9}: dev loss {metrics['loss']:.4f}   dev accuracy {metrics['score']:.4f}")
    print(f"returned step {result.returned_step} of {result.steps}; {result.wall_time_s:.1f} s on {result.device} "
          f"({result.threads} threads); wrote {args.out}")
    return 0
