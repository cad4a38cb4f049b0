"""Data parallelism for ``analyze`` under torchrun: shard batches, gather statistics, rank 0 writes.

    torchrun --nproc-per-node N cli.py analyze ...

Rank r takes batches r, r+N, r+2N, ... of the calibration and evaluation splits. At the end
every rank's statistics are gathered and merged in rank order (Chan's parallel merge for the
importance aggregators, plain sums for cosines and NLL), so the result equals one process's to
float rounding. A process group is created only when WORLD_SIZE > 1: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0  # global rank
    world: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine: picks the GPU
    owns_group: bool = False  # we created the process group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) without torchrun."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def setup(use_cuda: bool) -> Dist:
    """Join the torchrun job if there is one (WORLD_SIZE > 1); otherwise a single-process Dist."""
    _, world, local = world_from_env()
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)  # nccl and all_gather_object use the current device
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, owns_group=owns)


def teardown(d: Dist) -> None:
    if d.owns_group:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def shard(items: list, d: Dist) -> list:
    """This rank's share: items r, r+N, r+2N, ..."""
    return items[d.rank::d.world]


def to_cpu(obj):
    """A copy of nested dicts/lists of tensors with every tensor on the CPU (safe to pickle across ranks)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def gather(obj, d: Dist) -> list:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` for a single process)."""
    if not d.enabled:
        return [obj]
    import torch.distributed as dist

    out = [None] * d.world
    dist.all_gather_object(out, to_cpu(obj))
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()
