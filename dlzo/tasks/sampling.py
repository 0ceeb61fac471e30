"""MeZO's train/dev/test sampling, and the documented fallback for tasks without a train split.

MeZO (``tasks.py: sample_subset``, ``run.py: main``) with seed s:
- train/dev: permute the train split with numpy seed s, take the first ``num_train + num_dev`` rows; dev is
  the LAST ``num_dev`` of them, train the rest. The scripts use ``num_dev = 100`` for CB (250 rows: 150
  train) and COPA (400 rows: 300 train) and 500 elsewhere, WSC included (554 rows: 54 train, 500 dev).
- test: the first ``num_test`` (1000) rows of a seed-s permutation of the validation split (GLUE/SuperGLUE
  test labels are hidden), fewer where validation is smaller.

Fallback, where the train split is missing (BoolQ and SQuAD in ``shared/data``): the validation split is
divided by group (BoolQ: passage, SQuAD: article title; other tasks: single rows) in a seed-s order, groups
going to the test side until it holds 1000 rows; test is sampled from that side as above, train/dev from
the rest as above. Test and train/dev then share no passage or article. The run is labelled in
``TaskData.deviations``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DlzoError
from .data import read_split
from .definitions import Task, get_task

MEZO_NUM_TEST = 1000  # MeZO's --num_eval


@dataclass
class TaskData:
    """The examples of one task for one seed, with where they came from and how they depart from MeZO."""

    task: Task
    train: list[dict]
    dev: list[dict]
    test: list[dict]
    seed: int
    source: str
    deviations: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.dev), len(self.test)


def default_num_dev(task: Task, wsc_mezo_split: bool = True) -> int:
    """MeZO's dev size: 100 for CB and COPA, 500 otherwise (WSC too, unless ``wsc_mezo_split=False``: 100)."""
    if task.name in ("cb", "copa") or (task.name == "wsc" and not wsc_mezo_split):
        return 100
    return 500


def mezo_sample(rows: list, seed: int, num: int) -> list:
    """The first ``num`` rows of a numpy seed-``seed`` permutation (MeZO's ``sample_subset``, without touching
    numpy's global RNG: ``RandomState(seed)`` draws the same permutation as ``np.random.seed(seed)``)."""
    order = np.random.RandomState(seed).permutation(len(rows))[:num]
    return [rows[i] for i in order]


def split_train_dev(rows: list, seed: int, num_train: int, num_dev: int) -> tuple[list, list]:
    """MeZO's train/dev: sample ``num_train + num_dev`` rows, dev = the last ``num_dev`` of them."""
    picked = mezo_sample(rows, seed, num_train + num_dev)
    cut = max(len(picked) - num_dev, 0)
    return picked[:cut], picked[cut:]


def split_by_group(rows: list[dict], key: str | None, seed: int,
                   test_rows: int) -> tuple[list[dict], list[dict]]:
    """Divide ``rows`` into (test side, train side) by whole groups of equal ``row[key]`` (single rows when
    ``key`` is None), taking groups in a seed-``seed`` order until the test side holds ``test_rows`` rows."""
    keys = [row[key] if key else i for i, row in enumerate(rows)]
    groups = list(dict.fromkeys(keys))
    sizes = Counter(keys)
    test_groups, count = set(), 0
    for g in np.random.RandomState(seed).permutation(len(groups)):
        if count >= test_rows:
            break
        test_groups.add(groups[g])
        count += sizes[groups[g]]
    test_side = [row for row, k in zip(rows, keys, strict=True) if k in test_groups]
    train_side = [row for row, k in zip(rows, keys, strict=True) if k not in test_groups]
    return test_side, train_side


def load_task_data(
    name: str,
    seed: int = 0,
    data_dir: str | Path | None = None,
    num_train: int = 1000,
    num_dev: int | None = None,
    num_test: int = MEZO_NUM_TEST,
    wsc_mezo_split: bool = True,
    progress: bool = False,
) -> TaskData:
    """Load a task and sample train/dev/test exactly as MeZO does (module docstring); see :class:`TaskData`.

    ``num_dev=None`` takes MeZO's per-task default (:func:`default_num_dev`). ``wsc_mezo_split=False`` gives
    WSC 100 dev examples instead of MeZO's 500 (454 train instead of 54).
    """
    task = get_task(name)
    if num_dev is None:
        num_dev = default_num_dev(task, wsc_mezo_split)
    for label, value in (("num_train", num_train), ("num_dev", num_dev), ("num_test", num_test)):
        if value < 0:
            raise DlzoError(f"{label} must be a non-negative number of examples, not {value}.")
    validation, source = read_split(task, "validation", data_dir=data_dir, progress=progress)
    train_rows, _ = read_split(task, "train", data_dir=data_dir, progress=progress)
    deviations = []
    if train_rows is not None:
        test = mezo_sample(validation, seed, num_test)
        train, dev = split_train_dev(train_rows, seed, num_train, num_dev)
    else:
        test_side, train_side = split_by_group(validation, task.group_field, seed,
                                               max(num_test, MEZO_NUM_TEST))
        test = mezo_sample(test_side, seed, num_test)
        train, dev = split_train_dev(train_side, seed, num_train, num_dev)
        unit = {"passage": "passages", "title": "articles"}.get(task.group_field, "examples")
        deviations.append(f"no train split: train/dev drawn from validation {unit} not used for test")
    if task.name == "drop" and any(str(row.get("query_id", "")).startswith("ni_drop_") for row in validation):
        deviations.append("DROP is a 6,500-question Natural-Instructions subset re-split by passage: "
                          "not comparable with published DROP")
    if task.name == "wsc" and not wsc_mezo_split:
        deviations.append("WSC dev = 100 (MeZO keeps 500 dev, 54 train)")
    protocol_test = min(MEZO_NUM_TEST, len(validation))
    if len(test) != protocol_test:
        deviations.append(f"test = {len(test)} examples (MeZO: {protocol_test})")
    return TaskData(task, train, dev, test, seed, source, deviations)
