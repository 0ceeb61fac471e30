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
        ids = torch.stack([ex["input_ids"] for ex in batch])
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
    train(single, Selection(layers=[1]), per_example_loss(single), TRAIN, CONFIG, progress=False)
    changed = 0
    for name, param in single.named_parameters():
        torch.testing.assert_close(rank0[name], param.detach(), rtol=1e-4, atol=1e-6)
        changed += not torch.equal(param.detach(), tiny_llama(seed=0).get_parameter(name).detach())
    assert changed > 0  # training did move the selected layer


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
    for name, param in single.named_parameters():
        torch.testing.assert_close(rank0[name], param.detach().cpu(), rtol=1e-4, atol=1e-5)
