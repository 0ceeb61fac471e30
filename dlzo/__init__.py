"""dlzo: Dominant-Layer ZO, the reference implementation of arXiv 2606.05516.

Zeroth-order (MeZO) fine-tuning of a single decoder layer of an LLM, the first activation-outlier layer,
with the tools to find that layer, analyse why it dominates, and benchmark it against full-model ZO.
"""

from .errors import DlzoError
from .first_order import FOConfig, train_first_order
from .layers import decoder_layers, num_layers
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
from .selection import ChannelMask, LoraSpec, Selected, Selection
from .training import TrainResult, ZOConfig, replay, train
from .zo import ZOEngine

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "LOOSE_RULE",
    "OFFLINE_MODELS",
    "STRICT_RULE",
    "ActivationProfile",
    "DlzoError",
    "decoder_layers",
    "first_outlier_layer",
    "load_model",
    "num_layers",
    "profile_activations",
    "rank_mlp_channels",
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
