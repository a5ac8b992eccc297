"""Stage prepare_data: render the synthetic world, or validate a real COCO layout, then
write the image index every later stage reads.

    python -m stages.prepare_data --params params.yaml --world data/world
        --index data/index --samples metrics/world_samples.png
        --check-metrics metrics/data_check.json

--world: the synthetic files (for real data, coco/SOURCE.json: the training files'
names and sizes); --index: splits.json, one index parquet and one class list per split,
and world_digest.json (every --world file's bytes hashed: the stages that read the world
depend on --index only); splits.json records the folders of each split's images and
labels, which is how later stages find them. --check-metrics: what the check
of the training split's images, label maps and captions found (pipeline/data/validate.py):
images checked and indexed, and those left out by reason (data.bad_items: skip). Under
data.bad_items: stop, a bad item stops the stage with a message naming it, and no output
is replaced.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from pipeline.data.class_lists import load_class_list
from pipeline.data.digests import tree_digest
from pipeline.data.files import json_bytes, staged_outputs
from pipeline.data.layouts import LayoutError
from pipeline.data.validate import BadItems
from pipeline.prepare.data_sources import (
    FinalPaths,
    prepare_coco,
    prepare_synthetic,
    recorded_params,
)
from stages._start import start_stage

WORLD_DIGEST = "world_digest.json"  # in --index: the digest of everything under --world
PATHS = ("--world", "--index", "--samples", "--check-metrics")


def main(argv=None) -> None:
    run = start_stage("stages.prepare_data", __doc__, argv, PATHS)
    args, p = run.args, run.params.data

    def bad_items(root: Path) -> BadItems:
        return BadItems(p.bad_items, root, skip_hint="set data.bad_items: skip to leave it "
                        f"out (counted in {args.check_metrics})")

    # All or nothing: the world, the index that points into it, the samples picture and the
    # check metrics are renamed into place together, only once everything is written; a
    # failure (a bad item under data.bad_items: stop included) leaves the old ones as
    # they were.
    outputs = (args.world, args.index, args.samples, args.check_metrics)
    try:
        with staged_outputs(*outputs) as (world_tmp, index_tmp, samples_tmp, check_tmp):
            world_tmp.mkdir()
            (index_tmp / "classes").mkdir(parents=True)
            paths = FinalPaths(args.world, args.index)
            if p.source == "synthetic":
                splits, check, samples_png = prepare_synthetic(
                    p, world_tmp, index_tmp, paths, bad_items, progress=lambda it, n: tqdm(
                        it, total=n, desc="render world", unit="img", mininterval=2))
            else:
                splits, check, samples_png = prepare_coco(p, world_tmp, index_tmp, paths,
                                                          bad_items)
            for s in splits.values():  # every class list must parse
                load_class_list(index_tmp / "classes" / Path(s["classes"]).name)
            (index_tmp / "splits.json").write_bytes(json_bytes(
                {"source": p.source, "params": recorded_params(p), "splits": splits}))
            # The later stages depend on data/index alone, not on the world's ~22K files
            # (DVC hashes a directory dep several times per stage): this digest makes the
            # index change whenever a byte of the world does.
            (index_tmp / WORLD_DIGEST).write_bytes(json_bytes(tree_digest(world_tmp)))
            samples_tmp.write_bytes(samples_png)
            check_tmp.write_bytes(json_bytes(check))
    except LayoutError as e:  # a bad layout or item: its message, not a traceback
        raise SystemExit(f"prepare_data: {e}") from None
    skipped = sum(check["skipped"].values())
    print(f"checked {check['checked']} training images: {check['indexed']} indexed, "
          f"{skipped} item(s) left out -> {args.check_metrics}")
    print(f"prepared {p.source} data: splits {', '.join(splits)} -> {args.index / 'splits.json'}")


if __name__ == "__main__":
    main()
