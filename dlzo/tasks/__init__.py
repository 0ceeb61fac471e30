"""The paper's benchmarks under MeZO's protocol: task definitions, data loading and sampling.

>>> from dlzo.tasks import get_task, load_task_data
>>> data = load_task_data("sst2", seed=0, data_dir="../shared/data")   # 1000 train / 500 dev / 872 test
>>> task = data.task; ex = data.test[0]
>>> task.prompt(ex), task.candidates(ex), task.label(ex)
"""

from .data import read_split
from .definitions import (
    CLASSIFICATION,
    GENERATION,
    MULTIPLE_CHOICE,
    TASK_NAMES,
    TASKS,
    Task,
    get_task,
)
from .sampling import MEZO_NUM_TEST, TaskData, default_num_dev, load_task_data

__all__ = [
    "CLASSIFICATION",
    "GENERATION",
    "MEZO_NUM_TEST",
    "MULTIPLE_CHOICE",
    "TASKS",
    "TASK_NAMES",
    "Task",
    "TaskData",
    "default_num_dev",
    "get_task",
    "load_task_data",
    "read_split",
]
