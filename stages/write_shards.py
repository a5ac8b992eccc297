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

import math

import pyarrow.parquet as pq

from pipeline.data.digests import fingerprint, input_digest
from pipeline.data.files import staged_outputs, write_json
from pipeline.data.layouts import iter_index, read_splits
from pipeline.data.shard_writer import merge_shard_pieces, shard_name, shard_of_samples
from pipeline.distributed.chunks import Chunks, ChunkStore
from pipeline.distributed.process_group import barrier
from pipeline.mining.shard_samples import PAIR_COLUMNS, chunk_pieces, pairs_by_image
from pipeline.params import to_dict
from stages._start import bars, start_stage

PATHS = ("--index", "--proposals", "--pairs", "--out")


def main(argv=None) -> None:
    run = start_stage("stages.write_shards", __doc__, argv, PATHS, "shards", torchrun=True)
    args, params, p, ddp = run.args, run.params, run.params.shards, run.ddp  # CPU: no network
    pairs = pq.read_table(args.pairs, columns=PAIR_COLUMNS).to_pydict()
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
    proposals = args.proposals if params.mine.masks == "proposals" else None
    store = ChunkStore("write_shards", fingerprint(
        params=to_dict(p), masks=params.mine.masks, chunk_images=chunks.size,
        index=input_digest(args.index), pairs=input_digest(args.pairs),
        proposals=input_digest(proposals) if proposals else None))
    store.run(chunks, ddp.rank, ddp.world, lambda c, folder: chunk_pieces(
        chunks.slice(rows, c), pairs, by_image, assign, train, proposals, p).save(folder),
        bars(run, "chunk"))
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
