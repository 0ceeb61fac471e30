"""What a training run writes to disk: the JSONL log and atomic checkpoints.

* ``log.jsonl``: one JSON object per line, each with a ``"type"``: ``config`` (first line: everything
  needed to replay the run), ``step``, ``eval`` and ``end``. Non-finite numbers are written as ``null``
  so every line is standard JSON.
* ``checkpoint.safetensors``: tensors (no pickle) plus a JSON state in the safetensors metadata; it is
  written to a temporary file, fsynced and moved into place with ``os.replace``, so the file on disk is
  always a complete checkpoint, old or new. The state records how many bytes of the log belong to it;
  resuming truncates the log to that length, dropping the lines of steps the checkpoint does not hold.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch

from .errors import DlzoError

LOG_NAME = "log.jsonl"
CHECKPOINT_NAME = "checkpoint.safetensors"
STATE_KEY = "dlzo_state"


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


class RunLog:
    """Append-only JSONL log; every record is flushed as it is written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("ab")

    def write(self, record: dict) -> None:
        line = json.dumps(_finite_or_none(record), allow_nan=False) + "\n"
        self._handle.write(line.encode("utf-8"))
        self._handle.flush()

    def size(self) -> int:
        """Bytes written so far (what a checkpoint records)."""
        self._handle.flush()
        return self._handle.tell()

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    @staticmethod
    def truncate(path: str | Path, size: int) -> None:
        """Cut the log back to ``size`` bytes (the length a checkpoint recorded)."""
        with Path(path).open("r+b") as handle:
            handle.truncate(size)


def read_log(path_or_records) -> list[dict]:
    """The records of a log file (or pass a list of records through); a partial last line is ignored."""
    if isinstance(path_or_records, list):
        return path_or_records
    path = Path(path_or_records)
    if not path.is_file():
        raise DlzoError(f"The run log {str(path)!r} does not exist; pass the log.jsonl a training run wrote.")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # a line cut by a kill: everything after it is not part of the run
    if not records or records[0].get("type") != "config":
        raise DlzoError(f"{str(path)!r} is not a dlzo run log (no config record); pass the log.jsonl of a run.")
    return records


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """Write tensors and a JSON state atomically (temp file in the same folder, fsync, os.replace)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {STATE_KEY: json.dumps(_finite_or_none(state), allow_nan=False)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(cpu, tmp, metadata=metadata)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(tensors, state)``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DlzoError(f"No checkpoint at {str(path)!r}; start the run without resume.")
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        metadata = handle.metadata() or {}
        if STATE_KEY not in metadata:
            raise DlzoError(f"{str(path)!r} is not a dlzo checkpoint; point at the run's output folder.")
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    return tensors, json.loads(metadata[STATE_KEY])
