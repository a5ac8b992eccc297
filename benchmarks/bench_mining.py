"""Benchmark the data-mining steps; each row has a baseline measured in the same run.

1. Noun extraction, captions/s: `NounExtractor.extract` against the least work any
   WordNet-based extractor does (tokenise, then one morphy lookup per token).
2. Shard writing, crops/s: masked crops + JPEG/PNG encoding + tar writing, against JPEG
   encoding of the same crops alone.

    python -m benchmarks.bench_mining        # needs `make nltk` and `dvc repro` outputs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.clip.masked_crops import masked_crops
from pipeline.data.image_io import encode_jpeg, encode_png, read_rgb
from pipeline.data.proposal_table import iter_image_proposals
from pipeline.data.shard_writer import ShardSet, sample_key
from pipeline.mining.nltk_setup import INSTALL_HELP, wordnet_reader
from pipeline.mining.nouns import NounExtractor, perceptron_tagger, tokenize

INDEX = Path("data/index/train.parquet")
IMAGES = Path("data/world/coco/train2017")
PROPOSALS = Path("data/proposals")


def per_second(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def bench_nouns(captions: list[str]) -> list[list]:
    wn = wordnet_reader()
    if wn is None:
        raise SystemExit(INSTALL_HELP)
    rows = []
    for name, tagger in (("wordnet lexicon", None), ("perceptron tagger", perceptron_tagger())):
        if name == "perceptron tagger" and tagger is None:
            rows.append([name, "not installed", "", ""])
            continue
        extractor = NounExtractor(wn, tagger)
        cold = per_second(lambda e=extractor: [e.extract(c) for c in captions], len(captions))
        warm = per_second(lambda e=extractor: [e.extract(c) for c in captions], len(captions))
        morphy = per_second(lambda: [wn.morphy(t, "n") for c in captions for t in tokenize(c)],
                            len(captions))
        rows.append([name, f"{cold:.0f} / {warm:.0f}", f"{morphy:.0f}", f"{warm / morphy:.2f}"])
    return rows


def bench_shards(n_images: int, size: int) -> list[list]:
    index = pd.read_parquet(INDEX, columns=["image_id", "file_name"]).head(n_images)
    files = dict(zip(index.image_id, index.file_name))
    work = []  # (image_id, image (3, H, W), masks (N, H, W))
    for props in iter_image_proposals(PROPOSALS, image_ids=set(files)):
        image = torch.from_numpy(read_rgb(IMAGES / files[props.image_id]).copy())
        work.append((props.image_id, image.permute(2, 0, 1).float() / 255,
                     torch.from_numpy(props.masks)))
    n = sum(len(m) for _, _, m in work)
    crops_u8 = []

    def full():
        with tempfile.TemporaryDirectory() as d:
            shards = ShardSet(d, 4)
            for image_id, image, masks in work:
                crops, crop_masks, _ = masked_crops(image, masks, size, fill="none")
                crops = (crops * 255).round().byte().permute(0, 2, 3, 1).numpy()
                crops_u8.extend(crops)
                masks_u8 = crop_masks.numpy().astype(np.uint8) * 255
                for k in range(len(crops)):
                    shards.write(k % 4, sample_key(image_id, 0, k), encode_jpeg(crops[k]),
                                 encode_png(masks_u8[k]), "noun", {"k": k})
            shards.close()

    rate = per_second(full, n)
    jpeg = per_second(lambda: [encode_jpeg(c) for c in crops_u8], n)
    return [["crops + encode + tar", f"{rate:.0f}", f"{jpeg:.0f}", f"{rate / jpeg:.2f}"]]


def table(title, header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    for k, r in enumerate([header] + rows):
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=20000)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--size", type=int, default=64, help="crop side")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    captions = [c for caps in pd.read_parquet(INDEX, columns=["captions"])["captions"]
                for c in caps][:args.captions]
    table(f"1. Noun extraction, captions/s over {len(captions)} captions (cold / warm cache)",
          ["method", "captions/s", "tokenise+morphy/s", "ratio"], bench_nouns(captions))
    table(f"2. Shard writing, crops/s ({args.images} images, {args.size}px crops)",
          ["pipeline", "crops/s", "JPEG-only crops/s", "ratio"],
          bench_shards(args.images, args.size))


if __name__ == "__main__":
    main()
