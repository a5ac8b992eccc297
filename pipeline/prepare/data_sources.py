"""The prepare_data stage's work: the synthetic world rendered, or a real COCO layout
checked, and either indexed into the per-split parquet files and class lists every later
stage reads (`splits.json` records each split's folders, which is how they find them).

Both write into temporary folders the stage hands over and renames into place together;
`FinalPaths` are where those folders will be, which is what the index records.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from pipeline.data.class_lists import builtin_class_list, load_class_list
from pipeline.data.files import json_bytes
from pipeline.data.layouts import index_semseg, write_index
from pipeline.data.validate import COCO_LABEL_MODES, BadItems, LabelSpec, check_coco
from pipeline.params import DataParams
from pipeline.world import dataset as world
from pipeline.world.sample_grid import sample_grid_png


class FinalPaths(NamedTuple):
    world: Path
    index: Path


def _no_progress(items, total):
    return items


def split_entry(role, image_dir, label_dir, index_dir: Path, name) -> dict:
    return {"role": role, "image_dir": str(image_dir), "label_dir": str(label_dir),
            "index": str(index_dir / f"{name}.parquet"),
            "classes": str(index_dir / "classes" / f"{name}.json"), "ignore_label": 255}


def prepare_synthetic(p: DataParams, out: Path, index_tmp: Path, paths: FinalPaths,
                      bad_items: Callable[[Path], BadItems], progress=_no_progress
                      ) -> tuple[dict, dict, bytes]:
    """Render the world into `out` (the world's temporary folder) and index it into
    `index_tmp`; returns the splits, the check metrics and the samples picture (PNG)."""
    spec = world.WorldSpec(p.seed, p.image_size, p.train_images, p.eval_images,
                           p.probe_images, p.captions_per_image, p.max_things)
    world.write_world(spec, out, workers=p.workers, progress=progress)
    # The world goes through the same checks as real COCO (a few seconds).
    on_bad = bad_items(out)
    label_spec = LabelSpec(COCO_LABEL_MODES, len(load_class_list(out / "classes/train.json")),
                           255)
    rows, listed = check_coco(out, world.COCO_IMAGES, world.COCO_CAPTIONS,
                              world.COCO_LABELS, label_spec, on_bad, p.workers)
    write_index(index_tmp / "train.parquet", rows)
    splits = {"train": split_entry("train", paths.world / world.COCO_IMAGES,
                                    paths.world / world.COCO_LABELS, paths.index, "train")}
    (index_tmp / "classes" / "train.json").write_bytes((out / "classes/train.json")
                                                       .read_bytes())
    for name in [world.PROBE_SPLIT] + [v.name for v in world.EVAL_VOCABS]:
        write_index(index_tmp / f"{name}.parquet", index_semseg(out / name))
        (index_tmp / "classes" / f"{name}.json").write_bytes(
            (out / "classes" / f"{name}.json").read_bytes())
        splits[name] = split_entry(
            "probe" if name == world.PROBE_SPLIT else "eval",
            paths.world / name / "images/validation",
            paths.world / name / "annotations_detectron2/validation", paths.index, name)
    samples = rows[:8]
    images = [np.asarray(Image.open(out / world.COCO_IMAGES / r.file_name)) for r in samples]
    samples_png = sample_grid_png(images, [list(r.captions) for r in samples])
    return splits, on_bad.metrics(listed, len(rows)), samples_png


def prepare_coco(p: DataParams, out: Path, index_tmp: Path, paths: FinalPaths,
                 bad_items: Callable[[Path], BadItems]) -> tuple[dict, dict, bytes]:
    """Check the COCO layout under data.coco.root and index it into `index_tmp`; `out`
    (the world's temporary folder) gets coco/SOURCE.json only. Returns what
    prepare_synthetic does."""
    c = p.coco
    coco_stuff = builtin_class_list("coco_stuff_171")
    on_bad = bad_items(Path(c.root))
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
    # The training stages depend on data/world/coco in both sources (dvc.yaml); for real
    # data it holds what stands for the files: their names and sizes, so DVC re-runs
    # those stages when a file is replaced, not only when the index changes.
    (out / "coco").mkdir()
    (out / "coco" / "SOURCE.json").write_bytes(json_bytes(
        source_manifest(c.root, [(c.images, r.file_name) for r in rows]
                        + [(c.labels, r.label_file) for r in rows] + [("", c.captions)])))
    first = rows[:8]
    images = [np.asarray(Image.open(image_dir / r.file_name).convert("RGB")) for r in first]
    return ({"train": split_entry("train", image_dir, label_dir, paths.index, "train"),
             "probe": split_entry("probe", image_dir, label_dir, paths.index, "probe")},
            on_bad.metrics(listed, len(rows)),
            sample_grid_png(images, [list(r.captions) for r in first]))


def source_manifest(root: str | Path, files: list[tuple[str, str]]) -> dict:
    """{"root", "files", "sha256"}: the hash of every (folder/name, size in bytes) pair,
    in order: it changes when a real training file is added, dropped or rewritten."""
    h = hashlib.sha256()
    for folder, name in files:
        rel = str(Path(folder) / name)
        h.update(f"{rel}\t{(Path(root) / rel).stat().st_size}\n".encode())
    return {"root": str(root), "files": len(files), "sha256": h.hexdigest()}


def recorded_params(p: DataParams) -> dict:
    """The data params splits.json records. Not bad_items: it only decides whether a bad
    item stops the stage or is left out (and counted in the check metrics), so a clean tree
    gives the same index, byte for byte, under either."""
    recorded = dataclasses.asdict(p)
    del recorded["bad_items"]
    return recorded
