"""Reading a task's rows: from a local data directory, or from the Hugging Face hub under MeZO's ids.

A local directory (``data_dir=...``, else ``$DLZO_DATA_DIR``) holds ``<task>/{train,validation}.jsonl`` (or
``.parquet``) in the HF ``datasets`` schema; when one is set it is used alone, so a run never reaches the
network by surprise. Without one, rows come from ``datasets.load_dataset`` with MeZO's hub ids. Every row
is checked against the task's schema; a bad row is reported with its file and line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DlzoError
from ..paths import data_dir as resolve_data_dir
from .definitions import Task

SPLITS = ("train", "validation")


def local_root(data_dir: str | Path | None = None) -> Path | None:
    """The local data directory, or None when neither ``data_dir`` nor ``$DLZO_DATA_DIR`` is set.

    A directory that is set but missing raises a one-sentence :class:`DlzoError` (no silent hub fallback).
    """
    if data_dir is None and not os.environ.get("DLZO_DATA_DIR"):
        return None
    return resolve_data_dir(data_dir)


def read_split(task: Task, split: str, data_dir: str | Path | None = None,
               progress: bool = False) -> tuple[list[dict] | None, str]:
    """Return ``(rows, source)`` for one split of ``task``.

    ``rows`` is None only when a local task folder has no file for ``split`` (BoolQ and SQuAD lack train in
    ``shared/data``; :func:`dlzo.tasks.load_task_data` then falls back). A missing validation split is an
    error. ``source`` names where the rows came from (a folder, or ``hub:<id>``).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    root = local_root(data_dir)
    if root is None:
        return _hub_rows(task, split, progress), f"hub:{task.hub_id}"
    folder = root / task.name
    if not folder.is_dir():
        raise DlzoError(
            f"The data directory {root} has no folder {task.name!r}; add {task.name}/validation.jsonl (and "
            f"train.jsonl) in the HF {task.hub_id} schema, or set no data directory (DLZO_DATA_DIR, "
            "--data-dir) to load it from the hub."
        )
    path = split_file(folder, split)
    if path is None:
        if split == "train":
            return None, str(folder)
        raise DlzoError(
            f"{folder} has no {split}.jsonl or {split}.parquet; add it in the HF {task.hub_id} schema."
        )
    return read_rows(task, path), str(folder)


def split_file(folder: Path, split: str) -> Path | None:
    """``<folder>/<split>.jsonl``, else ``.parquet``, else None."""
    for suffix in (".jsonl", ".parquet"):
        path = folder / f"{split}{suffix}"
        if path.is_file():
            return path
    return None


def read_rows(task: Task, path: Path) -> list[dict]:
    """Read and check every row of a ``.jsonl`` or ``.parquet`` file (one sentence with file:line on
    error)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
            raise DlzoError(f"{path} is not a readable parquet file ({exc}); re-create it.") from None
        for number, row in enumerate(rows, start=1):
            _check(task, row, f"{path}, row {number}")
        return rows
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DlzoError(
                    f"{path}, line {number}: invalid JSON ({exc.msg}); fix or remove the line.") from None
            _check(task, row, f"{path}, line {number}")
            rows.append(row)
    return rows


def _check(task: Task, row, where: str) -> None:
    try:
        task.check(row)
    except ValueError as exc:
        raise DlzoError(f"{where}: {exc} for task {task.name}; fix or remove the row.") from None


def _hub_rows(task: Task, split: str, progress: bool) -> list[dict]:
    """Rows from ``datasets.load_dataset(path, config, split=split)``; any failure is one sentence."""
    import datasets

    path, config = task.hub_path
    bars_were_on = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        rows = datasets.load_dataset(path, config, split=split).to_list()
    except Exception as exc:  # offline, unknown id, network, script datasets...: all mean "not reachable"
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DlzoError(
            f"Could not load {task.name}: no local data directory is set (DLZO_DATA_DIR or --data-dir) and "
            f"the hub dataset {task.hub_id} could not be loaded ({reason}); point DLZO_DATA_DIR at a folder "
            f"holding {task.name}/{{train,validation}}.jsonl, or allow network access."
        ) from None
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    for number, row in enumerate(rows, start=1):
        _check(task, row, f"hub {task.hub_id} {split}, row {number}")
    return rows
