"""dlzo: Dominant-Layer ZO, the reference implementation of arXiv 2606.05516.

Zeroth-order (MeZO) fine-tuning of a single decoder layer of an LLM, the first activation-outlier layer,
with the tools to find that layer, analyse why it dominates, and benchmark it against full-model ZO.
"""

from .errors import DlzoError
from .evaluation import evaluate, evaluate_tasks
from .first_order import FOConfig, train_first_order
from .generation import generate_answers
from .layers import decoder_layers, num_layers
from .losses import make_loss_fn
from .metrics import accuracy, exact_match, f1_score
from .models import DEFAULT_MODEL, OFFLINE_MODELS, load_model
from .outliers import (
    LOOSE_RULE,
    STRICT_RULE,
    ActivationProfile,
    first_outlier_layer,
    profile_activations,
    rank_mlp_channels,
    top_mlp_channels,
)
from .scoring import score_candidates, score_candidates_one_by_one
from .selection import ChannelMask, LoraSpec, Selected, Selection
from .tasks import TASK_NAMES, Task, TaskData, get_task, load_task_data
from .training import TrainResult, ZOConfig, replay, train
from .zo import ZOEngine

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "LOOSE_RULE",
    "OFFLINE_MODELS",
    "STRICT_RULE",
    "TASK_NAMES",
    "ActivationProfile",
    "DlzoError",
    "Task",
    "TaskData",
    "accuracy",
    "decoder_layers",
    "evaluate",
    "evaluate_tasks",
    "exact_match",
    "f1_score",
    "first_outlier_layer",
    "generate_answers",
    "get_task",
    "load_model",
    "load_task_data",
    "make_loss_fn",
    "num_layers",
    "profile_activations",
    "rank_mlp_channels",
    "score_candidates",
    "score_candidates_one_by_one",
    "top_mlp_channels",
    "ChannelMask",
    "FOConfig",
    "LoraSpec",
    "Selected",
    "Selection",
    "TrainResult",
    "ZOConfig",
    "ZOEngine",
    "replay",
    "train",
    "train_first_order",
]
