"""Paired passes: the θ+εz and θ−εz forwards of a ZO step as ONE forward, when the selection is one layer.

A two-point ZO step on decoder layer ``k`` runs the same input through the frozen layers ``0..k-1`` twice
and through the frozen layers ``k+1..L-1`` twice, once per sign. :class:`PairedPasses` makes it one
forward of the model's own code:

* layers ``0..k-1`` run once, on the batch (``B`` rows);
* layer ``k`` runs twice on that input: with the θ+εz weights, then with the θ−εz weights (both
  precomputed in buffers and copied into the layer's parameters inside the forward), and the two results
  are stacked along the batch (``2B`` rows, the + rows first);
* every later layer receives the stacked hidden states, and its other batch-sized arguments (attention
  mask, and position tables where they carry a batch dimension) repeated to ``2B`` rows by a pre-hook;
* the final norm and head run on ``2B`` rows; the loss reads its + half and − half
  (:meth:`dlzo.losses.TaskLoss.compute_pair`).

This removes the second pass through layers ``k+1..L-1`` as separate kernel launches (the launches, not
the arithmetic, dominate a small model's forward on a GPU) and the second pass through ``0..k-1`` without
any caching. The parameters hold the θ−εz weights afterwards: the caller restores θ. Every operation is a
tensor operation, so the paired forward can be captured in a CUDA graph (:mod:`dlzo.graphs`). Results
equal two separate forwards up to float rounding (batched matrix products may sum in another order).
Run the model with ``use_cache=False`` inside (a KV cache would see layer ``k`` twice), as dlzo's losses do.
"""

from __future__ import annotations

import torch

from .errors import DlzoError
from .layers import decoder_layers


class PairedPasses:
    """Context manager: inside it, one model forward computes the + and − passes of layer ``layer``'s ZO step.

    ``params`` are the selected tensors (all in decoder layer ``layer``); ``plus`` and ``minus`` buffers of the
    same shapes hold cast(θ+εz) and cast(θ−εz) and are read when the forward runs.
    """

    def __init__(self, model, layer: int, params: list[torch.Tensor], plus: list[torch.Tensor],
                 minus: list[torch.Tensor]):
        self.layers = decoder_layers(model)
        if not 0 <= layer < len(self.layers):
            raise DlzoError(f"Paired passes need a decoder layer in 0..{len(self.layers) - 1}, not {layer}.")
        if not (len(params) == len(plus) == len(minus)):
            raise DlzoError("Paired passes need one + and one − buffer per selected tensor.")
        self.layer = layer
        self.params, self.plus, self.minus = params, plus, minus
        self.batch: int | None = None
        self._doubled: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def _load(self, values: list[torch.Tensor]) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.params, values)

    def _paired_forward(self, original):
        def forward(*args, **kwargs):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            self.batch, self._doubled = hidden.shape[0], {}
            self._load(self.plus)
            out_plus = original(*args, **kwargs)
            self._load(self.minus)
            out_minus = original(*args, **kwargs)
            if isinstance(out_plus, tuple):
                return (torch.cat([out_plus[0], out_minus[0]]), *out_plus[1:])
            return torch.cat([out_plus, out_minus])

        return forward

    def _double(self, value):
        if isinstance(value, torch.Tensor):
            if value.ndim < 2 or value.shape[0] != self.batch:  # 1-D tensors (cache positions) have no batch dim
                return value
            key = id(value)
            if key not in self._doubled:
                self._doubled[key] = torch.cat([value, value])
            return self._doubled[key]
        if isinstance(value, tuple):
            return tuple(self._double(v) for v in value)
        if isinstance(value, list):
            return [self._double(v) for v in value]
        return value

    def _pre_hook(self, _module, args, kwargs):
        if self.batch is None:
            return None
        # hidden states are already 2B rows; everything else with B rows is repeated once per forward
        return (args[0], *(self._double(a) for a in args[1:])) if args else args, {
            k: (v if k == "hidden_states" else self._double(v)) for k, v in kwargs.items()}

    def __enter__(self) -> PairedPasses:
        target = self.layers[self.layer]
        target.forward = self._paired_forward(target.forward)
        for layer in self.layers[self.layer + 1:]:
            self._handles.append(layer.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        target = self.layers[self.layer]
        if "forward" in vars(target):
            del target.forward
        self.batch, self._doubled = None, {}
