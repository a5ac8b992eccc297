"""Write the synthetic world to disk in the real datasets' layouts.

    <out>/coco/train2017/000000000001.jpg                       training images
    <out>/coco/annotations/captions_train2017.json              COCO captions, 5 per image
    <out>/coco/stuffthingmaps_detectron2/train2017/*.png        labels, 255 = ignore/unseen
    <out>/<split>/images/validation/*.jpg                       eval + probe splits,
    <out>/<split>/annotations_detectron2/validation/*.png       detectron2 semseg layout
    <out>/classes/<split>.json                                  class list of each split

So the same readers serve the world and real COCO/ADE20K. Each image is rendered from its
own generator seeded by (seed, split, index): the bytes do not depend on worker count.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.class_lists import ClassList
from pipeline.data.files import json_bytes
from pipeline.data.image_io import encode_jpeg, encode_png
from pipeline.world.captions import caption_scene
from pipeline.world.classes import (
    EVAL_VOCABS,
    THING_IDS,
    TRAIN_VOCAB,
    WORLD_CLASSES,
    SplitVocabulary,
)
from pipeline.world.render import sample_probe_scene, sample_training_scene

COCO_IMAGES = "coco/train2017"
COCO_CAPTIONS = "coco/annotations/captions_train2017.json"
COCO_LABELS = "coco/stuffthingmaps_detectron2/train2017"
PROBE_SPLIT = "probe"
PROBE_VOCAB = SplitVocabulary("probe", THING_IDS, tuple(WORLD_CLASSES[i].name for i in THING_IDS))
SPLIT_CODES = {"train": 0, PROBE_SPLIT: 1, **{v.name: 2 + i for i, v in enumerate(EVAL_VOCABS)}}


@dataclass(frozen=True)
class WorldSpec:
    seed: int
    image_size: int
    train_images: int
    eval_images: int
    probe_images: int
    captions_per_image: int
    max_things: int


def vocab_class_list(vocab: SplitVocabulary) -> ClassList:
    return ClassList(
        vocab.name,
        vocab.names,
        tuple(WORLD_CLASSES[w].isthing for w in vocab.world_ids),
        tuple(WORLD_CLASSES[w].seen for w in vocab.world_ids),
    )


def _render_one(job) -> tuple[int, list[str]]:
    """Render, label and write one image; return (image_id, captions)."""
    spec, split, index, image_path, label_path, lut = job
    rng = np.random.default_rng([spec.seed, SPLIT_CODES[split], index])
    if split == PROBE_SPLIT:
        scene = sample_probe_scene(rng, spec.image_size, THING_IDS[index % len(THING_IDS)])
    else:
        scene = sample_training_scene(rng, spec.image_size, spec.max_things)
    captions = caption_scene(scene, rng, spec.captions_per_image) if split == "train" else []
    labels = np.asarray(lut, np.uint8)[scene.labels]
    Path(image_path).write_bytes(encode_jpeg(scene.image))
    Path(label_path).write_bytes(encode_png(labels))
    return index + 1, captions


def _jobs(spec: WorldSpec, out: Path) -> list[tuple]:
    jobs = []
    lut = TRAIN_VOCAB.label_lut()
    for i in range(spec.train_images):
        name = f"{i + 1:012d}"
        jobs.append((spec, "train", i, out / COCO_IMAGES / f"{name}.jpg",
                     out / COCO_LABELS / f"{name}.png", lut))
    for vocab, n in [(PROBE_VOCAB, spec.probe_images)] + [(v, spec.eval_images)
                                                           for v in EVAL_VOCABS]:
        lut = vocab.label_lut()
        for i in range(n):
            name = f"{vocab.name}_{i + 1:06d}"
            jobs.append((spec, vocab.name, i, out / vocab.name / "images/validation" /
                         f"{name}.jpg", out / vocab.name / "annotations_detectron2/validation" /
                         f"{name}.png", lut))
    return jobs


def write_world(
    spec: WorldSpec,
    out: str | Path,
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] = lambda it, total: it,
) -> None:
    """Render every split of the world into `out` (which must exist and be empty)."""
    out = Path(out)
    for d in (COCO_IMAGES, COCO_LABELS, "coco/annotations", "classes"):
        (out / d).mkdir(parents=True, exist_ok=True)
    for vocab in (PROBE_VOCAB, *EVAL_VOCABS):
        (out / vocab.name / "images/validation").mkdir(parents=True, exist_ok=True)
        (out / vocab.name / "annotations_detectron2/validation").mkdir(parents=True,
                                                                        exist_ok=True)
    jobs = _jobs(spec, out)
    captions: dict[int, list[str]] = {}
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            results = pool.imap(_render_one, jobs, chunksize=64)
            for job, (image_id, caps) in zip(jobs, progress(results, len(jobs))):
                if job[1] == "train":
                    captions[image_id] = caps
    else:
        for job in progress(jobs, len(jobs)):
            image_id, caps = _render_one(job)
            if job[1] == "train":
                captions[image_id] = caps

    size = spec.image_size
    coco = {
        "info": {"description": "OVSeg pipeline synthetic world", "seed": spec.seed},
        "licenses": [],
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": size, "width": size}
                   for i in sorted(captions)],
        "annotations": [
            {"id": i * 100 + k, "image_id": i, "caption": c}
            for i in sorted(captions) for k, c in enumerate(captions[i])
        ],
    }
    (out / COCO_CAPTIONS).write_bytes(json_bytes(coco))
    for vocab in (TRAIN_VOCAB, PROBE_VOCAB, *EVAL_VOCABS):
        (out / "classes" / f"{vocab.name}.json").write_bytes(
            json_bytes(vocab_class_list(vocab).to_json()))
