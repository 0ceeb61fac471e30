"""Notebook set-up shared by every dlzo notebook: threads, determinism, quiet progress, plot style."""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch


def user_error_traceback(shell, etype, value, tb, tb_offset=None) -> list[str]:
    """IPython's custom-exception hook for :class:`~dlzo.errors.DlzoError`: the cell fails (papermill stops
    there) and shows the one-sentence fix instead of a library traceback. IPython ignores the hook's return
    value, so the hook shows the error itself (as an ``error`` output in a kernel)."""
    stb = [f"{etype.__name__}: {value}"]
    if shell is not None:
        shell._showtraceback(etype, value, stb)
    return stb


def _show_user_errors_briefly() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # not in IPython: nothing to configure
        return
    from .errors import DlzoError

    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((DlzoError,), user_error_traceback)


def setup(threads: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Pin torch threads, seed (torch, numpy, random), silence hub progress bars when ``progress`` is off, set
    the plot style, and show dlzo's user errors (:class:`~dlzo.errors.DlzoError`) as their one sentence,
    without a traceback.

    Returns a small dict describing the run environment; notebooks print it so every number says which
    device it came from.
    """
    import matplotlib as mpl
    import seaborn as sns

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # seaborn's strip-plot jitter draws from numpy: same figure on every run
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
    _show_user_errors_briefly()
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


def grid_results(grid_file: str, recompute: bool = False, output_dir: str = ".", device: str | None = None,
                 dtype: str = "float32", progress: bool = True):
    """``(grid, results table)`` of a grid file for a notebook: the committed table under
    ``results/<grid name>/``, or with ``recompute`` the table under ``output_dir`` after running the grid's
    missing cells on this machine (finished runs are kept). An empty ``grid_file`` gives ``(None, empty)``."""
    import pandas as pd

    from .experiments import ResultsStore, grid_runs, grid_search_seeds, load_grid, run_grid
    from .models import layer_count
    from .paths import repo_root
    from .recipes import RunContext

    if not grid_file:
        return None, pd.DataFrame()
    root = repo_root()
    grid = load_grid(root / grid_file)
    store = ResultsStore(((root / output_dir) if recompute else root) / "results" / grid["name"])
    if recompute:
        context = RunContext(device=device or None, dtype=dtype)
        run_grid(grid_runs(grid, layers_of=layer_count), store, context.run,
                 progress=progress, lr_search_seeds=grid_search_seeds(grid))
    return grid, store.table()
