"""The CPU thread budget: torch threads shared with DataLoader workers."""

import torch

from tam.train import threads


def test_auto_budget_shares_the_cores_with_the_loader_workers():
    assert threads.auto_threads(0, 8) == 8
    assert threads.auto_threads(2, 8) == 2
    assert threads.auto_threads(2, 2) == 1  # the 2-core case of the issue: never 2 threads + 2 workers
    assert threads.auto_threads(7, 4) == 1
    assert threads.auto_threads(0, 16, procs=4) == 4  # 4 torchrun ranks on one 16-core node
    assert 1 <= threads.cores()


def test_set_threads_explicit_and_auto(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
        n = threads.set_threads(0, workers=1)
        assert n == threads.auto_threads(1) and torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def test_auto_honours_omp_num_threads_and_explicit_wins(monkeypatch):
    """threads 0 takes OMP_NUM_THREADS where the environment sets it (as torch does); an explicit count wins; a
    value that is not a positive count is ignored."""
    before = torch.get_num_threads()
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert threads.set_threads(0) == 3 and torch.get_num_threads() == 3
        assert threads.set_threads(2) == 2
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun sets OMP_NUM_THREADS=1 itself: the share applies
        assert threads.env_threads() == 0
        monkeypatch.delenv("LOCAL_WORLD_SIZE")
        monkeypatch.setenv("OMP_NUM_THREADS", "0")
        assert threads.env_threads() == 0 and threads.set_threads(0) == threads.auto_threads(0)
        monkeypatch.setenv("OMP_NUM_THREADS", "four")
        assert threads.env_threads() == 0
    finally:
        torch.set_num_threads(before)
