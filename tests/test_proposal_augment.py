"""MaskFormer's training augmentation (pipeline/proposals/augment.py), the batches built
from it, and the `valid` share of the training targets."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import IndexRow, Split
from pipeline.params import ProposalParams
from pipeline.proposals.augment import (
    PAD_RGB,
    augment,
    crop_window,
    photometric_jitter,
    short_side_choices,
    short_side_shape,
)
from pipeline.proposals.loss import segment_targets
from pipeline.proposals.training_recipe import batch_loader

PALETTE = np.array([[30, 30, 30], [220, 40, 40], [40, 200, 60], [50, 60, 230], [240, 230, 20]],
                   dtype=np.uint8)


def rectangles(h=40, w=70):
    """An image of flat rectangles and its label map drawn from it (label = colour index)."""
    labels = np.zeros((h, w), dtype=np.uint8)
    labels[5:25, 5:30] = 1
    labels[15:38, 35:65] = 2
    labels[0:12, 40:70] = 3
    labels[28:40, 0:20] = 4
    return PALETTE[labels], labels


def interior(labels, radius=2):
    """Pixels whose (2r+1)^2 neighbourhood holds one label: away from every edge."""
    h, w = labels.shape
    p = np.pad(labels.astype(np.int32), radius, constant_values=-1)
    same = np.ones((h, w), dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= p[dy:dy + h, dx:dx + w] == labels
    return same


@pytest.mark.parametrize("seed", range(12))
def test_image_and_labels_stay_aligned_through_resize_crop_flip_and_pad(seed):
    image, labels = rectangles()
    out_image, out_labels = augment(image, labels, np.random.default_rng(seed), 32,
                                    scale_min=0.5, scale_max=2.0, flip=True)
    assert out_image.shape == (32, 32, 3) and out_labels.shape == (32, 32)
    assert out_image.dtype == np.uint8 and out_labels.dtype == np.uint8
    pad = out_labels == 255
    assert (out_image[pad] == PAD_RGB).all()
    rows, cols = pad.all(1), pad.all(0)  # padding: whole bottom rows and right columns
    assert (pad == (rows[:, None] | cols[None, :])).all()
    for whole in (rows, cols):
        n = int((~whole).sum())
        assert not whole[:n].any() and whole[n:].all()
    inside = interior(out_labels) & ~pad
    assert inside.sum() > 100
    assert (out_image[inside] == PALETTE[out_labels[inside]]).all()


def test_flip_mirrors_image_and_labels_together():
    image, labels = rectangles(32, 32)
    seen = set()
    for seed in range(10):
        im, lab = augment(image, labels, np.random.default_rng(seed), 32, flip=True)
        if np.array_equal(lab, labels):
            assert np.array_equal(im, image)
            seen.add("as is")
        else:
            assert np.array_equal(lab, labels[:, ::-1]) and np.array_equal(im, image[:, ::-1])
            seen.add("mirrored")
    assert seen == {"as is", "mirrored"}


def test_a_crop_sized_image_comes_back_unchanged_without_jitter():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    for seed in range(3):
        im, lab = augment(image, labels, np.random.default_rng(seed), 64)
        assert np.array_equal(im, image) and np.array_equal(lab, labels)


def test_colour_jitter_is_per_pixel_and_leaves_labels_alone():
    image, labels = rectangles(32, 32)
    changed = 0
    for seed in range(8):
        im, lab = augment(image, labels, np.random.default_rng(seed), 32, color_jitter=True)
        assert np.array_equal(lab, labels)
        for c in np.unique(labels):  # one colour in, one colour out
            assert len(np.unique(im[labels == c], axis=0)) == 1
        changed += not np.array_equal(im, image)
    assert changed >= 4
    # each distortion fires with probability 1/2: some draws leave the image as is
    same = sum(np.array_equal(photometric_jitter(image, np.random.default_rng(s)), image)
               for s in range(40))
    assert 0 < same < 20


def test_short_sides_are_tenths_of_the_crop_between_the_scales():
    assert short_side_choices(512, 0.5, 2.0) == [int(x * 0.1 * 512) for x in range(5, 21)]
    sides = short_side_choices(64, 0.5, 2.0)
    assert sides == [64 * x // 10 for x in range(5, 21)]
    assert min(sides) == 32 and max(sides) == 128
    assert short_side_choices(64, 1.0, 1.0) == [64]
    with pytest.raises(ValueError):
        short_side_choices(64, 2.0, 1.0)


def test_short_side_shape_keeps_aspect_and_caps_the_long_side():
    assert short_side_shape(50, 90, 64, 256) == (64, 115)
    assert short_side_shape(90, 50, 64, 256) == (115, 64)
    assert short_side_shape(64, 64, 64, 256) == (64, 64)
    assert short_side_shape(10, 100, 64, 256) == (26, 256)  # 640 long: capped


def test_drawn_short_sides_are_the_listed_ones():
    """A 100x300 picture resized to each drawn short side: the crop's width is the crop
    size and its height the short side, when the short side is below it."""
    labels = np.zeros((100, 300), dtype=np.uint8)
    image = np.zeros((100, 300, 3), dtype=np.uint8)
    heights = set()
    for seed in range(40):
        _, lab = augment(image, labels, np.random.default_rng(seed), 64, 0.5, 1.0)
        heights.add(int((lab != 255).all(1).sum()))
    assert heights <= {64 * x // 10 for x in range(5, 11)}
    assert len(heights) >= 4


def corner_labels(n=64, corner=20):
    labels = np.zeros((n, n), dtype=np.uint8)
    labels[:corner, :corner] = 1  # about 10% of a 64x64 image
    return labels


def acceptable(labels, window, max_area, ignore=255):
    y0, x0, h, w = window
    classes, counts = np.unique(labels[y0:y0 + h, x0:x0 + w], return_counts=True)
    counts = counts[classes != ignore]
    return len(counts) > 1 and counts.max() < counts.sum() * max_area


@pytest.mark.parametrize("seed", range(30))
def test_area_constraint_keeps_the_first_acceptable_of_ten_draws(seed):
    """detectron2's RandomCrop_CategoryAreaConstraint: windows are drawn until one has no
    class over max_area of its labelled pixels, at most 10; else the last is kept."""
    labels, max_area = corner_labels(), 0.9
    rng = np.random.default_rng(seed)
    draws = [(int(rng.integers(33)), int(rng.integers(33)), 32, 32) for _ in range(10)]
    expected = next((d for d in draws if acceptable(labels, d, max_area)), draws[-1])
    assert crop_window(labels, 32, np.random.default_rng(seed), max_area) == expected
    assert crop_window(labels, 32, np.random.default_rng(seed), 1.0) == draws[0]


def test_area_constraint_holds_when_acceptable_crops_are_common():
    labels = corner_labels(40, 20)  # 44% of the 32x32 windows have no class above 75%
    got = [crop_window(labels, 32, np.random.default_rng(s), 0.75) for s in range(20)]
    assert all(acceptable(labels, w, 0.75) for w in got)
    first = [crop_window(labels, 32, np.random.default_rng(s), 1.0) for s in range(20)]
    assert not all(acceptable(labels, w, 0.75) for w in first)


def test_area_constraint_does_not_count_ignored_pixels_as_a_class():
    labels = np.zeros((40, 40), dtype=np.uint8)
    labels[:, 20:] = 255  # one class and ignore: no window is acceptable
    rng = np.random.default_rng(3)
    draws = [(int(rng.integers(9)), int(rng.integers(9)), 32, 32) for _ in range(10)]
    assert crop_window(labels, 32, np.random.default_rng(3), 0.9) == draws[-1]


def test_images_smaller_than_the_crop_are_taken_whole_and_padded():
    image, labels = rectangles(20, 50)
    im, lab = augment(image, labels, np.random.default_rng(0), 32)  # short side 32: 32x80
    assert (lab[:32] != 255).all() and im.shape == (32, 32, 3)
    im, lab = augment(image, labels, np.random.default_rng(0), 32, 0.5, 0.5)  # 16x40
    assert (lab[16:] == 255).all() and (lab[:16] != 255).all()
    assert (im[16:] == PAD_RGB).all()


def test_valid_is_the_labelled_share_and_class_masks_sum_to_it():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (16, 16), generator=g, dtype=torch.uint8)
    labels[:4, :4] = 255  # one all-ignored cell
    labels[4:8, 0:2] = 255  # one half-ignored cell
    lut = torch.arange(256)
    t = segment_targets(labels, lut, (4, 4))
    assert t["valid"].shape == (4, 4)
    assert t["valid"][0, 0] == 0 and t["valid"][1, 0] == 0.5
    assert (t["valid"][2:] == 1).all() and (t["valid"][:, 1:] == 1).all()
    assert torch.allclose(t["masks"].sum(0), t["valid"])
    empty = segment_targets(torch.full((8, 8), 255, dtype=torch.uint8), lut, (2, 2))
    assert empty["masks"].shape == (0, 2, 2) and (empty["valid"] == 0).all()


def random_training_split(root, n: int, h: int, w: int, classes: int):
    """n random (h, w) images and label maps as PNG files under `root`: (index rows, split)."""
    rng = np.random.default_rng(0)
    (root / "im").mkdir()
    (root / "lab").mkdir()
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            root / "im" / f"{i}.png")
        Image.fromarray(rng.integers(0, classes, (h, w), dtype=np.uint8)).save(
            root / "lab" / f"{i}.png")
        rows.append(IndexRow(i, f"{i}.png", f"{i}.png", h, w))
    return rows, Split("train", "train", str(root / "im"), str(root / "lab"), "", "")


def test_world_batches_are_the_squashed_reads_of_before(tmp_path):
    """params.yaml's world (crop 64, scale 1/1, no flip or colour) on 64x64 images: the
    batch is byte for byte what `read_rgb(path, (64, 64))` gave before augmentation."""
    rows, split = random_training_split(tmp_path, 3, 64, 64, 4)
    p = ProposalParams(crop_size=64, scale_min=1.0, scale_max=1.0, flip=False,
                       color_jitter=False)
    lut = torch.arange(256)
    images, targets = batch_loader(rows, split, lut, p, torch.device("cpu"))(
        np.array([2, 0]), step=5)
    for b, i in enumerate([2, 0]):
        old = read_rgb(tmp_path / "im" / f"{i}.png", (64, 64)).copy()
        assert torch.equal(images[b], torch.from_numpy(old).permute(2, 0, 1).float() / 255)
        old_t = segment_targets(torch.from_numpy(
            read_labels(tmp_path / "lab" / f"{i}.png", (64, 64)).copy()), lut, (16, 16))
        for k in old_t:
            assert torch.equal(targets[b][k], old_t[k]), k


def test_a_batch_from_the_decoded_cache_equals_one_read_from_the_files(tmp_path):
    """Augmentation on (scale, flip, colour jitter): a later epoch's batch, built from the
    loader's cached arrays (pipeline/data/decoded_cache.py), is the batch a fresh loader
    reads from the files."""
    rows, split = random_training_split(tmp_path, 4, 48, 80, 5)
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


def test_loader_processes_hand_the_batches_of_the_plain_loader(tmp_path):
    """train_proposals' loader processes (proposals.loader_workers) build each step's batch
    ahead of it: the same batches, in step order, as the loader in the training process,
    for one rank of two as for one process."""
    from pipeline.proposals.training_loop import StepPlan, batch_indices

    rows, split = random_training_split(tmp_path, 6, 48, 80, 5)
    p = ProposalParams(crop_size=64, scale_min=0.5, scale_max=2.0, flip=True,
                       color_jitter=True)
    lut, cpu = torch.arange(256), torch.device("cpu")
    for rank, world in [(0, 1), (1, 2)]:
        plan = StepPlan(len(rows), 4, 0, start=3, steps=9, rank=rank, world=world)
        assert [s for s, _ in plan] == list(range(3, 9))
        assert np.array_equal(plan[2][1], batch_indices(6, 4, 0, 5)[rank::world])
        plain = [batch_loader(rows, split, lut, p, cpu)(idx, step) for step, idx in plan]
        ahead = list(batch_loader(rows, split, lut, p, cpu, workers=2).stream(plan))
        assert len(ahead) == len(plain) == 6
        for (images, targets), (want_images, want_targets) in zip(ahead, plain):
            assert torch.equal(images, want_images)
            for t, w in zip(targets, want_targets):
                assert t.keys() == w.keys() and all(torch.equal(t[k], w[k]) for k in t)
