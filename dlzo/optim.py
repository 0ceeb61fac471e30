"""Zeroth-order optimizers: update rules applied to a ZO gradient estimate, one tensor at a time.

The ZO engine (:mod:`dlzo.zo`) regenerates the estimate ``ĝ = mean_j g_j z_j`` for one selected tensor
at a time (no direction is ever stored) and asks the optimizer for that tensor's new value::

    new = optimizer.update(i, master, grad, lr)     # or, in place: optimizer.step_(i, master, grad, lr)

``master`` is the fp32 master copy of tensor ``i``; the optimizer returns a new tensor and never
modifies ``master`` (the engine writes it back, masked where a mask applies). Weight decay ``wd``
applies only to tensors with ``ndim >= 2``, never to norm weights and biases. All state has the masters'
dtype (fp32; fp64 for fp64 models) and serialises to plain tensors plus JSON scalars
(:meth:`ZOOptimizer.state_dict`).

Update rules (``θ`` the master tensor, ``η`` the learning rate):

* ``sgd`` (ZO-SGD, MeZO's update):   θ ← θ − η·(ĝ + wd·θ)
* ``momentum``:                       b ← μ·b + ĝ + wd·θ ;  θ ← θ − η·b
* ``adam`` (ZO-Adam, AdamW-style):    m, v ← Adam moments of ĝ ;  θ ← θ − η·m̂/(√v̂ + ε_adam) − η·wd·θ
* ``sign`` (ZO-signSGD):              θ ← θ − η·(sign(ĝ) + wd·θ)
"""

from __future__ import annotations

import torch

from .errors import DlzoError


class ZOOptimizer:
    """Base class: per-tensor state, weight-decay flags and (de)serialisation."""

    name = ""

    def __init__(self, masters: list[torch.Tensor], weight_decay: float = 0.0):
        if weight_decay < 0:
            raise DlzoError(f"Weight decay {weight_decay} must be non-negative.")
        self.weight_decay = weight_decay
        self.decay = [m.ndim >= 2 for m in masters]
        self.steps = 0  # completed optimizer steps
        self.buffers: dict[str, list[torch.Tensor]] = {}

    def begin_step(self) -> None:
        """Called once per step, before the per-tensor updates."""
        self.steps += 1

    def update(self, index: int, master: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
        raise NotImplementedError

    def step_(self, index: int, master: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        """Apply the update to ``master`` in place (``grad`` may be consumed): the same bits as
        ``master.copy_(self.update(...))``, which rules without a cheaper in-place form fall back to."""
        master.copy_(self.update(index, master, grad, lr))

    def _decay(self, index: int) -> float:
        return self.weight_decay if self.decay[index] else 0.0

    def _with_decay(self, index: int, grad: torch.Tensor, master: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``grad + wd·master`` for tensor ``index`` (``grad`` itself when it takes no decay), in place if asked."""
        wd = self._decay(index)
        if not wd:
            return grad
        return grad.add_(master, alpha=wd) if inplace else grad.add(master, alpha=wd)

    def hyperparameters(self) -> dict:
        return {"name": self.name, "weight_decay": self.weight_decay}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """``(tensors, scalars)``: state tensors keyed ``"<buffer>.<index>"`` and a JSON-able dict."""
        tensors = {f"{key}.{i}": t for key, buffer in self.buffers.items() for i, t in enumerate(buffer)}
        return tensors, {"steps": self.steps, **self.hyperparameters()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], scalars: dict) -> None:
        if scalars.get("name") != self.name:
            raise DlzoError(
                f"The checkpoint holds {scalars.get('name')!r} optimizer state, not {self.name!r}; "
                "resume with the optimizer the run started with."
            )
        self.steps = int(scalars["steps"])
        for key, buffer in self.buffers.items():
            for i, t in enumerate(buffer):
                t.copy_(tensors[f"{key}.{i}"])


class ZOSGD(ZOOptimizer):
    """MeZO's update: θ ← θ − η·(ĝ + wd·θ)."""

    name = "sgd"

    def update(self, index, master, grad, lr):
        return master.add(self._with_decay(index, grad, master), alpha=-lr)

    def step_(self, index, master, grad, lr):
        master.add_(self._with_decay(index, grad, master, inplace=True), alpha=-lr)


class ZOMomentum(ZOOptimizer):
    """Heavy-ball momentum on the ZO estimate: b ← μ·b + ĝ + wd·θ ; θ ← θ − η·b."""

    name = "momentum"

    def __init__(self, masters, weight_decay: float = 0.0, momentum: float = 0.9):
        super().__init__(masters, weight_decay)
        if not 0 <= momentum < 1:
            raise DlzoError(f"Momentum {momentum} must be in [0, 1).")
        self.momentum = momentum
        self.buffers["momentum"] = [torch.zeros_like(m) for m in masters]

    def hyperparameters(self):
        return {**super().hyperparameters(), "momentum": self.momentum}

    def update(self, index, master, grad, lr):
        buf = self.buffers["momentum"][index]
        buf.mul_(self.momentum).add_(self._with_decay(index, grad, master))
        return master.add(buf, alpha=-lr)


class ZOAdam(ZOOptimizer):
    """Adam on the ZO estimate, decoupled weight decay (AdamW)."""

    name = "adam"

    def __init__(self, masters, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(masters, weight_decay)
        if not all(0 <= b < 1 for b in betas):
            raise DlzoError(f"Adam betas {tuple(betas)} must both be in [0, 1).")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = eps
        self.buffers["exp_avg"] = [torch.zeros_like(m) for m in masters]
        self.buffers["exp_avg_sq"] = [torch.zeros_like(m) for m in masters]

    def hyperparameters(self):
        return {**super().hyperparameters(), "betas": list(self.betas), "eps": self.eps}

    def update(self, index, master, grad, lr):
        beta1, beta2 = self.betas
        m, v = self.buffers["exp_avg"][index], self.buffers["exp_avg_sq"][index]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1**self.steps)
        v_hat = v / (1 - beta2**self.steps)
        new = master.addcdiv(m_hat, v_hat.sqrt_().add_(self.eps), value=-lr)
        wd = self._decay(index)
        if wd:
            new.add_(master, alpha=-lr * wd)
        return new


class ZOSign(ZOOptimizer):
    """ZO-signSGD: θ ← θ − η·(sign(ĝ) + wd·θ)."""

    name = "sign"

    def update(self, index, master, grad, lr):
        return master.add(self._with_decay(index, grad.sign(), master, inplace=True), alpha=-lr)


OPTIMIZERS: dict[str, type[ZOOptimizer]] = {cls.name: cls for cls in (ZOSGD, ZOMomentum, ZOAdam, ZOSign)}


def make_optimizer(name: str, masters: list[torch.Tensor], weight_decay: float = 0.0, **options) -> ZOOptimizer:
    """Build a ZO optimizer by name (``sgd``, ``momentum``, ``adam``, ``sign``) over fp32 master tensors.

    ``options`` are the optimizer's own hyper-parameters (``momentum=`` / ``betas=``, ``eps=``); options
    that belong to other optimizers are ignored, so one config can name any optimizer.
    """
    if name not in OPTIMIZERS:
        raise DlzoError(f"Unknown ZO optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}.")
    cls = OPTIMIZERS[name]
    accepted = {"momentum": ("momentum",), "adam": ("betas", "eps")}.get(name, ())
    return cls(masters, weight_decay, **{k: v for k, v in options.items() if k in accepted})
