"""Arguments shared by several commands."""

from __future__ import annotations

import argparse

import torch

from ..models import DEFAULT_MODEL, OFFLINE_MODELS


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"offline key ({', '.join(OFFLINE_MODELS)}), local folder, .gguf file or hub id "
        f"(default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16 or auto")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def setup_torch(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if getattr(args, "tf32", False):  # float32 matrix products on TF32 tensor cores (GPU only; rows record it)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
