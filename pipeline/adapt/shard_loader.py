"""Training batches from the masked-crop shards (write_shards), for FT and MPT.

Each sample's crop and mask go through one random resized crop together (OVSeg: scale
0.9-1.0); the background is filled after that, so the fill follows the augmented mask,
and MPT's patch mask is later computed from the same augmented mask.

The sample order is a function of (seed, epoch) alone: shards are read in a seeded order
through a seeded shuffle buffer, and each sample's augmentation is seeded by (seed,
epoch, position in the epoch). So
- a run resumed at step k sees exactly the batches an uninterrupted run sees from step k
  (the skipped samples are read as bytes, never decoded);
- under DDP, rank r of R takes every R-th sample of each global batch, so the global
  batch, and the update, does not depend on the number of processes. Every process reads
  the shards' bytes, which is cheap next to decoding, and decodes only its own samples.
- with loader workers, worker w builds batches w, w + W, ..., which the DataLoader hands
  out in order.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.clip.masked_crops import normalize
from pipeline.data.loader_processes import batches_in_order

SIZES_FILE = "sizes.json"


@dataclass(frozen=True)
class ShardList:
    paths: tuple[str, ...]
    samples: int

    @classmethod
    def from_dir(cls, folder: str | Path) -> ShardList:
        folder = Path(folder)
        sizes_path = folder / SIZES_FILE
        if not sizes_path.is_file():
            raise FileNotFoundError(f"no {SIZES_FILE} in {folder}: the shards are missing or "
                                    "half-written (run `dvc repro write_shards`)")
        sizes = json.loads(sizes_path.read_text())
        missing = [name for name in sizes if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: shard {missing[0]} listed in {SIZES_FILE} "
                                    "does not exist (run `dvc repro write_shards`)")
        return cls(tuple(str(folder / name) for name in sorted(sizes)),
                   int(sum(sizes.values())))


def noun_vocabulary(shards: ShardList) -> list[str]:
    """Sorted distinct nouns (`txt` fields) of all shards: the text side of the training
    pairs, embedded once since the text tower is frozen."""
    return sorted({data.decode() for path in shards.paths for name, data in tar_members(path)
                   if name.endswith(".txt")})


@dataclass(frozen=True)
class Augment:
    size: int  # output side (CLIP's input size)
    scale: tuple[float, float] = (0.9, 1.0)  # area fraction of the random resized crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range (torchvision's)
    fill: str = "mean"  # background after augmentation: mean | zero
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # CLIP pixel mean, [0, 1] units
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


def random_resized_box(rng: np.random.Generator, height: int, width: int,
                       scale: tuple[float, float], ratio: tuple[float, float]
                       ) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a box covering a random fraction `scale` of the area with an
    aspect ratio in `ratio` (log-uniform), as torchvision's RandomResizedCrop draws it;
    the whole image when 10 draws do not fit."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return 0, 0, height, width


def augment_crop_and_mask(image: Image.Image, mask: Image.Image,
                          box: tuple[int, int, int, int], size: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Cut the same box from an RGB crop and its mask ("L") and resize both to (size, size):
    bicubic for the crop, nearest for the mask. Returns (size, size, 3) uint8 and
    (size, size) bool. One PIL call each, which crops and resizes together."""
    top, left, h, w = box
    pil_box = (left, top, left + w, top + h)
    crop = image.resize((size, size), Image.Resampling.BICUBIC, box=pil_box)
    mask = mask.resize((size, size), Image.Resampling.NEAREST, box=pil_box)
    return np.asarray(crop), np.asarray(mask) > 127


def fill_background(crops: torch.Tensor, masks: torch.Tensor, fill: str,
                    color: torch.Tensor) -> torch.Tensor:
    """crops (B, 3, S, S) with the pixels outside masks (B, S, S) set to `color` (3,)
    ("mean") or 0 ("zero")."""
    if fill == "zero":
        return crops * masks[:, None]
    if fill == "mean":
        return torch.where(masks[:, None], crops, color.to(crops).view(1, 3, 1, 1))
    raise ValueError(f"fill must be 'mean' or 'zero', got {fill!r}")


