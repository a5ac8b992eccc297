"""Stage prepare_data: render the synthetic world, or validate a real COCO layout, then
write the image index every later stage reads.

    python -m stages.prepare_data --params params.yaml --world data/world
        --index data/index --samples metrics/world_samples.png

--world: the synthetic files (a note for real data); --index: splits.json, one index
parquet and one class list per split; splits.json records the folders of each split's
images and labels, which is how later stages find them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.data.class_lists import builtin_class_list, load_class_list
from pipeline.data.files import atomic_dir, atomic_write_bytes, json_bytes
from pipeline.data.layouts import index_coco, index_semseg, write_index
from pipeline.params import DataParams, load_params
from pipeline.world import dataset as world
from pipeline.world.sample_grid import sample_grid_png


def _split_entry(role, image_dir, label_dir, index_dir: Path, name) -> dict:
    return {"role": role, "image_dir": str(image_dir), "label_dir": str(label_dir),
            "index": str(index_dir / f"{name}.parquet"),
            "classes": str(index_dir / "classes" / f"{name}.json"), "ignore_label": 255}


def prepare_synthetic(p: DataParams, index_tmp: Path, args) -> dict:
    spec = world.WorldSpec(p.seed, p.image_size, p.train_images, p.eval_images,
                           p.probe_images, p.captions_per_image, p.max_things)
    with atomic_dir(args.world) as out:
        world.write_world(spec, out, workers=p.workers,
                          progress=lambda it, n: tqdm(it, total=n, desc="render world",
                                                      unit="img", mininterval=2))
        # The world goes through the same validator as real COCO.
        rows = index_coco(out, world.COCO_IMAGES, world.COCO_CAPTIONS, world.COCO_LABELS)
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
        atomic_write_bytes(args.samples, sample_grid_png(images, [list(r.captions)
                                                                  for r in samples]))
    return splits


def prepare_coco(p: DataParams, index_tmp: Path, args) -> dict:
    c = p.coco
    rows = index_coco(c.root, c.images, c.captions, c.labels)
    write_index(index_tmp / "train.parquet", rows)
    # The probe reads single-thing images among the first rows of the training set.
    write_index(index_tmp / "probe.parquet", rows[: c.probe_images])
    classes = json_bytes(builtin_class_list("coco_stuff_171").to_json())
    image_dir, label_dir = Path(c.root) / c.images, Path(c.root) / c.labels
    for name in ("train", "probe"):
        (index_tmp / "classes" / f"{name}.json").write_bytes(classes)
    with atomic_dir(args.world) as out:
        (out / "README.txt").write_text(f"data.source is coco: images are read from {c.root}\n")
    first = rows[:8]
    images = [np.asarray(Image.open(image_dir / r.file_name).convert("RGB")) for r in first]
    atomic_write_bytes(args.samples, sample_grid_png(images, [list(r.captions) for r in first]))
    return {"train": _split_entry("train", image_dir, label_dir, args.index, "train"),
            "probe": _split_entry("probe", image_dir, label_dir, args.index, "probe")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--params", "--world", "--index", "--samples"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    p = load_params(args.params).data
    with atomic_dir(args.index) as index_tmp:
        (index_tmp / "classes").mkdir()
        prepare = prepare_synthetic if p.source == "synthetic" else prepare_coco
        splits = prepare(p, index_tmp, args)
        for s in splits.values():  # every class list must parse
            load_class_list(index_tmp / "classes" / Path(s["classes"]).name)
        (index_tmp / "splits.json").write_bytes(json_bytes(
            {"source": p.source, "params": dataclasses.asdict(p), "splits": splits}))
    print(f"prepared {p.source} data: splits {', '.join(splits)} -> {args.index / 'splits.json'}")


if __name__ == "__main__":
    main()
