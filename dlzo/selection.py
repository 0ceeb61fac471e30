"""Parameter selections: which parameters (and which entries of them) a fine-tune may change.

One declarative :class:`Selection` serves the ZO engine, the first-order baseline and the analyses::

    Selection()                                   # the whole model: full MeZO (embeddings and head included)
    Selection(layers="dominant")                  # the first activation-outlier layer (the paper's method)
    Selection(layers=[1, 30])                     # several decoder layers
    Selection(layers=[11], modules=("mlp",), norms=False)            # the MLP of layer 11 only
    Selection(layers=[11], channels=ChannelMask(0.01, mode="only"))   # its top-1% outlier MLP channels
    Selection(layers=[11], channels=ChannelMask(0.01, mode="frozen")) # layer 11 with those channels frozen
    Selection(sparse=0.25)                        # Sparse-MeZO: the 25% smallest |w| of each matrix
    Selection(lora=LoraSpec(r=8, alpha=16))       # MeZO-LoRA; with layers=[11]: dominant-layer ZO-LoRA

``selection.apply(model, tokenizer)`` resolves it against a model (wrapping it with peft for LoRA) into a
:class:`Selected`: the chosen parameters in ``named_parameters()`` order, each with an optional boolean
mask of its trainable entries. Every other parameter gets ``requires_grad=False``; the engines never
touch it. Masks are computed once, from the weights the selection is applied to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .errors import DlzoError
from .layers import (
    base_model,
    check_layer,
    decoder_layers,
    decoder_layers_path,
    family,
    layer_prefix,
    parameter_groups,
)

MODULE_GROUPS = ("attention", "mlp")
CHANNEL_MODES = ("only", "frozen")


@dataclass(frozen=True)
class ChannelMask:
    """Restrict the MLP of each selected layer by intermediate channel (the paper's Table 6 rows).

    The channels are ``channels`` when given (one list for every layer, or ``{layer: list}``), else the
    top ``fraction`` of the layer's MLP intermediate channels by max |activation|
    (:func:`dlzo.outliers.top_mlp_channels`, which needs a tokenizer). A channel is a row of each MLP
    input projection (gate/up, with its bias entry) and a column of the output projection (down);
    transposed for GPT-2's Conv1D. ``mode="only"`` trains those entries alone; ``mode="frozen"`` trains
    the layer (as filtered by ``modules``/``norms``) except those entries.
    """

    fraction: float = 0.01
    mode: str = "only"
    channels: Sequence[int] | Mapping[int, Sequence[int]] | None = field(default=None, hash=False)

    def __post_init__(self):
        if self.mode not in CHANNEL_MODES:
            raise DlzoError(f"Unknown channel mode {self.mode!r}; use 'only' or 'frozen'.")
        if not 0 < self.fraction <= 1:
            raise DlzoError(f"Channel fraction {self.fraction} must be in (0, 1].")


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapters through peft: rank ``r``, scale ``alpha``, on the modules named in ``targets``.

    The adapters go on every decoder layer, or only on ``Selection.layers`` when those are given (peft's
    ``layers_to_transform``). Their initialisation draws from a private RNG seeded with ``init_seed``, so
    a run is reproducible and the global RNG is left alone.
    """

    r: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    dropout: float = 0.0
    init_seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.r < 1:
            raise DlzoError(f"LoRA rank {self.r} must be a positive integer.")
        if not self.targets:
            raise DlzoError("LoRA needs at least one target module name, e.g. targets=('q_proj', 'v_proj').")


@dataclass(frozen=True)
class SelectedParameter:
    """One selected tensor: its name in ``model.named_parameters()``, the parameter, and an optional mask
    (True = trainable entry; ``None`` = the whole tensor)."""

    name: str
    param: nn.Parameter
    mask: torch.Tensor | None = None

    @property
    def count(self) -> int:
        """Number of trainable entries."""
        return self.param.numel() if self.mask is None else int(self.mask.sum())


@dataclass
class Selected:
    """A selection resolved against one model (see :meth:`Selection.apply`)."""

    model: nn.Module  # the model to train: the input model, or its peft wrapper for LoRA
    params: list[SelectedParameter]
    selection: Selection
    layers: list[int] | None  # resolved decoder-layer indices (None: the whole model)
    channels: dict[int, list[int]] | None  # resolved MLP channels per layer, for channel masks

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def num_parameters(self) -> int:
        """Number of trainable entries over the selection (masked entries excluded)."""
        return sum(p.count for p in self.params)

    def describe(self) -> dict:
        """A JSON-able record of what was selected (logged with every run and checked on resume)."""
        return {
            "selection": self.selection.to_dict(),
            "layers": self.layers,
            "channels": None if self.channels is None else {str(k): v for k, v in self.channels.items()},
            "tensors": self.names,
            "num_parameters": self.num_parameters,
        }


@dataclass(frozen=True)
class Selection:
    """What to train; see the module docstring for examples.

    ``layers``: ``"all"`` (the whole model, every parameter, as MeZO), a decoder-layer index or list of
    indices (negative counts from the end), or ``"dominant"`` (the first activation-outlier layer under
    the strict rule; needs a tokenizer or a precomputed ``dominant_layer``). Inside chosen layers,
    ``modules`` picks "attention" and/or "mlp" and ``norms`` adds the layer's norm weights. Parameters of
    a block that are neither attention, MLP nor norm (none in the supported families) come with the
    whole block, i.e. when both groups are chosen. ``channels`` masks MLP channels, ``sparse`` keeps the
    given fraction of smallest-|w| entries of every matrix (vectors stay whole), ``lora`` trains LoRA
    adapters instead of the model's own weights.
    """

    layers: str | int | Sequence[int] = "all"
    modules: tuple[str, ...] = MODULE_GROUPS
    norms: bool = True
    channels: ChannelMask | None = None
    sparse: float | None = None
    lora: LoraSpec | None = None

    def __post_init__(self):
        layers = self.layers
        if layers is None:
            layers = "all"
        if isinstance(layers, str):
            if layers not in ("all", "dominant"):
                raise DlzoError(f"Unknown layer selection {layers!r}; use 'all', 'dominant' or layer indices.")
        elif isinstance(layers, int) and not isinstance(layers, bool):
            layers = (layers,)
        else:
            layers = tuple(layers)
            if not layers:
                raise DlzoError("The layer list is empty; pass at least one layer index, 'dominant' or 'all'.")
            for index in layers:
                if not isinstance(index, int) or isinstance(index, bool):
                    raise DlzoError(f"Layer index {index!r} is not an integer; pass integer layer indices.")
        object.__setattr__(self, "layers", layers)
        modules = (self.modules,) if isinstance(self.modules, str) else tuple(self.modules)
        unknown = [m for m in modules if m not in MODULE_GROUPS]
        if unknown:
            raise DlzoError(f"Unknown module group {unknown[0]!r}; use 'attention' and/or 'mlp'.")
        object.__setattr__(self, "modules", modules)
        if self.sparse is not None and not 0 < self.sparse <= 1:
            raise DlzoError(f"The sparse fraction {self.sparse} must be in (0, 1], e.g. 0.25 for Sparse-MeZO.")
        filtered = set(modules) != set(MODULE_GROUPS) or not self.norms
        if layers == "all" and filtered:
            raise DlzoError(
                "Module and norm filters apply inside chosen layers; pass layers=list(range(num_layers)) "
                "to filter every decoder layer."
            )
        if layers == "all" and self.channels is not None:
            raise DlzoError("Channel masks need explicit layers; pass layers=[...] or 'dominant'.")
        if self.lora is not None and (filtered or self.channels is not None or self.sparse is not None):
            raise DlzoError(
                "LoRA selects its adapters through LoraSpec.targets; drop modules/norms/channels/sparse."
            )
        if self.channels is not None and "mlp" not in modules:
            raise DlzoError("Channel masks act on the MLP; include 'mlp' in modules.")

    # ----------------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        out = {
            "layers": self.layers if isinstance(self.layers, str) else list(self.layers),
            "modules": list(self.modules),
            "norms": self.norms,
            "channels": None,
            "sparse": self.sparse,
            "lora": None if self.lora is None else {**asdict(self.lora), "targets": list(self.lora.targets)},
        }
        if self.channels is not None:
            channels = self.channels.channels
            if isinstance(channels, Mapping):
                channels = {str(k): [int(c) for c in v] for k, v in channels.items()}
            elif channels is not None:
                channels = [int(c) for c in channels]
            out["channels"] = {"fraction": self.channels.fraction, "mode": self.channels.mode,
                               "channels": channels}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Selection:
        data = dict(data)
        channels = data.get("channels")
        if channels is not None:
            explicit = channels.get("channels")
            if isinstance(explicit, Mapping):
                explicit = {int(k): v for k, v in explicit.items()}
            data["channels"] = ChannelMask(channels["fraction"], channels["mode"], explicit)
        if data.get("lora") is not None:
            data["lora"] = LoraSpec(**data["lora"])
        return cls(**data)

    # ----------------------------------------------------------------------------------- resolution
    def apply(self, model: nn.Module, tokenizer=None, dominant_layer: int | None = None) -> Selected:
        """Resolve against ``model``: wrap it with LoRA if asked, pick the parameters and masks, freeze the rest.

        ``tokenizer`` is needed to profile activations for ``layers="dominant"`` and for ranked channel
        masks; ``dominant_layer`` skips the profiling when the layer is already known.
        """
        layers = self._resolve_layers(model, tokenizer, dominant_layer)
        if self.lora is not None:
            model = _wrap_lora(model, self.lora, layers)
            chosen = [SelectedParameter(n, p) for n, p in model.named_parameters() if "lora_" in n]
            channels = None
        else:
            channels = None if self.channels is None else {
                i: self._resolve_channels(model, tokenizer, i) for i in layers}
            chosen = self._pick(model, layers, channels)
            if self.sparse is not None:
                chosen = [_sparsify(s, self.sparse) for s in chosen]
        chosen = [s for s in chosen if s.count > 0]
        if not chosen:
            raise DlzoError("The selection is empty for this model; widen layers, modules or the channel list.")
        keep = {id(s.param) for s in chosen}
        for param in model.parameters():
            param.requires_grad_(id(param) in keep)
        return Selected(model=model, params=chosen, selection=self, layers=layers, channels=channels)

    def _resolve_layers(self, model, tokenizer, dominant_layer) -> list[int] | None:
        if self.layers == "all":
            return None
        if self.layers == "dominant":
            if dominant_layer is None:
                dominant_layer = _dominant_layer(model, tokenizer)
            return [check_layer(model, int(dominant_layer))]
        return sorted({check_layer(model, i) for i in self.layers})

    def _resolve_channels(self, model, tokenizer, layer: int) -> list[int]:
        spec = self.channels
        explicit = spec.channels
        if isinstance(explicit, Mapping):
            if layer not in explicit:
                raise DlzoError(f"The channel mapping has no entry for layer {layer}; add one or pass a list.")
            explicit = explicit[layer]
        if explicit is None:
            if tokenizer is None:
                raise DlzoError(
                    "Ranking outlier channels needs the tokenizer; pass tokenizer= or explicit channels."
                )
            from .outliers import top_mlp_channels

            explicit = top_mlp_channels(model, tokenizer, layer, fraction=spec.fraction)
        width = _mlp_width(model, layer)
        channels = sorted({int(c) for c in explicit})
        if not channels or channels[0] < 0 or channels[-1] >= width:
            raise DlzoError(f"Channel indices must be a non-empty list in 0..{width - 1} (layer {layer}).")
        return channels

    def _pick(self, model, layers, channels) -> list[SelectedParameter]:
        if layers is None:
            return [SelectedParameter(n, p) for n, p in model.named_parameters()]
        wanted: dict[str, torch.Tensor | None] = {}
        for layer in layers:
            groups = parameter_groups(model, layer)
            whole_block = set(self.modules) == set(MODULE_GROUPS)
            for name, group in groups.items():
                if group in self.modules or (group == "norm" and self.norms) or (group == "other" and whole_block):
                    wanted[name] = None
            if channels is not None:
                masks = _channel_masks(model, layer, channels[layer])
                if self.channels.mode == "only":
                    for name in groups:
                        wanted.pop(name, None)
                    wanted.update(masks)
                else:
                    wanted.update({n: ~m for n, m in masks.items() if n in wanted})
        return [SelectedParameter(n, p, wanted[n]) for n, p in model.named_parameters() if n in wanted]