def decode_sample(sample: dict, aug: Augment, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Raw shard sample -> augmented crop (S, S, 3) uint8, unfilled, and its mask (S, S)."""
    image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB")
    mask = Image.open(io.BytesIO(sample["mask.png"])).convert("L")
    box = random_resized_box(rng, mask.height, mask.width, aug.scale, aug.ratio)
    return augment_crop_and_mask(image, mask, box, aug.size)


def clip_inputs(crops: np.ndarray, masks: np.ndarray, aug: Augment
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented crops (B, S, S, 3) uint8 and masks (B, S, S) bool -> the background-filled,
    normalised CLIP input (B, 3, S, S) float32 and the masks as a tensor."""
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    m = torch.from_numpy(masks)
    mean, std = torch.tensor(aug.mean), torch.tensor(aug.std)
    x = fill_background(x, m, aug.fill, mean)
    return normalize(x, mean, std), m


TAR_BLOCK = 512


def tar_members(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular file of a tar, in order. A plain reader of the ustar
    headers: Python's tarfile spends ~0.1 ms per member, too slow to stream COCO-scale
    shards through every loader process. GNU long names and pax paths are understood."""
    long_name = None
    with open(path, "rb") as f:
        while True:
            header = f.read(TAR_BLOCK)
            if len(header) < TAR_BLOCK or header == bytes(TAR_BLOCK):
                return
            size_field = header[124:136]
            if size_field[0] & 0x80:  # base-256 size (files over 8 GiB)
                size = int.from_bytes(size_field[1:], "big")
            else:
                size = int(size_field.strip(b"\0 ") or b"0", 8)
            kind = header[156:157]
            data = f.read(size)
            if len(data) < size:
                raise ValueError(f"{path}: truncated tar (member data ends early); rewrite "
                                 "the shards with `dvc repro write_shards`")
            f.seek(-size % TAR_BLOCK, 1)
            if kind == b"L":  # GNU long name of the next member
                long_name = data.rstrip(b"\0").decode()
                continue
            if kind == b"x":  # pax header: take its path record
                for record in data.decode().splitlines():
                    _, _, field = record.partition(" ")
                    if field.startswith("path="):
                        long_name = field[5:]
                continue
            name = long_name
            long_name = None
            if name is None:
                prefix = header[345:500].rstrip(b"\0").decode()
                name = header[:100].rstrip(b"\0").decode()
                name = f"{prefix}/{name}" if prefix else name
            if kind in (b"0", b"\0"):
                yield name, data


def shard_samples(path: str | Path) -> Iterator[dict]:
    """Samples of one webdataset shard: members grouped by key (the name up to the first
    dot of its last path part), as {"__key__": key, field: bytes}."""
    sample: dict = {}
    for name, data in tar_members(path):
        folder, _, base = name.rpartition("/")
        key, _, field = base.partition(".")
        key = f"{folder}/{key}" if folder else key
        if sample and sample["__key__"] != key:
            yield sample
            sample = {}
        sample["__key__"] = key
        sample[field] = data
    if sample:
        yield sample


def raw_samples(shards: ShardList, seed: int, epoch: int, buffer: int) -> Iterator[dict]:
    """Undecoded samples of one epoch: shards in a seeded order, then a seeded shuffle
    buffer of `buffer` samples."""
    rng = np.random.default_rng([seed, epoch])
    pool: list[dict] = []
    for i in rng.permutation(len(shards.paths)):
        for sample in shard_samples(shards.paths[i]):
            if len(pool) < buffer:
                pool.append(sample)
                continue
            k = int(rng.integers(len(pool)))
            pool[k], sample = sample, pool[k]
            yield sample
    while pool:
        yield pool.pop(int(rng.integers(len(pool))))


@dataclass
class Batch:
    step: int
    images: torch.Tensor  # (b, 3, S, S) normalised
    masks: torch.Tensor  # (b, S, S) bool, the augmented crop masks
    nouns: list[str]

    def pin_memory(self) -> Batch:  # called by a DataLoader with pin_memory=True
        return Batch(self.step, self.images.pin_memory(), self.masks.pin_memory(), self.nouns)


class ShardBatches(torch.utils.data.IterableDataset):
    """This process's part of global batches `start_step` .. `steps - 1`; epochs drop the
    last incomplete global batch."""

    def __init__(self, shards: ShardList, aug: Augment, batch_size: int, steps: int,
                 seed: int, start_step: int = 0, rank: int = 0, world: int = 1,
                 buffer: int = 2000):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} must be a multiple of the number of "
                             f"processes ({world})")
        self.steps_per_epoch = shards.samples // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{shards.samples} samples in the shards do not fill one batch of "
                             f"{batch_size}: lower the batch size or mine more pairs")
        self.shards, self.aug, self.batch_size = shards, aug, batch_size
        self.steps, self.seed, self.start_step = steps, seed, start_step
        self.rank, self.world, self.buffer = rank, world, buffer

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        step = self.start_step
        while step < self.steps:
            epoch = step // self.steps_per_epoch
            epoch_end = min(self.steps, (epoch + 1) * self.steps_per_epoch)
            first = epoch * self.steps_per_epoch
            pending: list[tuple[int, dict]] = []
            for pos, sample in enumerate(raw_samples(self.shards, self.seed, epoch,
                                                     self.buffer)):
                b = first + pos // self.batch_size
                if b >= epoch_end:
                    break
                if b < step or b % workers != worker or pos % self.world != self.rank:
                    continue
                pending.append((pos, sample))
                if len(pending) == self.batch_size // self.world:
                    yield self._decode(b, epoch, pending)
                    pending = []
            step = epoch_end

    def _decode(self, step: int, epoch: int, samples: list[tuple[int, dict]]) -> Batch:
        crops, masks = zip(*(decode_sample(sample, self.aug,
                                           np.random.default_rng([self.seed, epoch, pos]))
                             for pos, sample in samples))
        images, masks = clip_inputs(np.stack(crops), np.stack(masks), self.aug)
        return Batch(step, images, masks, [sample["txt"].decode() for _, sample in samples])


def batch_loader(dataset: ShardBatches, workers: int, pin_memory: bool = False):
    """Batches in step order, built by `workers` loader processes (0: in this process)."""
    return batches_in_order(dataset, workers, pin_memory)
