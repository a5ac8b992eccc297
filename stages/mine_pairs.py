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

import time

from pipeline.clip.mask_classifier import cast_for_inference
from pipeline.clip.model import load_clip, tokenizer_for
from pipeline.clip.text_classifier import TEMPLATE_SETS, cached_text_classifier
from pipeline.data.digests import fingerprint, input_digest
from pipeline.data.files import staged_outputs, write_json
from pipeline.data.layouts import iter_index, read_splits
from pipeline.distributed.chunks import Chunks, ChunkStore
from pipeline.distributed.precision import weights_dtype
from pipeline.distributed.process_group import barrier, main_first
from pipeline.mining.mine import (
    empty_mining_warning,
    mine_pairs,
    mining_metrics,
    mining_vocabulary,
)
from pipeline.mining.nltk_setup import INSTALL_HELP, wordnet_reader
from pipeline.mining.nouns import NounExtractor, perceptron_tagger
from pipeline.mining.pair_files import merge_chunk_folders, write_pair_chunk, write_pairs
from pipeline.params import to_dict
from stages._start import bars, speak_up, start_stage

PATHS = ("--index", "--proposals", "--clip", "--text-cache", "--out", "--metrics")


def main(argv=None) -> None:
    run = start_stage("stages.mine_pairs", __doc__, argv, PATHS, "mine", torchrun=True,
                      networks=True)
    args, params, p, ddp = run.args, run.params, run.params.mine, run.ddp
    wordnet = wordnet_reader()
    if wordnet is None:
        raise SystemExit(f"mine_pairs needs WordNet. {INSTALL_HELP}")
    extractor = NounExtractor(wordnet, perceptron_tagger())
    splits = read_splits(args.index / "splits.json")
    rows = list(iter_index(splits["train"].index))
    rows = rows[:p.max_images] if p.max_images else rows
    t0 = time.time()
    vocab = mining_vocabulary(rows, splits, p, extractor, bars(run, "image"))
    clip = load_clip(args.clip).eval().to(run.device)
    text = main_first(ddp, lambda: cached_text_classifier(  # once, not by every rank
        clip, tokenizer_for(args.clip), vocab.lemmas, args.text_cache,
        TEMPLATE_SETS[params.clip.templates])).to(run.device)
    # the crops' tower in bf16 where autocast runs it so (the text features are made)
    cast_for_inference(clip.visual, weights_dtype(run.device, p.precision))
    chunks = Chunks(len(rows), params.compute.chunk_images)
    proposals = args.proposals if p.masks == "proposals" else None
    store = ChunkStore("mine_pairs", fingerprint(
        params=to_dict(p), templates=params.clip.templates, chunk_images=chunks.size,
        device=run.device.type,  # CPU and GPU chunks would mix two numerics
        index=input_digest(args.index), clip=input_digest(args.clip),
        proposals=input_digest(proposals) if proposals else None))

    def mine_chunk(c: int, folder) -> None:
        columns, checked, correct = mine_pairs(
            clip, text, vocab.lemmas, vocab.nouns, vocab.lemma_to_class,
            chunks.slice(rows, c), splits["train"], p, args.proposals)
        write_pair_chunk(folder, columns, checked, correct, p.row_group_size)

    store.run(chunks, ddp.rank, ddp.world, mine_chunk, bars(run, "chunk"))
    barrier(ddp)
    if not ddp.main:
        return
    columns, checked, correct = merge_chunk_folders([store.path(c)
                                                     for c in range(chunks.count)])
    metrics = mining_metrics(columns, rows, p, extractor.method, checked, correct,
                             time.time() - t0, vocab.nouns)
    speak_up(empty_mining_warning(metrics, len(rows)), params)
    with staged_outputs(args.out, args.metrics) as (out, metrics_path):
        write_pairs(out, columns, p.row_group_size)
        write_json(metrics_path, metrics)
    store.clear()
    print(f"{metrics['pairs']} pairs, {metrics['unique_nouns']} unique nouns, mining "
          f"precision {metrics['precision_iou50']['precision']} over {checked} checkable pairs")


if __name__ == "__main__":
    main()
