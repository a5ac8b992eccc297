"""The proposals parquet (OVSeg §3.1's proposals): one row per proposal mask, masks as COCO RLE.

Columns: `image_id` int64, `proposal_id` int32, `height`/`width` int32, `rle` binary
(pycocotools' compressed counts), `bbox` list<float32>[4] (x, y, w, h), `area` int64,
`score` float32 (1 - p(no object); 1 for ground-truth segments), `label` int32 (the
ground-truth class for `proposals.source: gt`, -1 for predicted proposals).

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
from pycocotools import mask as mask_utils

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


def encode_masks(masks: np.ndarray) -> list[bytes]:
    """(N, H, W) bool -> N COCO RLE count strings (pycocotools needs Fortran uint8)."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [r["counts"] for r in rles]


def decode_masks(rles: list[bytes], height: int, width: int) -> np.ndarray:
    """N RLE count strings of one image -> (N, H, W) bool."""
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    objs = [{"size": [height, width], "counts": r} for r in rles]
    return mask_utils.decode(objs).transpose(2, 0, 1).astype(bool)


@dataclass
class ImageProposals:
    """The proposals of one image."""

    image_id: int
    masks: np.ndarray  # (N, H, W) bool
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
    rles = encode_masks(p.masks)
    objs = [{"size": [h, w], "counts": r} for r in rles]
    boxes = mask_utils.toBbox(objs).astype(np.float32) if n else np.zeros((0, 4), np.float32)
    areas = p.masks.reshape(n, h * w).sum(axis=1).astype(np.int64)
    labels = p.labels if p.labels is not None else np.full(n, -1)
    return {
        "image_id": [p.image_id] * n,
        "proposal_id": list(range(n)),
        "height": [h] * n,
        "width": [w] * n,
        "rle": rles,
        "bbox": [list(map(float, b)) for b in boxes],
        "area": areas.tolist(),
        "score": [float(s) for s in p.scores],
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


def iter_image_proposals(folder_or_file: str | Path, image_ids=None
                         ) -> Iterator[ImageProposals]:
    """Stream proposals image by image (files in part order, one row group at a time).
    `image_ids`: only these images (a set), filtered with the row groups' statistics."""
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
                    yield from _emit(pending, wanted)
                    pending = None
                if pending is None:
                    pending = []
                pending.append(row)
        if pending:
            yield from _emit(pending, wanted)


def _emit(rows: list[dict], wanted) -> Iterator[ImageProposals]:
    image_id = rows[0]["image_id"]
    if wanted is not None and image_id not in wanted:
        return
    h, w = rows[0]["height"], rows[0]["width"]
    rows = sorted(rows, key=lambda r: r["proposal_id"])
    yield ImageProposals(image_id, decode_masks([r["rle"] for r in rows], h, w),
                         np.array([r["score"] for r in rows], dtype=np.float32),
                         np.array([r["label"] for r in rows], dtype=np.int32))


def proposals_for_rows(rows, folder: str | Path) -> Iterator[np.ndarray]:
    """The proposal masks (N, H, W) of each index row in turn, from one stream over the
    parquet (sorted by image_id, like the index); (0, H, W) for an image without any."""
    stream = iter_image_proposals(folder, image_ids={r.image_id for r in rows})
    pending = next(stream, None)
    for row in rows:
        while pending is not None and pending.image_id < row.image_id:
            pending = next(stream, None)
        if pending is not None and pending.image_id == row.image_id:
            yield pending.masks
        else:
            yield np.zeros((0, row.height, row.width), dtype=bool)
