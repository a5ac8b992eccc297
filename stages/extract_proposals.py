"""Stage extract_proposals: run the proposal net over the caption (training) images and
write every image's proposals to parquet; score class-agnostic recall
(pipeline/proposals/extract.py).

    python -m stages.extract_proposals --params params.yaml --index data/index
        --net models/proposals --out data/proposals --metrics metrics/proposals.json

`proposals.source: gt` writes the ground-truth segments in the same schema instead (oracle
and ablation runs). One parquet part per chunk of `compute.chunk_images` images
(pipeline/distributed/chunks.py): `compute.processes` processes (one per GPU) share the
chunks, or `torchrun --nnodes N ... -m stages.extract_proposals ...` on N machines with a
shared file system; a killed run resumes at its first unfinished chunk; the bytes are the
same every way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.data.class_lists import load_class_list
from pipeline.data.files import link_or_copy, staged_outputs, write_json
from pipeline.data.layouts import iter_index, read_splits
from pipeline.data.proposal_table import ProposalWriter, part_name, proposals_for_rows
from pipeline.distributed.chunks import Chunks, ChunkStore, fingerprint, input_digest
from pipeline.distributed.device import start_ranks
from pipeline.distributed.launch import hand_over_to_torchrun
from pipeline.distributed.process_group import barrier
from pipeline.params import load_params, to_dict
from pipeline.proposals.extract import (
    iter_split_proposals,
    recall_counts,
    split_recall,
    summarize,
)
from pipeline.proposals.model import load_proposal_net

CHUNK_FILE = "proposals.parquet"


def progress(batches, desc: str):
    return tqdm(batches, desc=desc, unit="batch", mininterval=2)


def chunk_progress(chunks, desc: str):
    return tqdm(chunks, desc=desc, unit="chunk", mininterval=2)


def write_chunk(path: Path, train, rows, net, text, p) -> int:
    """The proposals of `rows` (one chunk of images) as one parquet file."""
    with ProposalWriter(path, p.row_group_size) as writer:
        for _, props in iter_split_proposals(train, rows, net, text, p, "", lambda x, _: x):
            writer.add(props)
    return writer.rows


def train_recall(train, rows, proposals_dir: Path, seen) -> dict:
    """Recall of the written proposals of the first `rows` (read back from the parquet)."""
    counts, n_props = {}, []
    for row, masks in zip(rows, proposals_for_rows(rows, proposals_dir)):
        recall_counts(train, row, masks, seen, counts)
        n_props.append(len(masks))
    return summarize(counts, n_props)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--params", "--index", "--net", "--out", "--metrics"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    hand_over_to_torchrun("stages.extract_proposals", argv, params.compute)
    p = params.proposals
    torch.set_num_threads(p.threads)
    device, ddp = start_ranks(params.compute.device)
    splits = read_splits(args.index / "splits.json")
    net, text = None, None
    if p.source == "net":
        net, text, _ = load_proposal_net(args.net)
        net, text = net.to(device), text.to(device)
    train = splits["train"]
    rows = list(iter_index(train.index))
    chunks = Chunks(len(rows), params.compute.chunk_images)
    store = ChunkStore("extract_proposals", fingerprint(
        params=to_dict(p), chunk_images=chunks.size, device=device.type,
        index=input_digest(args.index),
        net=input_digest(args.net) if p.source == "net" else None))
    store.run(chunks, ddp.rank, ddp.world, lambda c, folder: write_chunk(
        folder / CHUNK_FILE, train, chunks.slice(rows, c), net, text, p),
        chunk_progress if ddp.main else None)
    barrier(ddp)
    if not ddp.main:
        return
    # A run writes a new folder (no parts of an older layout survive) and its metrics, and
    # puts both in place only when everything is written; the chunks go only after that.
    with staged_outputs(args.out, args.metrics) as (out, metrics_path):
        out.mkdir()
        for c in range(chunks.count):
            link_or_copy(store.path(c) / CHUNK_FILE, out / part_name(c, chunks.count))
        seen = load_class_list(train.classes).seen
        metrics = {"source": p.source, "iou_threshold": 0.5,
                   "train": train_recall(train, rows[:p.recall_images], out, seen)}
        for name, split in splits.items():
            if split.role == "eval":
                eval_rows = list(iter_index(split.index))[:p.recall_images]
                metrics[name] = split_recall(split, eval_rows, load_class_list(split.classes).seen,
                                             net, text, p, progress)
        write_json(metrics_path, metrics)
    store.clear()
    print(f"wrote the proposals of {len(rows)} images in {chunks.count} parts to {args.out}")
    print({k: {g: round(v[g]["recall"], 3) for g in ("seen", "unseen") if g in v}
           for k, v in metrics.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()
