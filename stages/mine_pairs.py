"""Stage mine_pairs: pair each caption noun with the proposal CLIP finds most similar
(OVSeg §3.2; the loop is pipeline/mining/mine.py).

    python -m stages.mine_pairs --params params.yaml --index data/index
        --proposals data/proposals --clip models/clip_base
        --text-cache .cache/text_classifiers --out data/pairs.parquet
        --metrics metrics/mining.json

Ablations (OVSeg Table 2): `mine.masks` proposals | gt (ground-truth segments) and
`mine.nouns` captions | gt_classes (the names of the labelled classes in each image).

The images are mined in chunks of `compute.chunk_images` (pipeline/distributed/chunks.py),
shared by `compute.processes` processes (one per GPU) or torchrun workers on several
machines; a killed run resumes at its first unfinished chunk; the pairs are the same bytes
every way. The nouns' text features are computed once, by rank 0, into --text-cache.
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
from pipeline.data.files import json_bytes, staged_outputs, write_json
from pipeline.data.layouts import iter_index, read_splits
from pipeline.distributed.chunks import Chunks, ChunkStore, fingerprint, input_digest
from pipeline.distributed.device import start_ranks
from pipeline.distributed.launch import hand_over_to_torchrun
from pipeline.distributed.process_group import barrier, main_first
from pipeline.mining.mine import (
    caption_nouns,
    class_names_with_synonyms,
    merge_pair_chunks,
    mine_pairs,
    mining_metrics,
    write_pairs,
)
from pipeline.mining.nltk_setup import INSTALL_HELP, wordnet_reader
from pipeline.mining.nouns import NounExtractor, perceptron_tagger
from pipeline.mining.pairs import lemma_classes
from pipeline.params import load_params, to_dict

PAIRS_FILE, COUNTS_FILE = "pairs.parquet", "counts.json"


def progress(rows, desc: str):
    return tqdm(rows, desc=desc, unit="image", mininterval=2)


def chunk_progress(chunks, desc: str):
    return tqdm(chunks, desc=desc, unit="chunk", mininterval=2)


def quiet(rows, desc: str):
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--params", "--index", "--proposals", "--clip", "--text-cache", "--out",
                 "--metrics"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    hand_over_to_torchrun("stages.mine_pairs", argv, params.compute)
    p = params.mine
    torch.set_num_threads(p.threads)
    device, ddp = start_ranks(params.compute.device)
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
    # Every rank reads every caption: the vocabulary (and so the text features) is the
    # whole run's, whichever chunks a rank mines.
    nouns = caption_nouns(rows, train, p, extractor, train_names,
                          progress if ddp.main else quiet)
    lemmas = sorted({lemma for ns in nouns.values() for _, _, lemma in ns})
    clip = load_clip(args.clip).eval().to(device)
    text = main_first(ddp, lambda: cached_text_classifier(
        clip, tokenizer_for(args.clip), lemmas, args.text_cache,
        TEMPLATE_SETS[params.clip.templates])).to(device)
    chunks = Chunks(len(rows), params.compute.chunk_images)
    proposals = args.proposals if p.masks == "proposals" else None
    store = ChunkStore("mine_pairs", fingerprint(
        params=to_dict(p), templates=params.clip.templates, chunk_images=chunks.size,
        device=device.type,  # CPU and GPU chunks would mix two numerics
        index=input_digest(args.index), clip=input_digest(args.clip),
        proposals=input_digest(proposals) if proposals else None))

    def mine_chunk(c: int, folder: Path) -> None:
        columns, checked, correct = mine_pairs(clip, text, lemmas, nouns, lemma_to_class,
                                               chunks.slice(rows, c), train, p, args.proposals)
        write_pairs(folder / PAIRS_FILE, columns, p.row_group_size)
        (folder / COUNTS_FILE).write_bytes(json_bytes({"checked": checked, "correct": correct}))

    store.run(chunks, ddp.rank, ddp.world, mine_chunk, chunk_progress if ddp.main else None)
    barrier(ddp)
    if not ddp.main:
        return
    columns, checked, correct = merge_pair_chunks(
        [store.path(c) / PAIRS_FILE for c in range(chunks.count)],
        [store.path(c) / COUNTS_FILE for c in range(chunks.count)])
    metrics = mining_metrics(columns, rows, p, extractor.method, checked, correct,
                             time.time() - t0)
    with staged_outputs(args.out, args.metrics) as (out, metrics_path):
        write_pairs(out, columns, p.row_group_size)
        write_json(metrics_path, metrics)
    store.clear()
    print(f"{metrics['pairs']} pairs, {metrics['unique_nouns']} unique nouns, mining "
          f"precision {metrics['precision_iou50']['precision']} over {checked} checkable pairs")

if __name__ == "__main__":
    main()
