"""Stage prepare_data: render the synthetic world, or validate a real COCO layout, then
write the image index every later stage reads.

    python -m stages.prepare_data --params params.yaml --world data/world
        --index data/index --samples metrics/world_samples.png
        --check-metrics metrics/data_check.json

--world: the synthetic files (a note for real data); --index: splits.json, one index
parquet and one class list per split; splits.json records the folders of each split's
images and labels, which is how later stages find them. --check-metrics: what the check
of the training split's images, label maps and captions found (pipeline/data/validate.py):
images checked and indexed, and those left out by reason (data.bad_items: skip). Under
data.bad_items: stop, a bad item stops the stage with a message naming it, and no output
is replaced.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.data.class_lists import builtin_class_list, load_class_list
from pipeline.data.files import json_bytes, staged_outputs
from pipeline.data.layouts import LayoutError, index_semseg, write_index
from pipeline.data.validate import COCO_LABEL_MODES, BadItems, LabelSpec, check_coco
from pipeline.params import DataParams, load_params
from pipeline.world import dataset as world
from pipeline.world.sample_grid import sample_grid_png


def _split_entry(role, image_dir, label_dir, index_dir: Path, name) -> dict:
    return {"role": role, "image_dir": str(image_dir), "label_dir": str(label_dir),
            "index": str(index_dir / f"{name}.parquet"),
            "classes": str(index_dir / "classes" / f"{name}.json"), "ignore_label": 255}


def bad_items(p: DataParams, root, args) -> BadItems:
    return BadItems(p.bad_items, root, skip_hint="set data.bad_items: skip to leave it out "
                    f"(counted in {args.check_metrics})")


def prepare_synthetic(p: DataParams, out: Path, index_tmp: Path, args) -> tuple[dict, dict, bytes]:
    """Render the world into `out` (the world's temporary folder) and index it."""
    spec = world.WorldSpec(p.seed, p.image_size, p.train_images, p.eval_images,
                           p.probe_images, p.captions_per_image, p.max_things)
    world.write_world(spec, out, workers=p.workers,
                      progress=lambda it, n: tqdm(it, total=n, desc="render world",
                                                  unit="img", mininterval=2))
    # The world goes through the same checks as real COCO (a few seconds).
    on_bad = bad_items(p, out, args)
    label_spec = LabelSpec(COCO_LABEL_MODES, len(load_class_list(out / "classes/train.json")),
                           255)
    rows, listed = check_coco(out, world.COCO_IMAGES, world.COCO_CAPTIONS,
                              world.COCO_LABELS, label_spec, on_bad, p.workers)
    write_index(index_tmp / "train.parquet", rows)
    splits = {"train": _split_entry("train", args.world / world.COCO_IMAGES,
                                    args.world / world.COCO_LABELS, args.index, "train")}
    (index_tmp / "classes" / "train.json").write_bytes((out / "classes/train.json")
                                                       .read_bytes())
    for name in [world.PROBE_SPLIT] + [v.name for v in world.EVAL_VOCABS]:
        write_index(index_tmp / f"{name}.parquet", index_semseg(out / name))
        (index_tmp / "classes" / f"{name}.json").write_bytes(
            (out / "classes" / f"{name}.json").read_bytes())
        splits[name] = _split_entry(
            "probe" if name == world.PROBE_SPLIT else "eval",
            args.world / name / "images/validation",
            args.world / name / "annotations_detectron2/validation", args.index, name)
    samples = rows[:8]
    images = [np.asarray(Image.open(out / world.COCO_IMAGES / r.file_name)) for r in samples]
    samples_png = sample_grid_png(images, [list(r.captions) for r in samples])
    return splits, on_bad.metrics(listed, len(rows)), samples_png


def prepare_coco(p: DataParams, out: Path, index_tmp: Path, args) -> tuple[dict, dict, bytes]:
    """Check the COCO layout under data.coco.root and index it; `out` gets a note only."""
    c = p.coco
    coco_stuff = builtin_class_list("coco_stuff_171")
    on_bad = bad_items(p, c.root, args)
    rows, listed = check_coco(c.root, c.images, c.captions, c.labels,
                              LabelSpec(COCO_LABEL_MODES, len(coco_stuff), 255), on_bad,
                              p.workers)
    write_index(index_tmp / "train.parquet", rows)
    # The probe reads single-thing images among the first rows of the training set.
    write_index(index_tmp / "probe.parquet", rows[: c.probe_images])
    classes = json_bytes(coco_stuff.to_json())
    image_dir, label_dir = Path(c.root) / c.images, Path(c.root) / c.labels
    for name in ("train", "probe"):
        (index_tmp / "classes" / f"{name}.json").write_bytes(classes)
    (out / "README.txt").write_text(f"data.source is coco: images are read from {c.root}\n")
    first = rows[:8]
    images = [np.asarray(Image.open(image_dir / r.file_name).convert("RGB")) for r in first]
    return ({"train": _split_entry("train", image_dir, label_dir, args.index, "train"),
             "probe": _split_entry("probe", image_dir, label_dir, args.index, "probe")},
            on_bad.metrics(listed, len(rows)),
            sample_grid_png(images, [list(r.captions) for r in first]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--params", "--world", "--index", "--samples", "--check-metrics"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    p = load_params(args.params).data
    # All or nothing: the world, the index that points into it, the samples picture and the
    # check metrics are renamed into place together, only once everything is written; a
    # failure (a bad item under data.bad_items: stop included) leaves the old ones as
    # they were.
    outputs = (args.world, args.index, args.samples, args.check_metrics)
    try:
        with staged_outputs(*outputs) as (world_tmp, index_tmp, samples_tmp, check_tmp):
            world_tmp.mkdir()
            (index_tmp / "classes").mkdir(parents=True)
            prepare = prepare_synthetic if p.source == "synthetic" else prepare_coco
            splits, check, samples_png = prepare(p, world_tmp, index_tmp, args)
            for s in splits.values():  # every class list must parse
                load_class_list(index_tmp / "classes" / Path(s["classes"]).name)
            (index_tmp / "splits.json").write_bytes(json_bytes(
                {"source": p.source, "params": recorded_params(p), "splits": splits}))
            samples_tmp.write_bytes(samples_png)
            check_tmp.write_bytes(json_bytes(check))
    except LayoutError as e:  # a bad layout or item: its message, not a traceback
        raise SystemExit(f"prepare_data: {e}") from None
    skipped = sum(check["skipped"].values())
    print(f"checked {check['checked']} training images: {check['indexed']} indexed, "
          f"{skipped} item(s) left out -> {args.check_metrics}")
    print(f"prepared {p.source} data: splits {', '.join(splits)} -> {args.index / 'splits.json'}")


def recorded_params(p: DataParams) -> dict:
    """The data params splits.json records. Not bad_items: it only decides whether a bad
    item stops the stage or is left out (and counted in the check metrics), so a clean tree
    gives the same index, byte for byte, under either."""
    recorded = dataclasses.asdict(p)
    del recorded["bad_items"]
    return recorded


if __name__ == "__main__":
    main()
