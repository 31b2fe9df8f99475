"""Distributed data parallel under torchrun (NCCL on GPU, gloo on CPU); a no-op for a single process."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tam.errors import TamError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init(device: str = "auto") -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes in the environment (if any) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):  # a typo ("gpu", "cuda1") used to train on the CPU
        raise TamError(f"train.device={device!r}: choose auto, cpu, cuda or cuda:N")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise TamError(f"train.device={device}: CUDA is not available here")
    index = int(device[5:]) if device.startswith("cuda:") and world == 1 else local  # torchrun: LOCAL_RANK
    dev = torch.device("cuda", index) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local), dev


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def gather_objects(d: Dist, obj):
    """List of `obj` from every rank (in rank order); [obj] for a single process."""
    if not d.enabled:
        return [obj]
    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(d: Dist, obj):
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
