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

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.data.class_lists import load_class_list
from pipeline.data.digests import fingerprint, input_digest
from pipeline.data.files import link_or_copy, staged_outputs, write_json
from pipeline.data.layouts import iter_index, read_splits
from pipeline.data.proposal_table import part_name
from pipeline.distributed.chunks import Chunks, ChunkStore
from pipeline.distributed.process_group import barrier
from pipeline.params import to_dict
from pipeline.proposals.extract import (
    empty_proposals_warning,
    split_recall,
    write_proposal_chunk,
    written_recall,
)
from pipeline.proposals.model import load_proposal_net
from stages._start import bars, speak_up, start_stage

PATHS = ("--index", "--net", "--out", "--metrics")
CHUNK_FILE = "proposals.parquet"


def main(argv=None) -> None:
    run = start_stage("stages.extract_proposals", __doc__, argv, PATHS, "proposals",
                      torchrun=True, networks=True)
    args, params, p, ddp = run.args, run.params, run.params.proposals, run.ddp
    splits = read_splits(args.index / "splits.json")
    net, text = None, None
    if p.source == "net":
        net, text, _ = load_proposal_net(args.net)
        net, text = net.to(run.device), text.to(run.device)
    train = splits["train"]
    rows = list(iter_index(train.index))
    chunks = Chunks(len(rows), params.compute.chunk_images)
    store = ChunkStore("extract_proposals", fingerprint(
        params=to_dict(p), chunk_images=chunks.size, device=run.device.type,
        index=input_digest(args.index),
        net=input_digest(args.net) if p.source == "net" else None))
    store.run(chunks, ddp.rank, ddp.world, lambda c, folder: write_proposal_chunk(
        Path(folder) / CHUNK_FILE, train, chunks.slice(rows, c), net, text, p),
        bars(run, "chunk"))
    barrier(ddp)
    if not ddp.main:
        return
    written = sum(pq.ParquetFile(store.path(c) / CHUNK_FILE).metadata.num_rows
                  for c in range(chunks.count))
    speak_up(empty_proposals_warning(written, len(rows), p), params)
    # A run writes a new folder (no parts of an older layout survive) and its metrics, and
    # puts both in place only when everything is written; the chunks go only after that.
    with staged_outputs(args.out, args.metrics) as (out, metrics_path):
        out.mkdir()
        for c in range(chunks.count):
            link_or_copy(store.path(c) / CHUNK_FILE, out / part_name(c, chunks.count))
        metrics = {"source": p.source, "iou_threshold": 0.5,
                   "train": written_recall(train, rows[:p.recall_images], out,
                                           load_class_list(train.classes).seen)}
        for name, split in splits.items():
            if split.role == "eval":
                eval_rows = list(iter_index(split.index))[:p.recall_images]
                metrics[name] = split_recall(split, eval_rows, load_class_list(split.classes).seen,
                                             net, text, p, bars(run, "batch"))
        write_json(metrics_path, metrics)
    store.clear()
    print(f"wrote the proposals of {len(rows)} images in {chunks.count} parts to {args.out}")
    print({k: {g: round(v[g]["recall"], 3) for g in ("seen", "unseen") if g in v}
           for k, v in metrics.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()
