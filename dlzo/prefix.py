"""Prefix sharing: compute the frozen layers below the first trained layer once per ZO step.

When a selection starts at decoder layer ``k`` (the dominant layer, say), layers ``0..k-1`` are frozen
and never perturbed, so their output is the same in every forward of a ZO step (θ+εz, θ−εz, and any
further directions). :class:`PrefixSharing` records the input of layer ``k`` during the step's first
forward and, in the later ones, skips layers ``0..k-1`` and feeds the recorded tensor to layer ``k``.
The model's own forward still runs around it (embeddings, masks, rotary tables, final norm, head), so
nothing family-specific is re-implemented and the losses are bit-identical to the plain computation.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .errors import DlzoError
from .layers import decoder_layers


class PrefixSharing:
    """Hooks on a model that let the forwards of one ZO step share layers ``0..first_layer-1``.

    Use as a context manager around a step; inside, run the first forward under :meth:`record` and the
    others under :meth:`replay`. Outside those blocks the model behaves normally.
    """

    def __init__(self, model, first_layer: int):
        self.layers = decoder_layers(model)
        if not 0 < first_layer < len(self.layers):
            raise DlzoError(f"Prefix sharing needs a first trained layer in 1..{len(self.layers) - 1}, not {first_layer}.")
        self.first_layer = first_layer
        self.mode: str | None = None
        self.cached: torch.Tensor | None = None
        self._tuple_output = False
        self._handles: list = []

    # ------------------------------------------------------------------------------------ hooks
    def _pre_hook(self, _module, args, kwargs):
        if self.mode is None:
            return None
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        if self.mode == "record":
            self.cached = hidden.detach()
            return None
        if self.cached is None or self.cached.shape != hidden.shape:
            raise DlzoError("Prefix sharing saw a different batch in one step; share a prefix within one batch only.")
        if "hidden_states" in kwargs:
            kwargs = {**kwargs, "hidden_states": self.cached}
        else:
            args = (self.cached, *args[1:])
        return args, kwargs

    def _skip(self, layer):
        original = layer.forward

        def forward(*args, **kwargs):
            if self.mode != "replay":
                out = original(*args, **kwargs)
                self._tuple_output = isinstance(out, tuple)
                return out
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            return (hidden,) if self._tuple_output else hidden

        return forward

    def __enter__(self) -> PrefixSharing:
        target = self.layers[self.first_layer]
        self._handles.append(target.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        for layer in self.layers[: self.first_layer]:
            layer.forward = self._skip(layer)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for layer in self.layers[: self.first_layer]:
            if "forward" in vars(layer):
                del layer.forward
        self.mode, self.cached = None, None

    # ------------------------------------------------------------------------------------ modes
    @contextmanager
    def record(self):
        """The forward run inside computes everything and remembers layer ``first_layer``'s input."""
        self.mode = "record"
        try:
            yield
        finally:
            self.mode = None

    @contextmanager
    def replay(self):
        """The forward run inside skips layers below ``first_layer`` and reuses the recorded input (or records
        it, when no earlier forward of the step reached layer ``first_layer``)."""
        self.mode = "replay" if self.cached is not None else "record"
        try:
            yield
        finally:
            self.mode = None

    def clear(self) -> None:
        self.cached = None


def selected_layers(model, names: list[str]) -> list[int] | None:
    """The decoder layers holding the parameter ``names`` (sorted, distinct); ``None`` when a name lies outside
    the decoder layers (embeddings, final norm, head)."""
    owners = {}
    for index, layer in enumerate(decoder_layers(model)):
        for param in layer.parameters():
            owners[id(param)] = index
    params = dict(model.named_parameters())
    layers = set()
    for name in names:
        index = owners.get(id(params[name]))
        if index is None:
            return None
        layers.add(index)
    return sorted(layers)


def first_selected_layer(model, names: list[str]) -> int | None:
    """The lowest decoder layer holding any of the parameter ``names``; ``None`` when a name lies outside
    the decoder layers (embeddings, final norm, head), where no prefix can be shared."""
    layers = selected_layers(model, names)
    return layers[0] if layers else None
