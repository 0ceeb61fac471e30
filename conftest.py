"""Test-session environment (applies to tests/ and to nbval's notebook kernels, which inherit it)."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("MPLBACKEND", None)  # an Agg backend removes inline figures from notebooks
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "DLZO_DATA_DIR" not in os.environ and _shared.is_dir():
    os.environ["DLZO_DATA_DIR"] = str(_shared)
