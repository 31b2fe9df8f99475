"""Per-process memo tables: results of pure computations kept under a digest of their inputs.

The runs of a grid or of `tam demo` that share a split (every seed and fusion on one labels file) need the same
normalisation statistics, pooled features and linear baseline; each worker process computes them once. A table
holds at most `limit` results and drops the oldest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Memo(dict):
    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def get_or(self, key: str, compute: Callable[[], Any]) -> Any:
        """The result kept under `key`, computed (and kept) on first use; a raising `compute` keeps nothing."""
        if key not in self:
            value = compute()
            if len(self) >= self.limit:
                self.pop(next(iter(self)))
            self[key] = value
        return self[key]
