"""The zeroth-order gradient estimator: two-point SPSA (MeZO) over a parameter selection.

One ZO step with seed ``s`` on the selected parameters θ (MeZO, Malladi et al. 2023)::

    z ~ N(0, I)                        drawn from a dedicated torch.Generator seeded with s
    loss₊ = L(θ + εz),  loss₋ = L(θ − εz)
    g = (loss₊ − loss₋) / 2ε           a scalar: the projected gradient along z
    θ ← optimizer(θ, ĝ = g·z)          z regenerated from s, tensor by tensor

What :class:`ZOEngine` does better than the published code:

* **Exact restore.** It keeps an fp32 *master* copy of the selected tensors and writes
  ``cast(master ± εz)`` into the model for each forward and ``cast(master)`` afterwards, so θ comes
  back bit-exactly in fp32, bf16 and fp16 (MeZO's in-place +ε/−2ε/+ε round trip drifts in fp16;
  MeZO issue #42). Updates accumulate in the fp32 master.
* **Own RNG.** z comes from a fresh ``torch.Generator`` on the parameters' device, seeded per
  direction and drawn in the masters' dtype, tensor by tensor in selection order; the global RNG is never touched.
  Masked tensors draw their full shape and use z only on their trainable entries (``torch.where``, so
  the frozen entries keep their exact bits).
* **CUDA graphs.** With ``cuda_graphs=True`` on a GPU, the forwards replay CUDA graphs captured once per
  padded batch shape (:mod:`dlzo.graphs`): the same kernels without Python or launch overhead.
* **Loop graphs.** On a GPU the per-tensor loops (perturbation, ZO-SGD update) replay CUDA graphs with a
  registered generator (:mod:`dlzo.loop_graphs`): the same kernels and the same z, checked bit for bit before
  use, without the launch overhead of one kernel per tensor (``loop_graphs=False``: always eager).
* **Paired passes.** With ``paired_passes=True`` and a selection inside one decoder layer, the θ+εz and θ−εz
  forwards run as one forward: the layers below once, the trained layer twice, the layers above on both
  results stacked along the batch (:mod:`dlzo.paired`; same losses up to float rounding).
* **Options.** ``directions=q`` averages q directions per step (each regenerated from its own seed, never
  stored); ``one_sided=True`` uses ``(L(θ+εz) − L(θ)) / ε`` (one base forward shared by all directions).

A step is two calls: :meth:`ZOEngine.estimate` (the forwards; θ restored afterwards) and
:meth:`ZOEngine.update` (the optimizer step, which rebuilds ĝ tensor by tensor). Replay calls
``update`` alone with the logged seeds and ``g`` values. Phase times (perturb / forward / update)
are measured for the step log. Per tensor, a perturbation is two kernels (draw z, write master ± εz straight
into the model) and an SGD update three (draw z, scale it, add it to the master in place); z is drawn per
tensor, never for the whole selection at once, so memory stays at one tensor's z.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from .errors import DlzoError
from .graphs import GraphedLoss
from .loop_graphs import LoopGraphs
from .optim import ZOOptimizer
from .paired import PairedPasses
from .prefix import PrefixSharing, first_selected_layer, selected_layers
from .selection import Selected

LossFn = Callable[[list], torch.Tensor]


@dataclass
class Estimate:
    """The outcome of the forwards of one ZO step (losses are python floats)."""

    seeds: list[int]
    g: list[float]  # projected gradient per direction
    loss_plus: list[float]
    loss_minus: list[float] | None  # two-sided only
    loss_base: float | None  # one-sided only: L(θ)
    times: dict[str, float] = field(default_factory=dict)  # seconds: "perturb", "forward"

    @property
    def finite(self) -> bool:
        values = [*self.g, *self.loss_plus, *(self.loss_minus or []), *([self.loss_base] if self.one_sided else [])]
        return all(math.isfinite(v) for v in values)

    @property
    def one_sided(self) -> bool:
        return self.loss_minus is None


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels so phase timings are honest on asynchronous devices."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _perturbed(master: torch.Tensor, mask: torch.Tensor | None, z: torch.Tensor, scale: float) -> torch.Tensor:
    """master + scale·z on the trainable entries (``mask``), master elsewhere, bit for bit."""
    value = master.add(z, alpha=scale)
    return value if mask is None else torch.where(mask, value, master)


def _write_perturbed(out: torch.Tensor, master: torch.Tensor, mask: torch.Tensor | None, z: torch.Tensor,
                     scale: float) -> None:
    """``out ← cast(master + scale·z)`` (master on masked-out entries): one kernel writing straight into
    ``out`` when nothing needs masking or casting, the same bits as computing the value and copying it."""
    if mask is None and out.dtype == master.dtype:
        torch.add(master, z, alpha=scale, out=out)
    else:
        out.copy_(_perturbed(master, mask, z, scale))


class ZOEngine:
    """SPSA estimator and update over a :class:`~dlzo.selection.Selected` set, with fp32 master weights."""

    def __init__(self, selected: Selected, eps: float = 1e-3, directions: int = 1, one_sided: bool = False,
                 share_prefix: bool = False, cuda_graphs: bool = False, paired_passes: bool = False,
                 loop_graphs: bool = True):
        if not eps > 0:
            raise DlzoError(f"The perturbation scale eps={eps} must be positive, e.g. 1e-3.")
        if directions < 1:
            raise DlzoError(f"directions={directions} must be at least 1.")
        self.selected = selected
        self.eps = float(eps)
        self.directions = int(directions)
        self.one_sided = bool(one_sided)
        self.params = [s.param for s in selected.params]
        self.masks = [s.mask for s in selected.params]
        with torch.no_grad():  # fp32 masters (fp64 for fp64 models, which tests use)
            self.masters = [p.detach().to(torch.promote_types(p.dtype, torch.float32), copy=True)
                            for p in self.params]
        self.device = self.params[0].device
        # layers below the first selected one are identical in every forward of a step: compute them once
        first = first_selected_layer(selected.model, selected.names) if share_prefix else None
        self.prefix_layer = first if first else None  # None or 0: nothing to share
        self.cuda_graphs = bool(cuda_graphs)
        self._graphed: GraphedLoss | None = None
        # one forward for both signs when the selection is one decoder layer (dlzo.paired)
        layers = selected_layers(selected.model, selected.names) if paired_passes and not self.one_sided else None
        self.paired_layer = layers[0] if layers and len(layers) == 1 else None
        self._pair: PairedPasses | None = None
        self._loops = LoopGraphs(self) if loop_graphs and self.device.type == "cuda" else None

    # ------------------------------------------------------------------------------------ directions
    def draw(self, seed: int) -> Iterator[torch.Tensor]:
        """The direction z of ``seed``: one tensor per selected tensor (in its master's dtype), in order,
        from a fresh generator per device (so several directions can be drawn side by side)."""
        generators: dict[torch.device, torch.Generator] = {}

        def generator_for(device: torch.device) -> torch.Generator:
            if device not in generators:
                generators[device] = torch.Generator(device=device)
                generators[device].manual_seed(int(seed))
            return generators[device]
        return self.draw_from(generator_for)

    def draw_from(self, generator_for: Callable[[torch.device], torch.Generator]) -> Iterator[torch.Tensor]:
        """z drawn tensor by tensor from ``generator_for(device)`` as it stands (:meth:`draw` seeds fresh ones; a
        loop graph captures these kernels with its registered generator)."""
        for master in self.masters:
            yield torch.randn(master.shape, generator=generator_for(master.device), device=master.device,
                              dtype=master.dtype)

    # ------------------------------------------------------------------------------------ parameters
    @torch.no_grad()
    def write_into(self, targets: Sequence[torch.Tensor], seed: int, scale: float) -> None:
        """Write cast(master + scale·z) into ``targets`` (one per selected tensor), eagerly."""
        self.write_directions(targets, self.draw(seed), scale)

    def write_directions(self, targets: Sequence[torch.Tensor], zs: Iterator[torch.Tensor], scale: float) -> None:
        """Write cast(master + scale·z) into ``targets`` for the directions ``zs`` (one tensor each)."""
        for out, master, mask, z in zip(targets, self.masters, self.masks, zs, strict=True):
            _write_perturbed(out, master, mask, z, scale)

    @torch.no_grad()
    def write_perturbed(self, seed: int, scale: float) -> None:
        """Write cast(master + scale·z) into the model's selected tensors (a loop graph's replay on a GPU)."""
        if self._loops is None or not self._loops.perturb(seed, scale):
            self.write_into(self.params, seed, scale)

    @torch.no_grad()
    def write_pair(self, seed: int) -> PairedPasses:
        """Fill the paired-pass buffers with cast(master ± εz) for ``seed`` (the model is not touched)."""
        if self._pair is None:
            plus = [torch.empty_like(p) for p in self.params]
            minus = [torch.empty_like(p) for p in self.params]
            self._pair = PairedPasses(self.selected.model, self.paired_layer, self.params, plus, minus)
        loops = self._loops
        if loops is not None and loops.perturb(seed, self.eps, self._pair.plus) \
                and loops.perturb(seed, -self.eps, self._pair.minus):
            return self._pair
        for master, mask, z, plus, minus in zip(self.masters, self.masks, self.draw(seed), self._pair.plus,
                                                self._pair.minus, strict=True):
            _write_perturbed(plus, master, mask, z, self.eps)
            _write_perturbed(minus, master, mask, z, -self.eps)
        return self._pair

    def _paired_forward(self, loss_fn: LossFn, batch: list) -> tuple[float, float]:
        """Both losses of the step from one paired forward (graphed when ``cuda_graphs`` applies)."""
        if self.cuda_graphs and self.device.type == "cuda":
            graphed = self._graphs_for(loss_fn, paired=self._pair)
            run = graphed.prepare(batch) if graphed.active else None
            if run is not None:
                plus, minus = run(0)
                return float(plus), float(minus)
        with self._pair, torch.inference_mode():
            plus, minus = loss_fn.compute_pair(loss_fn.pack(batch))
        return float(plus), float(minus)

    @torch.no_grad()
    def restore(self) -> None:
        """Write cast(master) into the model: θ exactly as it was before any perturbation."""
        torch._foreach_copy_(self.params, self.masters)

    @torch.no_grad()
    def load_masters(self, tensors: Sequence[torch.Tensor]) -> None:
        """Set the master tensors (e.g. from a checkpoint or the best snapshot) and write them to the model."""
        if len(tensors) != len(self.masters):
            raise DlzoError("The saved tensors do not match this selection; resume with the same selection.")
        for master, t in zip(self.masters, tensors, strict=True):
            if t.shape != master.shape:
                raise DlzoError("The saved tensors do not match this selection; resume with the same selection.")
            master.copy_(t)
        self.restore()

    def snapshot(self) -> list[torch.Tensor]:
        """Copies of the master tensors."""
        return [m.clone() for m in self.masters]

    # ------------------------------------------------------------------------------------ estimate
    def _loss(self, loss_fn: LossFn, batch: list) -> float:
        with torch.inference_mode():
            return float(loss_fn(batch))

    def _shared_prefix_loss(self, prefix: PrefixSharing | None, loss_fn: LossFn) -> Callable[[list], float]:
        """The step's loss evaluator: the first call records the frozen prefix, later calls replay it."""
        calls = [0]

        def loss(batch: list) -> float:
            calls[0] += 1
            if prefix is None:
                return self._loss(loss_fn, batch)
            with prefix.record() if calls[0] == 1 else prefix.replay():
                return self._loss(loss_fn, batch)

        return loss

    def _graphs_for(self, loss_fn: LossFn, **options) -> GraphedLoss:
        """The engine's CUDA graphs of ``loss_fn`` (captured shapes are kept while the loss stays the same)."""
        if self._graphed is None or self._graphed.loss_fn is not loss_fn:
            self._graphed = GraphedLoss(loss_fn, **options)
        return self._graphed

    def _graphed_forwards(self, loss_fn: LossFn, batch: list) -> Callable[[list], float] | None:
        """With ``cuda_graphs``: the step's loss evaluator replaying CUDA graphs (:mod:`dlzo.graphs`), or ``None``
        where graphs do not apply (no CUDA device, a loss without ``pack``/``compute``, a failed capture)."""
        if not self.cuda_graphs or self.device.type != "cuda" or not hasattr(loss_fn, "pack"):
            return None
        graphed = self._graphs_for(loss_fn, prefix_layer=self.prefix_layer)
        if not graphed.active:
            return None
        run = graphed.prepare(batch)
        if run is None:
            return None
        calls = [0]

        def loss(_batch: list) -> float:
            calls[0] += 1
            return float(run(calls[0] - 1))
        return loss

    def estimate(self, loss_fn: LossFn, batch: list, seeds: Sequence[int]) -> Estimate:
        """Run the forwards of one step (one direction per seed) and return the projected gradients.

        The model's selected tensors hold θ again when this returns, bit for bit.
        """
        if len(seeds) != self.directions:
            raise DlzoError(f"Got {len(seeds)} seeds for {self.directions} directions; pass one seed per direction.")
        times = {"perturb": 0.0, "forward": 0.0}

        def timed(phase, fn, *args):
            start = time.perf_counter()
            out = fn(*args)
            synchronize(self.device)
            times[phase] += time.perf_counter() - start
            return out

        g, plus, minus = [], [], []
        if self.paired_layer is not None and hasattr(loss_fn, "compute_pair"):
            try:
                for seed in seeds:
                    timed("perturb", self.write_pair, seed)
                    lp, lm = timed("forward", self._paired_forward, loss_fn, batch)
                    plus.append(lp)
                    minus.append(lm)
                    g.append((lp - lm) / (2 * self.eps))
            finally:
                timed("perturb", self.restore)
            return Estimate([int(s) for s in seeds], g, plus, minus, None, times)
        graphed = self._graphed_forwards(loss_fn, batch)
        sharing = self.prefix_layer and graphed is None
        prefix = PrefixSharing(self.selected.model, self.prefix_layer) if sharing else nullcontext()
        with prefix:
            loss = graphed or self._shared_prefix_loss(prefix if sharing else None, loss_fn)
            base = timed("forward", loss, batch) if self.one_sided else None
            try:
                for seed in seeds:
                    timed("perturb", self.write_perturbed, seed, self.eps)
                    lp = timed("forward", loss, batch)
                    plus.append(lp)
                    if self.one_sided:
                        g.append((lp - base) / self.eps)
                    else:
                        timed("perturb", self.write_perturbed, seed, -self.eps)
                        lm = timed("forward", loss, batch)
                        minus.append(lm)
                        g.append((lp - lm) / (2 * self.eps))
            finally:
                timed("perturb", self.restore)
        return Estimate([int(s) for s in seeds], g, plus, None if self.one_sided else minus, base, times)

    # ------------------------------------------------------------------------------------ update
    def gradient(self, seeds: Sequence[int], g: Sequence[float]) -> Iterator[torch.Tensor]:
        """ĝ = mean_j g_j·z_j, one tensor per selected tensor (zero on masked-out entries)."""
        return self.combine([self.draw(s) for s in seeds], [gj / len(seeds) for gj in g])

    def combine(self, directions: Sequence[Iterator[torch.Tensor]], weights: Sequence) -> Iterator[torch.Tensor]:
        """Σ_j weights_j·z_j over ``directions`` (each yields one z per selected tensor), zero on masked-out
        entries; the first weight may be a 0-dim tensor (a loop graph's device scalar), the others floats."""
        for mask, zs in zip(self.masks, zip(*directions, strict=True), strict=True):
            grad = zs[0].mul_(weights[0])
            for w, z in zip(weights[1:], zs[1:], strict=True):
                grad.add_(z, alpha=w)
            if mask is not None:
                grad.masked_fill_(~mask, 0.0)
            yield grad

    def apply_gradient(self, optimizer: ZOOptimizer, grads: Iterator[torch.Tensor], lr: float) -> None:
        """One optimizer step on the masters with ``grads`` (one per selected tensor; masked entries unchanged)."""
        for index, (master, mask, grad) in enumerate(zip(self.masters, self.masks, grads, strict=True)):
            if mask is None:
                optimizer.step_(index, master, grad, lr)
            else:
                master.copy_(torch.where(mask, optimizer.update(index, master, grad, lr), master))

    @torch.no_grad()
    def update(self, optimizer: ZOOptimizer, seeds: Sequence[int], g: Sequence[float], lr: float) -> float:
        """Apply one optimizer step with the estimate (seeds, g); returns the seconds it took."""
        start = time.perf_counter()
        if len(seeds) == 1 and self._loops is not None and self._loops.update(seeds[0], g[0], lr, optimizer):
            self.restore()
            synchronize(self.device)
            return time.perf_counter() - start
        optimizer.begin_step()
        self.apply_gradient(optimizer, self.gradient(seeds, g), lr)
        self.restore()
        synchronize(self.device)
        return time.perf_counter() - start
