"""Data-parallel training inside one job: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK, and every
process trains a DDP replica on its share of each global batch (NCCL on GPUs, gloo on CPUs)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Distributed", "seed_everything"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: rank, world size and device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu") -> Distributed:
        """Join the process group that torchrun describes in the environment (if any)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, torch.device(device))
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        on_gpu = torch.device(device).type == "cuda"
        if on_gpu:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if on_gpu else "gloo")
        return cls(
            rank, world, torch.device(f"cuda:{local_rank}") if on_gpu else torch.device(device)
        )

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's global RNGs (timm's mixup and random erasing use the last
    two), so that every random draw of an epoch is reproducible on resume."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (timm's Mixup draws from the global RNG)
    random.seed(seed)
