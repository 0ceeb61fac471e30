"""Notebook set-up shared by every dlzo notebook: threads, determinism, quiet progress, plot style."""

from __future__ import annotations

import os
import platform

import torch


def setup(threads: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Pin torch threads, seed, silence hub progress bars when ``progress`` is off, set the plot style.

    Returns a small dict describing the run environment; notebooks print it so every number says which
    device it came from.
    """
    import matplotlib as mpl
    import seaborn as sns

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not progress:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    import transformers

    transformers.logging.set_verbosity_error()
    if not progress:
        transformers.utils.logging.disable_progress_bar()
    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams["svg.hashsalt"] = "dlzo"
    mpl.rcParams["figure.dpi"] = 100
    return environment()


def environment() -> dict:
    """Device and library versions, for the record."""
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
