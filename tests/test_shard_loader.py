import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.adapt.shard_loader import (
    Augment,
    ShardBatches,
    ShardList,
    augment_crop_and_mask,
    batch_loader,
    clip_inputs,
    noun_vocabulary,
    random_resized_box,
    shard_samples,
    tar_members,
)
from pipeline.data.shard_writer import ShardSet, shard_of_samples

NOUNS = ["cat", "dog", "bus", "sky", "grass"]


def write_toy_shards(folder, n=40, n_shards=3, size=16, seed=0):
    """n samples: crop colour and mask position vary with the sample number."""
    from pipeline.data.files import write_json
    from pipeline.data.image_io import encode_jpeg, encode_png
    from pipeline.data.shard_writer import shard_name

    rng = np.random.default_rng(seed)
    assign = shard_of_samples(n, n_shards, seed)
    shards = ShardSet(folder, n_shards)
    for i in range(n):
        crop = np.full((size, size, 3), (i * 6) % 256, dtype=np.uint8)
        crop[..., 1] = rng.integers(0, 255)
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[2 + i % 5:12, 3:13] = 255
        shards.write(int(assign[i]), f"{i:06d}", encode_jpeg(crop, 95), encode_png(mask),
                     NOUNS[i % len(NOUNS)], {"i": i})
    sizes = shards.close()
    write_json(folder / "sizes.json", {shard_name(k): c for k, c in enumerate(sizes)})
    return ShardList.from_dir(folder)


def test_tar_reader_matches_python_tarfile(tmp_path):
    path = tmp_path / "t.tar"
    long_name = "d/" + "x" * 150 + ".txt"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("a.jpg", b"\x01" * 700), (long_name, b"long"), ("b.txt", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    pax = tmp_path / "p.tar"
    with tarfile.open(pax, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("p/" + "y" * 120 + ".png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    for p in (path, pax):
        with tarfile.open(p) as tar:
            want = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
        assert list(tar_members(p)) == want


def test_shard_samples_group_fields_by_key(tmp_path):
    shards = write_toy_shards(tmp_path, n=12)
    samples = [s for p in shards.paths for s in shard_samples(p)]
    assert len(samples) == shards.samples == 12
    assert all(set(s) == {"__key__", "jpg", "mask.png", "txt", "json"} for s in samples)
    assert noun_vocabulary(shards) == sorted(NOUNS)


@pytest.mark.parametrize("seed", range(5))
def test_random_resized_box_stays_in_scale_and_ratio(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        top, left, h, w = random_resized_box(rng, 64, 48, (0.9, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 64 and 0 <= left and left + w <= 48
        assert 0.85 <= h * w / (64 * 48) <= 1.0
        assert (h, w) == (64, 48) or 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_augmentation_moves_crop_and_mask_together():
    """A crop whose brightness IS its mask: after the joint crop-resize, the bright pixels
    and the mask still coincide (away from the bicubic edge)."""
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:30, 12:35] = True
    image = Image.fromarray(np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8))
    crop, crop_mask = augment_crop_and_mask(image, Image.fromarray(mask.astype(np.uint8) * 255),
                                            (3, 4, 34, 33), 64)
    assert crop.shape == (64, 64, 3) and crop_mask.shape == (64, 64)
    bright = crop[..., 0] > 127
    assert (bright == crop_mask).mean() > 0.97
    # the box (top 3, left 4, 34 x 33) maps mask row 5 to output row (5 - 3) * 64 / 34
    rows = np.flatnonzero(crop_mask.any(axis=1))
    assert abs(rows[0] - 2 * 64 / 34) <= 1


def test_fill_follows_the_augmented_mask():
    crops = np.full((2, 8, 8, 3), 200, dtype=np.uint8)
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[:, 2:6, 2:6] = True
    aug = Augment(8, fill="mean", mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    x, m = clip_inputs(crops, masks, aug)
    assert torch.equal(m, torch.from_numpy(masks))
    # background = the mean colour, which normalises to exactly 0
    assert torch.all(x.permute(0, 2, 3, 1)[~m] == 0)
    inside = (200 / 255 - torch.tensor([0.5, 0.4, 0.3])) / 0.2
    assert torch.allclose(x.permute(0, 2, 3, 1)[m], inside.expand(int(m.sum()), 3), atol=1e-6)
    xz, _ = clip_inputs(crops, masks, Augment(8, fill="zero", mean=(0.5, 0.4, 0.3)))
    assert torch.allclose(xz.permute(0, 2, 3, 1)[~m], torch.tensor([-0.5, -0.4, -0.3]))


def batches(shards, **kw):
    args = dict(aug=Augment(16), batch_size=8, steps=9, seed=3, buffer=10)
    args.update(kw)
    return list(ShardBatches(shards, **args))


def test_batches_are_seeded_and_resume_at_any_step(tmp_path):
    shards = write_toy_shards(tmp_path)  # 40 samples: 5 steps per epoch
    full = batches(shards)
    assert [b.step for b in full] == list(range(9))
    again = batches(shards)
    for a, b in zip(full, again):
        assert torch.equal(a.images, b.images) and a.nouns == b.nouns
    resumed = batches(shards, start_step=6)
    assert [b.step for b in resumed] == [6, 7, 8]
    for a, b in zip(full[6:], resumed):
        assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    # every sample once per epoch; the next epoch is another order
    epoch0 = [n for b in full[:5] for n in b.nouns]
    assert sorted(epoch0) == sorted(NOUNS * 8)
    assert [b.nouns for b in full[5:9]] != [b.nouns for b in full[:4]]


def test_ranks_split_each_global_batch(tmp_path):
    shards = write_toy_shards(tmp_path)
    whole = batches(shards)
    r0, r1 = batches(shards, rank=0, world=2), batches(shards, rank=1, world=2)
    for w, a, b in zip(whole, r0, r1):
        assert torch.equal(w.images[0::2], a.images) and torch.equal(w.images[1::2], b.images)
        assert w.nouns[0::2] == a.nouns and w.nouns[1::2] == b.nouns


def test_loader_workers_give_the_same_batches_in_order(tmp_path):
    shards = write_toy_shards(tmp_path)
    dataset = ShardBatches(shards, Augment(16), 8, 7, seed=1, buffer=10)
    single = list(batch_loader(dataset, 0))
    multi = list(batch_loader(dataset, 2))
    assert [b.step for b in multi] == list(range(7))
    for a, b in zip(single, multi):
        assert torch.equal(a.images, b.images) and a.nouns == b.nouns


def test_too_few_samples_for_a_batch_is_a_clear_error(tmp_path):
    shards = write_toy_shards(tmp_path, n=6)
    with pytest.raises(ValueError, match="do not fill one batch"):
        ShardBatches(shards, Augment(16), 8, 3, seed=0)
    with pytest.raises(FileNotFoundError, match="write_shards"):
        ShardList.from_dir(tmp_path / "nowhere")
