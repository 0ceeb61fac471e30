"""Data-parallel ZO over ``torch.distributed``: shard the batch, all-reduce two scalars, update identically.

A ZO step needs no gradient and no parameter traffic. Every rank runs the same training loop with the same
seed, so it draws the same batch and the same direction seeds; :class:`ShardedLoss` makes each rank
evaluate only its slice of the batch and all-reduces the (example-weighted) mean loss, so every rank sees
the same loss₊ and loss₋, computes the same projected gradient, and applies the same seeded update. The
parameters stay identical on all ranks without ever being sent.

Launch with torchrun (``dlzo train --distributed`` does the set-up)::

    torchrun --nproc_per_node 8 -m dlzo train --distributed --model ... --task sst2 --select dominant

Backends: NCCL on GPUs (one process per GPU), gloo on CPUs (what the tests use). Losses are combined
weighted by the number of examples on each rank: exact for per-example means (the classification loss);
for token-level LM losses the combination weights each shard by its examples rather than its answer tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist

from .errors import DlzoError


def init_from_env(backend: str | None = None) -> tuple[int, int, str]:
    """Initialise the default process group from torchrun's environment; return (rank, world, device)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise DlzoError("Distributed mode needs torchrun's environment (RANK, WORLD_SIZE): launch with torchrun.")
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and backend in (None, "nccl")
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    rank, world = dist.get_rank(), dist.get_world_size()
    if dist.get_backend() == "nccl":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    else:
        device = "cpu"
    return rank, world, device


def shard(batch: list, rank: int, world: int) -> list:
    """This rank's contiguous slice of ``batch`` (sizes differ by at most one)."""
    size, extra = divmod(len(batch), world)
    start = rank * size + min(rank, extra)
    return batch[start:start + size + (1 if rank < extra else 0)]


class ShardedLoss:
    """Wrap ``loss_fn(batch) -> 0-dim tensor`` so each rank computes its shard and all ranks get the mean."""

    def __init__(self, loss_fn: Callable[[list], torch.Tensor], group=None):
        if not dist.is_initialized():
            raise DlzoError("ShardedLoss needs an initialised process group; call dlzo.distributed.init_from_env().")
        self.loss_fn = loss_fn
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)

    def __call__(self, batch: list) -> torch.Tensor:
        if len(batch) < self.world:
            raise DlzoError(f"A batch of {len(batch)} cannot be shared by {self.world} ranks; raise the batch size.")
        part = shard(batch, self.rank, self.world)
        local = self.loss_fn(part)
        packed = torch.stack([local.detach().double() * len(part), torch.tensor(float(len(part)), dtype=torch.float64,
                                                                                   device=local.device)])
        dist.all_reduce(packed, group=self.group)
        return (packed[0] / packed[1]).to(local.dtype)
