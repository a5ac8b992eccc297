"""Scoring the two-stage segmenter on an evaluation set as OVSeg scores it (OVSeg §4.1):
one confusion matrix per variant - maskformer (the proposal net alone), clip (the
masked-crop CLIP alone) and ensemble (OVSeg Table 6) - accumulated over the images, then
mIoU, pixel accuracy and per-class IoU, with the classes seen and unseen in training apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.clip.text_classifier import split_synonyms
from pipeline.data.class_lists import ClassList, builtin_class_list, load_class_list
from pipeline.data.eval_datasets import EVAL_LAYOUTS, index_eval_dataset
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import IndexRow, Split, iter_index
from pipeline.data.validate import BadItems
from pipeline.segment.metrics import confusion_matrix, segmentation_scores

VARIANTS = ("maskformer", "clip", "ensemble")


@dataclass
class EvalSet:
    classes: ClassList
    image_dir: Path
    label_dir: Path
    rows: list[IndexRow]
    ignore_label: int
    seen: list[bool]  # per class: one of its names was labelled in training
    data_check: dict | None = None  # a real set's item check (pipeline/data/validate.py)


def seen_in_training(classes: ClassList, train: ClassList) -> list[bool]:
    """A class is seen if one of its names is a name of a class labelled in training."""
    trained = {s.lower() for name, seen in zip(train.names, train.seen) if seen
               for s in split_synonyms(name)}
    return [any(s.lower() in trained for s in split_synonyms(n)) for n in classes.names]


def resolve_dataset(name: str, root: str, splits: dict[str, Split],
                    bad_items: str = "stop") -> EvalSet:
    """An evaluation split of the prepared data, or a real set under `root` (eval.root),
    whose bad items stop the run or are left out and counted (data.bad_items). ValueError
    for any other name, and for a bad item under "stop"."""
    train = load_class_list(splits["train"].classes)
    if name in splits and splits[name].role == "eval":
        s = splits[name]
        classes = load_class_list(s.classes)
        return EvalSet(classes, Path(s.image_dir), Path(s.label_dir),
                       list(iter_index(s.index)), s.ignore_label, list(classes.seen))
    if name in EVAL_LAYOUTS:
        on_bad = BadItems(bad_items, root)
        lay, rows = index_eval_dataset(root, name, on_bad)
        classes = builtin_class_list(lay.classes)
        check = on_bad.metrics(len(rows) + sum(on_bad.skipped.values()), len(rows))
        return EvalSet(classes, Path(root) / lay.image_dir, Path(root) / lay.label_dir, rows,
                       lay.ignore_label, seen_in_training(classes, train), check)
    known = [n for n, s in splits.items() if s.role == "eval"] + list(EVAL_LAYOUTS)
    raise ValueError(f"unknown evaluation set {name!r} (eval.datasets); known: "
                     f"{', '.join(known)}")


def resized(image: np.ndarray, labels: np.ndarray, short_side: int):
    """Image (bicubic) and labels (nearest) with their short side `short_side`; 0: as is."""
    if not short_side or min(labels.shape) == short_side:
        return image, labels
    h, w = labels.shape
    scale = short_side / min(h, w)
    size = (round(w * scale), round(h * scale))
    return (np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)),
            np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST)))


def confusion_by_variant(segmenter, ds: EvalSet, images_per_batch: int, short_side: int,
                         overlays: int, on_batch=lambda n: None
                         ) -> tuple[dict[str, np.ndarray], list[dict]]:
    """(variant -> (K, K) confusion matrix over `ds`'s rows, the first `overlays` images
    with their ground truth and predictions). on_batch(n) after each batch of n images."""
    k = len(ds.classes)
    conf = {v: np.zeros((k, k), dtype=np.int64) for v in VARIANTS}
    panels = []
    for i in range(0, len(ds.rows), images_per_batch):
        loaded = [resized(read_rgb(ds.image_dir / r.file_name),
                          read_labels(ds.label_dir / r.label_file), short_side)
                  for r in ds.rows[i:i + images_per_batch]]
        preds = segmenter.predict_batch([torch.from_numpy(im.copy()).permute(2, 0, 1).float()
                                         / 255 for im, _ in loaded])
        for (image, labels), pred in zip(loaded, preds):
            pred = {v: m.numpy() for v, m in pred.items()}
            for v in VARIANTS:
                conf[v] += confusion_matrix(pred[v], labels, k, ds.ignore_label)
            if len(panels) < overlays:
                panels.append({"image": image, "gt": labels, **pred})
        on_batch(len(loaded))
    return conf, panels


def variant_scores(conf: dict[str, np.ndarray], ds: EvalSet) -> dict[str, dict]:
    """variant -> segmentation scores, per-class IoU keyed by class name."""
    out = {}
    for v in VARIANTS:
        scores = segmentation_scores(conf[v], np.array(ds.seen))
        scores["per_class_iou"] = dict(zip(ds.classes.names, scores["per_class_iou"]))
        out[v] = scores
    return out
