"""The mechanism, measured: how a perturbation of ONE decoder layer moves the loss and the residual stream.

The paper's claim 4: the dominant layer combines high perturbation sensitivity with an early place in the
residual stream, so its perturbations propagate downstream and give strong, stable ZO signals. The
measurements here never look at activation magnitudes, so they are not circular with the outlier rule that
picks the layer. For every analysed layer ``l`` (all parameters of the block, the selection
``Selection(layers=[l])`` that single-layer ZO trains) and direction ``z_l`` drawn exactly as
:meth:`dlzo.zo.ZOEngine.draw` draws it for seed ``s``:

* **Sensitivity**: ``|L(θ + εz_l) − L(θ)|`` for several ε and seeds, and the curvature along ``z_l``,
  ``(L(θ+εz_l) + L(θ−εz_l) − 2L(θ)) / ε²`` (an estimate of ``z_lᵀ H_l z_l``, whose mean is ``tr H_l``).
* **Propagation**: the relative change of every decoder layer's OUTPUT ``j``,
  ``||h'_j − h_j|| / ||h_j||`` over the batch's real tokens (Frobenius over tokens and hidden dims), and
  the token-wise mean of ``||h'_{j,t} − h_{j,t}|| / ||h_{j,t}||`` (not dominated by a massive-activation
  token), measured in the ``θ + εz_l`` forward with forward hooks. Clean outputs stay on the model's
  device; each perturbed forward sends two numbers per layer to the host.
* **ZO signal**: the projected gradient ``g = (L(θ+εz_l) − L(θ−εz_l)) / 2ε``; the exact directional
  derivative ``z_l·∇_l L`` from ONE autograd backward (all layers' gradients at once, ``z_l`` regenerated
  per layer and seed); the finite-difference error ``|g − z_l·∇_l L| / rms_s(z_l·∇_l L)``; and the cosine
  between the averaged estimate ``ĝ = mean_s g_s z_s`` and ``∇_l L``, beside what an exact S-direction
  estimate would reach, ``sqrt(S / (d + S + 1))``, and the mean ``|cos|`` of a random direction in ``d``
  dimensions.
* **First order**: ``||∇_l L||`` and ``||∇_l L|| / sqrt(d)`` per layer.

Two identities frame the numbers (for an exact directional derivative, ``z ~ N(0, I_d)``):
``E[g²] = ||∇_l L||²`` (so mean ``|g|`` ≈ ``0.80·||∇_l L||`` and its coefficient of variation over seeds is
the same for every layer), and ``E[cos(ĝ, ∇_l L)]`` ≈ ``sqrt(S / (d + S + 1))`` whatever the layer. A
layer can therefore only stand out in ZO signal through its gradient norm, its curvature or the accuracy
of the finite difference, and these tables measure exactly those.

Everything is forward-only except the one backward, uses dedicated generators (never the global RNG), and
leaves the model's parameters bit-identical and its ``requires_grad`` flags as they were::

    analysis = analyze_layers(model, loss_fn, batch, seeds=range(8), eps=(1e-4, 1e-3, 1e-2))
    analysis.summary()                 # one row per layer
    analysis.propagation_matrix()      # analysed layer × downstream layer
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import DlzoError
from .layers import base_model, check_layer, decoder_layers, layer_output
from .prefix import PrefixSharing
from .progress import progress_bar
from .selection import Selected, Selection
from .zo import ZOEngine

LossFn = Callable[[list], torch.Tensor]
DEFAULT_EPS = (1e-4, 1e-3, 1e-2)


# ----------------------------------------------------------------------------------------------- helpers
def random_direction_cosine(dim: int) -> float:
    """E|cos(u, v)| for a uniformly random direction u and a fixed v in ``dim`` dimensions
    (``Γ(d/2) / (sqrt(π) Γ((d+1)/2))``, ≈ ``sqrt(2 / (π d))``)."""
    if dim < 1:
        raise DlzoError(f"The dimension {dim} must be a positive integer.")
    return math.exp(math.lgamma(dim / 2) - math.lgamma((dim + 1) / 2)) / math.sqrt(math.pi)


def spsa_cosine(dim: int, directions: int) -> float:
    """The cosine an averaged estimate ``mean_s (z_s·v) z_s`` over ``directions`` Gaussian directions reaches
    with ``v`` when every directional derivative is exact: ``sqrt(S / (d + S + 1))`` (ratio of expectations)."""
    return math.sqrt(directions / (dim + directions + 1))


@contextmanager
def keep_requires_grad(model):
    """Restore every parameter's ``requires_grad`` flag on exit (``Selection.apply`` changes them)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def select_layer(model, layer: int) -> Selected:
    """``Selection(layers=[layer]).apply(model)`` (every tensor of the block, norms included), with the
    model's ``requires_grad`` flags left as they were."""
    with keep_requires_grad(model):
        return Selection(layers=[layer]).apply(model)


