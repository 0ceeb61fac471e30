"""CUDA graphs of a ZO step's per-tensor loops: the perturbation ``θ ± εz`` and the ZO-SGD update.

On a GPU a full-model ZO step spends more time launching kernels than running them. A perturbation is two
kernels per selected tensor (draw z, write ``master ± εz`` into the model) and an SGD update three (draw z,
scale it by ``g``, add it to the master); SmolLM2-135M has 272 tensors, so one eager perturbation costs
~5.6 ms on an H200 for ~0.3 ms of memory traffic. Every step runs the same kernels on the same tensors with
only the seed (and, for the update, ``g``) changing, which is what a CUDA graph replays:

* the graph's generator is registered with it (``CUDAGraph.register_generator_state``); seeding it with
  ``s`` before a replay resets the Philox offset the captured kernels read, so a replay draws exactly the z
  of the eager loop with a fresh generator seeded ``s`` (:meth:`dlzo.zo.ZOEngine.draw`);
* the update's scale ``g / q`` is a device scalar filled before each replay (``z * w`` with a 0-dim float32
  tensor is the same IEEE product as with the Python float); the learning rate is a constant of the graph,
  so one graph is captured per learning rate (at most :data:`MAX_UPDATE_GRAPHS`; a schedule that keeps
  changing it runs eagerly);
* graphs are captured on the side stream of :mod:`dlzo.graphs` and share one memory pool (the pool holds one
  z at a time: the largest selected tensor).

Bit-identity is checked, not assumed: before a perturbation graph is used, its output for a test seed is
compared with the eager loop's through per-tensor fingerprints of the raw bits (:func:`fingerprints`); on a
mismatch or a capture error every loop graph of the engine is switched off with one warning and the eager
loops run. The update graph uses the same generator mechanism and the same kernels (CUDA tests compare whole
trajectories). Only ZO-SGD with one direction per step is graphed; other optimizers keep per-step Python state
(Adam's bias correction) and run eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from .graphs import _side_stream

MAX_UPDATE_GRAPHS = 4
CHECK_SEED = 2_147_483_647  # the seed of the bit-identity check (any seed would do)
_INT_VIEWS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def fingerprints(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One int64 per tensor: the sum of its raw bits read as integers (any changed bit almost surely changes
    it), plus the position-weighted sum of its first 4096 elements (so a permutation changes it too)."""
    out = []
    for t in tensors:
        bits = t.detach().contiguous().view(_INT_VIEWS[t.element_size()]).flatten()
        total = torch.zeros((), dtype=torch.int64, device=t.device)
        for chunk in bits.split(1 << 20):  # int64 copies of 1M entries at a time, not of the whole tensor
            total += chunk.to(torch.int64).sum()
        head = bits[:4096].to(torch.int64)
        total += (head * torch.arange(1, len(head) + 1, device=t.device, dtype=torch.int64)).sum()
        out.append(total)
    return torch.stack(out)


class LoopGraphs:
    """The loop graphs of one :class:`~dlzo.zo.ZOEngine` (CUDA only): ``perturb(seed, scale)`` writes
    ``cast(master + scale·z)`` into ``targets`` and ``update(seed, w, lr, optimizer)`` applies the ZO-SGD step
    ``master ← master − lr·(w·z + wd·master)``; each returns ``False`` when the caller must run the eager loop."""

    def __init__(self, engine):
        self.engine = engine
        self.device = engine.device
        self.failed: str | None = None
        if self.device.type != "cuda":
            self.failed = "loop graphs need a CUDA device"
        elif len({m.device for m in engine.masters}) > 1:  # device_map="auto": one generator per device, eagerly
            self.failed = "the selection spans several devices"
        self.pool = None
        self._perturb: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Generator]] = {}
        self._update: dict[float, tuple[torch.cuda.CUDAGraph, torch.Generator, torch.Tensor]] = {}

    @property
    def active(self) -> bool:
        return self.failed is None

    # ------------------------------------------------------------------------------------ capture
    def _capture(self, body: Callable[[torch.Generator], None], generator: torch.Generator) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(generator)
        side = _side_stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), torch.cuda.graph(graph, pool=self.pool, stream=side):
            body(generator)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.pool = graph.pool()
        return graph

    def _give_up(self, reason: str) -> bool:
        self.failed = reason
        self._perturb.clear()
        self._update.clear()
        warnings.warn(f"dlzo: the perturbation/update loops run eagerly for this run ({reason}).", stacklevel=4)
        return False

    # ------------------------------------------------------------------------------------ perturbation
    def perturb(self, seed: int, scale: float, targets: Sequence[torch.Tensor] | None = None) -> bool:
        """Replay ``write(targets, seed, scale)`` (default targets: the model's selected tensors)."""
        if not self.active:
            return False
        engine = self.engine
        targets = list(engine.params if targets is None else targets)
        key = (float(scale), tuple(t.data_ptr() for t in targets))
        entry = self._perturb.get(key)
        if entry is None:
            try:
                entry = self._perturb[key] = self._capture_perturb(targets, float(scale))
            except Exception as error:  # noqa: BLE001 - any capture failure means: run eagerly
                return self._give_up(f"capturing the perturbation failed ({type(error).__name__}: {error})")
            if entry is None:
                return False
        graph, generator = entry
        generator.manual_seed(int(seed))
        graph.replay()
        return True

    def _capture_perturb(self, targets: list[torch.Tensor], scale: float):
        engine = self.engine

        def body(generator):  # the eager loop's own code, drawing from the registered generator
            engine.write_directions(targets, engine.draw_from(lambda _device: generator), scale)

        with torch.no_grad():
            engine.write_into(targets, CHECK_SEED, scale)  # eager: the reference bits (and a warm-up)
            expected = fingerprints(targets)
            generator = torch.Generator(device=self.device)
            graph = self._capture(body, generator)
            generator.manual_seed(CHECK_SEED)
            graph.replay()
            got = fingerprints(targets)
        if not torch.equal(expected, got):
            self._give_up("a captured perturbation did not reproduce the eager bits")
            return None
        return graph, generator

    # ------------------------------------------------------------------------------------ update
    def update(self, seed: int, w: float, lr: float, optimizer) -> bool:
        """Replay the ZO-SGD update of one direction ``(seed, w = g)`` at ``lr``; ``False``: run it eagerly."""
        from .optim import ZOSGD

        if not self.active or type(optimizer) is not ZOSGD:
            return False
        entry = self._update.get(float(lr))
        if entry is None:
            if len(self._update) >= MAX_UPDATE_GRAPHS:
                return False
            try:
                entry = self._update[float(lr)] = self._capture_update(float(lr), optimizer)
            except Exception as error:  # noqa: BLE001
                return self._give_up(f"capturing the update failed ({type(error).__name__}: {error})")
        graph, generator, weight = entry
        weight.fill_(w)
        optimizer.begin_step()
        generator.manual_seed(int(seed))
        graph.replay()
        return True

    def _capture_update(self, lr: float, optimizer):
        engine = self.engine
        weight = torch.zeros((), device=self.device, dtype=engine.masters[0].dtype)

        def body(generator):  # the eager update's own code, with the weight g as a device scalar
            grads = engine.combine([engine.draw_from(lambda _device: generator)], [weight])
            engine.apply_gradient(optimizer, grads, lr)

        generator = torch.Generator(device=self.device)
        return self._capture(body, generator), generator, weight
