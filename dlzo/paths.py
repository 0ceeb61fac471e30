"""Where things live: the repository root, the user cache, the benchmark data directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DlzoError


def repo_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the cwd, then this package) with a pyproject.toml.

    Jupyter, papermill and nbval each run notebooks from a different working directory, so notebooks
    resolve ``figures/`` and ``results/`` through this instead of relative paths.
    """
    candidates = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for base in candidates:
        for folder in [base.resolve(), *base.resolve().parents]:
            if (folder / "pyproject.toml").is_file() and (folder / "dlzo").is_dir():
                return folder
    return None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``, so readers
    (and a run killed mid-write) never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)
    return path


def cache_dir() -> Path:
    """The user cache (``$DLZO_CACHE``, else ``$XDG_CACHE_HOME/dlzo``, else ``~/.cache/dlzo``)."""
    if os.environ.get("DLZO_CACHE"):
        path = Path(os.environ["DLZO_CACHE"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "dlzo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(path: str | Path | None = None, required: bool = True) -> Path | None:
    """The local benchmark data directory: ``path`` if given, else ``$DLZO_DATA_DIR``.

    Relative paths are taken from the repository root when they do not exist from the cwd, so
    ``DLZO_DATA_DIR=../shared/data`` works from notebooks too.
    """
    raw = path if path is not None else os.environ.get("DLZO_DATA_DIR")
    if raw is None or str(raw) == "":
        if required:
            raise DlzoError(
                "No data directory is set: pass data_dir=... or set DLZO_DATA_DIR to a folder holding "
                "<task>/{train,validation}.jsonl (or use hub ids with network access)."
            )
        return None
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        root = repo_root()
        if root is not None and (root / candidate).exists():
            candidate = root / candidate
    if not candidate.is_dir():
        if required:
            raise DlzoError(
                f"The data directory {str(raw)!r} does not exist (resolved to {candidate.resolve()}); "
                "point DLZO_DATA_DIR or data_dir= at a folder holding <task>/{train,validation}.jsonl."
            )
        return None
    return candidate.resolve()
