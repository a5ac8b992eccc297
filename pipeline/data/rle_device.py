"""COCO run-length encoding with torch ops, on whatever device the masks are on (issue 31):
the proposals' masks go from the network to parquet bytes without a trip through
pycocotools' one-mask-at-a-time C loop, and come back to masks the same way. The bytes are
pycocotools' own (`mask.encode` / `mask.decode`), so the parquet stays readable by it.

COCO RLE reads a (H, W) mask column by column (Fortran order) and stores the lengths of
its alternating runs, zeros first (a mask starting with 1 begins with a 0-length run).
The compressed string stores each count, less the count two before it from the fourth
on, in 5-bit groups, lowest first, 0x20 marking "more follows", each group plus 48 as a
character (pycocotools' `rleToString`).

Runs on the device: run boundaries are where a pixel differs from the one before (`diff`
and `nonzero` over the whole batch at once), counts their differences; decoding is one
`repeat_interleave`. Only the counts cross to the host, where the string is built with
numpy over all counts at once. On the CPU pycocotools stays faster (100 masks of 480 x 640
on 2 cores: encode 45 ms against 215 ms here, decode 28 against 246): this is for masks
that are on a GPU, where copying them to the host is the cost: extract_proposals encodes
the net's masks here, and mine_pairs decodes the proposals here, when they run on a GPU
(proposal_table.encode_masks / mask_decoder).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.distributed.transfers import to_device

_GROUPS = 7  # 5-bit groups: enough for any count difference of a 2^31-pixel mask


def used_on(device: torch.device | str) -> bool:
    """Whether the stages encode and decode their masks here on `device`: anywhere but the
    CPU, where pycocotools on numpy masks is faster."""
    return torch.device(device).type != "cpu"


@dataclass(frozen=True)
class RunLengths:
    """(N, H, W) masks held as their run lengths on the host (`rle_counts` of masks on a
    device): extract_proposals counts a batch's masks, queues the next batch's forward, and
    builds the strings from these while the net runs."""

    counts: list[np.ndarray]  # N int64 arrays, COCO's run lengths
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.counts), self.height, self.width)

    def __len__(self) -> int:
        return len(self.counts)


def rle_counts(masks: torch.Tensor) -> list[np.ndarray]:
    """(N, H, W) bool masks on any device -> N int64 count arrays, COCO's run lengths of
    each mask read column by column (zeros first)."""
    n, h, w = masks.shape
    length = h * w
    flat = masks.transpose(1, 2).reshape(n, length)  # (N, W*H): Fortran order per mask
    if n == 0:
        return []
    if length == 0:
        return [np.zeros(1, dtype=np.int64) for _ in range(n)]
    # a change at column j: pixel j differs from pixel j-1 (pixel -1 counts as 0)
    before = torch.cat([flat.new_zeros((n, 1)), flat[:, :-1]], dim=1)
    rows, cols = torch.nonzero(flat != before, as_tuple=True)
    starts = torch.arange(n, device=flat.device) * length
    bounds = torch.cat([starts, rows * length + cols,
                        torch.tensor([n * length], device=flat.device)])
    counts = torch.diff(torch.sort(bounds).values)  # (N + changes,)
    per_mask = (torch.bincount(rows, minlength=n) + 1).cpu().tolist()
    return [c.numpy() for c in torch.split(counts.cpu(), per_mask)]


def _segments(lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """For items laid end to end in segments of `lengths`: each item's segment number and
    its position within its segment."""
    lengths = np.asarray(lengths, dtype=np.int64)
    segment = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return segment, np.arange(int(lengths.sum())) - starts[segment]


def counts_strings(counts: list[np.ndarray]) -> list[bytes]:
    """pycocotools' compressed strings of several masks' counts (int64 arrays), built over
    all their counts at once (a loop of 7 numpy passes, not one per mask)."""
    if not counts:
        return []
    lengths = [len(c) for c in counts]
    every = np.concatenate(counts).astype(np.int64)
    _, position = _segments(lengths)
    x = every.copy()
    later = np.nonzero(position >= 3)[0]  # from a mask's fourth count on:
    x[later] -= every[later - 2]  # less the count two before
    chars = np.zeros((len(x), _GROUPS), dtype=np.uint8)
    keep = np.zeros((len(x), _GROUPS), dtype=bool)
    active = np.ones(len(x), dtype=bool)
    for g in range(_GROUPS):
        c = x & 0x1F
        x = x >> 5  # arithmetic shift: negatives stay negative, as in C
        more = np.where(c & 0x10, x != -1, x != 0) & active
        chars[:, g] = np.where(more, c | 0x20, c) + 48
        keep[:, g] = active
        active = more
    text = chars[keep].tobytes()  # row by row: each count's characters, masks in order
    ends = np.cumsum(np.add.reduceat(keep.sum(axis=1), np.cumsum([0] + lengths[:-1])))
    return [text[a:b] for a, b in zip([0, *ends[:-1].tolist()], ends.tolist())]


def counts_string(counts: np.ndarray) -> bytes:
    """pycocotools' compressed string of one mask's counts (int64 array)."""
    return counts_strings([np.asarray(counts)])[0]


def encode(masks: torch.Tensor) -> list[bytes]:
    """(N, H, W) bool masks on any device -> N compressed COCO count strings, equal to
    pycocotools' `mask.encode(np.asfortranarray(...))["counts"]`."""
    return counts_strings(rle_counts(masks))