def _check_inputs(model, batch, layers, seeds, eps) -> tuple[list[int], list[int], list[float]]:
    if model.training:
        raise DlzoError("The model is in training mode (dropout would make every forward random); call model.eval().")
    if not batch:
        raise DlzoError("The batch is empty; pass at least one example.")
    n = len(decoder_layers(model))
    layers = list(range(n)) if layers is None else [check_layer(model, int(i)) for i in layers]
    if not layers:
        raise DlzoError("The layer list is empty; pass layer indices or None for every layer.")
    if len(set(layers)) != len(layers):
        raise DlzoError("The layer list repeats a layer; pass each layer once.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise DlzoError("No seeds given; pass at least one seed (two or more for spreads).")
    if len(set(seeds)) != len(seeds):
        raise DlzoError("The seed list repeats a seed; pass distinct seeds.")
    eps = [float(e) for e in eps]
    if not eps or not all(e > 0 and math.isfinite(e) for e in eps):
        raise DlzoError(f"Perturbation scales must be a non-empty list of positive numbers, not {eps}.")
    return layers, seeds, eps


def _loss(loss_fn: LossFn, batch: list) -> float:
    with torch.inference_mode():
        return float(loss_fn(batch))


# ----------------------------------------------------------------------------------------------- probe
class HiddenStateProbe:
    """Forward hooks on every decoder layer's output: record a clean forward, then measure how far each
    output moves in later forwards of the same batch.

    Use as a context manager. A forward under :meth:`record` keeps the clean outputs (on the model's
    device) and the attention mask of the call (real tokens; all tokens when the model gets no mask). A
    forward under :meth:`compare` leaves ``changes``: a ``[num_layers, 2]`` float64 array of
    ``(relative Frobenius change, token-wise mean relative change)``, NaN for layers not measured (below
    ``skip_below``, which prefix sharing skips).
    """

    def __init__(self, model):
        self.model = model
        self.layers = decoder_layers(model)
        self.mode: str | None = None
        self.skip_below = 0
        self.clean: dict[int, torch.Tensor] = {}
        self.clean_token_norm: dict[int, torch.Tensor] = {}
        self.mask: torch.Tensor | None = None
        self._call_mask: torch.Tensor | None = None
        self._pending: dict[int, torch.Tensor] = {}
        self.changes: np.ndarray | None = None
        self._handles: list = []

    def __enter__(self) -> HiddenStateProbe:
        root = base_model(self.model)
        self._handles.append(root.register_forward_pre_hook(self._model_pre_hook, with_kwargs=True))
        self._handles += [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.mode = None
        self.clean.clear()
        self.clean_token_norm.clear()
        self._pending.clear()
        self.mask = None

    def _model_pre_hook(self, _module, _args, kwargs):
        if self.mode is not None:
            mask = kwargs.get("attention_mask")
            self._call_mask = None if mask is None or mask.dim() != 2 else mask.detach()
        return None

    def _token_mask(self, h: torch.Tensor) -> torch.Tensor:
        mask = self._call_mask
        if mask is None or tuple(mask.shape) != tuple(h.shape[:2]):
            return torch.ones(h.shape[:2], dtype=torch.float32, device=h.device)
        return (mask != 0).to(device=h.device, dtype=torch.float32)

    def _hook(self, index: int):
        def hook(_module, _args, output):
            if self.mode is None or index < self.skip_below:
                return None
            h = layer_output(output).detach()
            if self.mode == "record":
                self.clean[index] = h.clone()
                self.clean_token_norm[index] = h.float().norm(dim=-1)
                if index == 0 or self.mask is None:
                    self.mask = self._token_mask(h)
                return None
            clean = self.clean.get(index)
            if clean is None or clean.shape != h.shape:
                raise DlzoError("The probe saw a batch it has no clean forward for; record a clean forward of the "
                                "same batch first.")
            mask = self._token_mask(h)
            if not torch.equal(mask, self.mask):
                raise DlzoError("The batch changed between the clean and the perturbed forward; compare one batch.")
            diff = (h.float() - clean.float()).norm(dim=-1)  # [rows, tokens]
            base = self.clean_token_norm[index]
            frob = ((diff.square() * mask).sum() / (base.square() * mask).sum()).sqrt()
            tokenwise = (diff / base.clamp_min(torch.finfo(torch.float32).tiny) * mask).sum() / mask.sum()
            self._pending[index] = torch.stack([frob, tokenwise]).double()
            return None

        return hook

    @contextmanager
    def record(self):
        """The forward run inside is the clean reference."""
        self.clean.clear()
        self.clean_token_norm.clear()
        self.mask = None
        self.mode = "record"
        try:
            yield
        finally:
            self.mode = None
            self._call_mask = None

    @contextmanager
    def compare(self, skip_below: int = 0):
        """The forward run inside is compared with the clean one; ``changes`` holds the result after it."""
        if not self.clean:
            raise DlzoError("Record a clean forward (probe.record()) before comparing.")
        self._pending.clear()
        self.changes = None
        self.mode, self.skip_below = "compare", int(skip_below)
        try:
            yield
        finally:
            self.mode, self.skip_below = None, 0
            self._call_mask = None
        out = np.full((len(self.layers), 2), np.nan)
        if self._pending:
            indices = sorted(self._pending)
            values = torch.stack([self._pending[i] for i in indices]).cpu().numpy()  # one transfer
            out[indices] = values
        self.changes = out


# ----------------------------------------------------------------------------------------------- gradients
def layer_gradients(model, loss_fn: LossFn, batch: list, layers: Sequence[int] | None = None
                    ) -> tuple[float, dict[int, list[torch.Tensor]]]:
    """``(L(θ), {layer: ∇_layer L})`` from ONE forward and backward with autograd.

    The gradients of each layer are in :func:`select_layer` order (the order :meth:`ZOEngine.draw` yields
    z in), in the parameters' dtype. Only the analysed layers' parameters require grad during the call;
    the flags and the parameters' ``.grad`` are left untouched.
    """
    if layers is None:
        layers = range(len(decoder_layers(model)))
    layers = [check_layer(model, i) for i in layers]
    selections = {layer: select_layer(model, layer) for layer in layers}
    params = [s.param for layer in layers for s in selections[layer].params]
    with keep_requires_grad(model):
        wanted = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in wanted)
        with torch.enable_grad():
            loss = loss_fn(batch)
            if not loss.requires_grad:
                raise DlzoError("The loss does not depend on the analysed layers with autograd on; pass a loss_fn "
                                "that runs the model's forward without torch.no_grad().")
            grads = torch.autograd.grad(loss, params, allow_unused=True)
    out, k = {}, 0
    for layer in layers:
        n = len(selections[layer].params)
        out[layer] = [torch.zeros_like(p) if g is None else g.detach()
                      for p, g in zip(params[k:k + n], grads[k:k + n], strict=True)]
        k += n
    return float(loss.detach()), out


def directional_derivatives(engine: ZOEngine, grads: Sequence[torch.Tensor],
                            seeds: Iterable[int]) -> list[float]:
    """``z_s·∇L`` for each seed, with ``z_s`` regenerated by ``engine.draw(s)`` (accumulated in fp64)."""
    out = []
    for seed in seeds:
        total = torch.zeros((), dtype=torch.float64, device=engine.device)
        for z, g in zip(engine.draw(seed), grads, strict=True):
            total += torch.dot(z.flatten().double(), g.flatten().double())
        out.append(float(total))
    return out


# ----------------------------------------------------------------------------------------------- results
@dataclass
class PerturbationAnalysis:
    """The tables of :func:`analyze_layers` (tidy: one row per measurement).

    * ``signals``: layer × ε × seed: ``loss_base``, ``loss_plus``, ``loss_minus``, ``sensitivity``
      (``|L(θ+εz) − L(θ)|``), ``curvature``, ``g``, ``dir_deriv`` (``z·∇L``), ``fd_error``.
    * ``propagation``: layer × ε × seed × downstream: ``rel_change``, ``rel_change_token`` (with prefix
      sharing, the layers below ``layer`` are measured in the layer's first forward, which computes them;
      the later forwards reuse their bit-identical outputs and that measurement).
    * ``gradients``: layer: ``num_params``, ``grad_norm``, ``grad_rms`` (``||∇_l L|| / sqrt(d)``).
    * ``cosines``: layer × ε: ``cosine`` of ``mean_s g_s z_s`` with ``∇_l L``, ``cos_exact`` (the same with the
      exact ``z·∇L`` in place of ``g``), ``cos_ideal`` (``sqrt(S/(d+S+1))``), ``cos_random``.
    """

    signals: pd.DataFrame
    propagation: pd.DataFrame
    gradients: pd.DataFrame
    cosines: pd.DataFrame
    loss_base: float
    num_layers: int

    @property
    def eps_values(self) -> list[float]:
        return sorted(self.signals["eps"].unique())

    def reference_eps(self, eps: float | None = None) -> float:
        """``eps`` if analysed, else 1e-3 (MeZO's) if analysed, else the middle analysed value."""
        values = self.eps_values
        if eps is None:
            eps = 1e-3 if any(math.isclose(v, 1e-3) for v in values) else values[len(values) // 2]
        match = [v for v in values if math.isclose(v, eps, rel_tol=1e-9)]
        if not match:
            raise DlzoError(f"eps={eps} was not analysed; choose one of {values}.")
        return match[0]

    def propagation_matrix(self, eps: float | None = None, stat: str = "rel_change") -> pd.DataFrame:
        """Mean over seeds of ``stat`` at ``eps``: rows = perturbed layer, columns = downstream layer."""
        if stat not in ("rel_change", "rel_change_token"):
            raise DlzoError(f"Unknown statistic {stat!r}; use 'rel_change' or 'rel_change_token'.")
        if self.propagation.empty:
            raise DlzoError("This analysis ran without propagation; rerun analyze_layers with propagation=True.")
        eps = self.reference_eps(eps)
        table = self.propagation[np.isclose(self.propagation["eps"], eps)]
        matrix = table.pivot_table(index="layer", columns="downstream", values=stat, aggfunc="mean")
        return matrix.reindex(columns=range(self.num_layers))

    def summary(self, eps: float | None = None) -> pd.DataFrame:
        """One row per layer at ``eps`` (default :meth:`reference_eps`): the first-order gradient, the ZO
        signal, its finite-difference error and cosine, the sensitivity and curvature (mean and spread over
        seeds; for a quadratic loss the spread of ``zᵀHz`` is ``sqrt(2)·||H_l||_F``), and the propagation
        (relative change at the layer itself and at the last layer, token-wise)."""
        eps = self.reference_eps(eps)
        sig = self.signals[np.isclose(self.signals["eps"], eps)]
        grouped = sig.groupby("layer")
        out = self.gradients.set_index("layer")[["num_params", "grad_norm", "grad_rms"]].copy()
        out["g_abs"] = grouped["g"].apply(lambda s: s.abs().mean())
        out["g_std"] = grouped["g"].std(ddof=1) if sig["seed"].nunique() > 1 else np.nan
        out["g_abs/grad_norm"] = out["g_abs"] / out["grad_norm"]
        out["fd_error"] = grouped["fd_error"].median()
        out["sensitivity"] = grouped["sensitivity"].mean()
        out["sensitivity_std"] = grouped["sensitivity"].std(ddof=1) if sig["seed"].nunique() > 1 else np.nan
        out["curvature"] = grouped["curvature"].mean()
        out["curvature_std"] = grouped["curvature"].std(ddof=1) if sig["seed"].nunique() > 1 else np.nan
        cos = self.cosines[np.isclose(self.cosines["eps"], eps)].set_index("layer")
        out["cosine"] = cos["cosine"]
        out["cos_ideal"] = cos["cos_ideal"]
        out["cos_random"] = cos["cos_random"]
        if not self.propagation.empty:
            prop = self.propagation[np.isclose(self.propagation["eps"], eps)]
            self_change = prop[prop["downstream"] == prop["layer"]].groupby("layer")["rel_change_token"].mean()
            last = prop[prop["downstream"] == self.num_layers - 1].groupby("layer")["rel_change_token"].mean()
            out["prop_self"] = self_change
            out["prop_last"] = last
            out["amplification"] = last / self_change
        out.insert(0, "eps", eps)
        return out.reset_index()


# ----------------------------------------------------------------------------------------------- analysis
def analyze_layers(
    model,
    loss_fn: LossFn,
    batch: list,
    layers: Sequence[int] | None = None,
    seeds: Iterable[int] = range(8),
    eps: Sequence[float] = DEFAULT_EPS,
    propagation: bool = True,
    share_prefix: bool = True,
    progress: bool = True,
) -> PerturbationAnalysis:
    """Measure sensitivity, propagation, ZO signal and gradient of each layer in ``layers`` (default all).

    One clean forward (with the probe recording), one forward + backward for the gradients of all analysed
    layers, then for every layer, ε and seed two forwards, ``θ ± εz_l`` (the ``+`` one measured by the
    probe), and afterwards one regeneration of each ``z_l`` for the exact directional derivatives and the
    cosines. With ``share_prefix`` the layers below ``l`` run once per analysed layer (their outputs are
    bit-identical in every forward: :mod:`dlzo.prefix`). The same seed gives the same ``z`` in every layer
    of one shape (common random numbers across layers). Parameters come back bit-identical.
    """
    layers, seeds, eps_values = _check_inputs(model, batch, layers, seeds, eps)
    n_layers = len(decoder_layers(model))
    before = {id(p): p.requires_grad for p in model.parameters()}
    signal_rows, prop_rows, grad_rows, cos_rows = [], [], [], []
    probe = HiddenStateProbe(model) if propagation else None
    with probe if probe is not None else nullcontext():
        with probe.record() if probe is not None else nullcontext():
            loss_base = _loss(loss_fn, batch)
        if not math.isfinite(loss_base):
            raise DlzoError(f"The clean loss is {loss_base}; check the model's dtype and the batch.")
        _, grads = layer_gradients(model, loss_fn, batch, layers)
        bar = progress_bar(total=len(layers) * len(eps_values) * len(seeds), enabled=progress,
                           desc="layers × eps × seeds", unit="dir")
        try:
            for layer in layers:
                engine = ZOEngine(select_layer(model, layer), eps=max(eps_values))
                results = _perturb_layer(engine, loss_fn, batch, layer, seeds, eps_values, probe,
                                         share_prefix and layer > 0, bar)
                _layer_tables(engine, grads[layer], layer, seeds, eps_values, loss_base, results, n_layers,
                              signal_rows, prop_rows, grad_rows, cos_rows)
                del engine
        finally:
            bar.close()
    for p in model.parameters():  # Selection.apply never leaks, but make it a checked promise
        p.requires_grad_(before[id(p)])
    return PerturbationAnalysis(
        signals=pd.DataFrame(signal_rows),
        propagation=pd.DataFrame(prop_rows, columns=["layer", "eps", "seed", "downstream", "rel_change",
                                                     "rel_change_token"]),
        gradients=pd.DataFrame(grad_rows),
        cosines=pd.DataFrame(cos_rows),
        loss_base=loss_base,
        num_layers=n_layers,
    )


def _perturb_layer(engine: ZOEngine, loss_fn: LossFn, batch: list, layer: int, seeds: list[int],
                   eps_values: list[float], probe: HiddenStateProbe | None, share_prefix: bool, bar) -> dict:
    """The forwards of one layer: ``{(eps, seed): (loss_plus, loss_minus, changes or None)}``."""
    prefix = PrefixSharing(engine.selected.model, layer) if share_prefix else None
    results = {}
    first = [True]
    prefix_changes = []  # the changes of layers < `layer`, measured in the forward that records the prefix

    def forward(measure: bool):
        # the first forward computes every layer (and records the prefix); later ones replay layers < `layer`,
        # whose outputs are then bit-identical to the recorded ones, so their measured change carries over
        recording = first[0]
        first[0] = False
        sharing = nullcontext() if prefix is None else (prefix.record() if recording else prefix.replay())
        skip = 0 if (prefix is None or recording) else layer
        measure = measure and probe is not None
        with sharing, probe.compare(skip_below=skip) if measure else nullcontext():
            value = _loss(loss_fn, batch)
        if not measure:
            return value, None
        changes = probe.changes.copy()
        if prefix is not None:
            if recording:
                prefix_changes.append(changes[:layer].copy())
            elif prefix_changes:
                changes[:layer] = prefix_changes[0]
        return value, changes

    with prefix if prefix is not None else nullcontext():
        try:
            for eps in eps_values:
                for seed in seeds:
                    engine.write_perturbed(seed, eps)
                    plus, changes = forward(measure=True)
                    engine.write_perturbed(seed, -eps)
                    minus, _ = forward(measure=False)
                    results[(eps, seed)] = (plus, minus, changes)
                    bar.update(1)
        finally:
            engine.restore()
    return results


def _layer_tables(engine: ZOEngine, grads: list[torch.Tensor], layer: int, seeds: list[int],
                  eps_values: list[float], loss_base: float, results: dict, n_layers: int,
                  signal_rows, prop_rows, grad_rows, cos_rows) -> None:
    """Turn one layer's forwards into table rows; regenerate each z once for ``z·∇L`` and the cosines."""
    dim = engine.selected.num_parameters
    g = {(e, s): (results[(e, s)][0] - results[(e, s)][1]) / (2 * e) for e in eps_values for s in seeds}
    device = engine.device
    grad_sq = sum(torch.dot(t.flatten().double(), t.flatten().double()) for t in grads)
    grad_norm = float(grad_sq.sqrt())
    # one pass over the seeds: z·∇L, and the averaged estimates (ZO and exact) for the cosines
    dd = []

    def zeros() -> list[torch.Tensor]:
        return [torch.zeros(t.shape, dtype=torch.float64, device=device) for t in grads]

    estimates = {e: zeros() for e in eps_values}
    exact = zeros()
    for seed in seeds:
        zs = [z.double() for z in engine.draw(seed)]
        d = float(sum(torch.dot(z.flatten(), t.flatten().double()) for z, t in zip(zs, grads, strict=True)))
        dd.append(d)
        for e in eps_values:
            for acc, z in zip(estimates[e], zs, strict=True):
                acc.add_(z, alpha=g[(e, seed)] / len(seeds))
        for acc, z in zip(exact, zs, strict=True):
            acc.add_(z, alpha=d / len(seeds))
    rms_dd = math.sqrt(sum(x * x for x in dd) / len(dd))

    def cosine(vectors: list[torch.Tensor]) -> float:
        dot = sum(torch.dot(v.flatten(), t.flatten().double()) for v, t in zip(vectors, grads, strict=True))
        norm = sum(torch.dot(v.flatten(), v.flatten()) for v in vectors).sqrt()
        denom = float(norm) * grad_norm
        return float(dot) / denom if denom > 0 else float("nan")

    cos_exact = cosine(exact)
    grad_rows.append({"layer": layer, "num_params": dim, "grad_norm": grad_norm,
                      "grad_rms": grad_norm / math.sqrt(dim)})
    for e in eps_values:
        cos_rows.append({"layer": layer, "eps": e, "num_seeds": len(seeds), "num_params": dim,
                         "cosine": cosine(estimates[e]), "cos_exact": cos_exact,
                         "cos_ideal": spsa_cosine(dim, len(seeds)), "cos_random": random_direction_cosine(dim)})
        for seed, d in zip(seeds, dd, strict=True):
            plus, minus, changes = results[(e, seed)]
            signal_rows.append({
                "layer": layer, "eps": e, "seed": seed, "loss_base": loss_base, "loss_plus": plus,
                "loss_minus": minus, "sensitivity": abs(plus - loss_base),
                "curvature": (plus + minus - 2 * loss_base) / (e * e), "g": g[(e, seed)], "dir_deriv": d,
                "fd_error": abs(g[(e, seed)] - d) / rms_dd if rms_dd > 0 else float("nan"),
            })
            if changes is not None:
                for j in range(n_layers):
                    if not np.isnan(changes[j, 0]):
                        prop_rows.append([layer, e, seed, j, float(changes[j, 0]), float(changes[j, 1])])
