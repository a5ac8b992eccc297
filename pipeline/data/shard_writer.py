"""Masked-crop webdataset shards (OVSeg §3.2's mask-noun pairs), byte-identical across runs
and across process counts.

Samples arrive in image order (streaming: each image is read once). Each goes to the shard
a seeded permutation assigns it, so every shard holds a random draw of the images. A shard
is a plain tar (POSIX pax headers, as Python's tarfile writes): members with mtime 0 and
fixed owner and mode, keys without dots (webdataset splits member names at the first dot).
Fields: `jpg` (the unfilled crop), `mask.png` (binary crop mask), `txt` (the noun), `json`
(metadata).

Because tar members are self-contained 512-byte-aligned blocks, a shard is the
concatenation of its members in sample order and the end-of-archive blocks. write_shards
keeps each chunk's members grouped by shard (`ShardPieces`) and concatenates the chunks'
pieces per shard (`merge_shard_pieces`): the same bytes as one `ShardSet` pass.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np

from pipeline.data.files import json_bytes

OWNER = "ovseg"
PIECES_FILE, PIECES_INDEX = "members.bin", "members.json"


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


def tar_member(name: str, data: bytes) -> bytes:
    """One tar member: its header and its data, padded to whole 512-byte blocks."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uname = info.gname = OWNER
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return header + data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def sample_members(key: str, jpg: bytes, mask_png: bytes, noun: str, meta: dict) -> bytes:
    """The tar members of one sample, in webdataset's field order."""
    fields = (("jpg", jpg), ("mask.png", mask_png), ("txt", noun.encode()),
              ("json", json.dumps(meta, sort_keys=True).encode()))
    return b"".join(tar_member(f"{key}.{ext}", data) for ext, data in fields)


def tar_end(members_size: int) -> bytes:
    """End of archive after `members_size` bytes of members: two zero blocks, then zeros
    to a whole 10240-byte record (what tarfile writes on close)."""
    size = members_size + 2 * tarfile.BLOCKSIZE
    return b"\0" * (2 * tarfile.BLOCKSIZE + (-size % tarfile.RECORDSIZE))


class ShardSet:
    """`n_shards` tar files written side by side in one pass under temporary names;
    `close()` renames them into place and returns the sample count of each."""

    def __init__(self, out_dir: str | Path, n_shards: int):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = [self.out_dir / shard_name(i) for i in range(n_shards)]
        self.files = [open(p.with_name(f".{p.name}.tmp"), "wb") for p in self.paths]
        self.counts = [0] * n_shards
        self.sizes = [0] * n_shards

    def write(self, shard: int, key: str, jpg: bytes, mask_png: bytes, noun: str,
              meta: dict) -> None:
        data = sample_members(key, jpg, mask_png, noun, meta)
        self.files[shard].write(data)
        self.sizes[shard] += len(data)
        self.counts[shard] += 1

    def close(self) -> list[int]:
        for f, size in zip(self.files, self.sizes):
            f.write(tar_end(size))
            f.close()
        for p in self.paths:
            os.replace(p.with_name(f".{p.name}.tmp"), p)
        return self.counts

    def abort(self) -> None:
        for f, p in zip(self.files, self.paths):
            f.close()
            p.with_name(f".{p.name}.tmp").unlink(missing_ok=True)


class ShardPieces:
    """One chunk's samples, grouped by shard in memory (a chunk of images holds a few
    thousand crops at most), saved as one members file and its index."""

    def __init__(self):
        self.pieces: dict[int, list[bytes]] = {}

    def write(self, shard: int, key: str, jpg: bytes, mask_png: bytes, noun: str,
              meta: dict) -> None:
        self.pieces.setdefault(shard, []).append(sample_members(key, jpg, mask_png, noun, meta))

    def save(self, folder: Path) -> None:
        """members.bin: each shard's members in shard order; members.json: shard ->
        [offset, length, samples]."""
        index, offset = {}, 0
        with open(folder / PIECES_FILE, "wb") as f:
            for shard in sorted(self.pieces):
                data = b"".join(self.pieces[shard])
                f.write(data)
                index[str(shard)] = [offset, len(data), len(self.pieces[shard])]
                offset += len(data)
        (folder / PIECES_INDEX).write_bytes(json_bytes(index))


def merge_shard_pieces(chunk_folders: list[Path], n_shards: int, out_dir: Path) -> list[int]:
    """Each shard of `out_dir` as the concatenation of its pieces in chunk order, then the
    end of archive; returns the sample count of each shard."""
    indexes = [json.loads((f / PIECES_INDEX).read_text()) for f in chunk_folders]
    counts = []
    for shard in range(n_shards):
        size = count = 0
        with open(out_dir / shard_name(shard), "wb") as out:
            for folder, index in zip(chunk_folders, indexes):
                if str(shard) not in index:
                    continue
                offset, length, samples = index[str(shard)]
                with open(folder / PIECES_FILE, "rb") as f:
                    f.seek(offset)
                    out.write(f.read(length))
                size, count = size + length, count + samples
            out.write(tar_end(size))
        counts.append(count)
    return counts