def _dominant_layer(model, tokenizer) -> int:
    if tokenizer is None:
        raise DlzoError(
            "layers='dominant' needs the tokenizer to profile activations; pass tokenizer= or dominant_layer=."
        )
    from .outliers import profile_activations

    layer = profile_activations(model, tokenizer).first_outlier_layer()
    if layer is None:
        raise DlzoError("No layer of this model passes the strict outlier rule; pass explicit layers=[...] instead.")
    return layer


def _mlp_width(model, layer: int) -> int:
    fam = family(model)
    out_proj = decoder_layers(model)[layer].get_submodule(fam.mlp_out)
    weight = out_proj.weight
    return weight.shape[0] if fam.conv1d else weight.shape[1]


def _channel_masks(model, layer: int, channels: list[int]) -> dict[str, torch.Tensor]:
    """Boolean masks marking ``channels`` in the MLP input projections (weights and biases) and the output
    projection's weight of ``layer``, keyed by full parameter name."""
    fam = family(model)
    prefix = layer_prefix(model, layer)
    block = decoder_layers(model)[layer]
    masks: dict[str, torch.Tensor] = {}

    def mark(module_name: str, param_name: str, dim: int):
        param = getattr(block.get_submodule(module_name), param_name, None)
        if param is None:
            return
        mask = torch.zeros(param.shape, dtype=torch.bool, device=param.device)
        index = torch.tensor(channels, device=param.device)
        mask.index_fill_(dim, index, True)
        masks[f"{prefix}{module_name}.{param_name}"] = mask

    for name in fam.mlp_in:  # output features are channels: rows (Linear) or columns (Conv1D)
        mark(name, "weight", 1 if fam.conv1d else 0)
        mark(name, "bias", 0)
    mark(fam.mlp_out, "weight", 0 if fam.conv1d else 1)  # input features are channels
    return masks


