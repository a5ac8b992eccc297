"""The samples of the FT/MPT shards (OVSeg §3.2's mined pairs as training data): for each
mined pair, the unfilled masked crop of its proposal (JPEG), the crop's mask (PNG), the
noun and its metadata, cut image by image and collected into one chunk's shard pieces
(pipeline/data/shard_writer.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.clip.masked_crops import masked_crops
from pipeline.data.image_io import encode_jpeg, encode_png, read_labels, read_rgb
from pipeline.data.layouts import Split
from pipeline.data.proposal_table import gt_proposals, proposals_for_rows
from pipeline.data.shard_writer import ShardPieces, sample_key
from pipeline.params import ShardParams

# The pairs parquet's columns a shard sample needs.
PAIR_COLUMNS = ["image_id", "caption_index", "noun", "lemma", "proposal_id", "similarity"]


def pairs_by_image(pairs: dict) -> dict[int, list[int]]:
    """image_id -> row numbers of its pairs (pairs are written in image order)."""
    out: dict[int, list[int]] = {}
    for i, image_id in enumerate(pairs["image_id"]):
        out.setdefault(image_id, []).append(i)
    return out


def image_samples(row, masks: np.ndarray, pairs: dict, idx: list[int], image_dir: Path, p):
    """(pair row, key, jpg, mask png, noun, meta) of each pair `idx` of one image, whose
    masks (len(idx), H, W) are cropped unfilled."""
    image = torch.from_numpy(read_rgb(image_dir / row.file_name).copy())
    crops, crop_masks, _ = masked_crops(image.permute(2, 0, 1).float() / 255,
                                        torch.from_numpy(masks), p.crop_size, fill="none",
                                        expand_ratio=p.expand_ratio)
    crops = (crops * 255).round().byte().permute(0, 2, 3, 1).numpy()
    crop_masks = crop_masks.numpy().astype(np.uint8) * 255
    for k, i in enumerate(idx):
        meta = {key: pairs[key][i] for key in ("image_id", "caption_index", "lemma",
                                               "proposal_id")}
        meta["similarity"] = round(float(pairs["similarity"][i]), 6)
        yield (i, sample_key(row.image_id, pairs["caption_index"][i], k),
               encode_jpeg(crops[k], p.jpeg_quality), encode_png(crop_masks[k]),
               pairs["noun"][i], meta)


def chunk_pieces(rows, pairs: dict, by_image: dict[int, list[int]], assign: np.ndarray,
                 train: Split, proposals: Path | None, p: ShardParams) -> ShardPieces:
    """The shard pieces of one chunk of images: each pair's sample, in shard `assign[i]`.
    The masks are the proposals' (streamed from `proposals`) or, without them, the
    ground-truth segments."""
    streamed = proposals_for_rows(rows, proposals) if proposals else None
    pieces = ShardPieces()
    for row in rows:
        idx = by_image[row.image_id]
        if streamed is not None:
            masks = next(streamed)
        else:
            labels = read_labels(Path(train.label_dir) / row.label_file)
            masks = gt_proposals(row.image_id, labels, train.ignore_label).masks
        masks = masks[[pairs["proposal_id"][i] for i in idx]]
        for i, *sample in image_samples(row, masks, pairs, idx, Path(train.image_dir), p):
            pieces.write(int(assign[i]), *sample)
    return pieces
