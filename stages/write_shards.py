"""Stage write_shards: one webdataset sample per mined pair - the unfilled masked crop, its
mask, the noun - in shards that are byte-identical across runs.

    python -m stages.write_shards --params params.yaml --index data/index
        --proposals data/proposals --pairs data/pairs.parquet --out data/shards

--proposals is read when `mine.masks` is proposals (else the ground-truth segments are);
--out gets shard-*.tar and sizes.json.

The images are cropped in chunks of `compute.chunk_images` (pipeline/distributed/chunks.py),
shared by `compute.processes` processes or torchrun workers; each chunk keeps its samples
grouped by shard, and rank 0 concatenates the chunks' pieces of each shard in order
(pipeline/data/shard_writer.py). A killed run resumes at its first unfinished chunk; the
shards are the same bytes every way.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from pipeline.clip.masked_crops import masked_crops
from pipeline.data.files import encode_jpeg, encode_png, staged_outputs, write_json
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import iter_index, read_splits
from pipeline.data.proposal_table import gt_proposals, proposals_for_rows
from pipeline.data.shard_writer import (
    ShardPieces,
    merge_shard_pieces,
    sample_key,
    shard_name,
    shard_of_samples,
)
from pipeline.distributed.chunks import Chunks, ChunkStore, fingerprint, input_digest
from pipeline.distributed.launch import hand_over_to_torchrun
from pipeline.distributed.process_group import barrier, init_distributed
from pipeline.params import load_params, to_dict


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--params", "--index", "--proposals", "--pairs", "--out"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    hand_over_to_torchrun("stages.write_shards", argv, params.compute)
    p, masks_from = params.shards, params.mine.masks
    torch.set_num_threads(p.threads)
    ddp = init_distributed(torch.device("cpu"))  # crops and JPEGs: no network to run
    pairs = pq.read_table(args.pairs, columns=["image_id", "caption_index", "noun", "lemma",
                                          "proposal_id", "similarity"]).to_pydict()
    n = len(pairs["image_id"])
    if n == 0 and ddp.main:  # e.g. an undertrained proposal net: empty shards, and a warning
        print(f"warning: {args.pairs} holds no pairs; writing empty shards (see the "
              "mine_pairs stage's metrics)")
    n_shards = max(p.min_shards, math.ceil(n / p.samples_per_shard))
    assign = shard_of_samples(n, n_shards, p.seed)
    by_image = pairs_by_image(pairs)
    train = read_splits(args.index / "splits.json")["train"]
    rows = [r for r in iter_index(train.index) if r.image_id in by_image]
    chunks = Chunks(len(rows), params.compute.chunk_images)
    proposals = args.proposals if masks_from == "proposals" else None
    store = ChunkStore("write_shards", fingerprint(
        params=to_dict(p), masks=masks_from, chunk_images=chunks.size,
        index=input_digest(args.index), pairs=input_digest(args.pairs),
        proposals=input_digest(proposals) if proposals else None))

    def shard_chunk(c: int, folder: Path) -> None:
        chunk_rows = chunks.slice(rows, c)
        streamed = proposals_for_rows(chunk_rows, proposals) if proposals else None
        pieces = ShardPieces()
        for row in chunk_rows:
            idx = by_image[row.image_id]
            if streamed is not None:
                masks = next(streamed)
            else:
                labels = read_labels(Path(train.label_dir) / row.label_file)
                masks = gt_proposals(row.image_id, labels, train.ignore_label).masks
            masks = masks[[pairs["proposal_id"][i] for i in idx]]
            for i, *sample in image_samples(row, masks, pairs, idx, Path(train.image_dir), p):
                pieces.write(int(assign[i]), *sample)
        pieces.save(folder)

    store.run(chunks, ddp.rank, ddp.world, shard_chunk,
              (lambda c, d: tqdm(c, desc=d, unit="chunk", mininterval=2)) if ddp.main else None)
    barrier(ddp)
    if not ddp.main:
        return
    with staged_outputs(args.out) as (out,):
        out.mkdir()
        sizes = merge_shard_pieces([store.path(c) for c in range(chunks.count)], n_shards, out)
        write_json(out / "sizes.json", {shard_name(i): c for i, c in enumerate(sizes)})
    store.clear()
    print(f"wrote {sum(sizes)} samples to {n_shards} shards in {args.out}")

if __name__ == "__main__":
    main()