def _sparsify(selected: SelectedParameter, fraction: float) -> SelectedParameter:
    """Keep the ``fraction`` smallest-|w| entries of a matrix (ties broken by position); vectors stay whole."""
    param, mask = selected.param, selected.mask
    if param.ndim < 2:
        return selected
    magnitude = param.detach().abs().float().flatten()
    available = param.numel() if mask is None else int(mask.sum())
    if mask is not None:
        magnitude = magnitude.masked_fill(~mask.flatten(), float("inf"))
    k = max(1, round(fraction * available))
    order = torch.sort(magnitude, stable=True).indices[:k]
    sparse = torch.zeros(param.numel(), dtype=torch.bool, device=param.device)
    sparse[order] = True
    return SelectedParameter(selected.name, param, sparse.view(param.shape))


def _wrap_lora(model, spec: LoraSpec, layers: list[int] | None):
    """Wrap ``model`` with peft LoRA adapters (deterministic init, global RNG untouched)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise DlzoError("LoRA selections need peft: run `pip install peft`.") from None
    if hasattr(model, "peft_config"):
        raise DlzoError("The model already carries peft adapters; pass the base model to a LoRA selection.")
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        target_modules=list(spec.targets),
        lora_dropout=spec.dropout,
        layers_to_transform=layers,
        layers_pattern=None if layers is None else decoder_layers_path(model).split(".")[-1],
    )
    device = next(base_model(model).parameters()).device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(spec.init_seed)
        try:
            wrapped = get_peft_model(model, config)
        except ValueError as exc:
            reason = str(exc).strip().splitlines()[0][:160]
            raise DlzoError(f"peft could not place LoRA adapters ({reason}); check LoraSpec.targets.") from None
    return wrapped
