"""A dataset's batches in order, built ahead of their use by loader processes: the one way
the training stages (train_proposals, finetune, prompt_tune) hand batch building to
`torch.utils.data.DataLoader` workers. Each item already is a whole batch (batch_size
None), so the batches, and their order, are those of the dataset whatever the number of
processes; only when they are built changes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def batches_in_order(dataset: torch.utils.data.Dataset, workers: int,
                     pin_memory: bool = False) -> Iterator:
    """The items of `dataset` (map-style: 0 .. len - 1; or iterable) in order, built by
    `workers` loader processes ahead of the caller (0: in the caller's process, when
    asked for). `pin_memory` (for a CUDA caller) hands them over in page-locked memory,
    so the copies to the device can run asynchronously."""
    if workers == 0:
        if isinstance(dataset, torch.utils.data.IterableDataset):
            return iter(dataset)
        return (dataset[k] for k in range(len(dataset)))
    return iter(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                            pin_memory=pin_memory))
