
import numpy as np
import webdataset as wds

from pipeline.data.image_io import encode_jpeg, encode_png
from pipeline.data.shard_writer import ShardSet, sample_key, shard_of_samples


def write_shards(out, n=23, shards=3, seed=0):
    g = np.random.default_rng(1)
    assign = shard_of_samples(n, shards, seed)
    s = ShardSet(out, shards)
    for i in range(n):
        crop = g.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        mask = (g.random((16, 16)) > 0.5).astype(np.uint8) * 255
        s.write(int(assign[i]), sample_key(100 + i // 2, i % 2, i), encode_jpeg(crop),
                encode_png(mask), f"noun{i}", {"image_id": 100 + i // 2, "i": i})
    return s.close()


def test_shard_assignment_is_seeded_and_balanced():
    a = shard_of_samples(100, 7, seed=3)
    assert np.array_equal(a, shard_of_samples(100, 7, seed=3))
    assert not np.array_equal(a, shard_of_samples(100, 7, seed=4))
    counts = np.bincount(a, minlength=7)
    assert counts.sum() == 100 and counts.max() - counts.min() <= 1


def test_shards_are_byte_identical_and_load_with_webdataset(tmp_path):
    sizes = write_shards(tmp_path / "a")
    assert write_shards(tmp_path / "b") == sizes and sum(sizes) == 23
    for i in range(3):
        name = f"shard-{i:06d}.tar"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    urls = [str(tmp_path / "a" / f"shard-{i:06d}.tar") for i in range(3)]
    ds = wds.WebDataset(urls, shardshuffle=False).decode("rgb8").to_tuple(
        "jpg", "mask.png", "txt", "json")
    seen = []
    for jpg, mask, txt, meta in ds:
        assert jpg.shape == (16, 16, 3) and mask.shape[:2] == (16, 16)
        assert txt == f"noun{meta['i']}"
        seen.append(meta["i"])
    assert sorted(seen) == list(range(23))
    assert "." not in sample_key(5, -1, 3)
