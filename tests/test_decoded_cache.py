"""The decoded-image cache of base_clip's and train_proposals' loaders: each image is read
once while the budget lasts, nothing past it is kept, and what it returns cannot be
written into (a write would change every later read of that image). That a cached
proposal batch equals one read from the files: tests/test_proposal_augment.py."""

import numpy as np
import pytest

from pipeline.data.decoded_cache import DecodedCache


def counting_reader(calls, shape=(4, 4, 3)):
    def read(key):
        calls.append(key)
        return (np.full(shape, key, dtype=np.uint8),)
    return read


def test_each_key_is_read_once_within_the_budget():
    calls = []
    read = counting_reader(calls)
    cache = DecodedCache(budget_bytes=10 * 48)
    for key in [3, 1, 3, 3, 1, 2]:
        (a,) = cache.get(key, read)
        assert (a == key).all()
    assert calls == [3, 1, 2] and cache.held_bytes == 3 * 48


def test_past_the_budget_reads_again_and_keeps_what_it_had():
    calls = []
    read = counting_reader(calls)
    cache = DecodedCache(budget_bytes=2 * 48)  # room for two 48-byte images
    for key in [0, 1, 2, 2, 0, 1]:
        cache.get(key, read)
    assert calls == [0, 1, 2, 2] and cache.held_bytes == 2 * 48


def test_cached_arrays_are_read_only():
    cache = DecodedCache()
    (a,) = cache.get(0, lambda _: (np.zeros((2, 2), np.uint8),))
    with pytest.raises(ValueError):
        a[0, 0] = 1
    assert cache.get(0, lambda _: (np.ones((2, 2), np.uint8),))[0].sum() == 0
