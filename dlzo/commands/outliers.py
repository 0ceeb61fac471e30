"""``dlzo outliers``: the per-layer massive-activation table and the first outlier layer."""

from __future__ import annotations

import argparse
import sys

from ..errors import DlzoError
from ..models import pick_device
from ..outliers import LOOSE_RULE, STRICT_RULE, profile_activations
from .common import add_model_args, setup_torch


def add_parser(sub) -> None:
    p = sub.add_parser(
        "outliers",
        help="profile massive activations per decoder layer and report the first outlier layer",
        description="Profile the OUTPUT of every decoder layer on calibration text and report the first layer "
        "whose largest |h| exceeds --min-abs and --min-ratio times the median |h| (Sun et al. 2024).",
    )
    add_model_args(p)
    p.add_argument("--texts", default=None,
                   help="text file (passages separated by blank lines) or task:<name>; default: built-in passages")
    p.add_argument("--data-dir", default=None, help="benchmark data folder for --texts task:<name>")
    p.add_argument("--num-texts", type=int, default=None, help="use only the first N passages")
    p.add_argument("--max-length", type=int, default=256, help="tokens per passage (default 256)")
    p.add_argument("--min-abs", type=float, default=STRICT_RULE["min_abs"], help="strict rule: top-1 |h| > this")
    p.add_argument("--min-ratio", type=float, default=STRICT_RULE["min_ratio"],
                   help="strict rule: top-1 / median > this (default 1000)")
    p.add_argument("--loose-ratio", type=float, default=LOOSE_RULE["min_ratio"],
                   help="the looser rule's ratio threshold, reported beside the strict one (default 500)")
    p.add_argument("--aggregate", choices=["mean", "min"], default="mean",
                   help="combine sequences by mean (Sun et al.) or min (outlier in every text)")
    p.add_argument("--json", dest="json_path", default=None, help="also write the full profile as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..calibration import calibration_texts
    from ..models import load_model

    setup_torch(args)
    if args.min_abs < 0 or args.min_ratio < 0 or args.loose_ratio < 0:
        raise DlzoError("Outlier thresholds must be non-negative numbers.")
    texts = calibration_texts(args.texts, n=args.num_texts, data_dir=args.data_dir)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=pick_device(args.device),
                                  progress=args.progress)
    profile = profile_activations(model, tokenizer, texts, max_length=args.max_length, progress=args.progress)
    table = profile.table()
    cols = ["layer", "top1", "top2", "top3", "median", "ratio", "top1_min", "ratio_min", "channel", "token_pos",
            "token"]
    shown = table[cols].copy()
    for c in ["top1", "top2", "top3", "ratio", "top1_min", "ratio_min"]:
        shown[c] = shown[c].map(lambda v: f"{v:,.1f}")
    shown["median"] = shown["median"].map(lambda v: f"{v:.3f}")
    shown["token"] = shown["token"].map(repr)
    print(f"model: {args.model}   texts: {len(texts)}   aggregate: {args.aggregate}")
    print(shown.to_string(index=False))
    strict = profile.first_outlier_layer(args.min_abs, args.min_ratio, args.aggregate)
    loose = profile.first_outlier_layer(args.min_abs, args.loose_ratio, args.aggregate)
    if strict is None:
        print(f"no layer qualifies under the strict rule (top-1 > {args.min_abs:g}, ratio > {args.min_ratio:g})")
    else:
        print(f"first outlier layer (top-1 > {args.min_abs:g}, ratio > {args.min_ratio:g}): {strict}")
    if loose is None:
        print(f"no layer qualifies under the looser rule (ratio > {args.loose_ratio:g})")
    else:
        print(f"first outlier layer, looser rule (ratio > {args.loose_ratio:g}): {loose}")
    if args.json_path:
        profile.to_json(
            args.json_path,
            strict={"min_abs": args.min_abs, "min_ratio": args.min_ratio, "aggregate": args.aggregate},
            loose={"min_abs": args.min_abs, "min_ratio": args.loose_ratio, "aggregate": args.aggregate},
        )
        print(f"wrote {args.json_path}", file=sys.stderr)
    return 0
