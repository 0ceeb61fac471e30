"""CUDA graphs for the forwards of a ZO step: one capture per input shape, then replays without Python.

A small model's forward on a big GPU is launch-bound: SmolLM2-135M on an H200 spends ~28 ms in eager
PyTorch on a batch whose arithmetic takes well under a millisecond. A ZO step runs the same forward on
the same batch two or more times with only the *values* of some parameters changed (written in place),
which is exactly what a CUDA graph replays. :class:`GraphedLoss` captures
:meth:`dlzo.losses.TaskLoss.compute` once per padded input shape (:meth:`~dlzo.scoring.PackedSequences.padded`
rounds the shapes up, so a task needs a handful of graphs) and replays it:

* the batch is packed on the host once per step and copied into the graph's static input buffers;
* with prefix sharing (``prefix_layer=k``) two graphs are captured per shape: the *record* forward, which
  also leaves the input of layer ``k`` in a static buffer, and the *replay* forward, which starts at layer
  ``k`` from that buffer (:class:`~dlzo.prefix.PrefixSharing` is active only while capturing);
* with paired passes (``paired=``, :mod:`dlzo.paired`) one graph per shape computes both losses of a step;
* every graph shares one memory pool, so the graphs of all shapes cost about one forward's activations;
* warm-up and capture run on one side stream per device (each new stream would add a cuBLAS workspace).

The graphs compute the same kernels on the same (padded) inputs as the eager forward, so the losses match
the eager :class:`~dlzo.losses.TaskLoss` on the padded batch; padding itself changes results only at the
float-rounding level (tests). Anything that cannot be captured (a device without CUDA, a model whose forward
reads tensors on the host) makes :meth:`GraphedLoss.prepare` return ``None`` (with one warning), and the
caller runs the forward eagerly.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import torch

from .prefix import PrefixSharing

_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One non-default stream per device for every warm-up and capture: cuBLAS keeps a workspace (32 MiB on
    Hopper) per stream it has seen and never frees it, so a new stream per shape would cost one per shape."""
    device = torch.device(device)
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]


class _ShapeGraphs:
    """The captured graphs of one padded input shape: static inputs, record (and replay) graph, outputs."""

    def __init__(self, loss_fn, packed, prefix_layer: int | None, pool, warmup: int, paired=None):
        device = loss_fn.model.device
        self.static = packed.to(device)
        self.graphs: list[torch.cuda.CUDAGraph] = []
        self.outputs: list[torch.Tensor] = []
        self.cached = None  # the recorded input of the first trained layer (kept alive for the replay graph)
        model = loss_fn.model
        prefix = PrefixSharing(model, prefix_layer) if prefix_layer and paired is None else None
        outer = paired if paired is not None else prefix  # hooks active while warming up and capturing

        def forward(mode):
            if mode == "paired":
                with torch.inference_mode():
                    return loss_fn.compute_pair(self.static)
            ctx = nullcontext() if prefix is None else (prefix.record() if mode == "record" else prefix.replay())
            with ctx, torch.inference_mode():
                return loss_fn.compute(self.static)

        modes = ["paired"] if paired is not None else ["record"] if prefix is None else ["record", "replay"]
        side = _side_stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with outer or nullcontext(), torch.cuda.stream(side):
            for _ in range(warmup):  # cuBLAS handles, lazy inits: never inside a capture
                for mode in modes:
                    forward(mode)
        torch.cuda.current_stream(device).wait_stream(side)
        with outer or nullcontext():
            for mode in modes:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, stream=side):
                    self.outputs.append(forward(mode))
                self.graphs.append(graph)
                if prefix is not None and mode == "record":
                    self.cached = prefix.cached
                pool = graph.pool()
        self.pool = pool

    def load(self, packed) -> None:
        targets = self.static.tensors()
        for name, value in packed.tensors().items():
            targets[name].copy_(value, non_blocking=True)

    def replay(self, index: int):
        index = min(index, len(self.graphs) - 1)
        self.graphs[index].replay()
        return self.outputs[index]


class GraphedLoss:
    """Replays CUDA graphs of ``loss_fn.compute`` (a :class:`~dlzo.losses.TaskLoss`) for the forwards of ZO steps.

    Per step: ``run = graphed.prepare(batch)``, then ``run(0)`` for the first forward (it records the shared
    prefix when ``prefix_layer`` is set) and ``run(1)`` for every later one (``run is None``: run eagerly). Returns 0-dim loss tensors that
    are overwritten by the next replay of the same shape, so read them (``float``) before the next call.
    """

    def __init__(self, loss_fn, prefix_layer: int | None = None, max_graphs: int = 32, warmup: int = 2,
                 paired=None):
        self.loss_fn = loss_fn
        self.prefix_layer = prefix_layer or None
        self.paired = paired  # a PairedPasses: capture loss_fn.compute_pair (one graph per shape, two losses)
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.shapes: dict[tuple, _ShapeGraphs] = {}
        self.pool = None
        self.failed: str | None = None
        device = loss_fn.model.device
        if device.type != "cuda":
            self.failed = f"CUDA graphs need a CUDA device, not {device.type}"

    @property
    def active(self) -> bool:
        return self.failed is None

    def prepare(self, batch: list):
        """Pack ``batch`` (host), pick or capture its graphs, copy it in; returns ``run(i) -> loss tensor``, or
        ``None`` when this batch must run eagerly (no CUDA, a capture failed, or ``max_graphs`` shapes exist)."""
        packed = self.loss_fn.pack(batch)
        if self.active:
            packed = packed.padded()
            key = packed.shape_key
            shape = self.shapes.get(key)
            if shape is None and len(self.shapes) < self.max_graphs:
                try:
                    shape = self.shapes[key] = _ShapeGraphs(self.loss_fn, packed, self.prefix_layer, self.pool,
                                                            self.warmup, self.paired)
                    self.pool = shape.pool
                except Exception as error:  # noqa: BLE001 - any capture failure means: run eagerly
                    self._give_up(f"capturing the forward failed ({type(error).__name__}: {error})")
            if shape is not None:
                shape.load(packed)
                return shape.replay
        return None

    def _give_up(self, reason: str) -> None:
        self.failed = reason
        self.shapes.clear()
        warnings.warn(f"dlzo: CUDA graphs are off for this run ({reason}); the forwards run eagerly.", stacklevel=3)

