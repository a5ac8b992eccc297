"""The decoded-image cache of base_clip's and train_proposals' loaders: each image is read
once while the budget lasts, nothing past it is kept, and what it returns cannot be
written into (a write would change every later read of that image)."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.decoded_cache import DecodedCache
from pipeline.data.layouts import IndexRow, Split
from pipeline.params import ProposalParams
from pipeline.proposals.training_setup import batch_loader


def counting_reader(calls, shape=(4, 4, 3)):
    def read(key):
        calls.append(key)
        return (np.full(shape, key, dtype=np.uint8),)
    return read


def test_each_key_is_read_once_within_the_budget():
    calls, read = [], counting_reader([])
    calls = []
    read = counting_reader(calls)
    cache = DecodedCache(budget_bytes=10 * 48)
    for key in [3, 1, 3, 3, 1, 2]:
        (a,) = cache.get(key, lambda key=key: read(key))
        assert (a == key).all()
    assert calls == [3, 1, 2] and cache.held_bytes == 3 * 48


def test_past_the_budget_reads_again_and_keeps_what_it_had():
    calls = []
    read = counting_reader(calls)
    cache = DecodedCache(budget_bytes=2 * 48)  # room for two 48-byte images
    for key in [0, 1, 2, 2, 0, 1]:
        cache.get(key, lambda key=key: read(key))
    assert calls == [0, 1, 2, 2] and cache.held_bytes == 2 * 48


def test_cached_arrays_are_read_only():
    cache = DecodedCache()
    (a,) = cache.get(0, lambda: (np.zeros((2, 2), np.uint8),))
    with pytest.raises(ValueError):
        a[0, 0] = 1
    assert cache.get(0, lambda: (np.ones((2, 2), np.uint8),))[0].sum() == 0


def test_a_proposal_batch_from_the_cache_equals_one_read_from_disk(tmp_path):
    """Augmentation on (scale, flip, colour jitter): the second epoch's batch, built from
    cached arrays, is the batch a fresh loader reads from the files."""
    rng = np.random.default_rng(0)
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    rows = []
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(
            tmp_path / "im" / f"{i}.png")
        Image.fromarray(rng.integers(0, 5, (48, 80), dtype=np.uint8)).save(
            tmp_path / "lab" / f"{i}.png")
        rows.append(IndexRow(i, f"{i}.png", f"{i}.png", 48, 80))
    split = Split("train", "train", str(tmp_path / "im"), str(tmp_path / "lab"), "", "")
    p = ProposalParams(crop_size=64, scale_min=0.5, scale_max=2.0, flip=True,
                       color_jitter=True)
    lut, cpu = torch.arange(256), torch.device("cpu")
    warm = batch_loader(rows, split, lut, p, cpu)
    warm(np.array([0, 1, 2, 3]), step=0)  # every image now cached
    for step in (1, 2, 7):
        idx = np.array([3, 1, 0])
        images, targets = warm(idx, step)
        cold_images, cold_targets = batch_loader(rows, split, lut, p, cpu)(idx, step)
        assert torch.equal(images, cold_images)
        for t, c in zip(targets, cold_targets):
            assert t.keys() == c.keys() and all(torch.equal(t[k], c[k]) for k in t)
