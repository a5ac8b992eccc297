"""Stage mine_pairs: pair each caption noun with the proposal CLIP finds most similar
(OVSeg §3.2; the loop is pipeline/mining/mine.py).

    python -m stages.mine_pairs --params params.yaml --index data/index
        --proposals data/proposals --clip models/clip_base
        --text-cache .cache/text_classifiers --out data/pairs.parquet
        --metrics metrics/mining.json

Ablations (OVSeg Table 2): `mine.masks` proposals | gt (ground-truth segments) and
`mine.nouns` captions | gt_classes (the names of the labelled classes in each image).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.clip.model import load_clip, tokenizer_for
from pipeline.clip.text_classifier import TEMPLATE_SETS, cached_text_classifier
from pipeline.data.class_lists import load_class_list
from pipeline.data.files import staged_outputs, write_json
from pipeline.data.layouts import iter_index, read_splits
from pipeline.mining.mine import (
    caption_nouns,
    class_names_with_synonyms,
    mine_pairs,
    mining_metrics,
    write_pairs,
)
from pipeline.mining.nltk_setup import INSTALL_HELP, wordnet_reader
from pipeline.mining.nouns import NounExtractor, perceptron_tagger
from pipeline.mining.pairs import lemma_classes
from pipeline.params import load_params


def progress(rows, desc: str):
    return tqdm(rows, desc=desc, unit="image", mininterval=2)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--params", "--index", "--proposals", "--clip", "--text-cache", "--out",
                 "--metrics"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    p = params.mine
    torch.set_num_threads(p.threads)
    wordnet = wordnet_reader()
    if wordnet is None:
        raise SystemExit(f"mine_pairs needs WordNet. {INSTALL_HELP}")
    extractor = NounExtractor(wordnet, perceptron_tagger())
    splits = read_splits(args.index / "splits.json")
    train = splits["train"]
    train_names = list(load_class_list(train.classes).names)
    lemma_to_class = lemma_classes(class_names_with_synonyms(splits, train_names),
                                   extractor.extract)
    rows = list(iter_index(train.index))
    rows = rows[:p.max_images] if p.max_images else rows
    t0 = time.time()
    nouns = caption_nouns(rows, train, p, extractor, train_names, progress)
    lemmas = sorted({lemma for ns in nouns.values() for _, _, lemma in ns})
    clip = load_clip(args.clip).eval()
    text = cached_text_classifier(clip, tokenizer_for(args.clip), lemmas, args.text_cache,
                                  TEMPLATE_SETS[params.clip.templates])
    columns, checked, correct = mine_pairs(clip, text, lemmas, nouns, lemma_to_class, rows,
                                           train, p, args.proposals, progress)
    metrics = mining_metrics(columns, rows, p, extractor.method, checked, correct,
                             time.time() - t0)
    with staged_outputs(args.out, args.metrics) as (out, metrics_path):
        write_pairs(out, columns, p.row_group_size)
        write_json(metrics_path, metrics)
    print(f"{metrics['pairs']} pairs, {metrics['unique_nouns']} unique nouns, mining "
          f"precision {metrics['precision_iou50']['precision']} over {checked} checkable pairs")


if __name__ == "__main__":
    main()
