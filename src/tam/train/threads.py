"""CPU thread budget: torch's intra-op threads against DataLoader workers and cores.

torch starts one intra-op thread per core; each DataLoader worker is one more busy process. On a small
machine the two oversubscribe the cores (on a loaded 2-core machine a pre-training step took 3.6 s with 2
threads against 0.26 s with 1). `auto_threads` gives every process its share; `bench/bench_train.py` measures
the step time at several settings side by side.
"""

from __future__ import annotations

import os

import torch


def cores() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_threads(workers: int, n_cores: int | None = None, procs: int | None = None) -> int:
    """max(1, cores // (procs * (1 + workers))): each training process on this machine (torchrun's
    LOCAL_WORLD_SIZE, else 1) and each of its loader workers get an equal share of the cores."""
    procs = procs or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, (n_cores or cores()) // (max(1, procs) * (1 + max(0, workers))))


def env_threads() -> int:
    """OMP_NUM_THREADS when the environment sets it to a positive count (torch's own default honours it), else 0.
    Not under torchrun (LOCAL_WORLD_SIZE set), which sets it to 1 for every rank itself: there each rank takes its
    share of the cores (`auto_threads`)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if "LOCAL_WORLD_SIZE" in os.environ or not value.isdigit():
        return 0
    return int(value)


def set_threads(threads: int, workers: int = 0) -> int:
    """Set torch's intra-op threads (`threads` > 0, or 0 = auto: OMP_NUM_THREADS where the environment sets it, else
    `auto_threads` for `workers` loader workers); returns the count."""
    n = threads if threads > 0 else env_threads() or auto_threads(workers)
    torch.set_num_threads(n)
    return n
