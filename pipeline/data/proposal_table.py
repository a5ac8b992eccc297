"""The proposals parquet (OVSeg §3.1's proposals): one row per proposal mask, masks as COCO RLE.

Columns: `image_id` int64, `proposal_id` int32, `height`/`width` int32, `rle` binary
(pycocotools' compressed counts), `bbox` list<float32>[4] (x, y, w, h), `area` int64,
`score` float32 (1 - p(no object); 1 for ground-truth segments), `label` int32 (the
ground-truth class for `proposals.source: gt`, -1 for predicted proposals).

Masks come as numpy arrays (pycocotools encodes and decodes them on the host) or, on a GPU,
as torch tensors that stay on the device: `rle_device` runs the lengths there and only the
counts cross to the host (issue 31), with the same strings, so the bytes never depend on
where the masks were.

Files are written a row group at a time (streaming: a COCO-scale run never holds more
than one row group), rows sorted by (image_id, proposal_id), with no timestamps or
absolute paths, so the same proposals give the same bytes. Read them with plain pandas:
`pd.read_parquet("data/proposals")`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pycocotools import mask as mask_utils

from pipeline.data import rle_device
from pipeline.data.segments import label_segments

PROPOSAL_SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("proposal_id", pa.int32()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("rle", pa.binary()),
    ("bbox", pa.list_(pa.float32(), 4)),
    ("area", pa.int64()),
    ("score", pa.float32()),
    ("label", pa.int32()),
])


def encode_masks(masks: np.ndarray | torch.Tensor | rle_device.RunLengths) -> list[bytes]:
    """(N, H, W) bool -> N COCO RLE count strings: a numpy array by pycocotools (it needs
    Fortran uint8), a tensor with torch ops where it lies, run lengths already counted
    from the strings alone (the same strings)."""
    if isinstance(masks, rle_device.RunLengths):
        return rle_device.counts_strings(masks.counts)
    if isinstance(masks, torch.Tensor):
        return rle_device.encode(masks)
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [r["counts"] for r in rles]


def decode_masks(rles: list[bytes], height: int, width: int) -> np.ndarray:
    """N RLE count strings of one image -> (N, H, W) bool (pycocotools, on the host)."""
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    objs = [{"size": [height, width], "counts": r} for r in rles]
    return mask_utils.decode(objs).transpose(2, 0, 1).astype(bool)


def mask_decoder(device: torch.device | str | None):
    """decode(rles, height, width) -> (N, H, W) bool masks: numpy by pycocotools for None,
    a tensor decoded on `device` by torch ops otherwise (the same masks)."""
    if device is None:
        return decode_masks
    return lambda rles, height, width: rle_device.decode(rles, height, width, device)


def host_masks(masks: np.ndarray | torch.Tensor | rle_device.RunLengths) -> np.ndarray:
    """(N, H, W) bool masks as a numpy array, wherever they are (run lengths decoded)."""
    if isinstance(masks, rle_device.RunLengths):
        return decode_masks(encode_masks(masks), masks.height, masks.width)
    return masks.cpu().numpy() if isinstance(masks, torch.Tensor) else masks


@dataclass
class ImageProposals:
    """The proposals of one image."""

    image_id: int
    masks: np.ndarray | torch.Tensor | rle_device.RunLengths  # (N, H, W) bool: numpy, a
    # tensor on its device, or the run lengths of device masks
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray | None = None  # (N,) int32 ground-truth classes, or None


def gt_proposals(image_id: int, labels: np.ndarray, ignore: int = 255) -> ImageProposals:
    """The ground-truth segments of a label map as proposals (one per class present, in
    label order; score 1), for `proposals.source: gt` and `mine.masks: gt`."""
    segs = label_segments(image_id, labels, ignore)
    h, w = labels.shape
    masks = np.stack([s.mask for s in segs]) if segs else np.zeros((0, h, w), dtype=bool)
    return ImageProposals(image_id, masks, np.ones(len(segs), dtype=np.float32),
                          np.array([s.label for s in segs], dtype=np.int32))


def proposal_columns(p: ImageProposals) -> dict[str, list]:
    n, h, w = p.masks.shape
    return string_columns(p.image_id, h, w, encode_masks(p.masks), p.scores, p.labels)


def string_columns(image_id: int, height: int, width: int, rles: list[bytes],
                   scores: np.ndarray, labels: np.ndarray | None = None) -> dict[str, list]:
    """The PROPOSAL_SCHEMA columns of one image's RLE strings: what is left on the host
    once the masks are encoded (on a GPU, by `rle_device`)."""
    n = len(rles)
    objs = [{"size": [height, width], "counts": r} for r in rles]
    # boxes and areas from the strings (pycocotools' C, cheap): masks on a device stay there
    boxes = mask_utils.toBbox(objs).astype(np.float32) if n else np.zeros((0, 4), np.float32)
    areas = mask_utils.area(objs).astype(np.int64) if n else np.zeros(0, np.int64)
    labels = labels if labels is not None else np.full(n, -1)
    return {
        "image_id": [image_id] * n,
        "proposal_id": list(range(n)),
        "height": [height] * n,
        "width": [width] * n,
        "rle": rles,
        "bbox": [list(map(float, b)) for b in boxes],
        "area": areas.tolist(),
        "score": [float(s) for s in scores],
        "label": [int(x) for x in labels],
    }


class ProposalWriter:
    """Append images' proposals in image_id order; a row group is flushed every
    `row_group_size` rows. Writes to a temporary name and renames on `close()`, so an
    interrupted run leaves no half-written file under the final name."""

    def __init__(self, path: str | Path, row_group_size: int):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.row_group_size = row_group_size
        self.writer = pq.ParquetWriter(self.tmp, PROPOSAL_SCHEMA, compression="zstd",
                                       write_statistics=True)
        self.buffer = {name: [] for name in PROPOSAL_SCHEMA.names}
        self.last_image = None
        self.rows = 0

    def add(self, p: ImageProposals) -> None:
        if self.last_image is not None and p.image_id <= self.last_image:
            raise ValueError(f"images must come in increasing image_id order: {p.image_id} "
                             f"after {self.last_image}")
        self.last_image = p.image_id
        for name, values in proposal_columns(p).items():
            self.buffer[name].extend(values)
        while len(self.buffer["image_id"]) >= self.row_group_size:
            self._flush(self.row_group_size)

    def _flush(self, n: int) -> None:
        chunk = {k: v[:n] for k, v in self.buffer.items()}
        self.buffer = {k: v[n:] for k, v in self.buffer.items()}
        self.writer.write_table(pa.table(chunk, schema=PROPOSAL_SCHEMA),
                                row_group_size=self.row_group_size)
        self.rows += len(chunk["image_id"])

    def close(self) -> int:
        """Flush, close and rename into place; returns the number of rows."""
        if self.buffer["image_id"]:
            self._flush(len(self.buffer["image_id"]))
        self.writer.close()
        os.replace(self.tmp, self.path)
        return self.rows

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def part_name(part: int, parts: int) -> str:
    return f"part-{part:05d}-of-{parts:05d}.parquet"


def proposal_files(folder: str | Path) -> list[Path]:
    files = sorted(Path(folder).glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no proposal parquet files in {folder} (run `dvc repro "
                                "extract_proposals`)")
    return files


def iter_image_proposals(folder_or_file: str | Path, image_ids=None, device=None
                         ) -> Iterator[ImageProposals]:
    """Stream proposals image by image (files in part order, one row group at a time).
    `image_ids`: only these images (a set), filtered with the row groups' statistics.
    `device`: masks decoded there as tensors (`mask_decoder`); None: numpy."""
    decode = mask_decoder(device)
    path = Path(folder_or_file)
    files = [path] if path.is_file() else proposal_files(path)
    wanted = None if image_ids is None else set(int(i) for i in image_ids)
    for f in files:
        pf = pq.ParquetFile(f)
        pending = None  # an image whose rows may continue in the next row group
        for g in range(pf.num_row_groups):
            if wanted is not None:
                stats = pf.metadata.row_group(g).column(0).statistics
                if stats is not None and stats.has_min_max and \
                        not any(stats.min <= i <= stats.max for i in wanted):
                    continue
            t = pf.read_row_group(g).to_pydict()
            for i in range(len(t["image_id"])):
                row = {k: t[k][i] for k in t}
                if pending and pending[0]["image_id"] != row["image_id"]:
                    yield from _emit(pending, wanted, decode)
                    pending = None
                if pending is None:
                    pending = []
                pending.append(row)
        if pending:
            yield from _emit(pending, wanted, decode)


def _emit(rows: list[dict], wanted, decode) -> Iterator[ImageProposals]:
    image_id = rows[0]["image_id"]
    if wanted is not None and image_id not in wanted:
        return
    h, w = rows[0]["height"], rows[0]["width"]
    rows = sorted(rows, key=lambda r: r["proposal_id"])
    yield ImageProposals(image_id, decode([r["rle"] for r in rows], h, w),
                         np.array([r["score"] for r in rows], dtype=np.float32),
                         np.array([r["label"] for r in rows], dtype=np.int32))


def proposals_for_rows(rows, folder: str | Path, device=None
                       ) -> Iterator[np.ndarray | torch.Tensor]:
    """The proposal masks (N, H, W) of each index row in turn, from one stream over the
    parquet (sorted by image_id, like the index); (0, H, W) for an image without any.
    `device`: tensors decoded there; None: numpy arrays."""
    stream = iter_image_proposals(folder, image_ids={r.image_id for r in rows}, device=device)
    pending = next(stream, None)
    for row in rows:
        while pending is not None and pending.image_id < row.image_id:
            pending = next(stream, None)
        if pending is not None and pending.image_id == row.image_id:
            yield pending.masks
        elif device is not None:
            yield torch.zeros((0, row.height, row.width), dtype=torch.bool, device=device)
        else:
            yield np.zeros((0, row.height, row.width), dtype=bool)
