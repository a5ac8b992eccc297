"""Masked-crop webdataset shards (OVSeg §3.2's mask-noun pairs), byte-identical across runs.

Samples arrive in image order (streaming: each image is read once). Each goes to the shard
a seeded permutation assigns it, so every shard holds a random draw of the images while
the writer keeps one open tar per shard. Tar members have mtime 0 and fixed owner and
mode; keys have no dots. Fields: `jpg` (the unfilled crop), `mask.png` (binary crop
mask), `txt` (the noun), `json` (metadata).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import webdataset as wds


def shard_of_samples(n_samples: int, n_shards: int, seed: int) -> np.ndarray:
    """(n_samples,) shard index of each sample: a seeded permutation cut into n_shards
    nearly equal runs."""
    order = np.random.default_rng(seed).permutation(n_samples)
    shard = np.empty(n_samples, dtype=np.int64)
    shard[order] = np.arange(n_samples) * n_shards // max(n_samples, 1)
    return shard


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def sample_key(image_id: int, caption_index: int, noun_index: int) -> str:
    """Dot-free key: webdataset splits member names at the first dot."""
    return f"{image_id:012d}_{caption_index + 1:02d}_{noun_index:03d}"


class ShardSet:
    """`n_shards` tar files written side by side under temporary names; `close()` renames
    them into place and returns the sample count of each."""

    def __init__(self, out_dir: str | Path, n_shards: int):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = [self.out_dir / shard_name(i) for i in range(n_shards)]
        self.files = [open(p.with_name(f".{p.name}.tmp"), "wb") for p in self.paths]
        self.writers = [wds.TarWriter(f, user="ovseg", group="ovseg", mode=0o444,
                                      encoder=False, mtime=0) for f in self.files]
        self.counts = [0] * n_shards

    def write(self, shard: int, key: str, jpg: bytes, mask_png: bytes, noun: str,
              meta: dict) -> None:
        self.writers[shard].write({
            "__key__": key, "jpg": jpg, "mask.png": mask_png, "txt": noun.encode(),
            "json": json.dumps(meta, sort_keys=True).encode()})
        self.counts[shard] += 1

    def close(self) -> list[int]:
        for w, f in zip(self.writers, self.files):
            w.close()
            f.close()  # a writer given a file object may leave it open
        for p in self.paths:
            os.replace(p.with_name(f".{p.name}.tmp"), p)
        return self.counts

    def abort(self) -> None:
        for w, f in zip(self.writers, self.files):
            w.close()
            f.close()
        for p in self.paths:
            p.with_name(f".{p.name}.tmp").unlink(missing_ok=True)
