"""COCO RLE with torch ops (pipeline/data/rle_device.py) against pycocotools: the same
compressed strings and the same masks back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from pipeline.data import rle_device


def coco_strings(masks: np.ndarray) -> list[bytes]:
    return [r["counts"] for r in
            mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))]


def blobs(rng, n: int, h: int, w: int) -> np.ndarray:
    """Real-shape proposal masks: discs and boxes at random places and sizes."""
    yy, xx = np.mgrid[:h, :w]
    out = []
    for _ in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, min(h, w) // 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        box = (abs(yy - cy) < r // 2) & (abs(xx - cx + r) < r)
        out.append(disc | box if rng.random() < 0.5 else disc)
    return np.stack(out)


CASES = {
    "random": lambda rng: rng.random((6, 17, 23)) < rng.random((6, 1, 1)),
    "empty": lambda rng: np.zeros((3, 9, 11), dtype=bool),
    "full": lambda rng: np.ones((3, 9, 11), dtype=bool),
    "one pixel": lambda rng: rng.random((4, 1, 1)) < 0.5,
    "one column": lambda rng: rng.random((4, 13, 1)) < 0.5,
    "real shape": lambda rng: blobs(rng, 100, 480, 640),
    "long runs": lambda rng: np.repeat(rng.random((2, 1, 4000)) < 0.5, 300, axis=1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_encode_gives_pycocotools_strings_and_decode_its_masks(case):
    masks = CASES[case](np.random.default_rng(0))
    want = coco_strings(masks)
    assert rle_device.encode(torch.from_numpy(masks)) == want
    back = rle_device.decode(want, *masks.shape[1:])
    assert back.dtype == torch.bool and np.array_equal(back.numpy(), masks)
    for text, m in zip(want, masks):  # the counts themselves, against pycocotools' decode
        counts = rle_device.string_counts(text)
        assert counts.sum() == m.size and (counts[1:] > 0).all()


def test_a_non_contiguous_batch_and_an_empty_one():
    masks = torch.from_numpy(blobs(np.random.default_rng(1), 6, 40, 50))
    view = masks.transpose(1, 2)  # (N, W, H): a strided view of other masks
    assert rle_device.encode(view) == coco_strings(view.contiguous().numpy())
    assert rle_device.encode(torch.zeros((0, 4, 4), dtype=torch.bool)) == []
    assert rle_device.decode([], 4, 5).shape == (0, 4, 5)


def test_a_string_of_another_size_is_named():
    text = coco_strings(np.ones((1, 4, 4), dtype=bool))[0]
    with pytest.raises(ValueError, match="covers 16 pixels, not 5 x 5"):
        rle_device.decode([text], 5, 5)


def test_many_masks_at_once_equal_one_at_a_time():
    """The batched host parts (all masks' counts and characters in one numpy pass) against
    the same masks one by one, with empty and full masks among real-shape ones."""
    rng = np.random.default_rng(2)
    masks = np.concatenate([blobs(rng, 30, 48, 64), np.zeros((2, 48, 64), bool),
                            np.ones((1, 48, 64), bool), rng.random((5, 48, 64)) < 0.5])
    texts = coco_strings(masks)
    counts = rle_device.rle_counts(torch.from_numpy(masks))
    assert rle_device.counts_strings(counts) == texts
    assert [rle_device.counts_string(c) for c in counts] == texts
    for many, text, c in zip(rle_device.strings_counts(texts), texts, counts):
        assert np.array_equal(many, c) and np.array_equal(rle_device.string_counts(text), c)
    assert rle_device.counts_strings([]) == [] and rle_device.strings_counts([]) == []
