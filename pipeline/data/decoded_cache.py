"""Decoded training images kept in memory across epochs, up to a byte budget.

base_clip's pretraining reads each of the world's 10K training images about 4 times (300
steps of 128) and train_proposals 1.6 times (1000 steps of 16); decoding the PNGs again
was 10-15% of those loops on 2 cores. The cache keeps what it has read until the budget is
spent and then keeps nothing more: batches are epoch-wise permutations, under which an
evicting cache (LRU) hits no more often than one that keeps the first images it meets. A
dataset larger than the budget (COCO at full size) so reads as before, with the budget's
worth of its images never decoded twice. Cached arrays are read-only: a caller that
writes into one gets an error instead of changing every later read of that image.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

DEFAULT_BUDGET_BYTES = 1 << 30  # per process: 10K world images take 123 MB, labels 41 MB


class DecodedCache:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.budget_bytes = budget_bytes
        self.held_bytes = 0
        self._items: dict[Hashable, tuple[np.ndarray, ...]] = {}

    def get(self, key: Hashable, read: Callable[[Hashable], tuple[np.ndarray, ...]]
            ) -> tuple[np.ndarray, ...]:
        """The arrays `read(key)` returns, decoded once while the budget lasts."""
        hit = self._items.get(key)
        if hit is not None:
            return hit
        arrays = tuple(read(key))
        for a in arrays:
            a.setflags(write=False)
        size = sum(a.nbytes for a in arrays)
        if self.held_bytes + size <= self.budget_bytes:
            self._items[key] = arrays
            self.held_bytes += size
        return arrays