def strings_counts(texts: list[bytes]) -> list[np.ndarray]:
    """The counts of several compressed COCO strings (the inverse of `counts_strings`),
    parsed over all their characters at once."""
    if not texts:
        return []
    b = np.frombuffer(b"".join(texts), dtype=np.uint8).astype(np.int64) - 48
    last = (b & 0x20) == 0  # the last character of each count (a string ends with one)
    first = np.concatenate([[True], last[:-1]])
    count_starts = np.nonzero(first)[0]
    count_of = np.cumsum(first) - 1  # which count each character is in
    group = np.arange(len(b)) - count_starts[count_of]  # 5-bit group within its count
    x = np.add.reduceat((b & 0x1F) << (5 * group), count_starts)  # groups: disjoint bits
    ends = np.nonzero(last)[0]
    negative = (b[ends] & 0x10) != 0  # sign-extend from the last group
    x[negative] |= -1 << (5 * (group[ends[negative]] + 1))
    # counts per string: the 'last' characters in each string's span
    spans = np.cumsum([0] + [len(t) for t in texts])
    lengths = np.diff(np.searchsorted(ends, spans)).tolist()
    segment, position = _segments(lengths)
    # undo the differences: within a mask, the counts from index 1 (and from 2) of one
    # parity add up; index 0 stands alone
    counts = x.copy()
    run = np.nonzero(position >= 1)[0]
    key = segment[run] * 2 + position[run] % 2
    order = run[np.argsort(key, kind="stable")]  # by (mask, parity), then position
    sums = np.cumsum(x[order])
    sorted_key = np.sort(key, kind="stable")
    new = np.concatenate([[True], sorted_key[1:] != sorted_key[:-1]])
    segment_start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    counts[order] = sums - (sums - x[order])[segment_start]  # less the sum before it
    return np.split(counts, np.cumsum(lengths)[:-1])


def string_counts(text: bytes) -> np.ndarray:
    """The counts of one compressed COCO string (the inverse of `counts_string`)."""
    return strings_counts([text])[0]


def decode(texts: list[bytes], height: int, width: int,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """N compressed COCO strings of (height, width) masks -> (N, height, width) bool on
    `device`, equal to pycocotools' `mask.decode`."""
    if not texts:
        return torch.zeros((0, height, width), dtype=torch.bool, device=device)
    counts = strings_counts(texts)
    sizes = [int(c.sum()) for c in counts]
    bad = [i for i, s in enumerate(sizes) if s != height * width]
    if bad:
        raise ValueError(f"RLE {bad[0]} covers {sizes[bad[0]]} pixels, not {height} x "
                         f"{width} = {height * width} (a mask of another size?)")
    lengths = np.concatenate(counts)
    _, run = _segments([len(c) for c in counts])
    values = run % 2 == 1  # run k of a mask: 0s for even k, 1s for odd k
    # no device sync on the way (mine_pairs decodes on its reader thread while CLIP runs):
    # pinned, non-blocking copies, and the output size given, not read back
    flat = torch.repeat_interleave(to_device(values, device), to_device(lengths, device),
                                   output_size=len(texts) * height * width)  # (N * W * H,)
    return flat.reshape(len(texts), width, height).transpose(1, 2)
