"""Decoder-layer anatomy of the supported model families.

``decoder_layers(model)`` returns the ``ModuleList`` of decoder blocks (``model.model.layers`` for
LLaMA-style models); :class:`Family` also knows where attention and MLP live inside a block and which
module reads the MLP's intermediate activations, which the outlier-channel ranking and the channel
masks need. Anything not listed fails with one sentence naming the supported families.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import DlzoError


@dataclass(frozen=True)
class Family:
    """Where things are in one model family (attribute paths relative to the model / the block)."""

    layers_paths: tuple[str, ...]  # candidate paths from the top-level model to the ModuleList
    attention: tuple[str, ...]  # module-name prefixes of attention inside a block
    mlp: tuple[str, ...]  # module-name prefixes of the MLP inside a block
    mlp_in: tuple[str, ...]  # modules whose OUTPUT features are MLP intermediate channels
    mlp_out: str  # the module whose INPUT features are the MLP intermediate channels
    conv1d: bool = False  # GPT-2 stores weights as [in, out] (transformers' Conv1D)


_LLAMA_LIKE = Family(
    layers_paths=("model.layers", "model.language_model.layers"),
    attention=("self_attn",),
    mlp=("mlp",),
    mlp_in=("mlp.gate_proj", "mlp.up_proj"),
    mlp_out="mlp.down_proj",
)

FAMILIES: dict[str, Family] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "opt": Family(
        layers_paths=("model.decoder.layers",),
        attention=("self_attn",),
        mlp=("fc1", "fc2"),
        mlp_in=("fc1",),
        mlp_out="fc2",
    ),
    "gpt2": Family(
        layers_paths=("transformer.h",),
        attention=("attn",),
        mlp=("mlp",),
        mlp_in=("mlp.c_fc",),
        mlp_out="mlp.c_proj",
        conv1d=True,
    ),
    "gpt_neox": Family(
        layers_paths=("gpt_neox.layers",),
        attention=("attention",),
        mlp=("mlp",),
        mlp_in=("mlp.dense_h_to_4h",),
        mlp_out="mlp.dense_4h_to_h",
    ),
}


def base_model(model: nn.Module) -> nn.Module:
    """Unwrap a peft ``PeftModel`` (and its ``LoraModel``) to the transformers model inside."""
    seen = 0
    while hasattr(model, "get_base_model") and seen < 3:
        model = model.get_base_model()
        seen += 1
    return model


def model_type(model: nn.Module) -> str:
    config = getattr(base_model(model), "config", None)
    kind = getattr(config, "model_type", None)
    if kind is None:
        raise DlzoError(
            f"{type(model).__name__} has no transformers config; pass a transformers causal LM "
            f"(supported families: {', '.join(sorted(FAMILIES))})."
        )
    return kind


def family(model: nn.Module) -> Family:
    kind = model_type(model)
    if kind not in FAMILIES:
        raise DlzoError(
            f"Model type {kind!r} is not a supported decoder family; use one of {', '.join(sorted(FAMILIES))} "
            "(or add its layer path to dlzo.layers.FAMILIES)."
        )
    return FAMILIES[kind]


def _get_path(root: nn.Module, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers_path(model: nn.Module) -> str:
    """The dotted path from the (unwrapped) model to its decoder ``ModuleList``."""
    fam = family(model)
    root = base_model(model)
    for path in fam.layers_paths:
        if isinstance(_get_path(root, path), nn.ModuleList):
            return path
    raise DlzoError(
        f"Could not find the decoder layers of this {model_type(model)!r} model at {' or '.join(fam.layers_paths)}; "
        "load it with AutoModelForCausalLM (dlzo.load_model)."
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``ModuleList`` of decoder blocks, for every supported family."""
    return _get_path(base_model(model), decoder_layers_path(model))


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def check_layer(model: nn.Module, index: int) -> int:
    """Validate a layer index (negative counts from the end); return it as a non-negative int."""
    n = num_layers(model)
    if not isinstance(index, int) or isinstance(index, bool):
        raise DlzoError(f"Layer index {index!r} is not an integer; pass an int in 0..{n - 1}.")
    if not -n <= index < n:
        raise DlzoError(f"Layer {index} is out of range: this model has {n} decoder layers (0..{n - 1}).")
    return index % n


def layer_prefix(model: nn.Module, index: int) -> str:
    """Name prefix of layer ``index``'s parameters in ``model.named_parameters()`` (peft wrapping included)."""
    index = check_layer(model, index)
    layers = decoder_layers(model)
    target = layers[index]
    for name, module in model.named_modules():
        if module is target:
            return name + "."
    raise DlzoError("Could not locate the decoder layer among the model's modules.")


def layer_output(output) -> torch.Tensor:
    """The residual-stream tensor from a decoder layer's forward output (a tensor or a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def is_norm_module(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def parameter_groups(model: nn.Module, index: int) -> dict[str, str]:
    """Map every parameter name of layer ``index`` (full name) to 'attention', 'mlp', 'norm' or 'other'.

    Norm weights inside attention (Qwen3's q_norm/k_norm) count as 'norm'.
    """
    fam = family(model)
    prefix = layer_prefix(model, index)
    layer = decoder_layers(model)[check_layer(model, index)]
    groups: dict[str, str] = {}
    for mod_name, module in layer.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            local = f"{mod_name}.{p_name}" if mod_name else p_name
            if is_norm_module(module):
                group = "norm"
            elif any(local == p or local.startswith(p + ".") for p in fam.attention):
                group = "attention"
            elif any(local == p or local.startswith(p + ".") for p in fam.mlp):
                group = "mlp"
            else:
                group = "other"
            groups[prefix + local] = group
    return groups
