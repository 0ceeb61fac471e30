"""Data-parallel ZO with the gloo backend on the CPU: two processes, identical parameters, equal to one process."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from zo_helpers import tiny_llama, token_examples

from dlzo.distributed import ShardedLoss, shard
from dlzo.errors import DlzoError
from dlzo.selection import Selection
from dlzo.training import ZOConfig, train

TRAIN = token_examples(48, seed=1)
CONFIG = ZOConfig(steps=5, lr=5e-3, eps=1e-3, batch_size=8, seed=3)


def per_example_loss(model):
    """Mean over examples of each sequence's mean next-token CE (exactly shardable by example counts)."""

    def loss_fn(batch):
        ids = torch.stack([ex["input_ids"] for ex in batch]).to(model.device)  # the batch lives on the CPU
        logits = model(input_ids=ids).logits.float()
        per_token = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        return per_token.mean(dim=1).mean()

    return loss_fn


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = tiny_llama(seed=0)
        train(model, Selection(layers=[1]), ShardedLoss(per_example_loss(model)), TRAIN, CONFIG, progress=False)
        torch.save({n: p.detach().clone() for n, p in model.named_parameters()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_covers_the_batch():
    batch = list(range(10))
    parts = [shard(batch, r, 3) for r in range(3)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_sharded_loss_needs_a_process_group():
    with pytest.raises(DlzoError, match="initialised process group"):
        ShardedLoss(lambda b: torch.tensor(0.0))


def test_two_gloo_ranks_match_each_other_and_one_process(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(rank0[n], rank1[n]) for n in rank0)  # no parameter traffic, yet identical
    single = tiny_llama(seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' thread count: same matmul blocking, same rounding
    try:
        train(single, Selection(layers=[1]), per_example_loss(single), TRAIN, CONFIG, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert_same_training(rank0, single)


def assert_same_training(sharded: dict, single: torch.nn.Module) -> None:
    """The sharded run moved every parameter as the one-process run did, up to float rounding.

    The sharded loss is a mean of per-rank means, so the two losses differ in the last bits, and ZO divides
    that difference by 2 eps; the updates then differ by a tiny fraction of their size, which is the bound
    checked here (1% of the largest update; a wrong perturbation or average is off by about 100%), not an absolute one that depends on threads and devices."""
    initial = tiny_llama(seed=0)
    moved = {n: p.detach().cpu() - initial.get_parameter(n).detach() for n, p in single.named_parameters()}
    largest = max(float(d.abs().max()) for d in moved.values())
    assert largest > 0  # training did move the selected layer
    for name, param in single.named_parameters():
        gap = float((sharded[name] - param.detach().cpu()).abs().max())
        assert gap <= 1e-2 * largest, f"{name}: sharded and single runs differ by {gap:.2e} (largest update {largest:.2e})"


def _nccl_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    try:
        model = tiny_llama(seed=0).to(f"cuda:{rank}")
        train(model, Selection(layers=[1]), ShardedLoss(per_example_loss(model)), TRAIN, CONFIG, progress=False)
        torch.save({n: p.detach().cpu().clone() for n, p in model.named_parameters()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="the NCCL path needs two CUDA devices")
def test_two_nccl_ranks_on_two_gpus_match_each_other_and_one_gpu(tmp_path):
    mp.start_processes(_nccl_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(rank0[n], rank1[n]) for n in rank0)  # same seeded updates, nothing sent but 2 scalars
    single = tiny_llama(seed=0).to("cuda:0")
    train(single, Selection(layers=[1]), per_example_loss(single), TRAIN, CONFIG, progress=False)
    assert_same_training(rank0, single)
