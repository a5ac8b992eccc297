"""Stage mine_pairs: pair each caption noun with the proposal CLIP finds most similar.

deps: data/index (train split), data/proposals, models/clip_base, params mine
outs: data/pairs.parquet, metrics/mining.json

Ablations (OVSeg Table 2): `mine.masks` proposals | gt (ground-truth segments) and
`mine.nouns` captions | gt_classes (the names of the labelled classes in each image).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.clip.mask_classifier import crops_for_clip
from pipeline.clip.mask_prompts import encode_image
from pipeline.clip.model import load_clip, tokenizer_for
from pipeline.clip.text_classifier import cached_text_classifier
from pipeline.data.class_lists import load_class_list
from pipeline.data.files import write_json
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import iter_index, read_splits
from pipeline.data.proposal_table import gt_proposals, proposals_for_rows
from pipeline.mining.nltk_setup import INSTALL_HELP, wordnet_reader
from pipeline.mining.nouns import NounExtractor, perceptron_tagger
from pipeline.mining.pairs import PAIR_SCHEMA, best_proposals, lemma_classes, mask_iou_single
from pipeline.params import load_params

SPLITS = Path("data/index/splits.json")
CLIP_DIR = Path("models/clip_base")
PROPOSALS = Path("data/proposals")
OUT = Path("data/pairs.parquet")
METRICS = Path("metrics/mining.json")
TEXT_CACHE = Path(".cache/text_classifiers")
CROP_BATCH = 512  # crops per CLIP forward, over several images


def class_names_with_synonyms(splits, train_names: list[str]) -> list[str]:
    """The training class names, with the synonyms another split's list gives the same
    class (the synthetic world's evaluation lists carry ADE-style "dog, puppy")."""
    synonyms = {}
    for split in splits.values():
        for name in load_class_list(split.classes).names:
            synonyms.setdefault(name.split(",")[0].strip(), name)
    return [synonyms.get(n.split(",")[0].strip(), n) for n in train_names]


def image_nouns(row, p, extractor, train_names, labels, ignore: int
                ) -> list[tuple[int, str, str]]:
    """(caption index, noun, lemma) to pair in one image."""
    if p.nouns == "gt_classes":
        present = [int(c) for c in np.unique(labels) if c != ignore]
        return [(-1, train_names[c], train_names[c]) for c in present]
    out = []
    for ci, caption in enumerate(row.captions[:p.captions_per_image]):
        out += [(ci, noun, lemma) for noun, lemma in extractor.extract(caption)]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_params(args.params).mine
    torch.set_num_threads(p.threads)
    wordnet = wordnet_reader()
    if wordnet is None:
        raise SystemExit(f"mine_pairs needs WordNet. {INSTALL_HELP}")
    extractor = NounExtractor(wordnet, perceptron_tagger())
    splits = read_splits(SPLITS)
    train = splits["train"]
    classes = load_class_list(train.classes)
    train_names = list(classes.names)
    lemma_to_class = lemma_classes(class_names_with_synonyms(splits, train_names),
                                   extractor.extract)
    rows = list(iter_index(train.index))
    rows = rows[:p.max_images] if p.max_images else rows
    label_dir, image_dir = Path(train.label_dir), Path(train.image_dir)
    t0 = time.time()

    # pass 1: the nouns of every image (captions only; cheap), and their text embeddings
    nouns = {}
    for row in tqdm(rows, desc="caption nouns", unit="image", mininterval=2):
        labels = read_labels(label_dir / row.label_file) if p.nouns == "gt_classes" else None
        nouns[row.image_id] = image_nouns(row, p, extractor, train_names, labels,
                                          train.ignore_label)
    lemmas = sorted({lemma for ns in nouns.values() for _, _, lemma in ns})
    clip = load_clip(CLIP_DIR).eval()
    text = cached_text_classifier(clip, tokenizer_for(CLIP_DIR), lemmas, TEXT_CACHE)
    lemma_index = {lemma: i for i, lemma in enumerate(lemmas)}

    # pass 2: masked crops of each image's proposals -> CLIP -> best proposal per noun
    columns = {name: [] for name in PAIR_SCHEMA.names}
    checked, correct = 0, 0
    batch = []  # (row, labels, masks, crops, crop validity) until CROP_BATCH crops

    def flush():
        nonlocal checked, correct
        if not batch:
            return
        with torch.no_grad():
            feats = F.normalize(encode_image(clip, torch.cat([b[3] for b in batch])).float(),
                                dim=-1)
        start = 0
        for row, labels, masks, crops, valid in batch:
            region = feats[start:start + len(crops)] * valid[:, None]  # invalid: never best
            start += len(crops)
            pairs = nouns[row.image_id]
            best, sim, margin = best_proposals(
                region, text[[lemma_index[lemma] for _, _, lemma in pairs]])
            for (ci, noun, lemma), b, s, m in zip(pairs, best.tolist(), sim.tolist(),
                                                  margin.tolist()):
                for key, v in zip(PAIR_SCHEMA.names, (row.image_id, ci, noun, lemma, b, s, m)):
                    columns[key].append(v)
                c = lemma_to_class.get(lemma)
                if c is not None and (labels == c).any():
                    checked += 1
                    correct += mask_iou_single(masks[b], labels == c) >= 0.5
        batch.clear()

    streamed = proposals_for_rows(rows, PROPOSALS) if p.masks == "proposals" else None
    for row in tqdm(rows, desc="mine pairs", unit="image", mininterval=2):
        labels = read_labels(label_dir / row.label_file)
        masks = next(streamed) if streamed is not None else \
            gt_proposals(row.image_id, labels, train.ignore_label).masks
        if not nouns[row.image_id] or len(masks) == 0:
            continue
        image = torch.from_numpy(read_rgb(image_dir / row.file_name).copy()).permute(2, 0, 1)
        crops, _, valid = crops_for_clip(clip, image.float() / 255, torch.from_numpy(masks),
                                         p.fill, p.expand_ratio)
        batch.append((row, labels, masks, crops, valid))
        if sum(len(b[3]) for b in batch) >= CROP_BATCH:
            flush()
    flush()
    table = pa.table(columns, schema=PAIR_SCHEMA)
    tmp = OUT.with_name(f".{OUT.name}.tmp")
    pq.write_table(table, tmp, row_group_size=p.row_group_size, compression="zstd")
    tmp.replace(OUT)

    n = len(columns["image_id"])
    captions = sum(min(len(r.captions), p.captions_per_image) for r in rows)
    counts = Counter(columns["lemma"])
    sims, margins = np.array(columns["similarity"]), np.array(columns["margin"])
    metrics = {
        "masks": p.masks, "nouns": p.nouns, "captions_per_image": p.captions_per_image,
        "noun_method": extractor.method,
        "pairs": n, "unique_nouns": len(counts),
        "nouns_per_caption": n / max(captions, 1) if p.nouns == "captions" else None,
        "similarity": {"mean": float(sims.mean()) if n else 0.0,
                       "median": float(np.median(sims)) if n else 0.0},
        "margin": {"mean": float(margins.mean()) if n else 0.0,
                   "median": float(np.median(margins)) if n else 0.0},
        "precision_iou50": {"pairs_checked": checked,
                            "precision": correct / checked if checked else None,
                            "note": "pairs whose noun names a class labelled in the image; "
                                    "chosen proposal vs that class's segment, IoU >= 0.5"},
        "top_nouns": counts.most_common(20),
        "seconds": round(time.time() - t0, 1),
    }
    write_json(METRICS, metrics)
    print(f"{n} pairs, {len(counts)} unique nouns, mining precision "
          f"{metrics['precision_iou50']['precision']} over {checked} checkable pairs")


if __name__ == "__main__":
    main()
