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
from pipeline.data.eval_datasets import (
    EVAL_ALIASES,
    EVAL_LAYOUTS,
    canonical_eval_name,
    index_eval_dataset,
)
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import IndexRow, Split, iter_index
from pipeline.data.read_ahead import read_ahead
from pipeline.data.segments import present_classes
from pipeline.data.validate import BadItems
from pipeline.distributed.chunks import Chunks
from pipeline.distributed.transfers import to_device
from pipeline.proposals.augment import MAX_LONG_SIDE, short_side_shape
from pipeline.segment.bottleneck import (
    BOTTLENECK_VARIANTS,
    class_segments,
    oracle_label_map,
    segment_label_map,
)
from pipeline.segment.metrics import check_labels, confusion_counts, segmentation_scores
from pipeline.segment.open_metrics import open_segmentation_scores
from pipeline.segment.segmenter import image_tensor
from pipeline.segment.two_stage import mask_probs

VARIANTS = ("maskformer", "clip", "ensemble")
# batches of images and label maps decoded ahead on a GPU (a few MB each at ADE's sizes)
READ_AHEAD_BATCHES = 2


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
    named as in EVAL_LAYOUTS or by an alias (EVAL_ALIASES), whose bad items stop the run
    or are left out and counted (data.bad_items). ValueError for any other name, and for
    a bad item under "stop"."""
    train = load_class_list(splits["train"].classes)
    if name in splits and splits[name].role == "eval":
        s = splits[name]
        classes = load_class_list(s.classes)
        return EvalSet(classes, Path(s.image_dir), Path(s.label_dir),
                       list(iter_index(s.index)), s.ignore_label, list(classes.seen))
    if canonical_eval_name(name) in EVAL_LAYOUTS:
        on_bad = BadItems(bad_items, root)
        lay, rows = index_eval_dataset(root, name, on_bad)
        classes = builtin_class_list(lay.classes)
        check = on_bad.metrics(len(rows) + sum(on_bad.skipped.values()), len(rows))
        return EvalSet(classes, Path(root) / lay.image_dir, Path(root) / lay.label_dir, rows,
                       lay.ignore_label, seen_in_training(classes, train), check)
    known = [n for n, s in splits.items() if s.role == "eval"] + list(EVAL_LAYOUTS)
    raise ValueError(f"unknown evaluation set {name!r} (eval.datasets); known: "
                     f"{', '.join(known)}; or a real set's alias: {', '.join(EVAL_ALIASES)}")


def resized_image(image: np.ndarray, short_side: int) -> np.ndarray:
    """(H, W, 3) uint8 image resized bilinearly, aspect kept, to short side `short_side`
    and long side at most 4x that, as detectron2's ResizeShortestEdge at test time (OVSeg:
    MIN_SIZE_TEST 512 / MAX_SIZE_TEST 2048 for R101c, 640 / 2560 for Swin-B); 0: as is.
    The label map is never resized: predictions are scored at its own resolution
    (`confusion_by_variant`)."""
    if not short_side:
        return image
    h, w = short_side_shape(*image.shape[:2], short_side, MAX_LONG_SIDE * short_side)
    if (h, w) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def image_at(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 image resized bilinearly to `size` (h, w) when different."""
    if tuple(size) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))


def bottleneck_label_maps(segmenter, image: np.ndarray, gt: torch.Tensor,
                          classes: np.ndarray, mask_logits: torch.Tensor, num_classes: int,
                          ignore: int) -> dict[str, torch.Tensor]:
    """OVSeg Figure 1(c)'s two (H, W) label maps of one image (pipeline/segment/bottleneck.py)
    on the ground truth `gt`'s device: its ground-truth segments (of its classes `classes`,
    `present_classes`) classified by the segmenter's CLIP on crops of the image at the label
    map's size, and its proposals (mask logits at any size) labelled by the oracle."""
    classes = to_device(classes, gt.device)
    out = {"gt_masks_clip": torch.zeros(gt.shape, dtype=torch.long, device=gt.device)}
    if len(classes):
        probs = segmenter.classify_regions(image_tensor(image_at(image, tuple(gt.shape))),
                                           class_segments(gt, classes))
        out["gt_masks_clip"] = segment_label_map(gt, classes, probs.argmax(1), num_classes,
                                                 ignore)
    out["proposals_oracle"] = oracle_label_map(
        mask_probs(mask_logits.to(gt.device), tuple(gt.shape)), gt, classes, num_classes,
        ignore, segmenter.mask_threshold)
    return out


def label_tensor(labels: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """An (H, W) label map on `device`: uint8 as read (a quarter of the bytes to copy),
    wider maps (ADE-847's) as int32."""
    return to_device(labels if labels.dtype in (np.uint8, np.int32) else
                     labels.astype(np.int32), device)


def confusion_by_variant(segmenter, ds: EvalSet, images_per_batch: int, short_side: int,
                         overlays: int, on_batch=lambda n: None, sweep: tuple[float, ...] = (),
                         bottleneck: bool = False, rank: int = 0, world: int = 1,
                         read_ahead_batches: int = 0
                         ) -> tuple[dict[str, np.ndarray], dict[float, np.ndarray], list[dict]]:
    """(variant -> (K, K) confusion matrix over `ds`'s rows, λ -> the ensemble's confusion
    matrix at that λ for each λ of `sweep`, the first `overlays` images with their ground
    truth and predictions). Each image goes to the segmenter resized to `short_side`; its
    predictions are scored against the label map at the label map's own size (OVSeg's
    evaluation: sem_seg_postprocess to the original height and width). The sweep reuses
    each mask's CLIP probabilities: only the ensemble and the fusion run per λ.
    bottleneck: also the matrices of BOTTLENECK_VARIANTS (`bottleneck_label_maps`).
    on_batch(n) after each batch of n images.
    rank, world: only this process's contiguous share of the batches (the batches are the
    same for any process count, so the matrices summed over ranks are one process's).
    read_ahead_batches: batches of files decoded ahead on a thread (the stage: on a GPU,
    READ_AHEAD_BATCHES, while the networks run; 0 on the CPU); the matrices are the same.

    The label maps are counted where the segmenter made them (issue 31): on a GPU only
    the first `overlays` images' predictions and the summed matrices, once, come back,
    instead of 3 + len(sweep) label maps an image, each counted by the host. The files'
    labels are checked (`check_labels`) as they are read."""
    k = len(ds.classes)
    names = VARIANTS + (BOTTLENECK_VARIANTS if bottleneck else ())
    counts = torch.zeros(len(names) + len(sweep), k, k, dtype=torch.long)
    panels = []
    batches = Chunks(len(ds.rows), images_per_batch)

    def load(b: int) -> list[tuple]:
        """(image, its tensor at short_side, label map, its classes or None) of each row of
        batch b: the host's share of the work, on the reader thread when there is one."""
        out = []
        for r in batches.slice(ds.rows, b):
            labels = read_labels(ds.label_dir / r.label_file)
            check_labels(labels, k, ds.ignore_label, str(ds.label_dir / r.label_file))
            image = read_rgb(ds.image_dir / r.file_name)
            out.append((image, image_tensor(resized_image(image, short_side)), labels,
                        present_classes(labels, ds.ignore_label) if bottleneck else None))
        return out

    for loaded in read_ahead(map(load, batches.owned(rank, world)), read_ahead_batches):
        found = segmenter.mask_predictions([x for _, x, _, _ in loaded])
        for (image, _, labels, classes), masks in zip(loaded, found):
            counts = counts.to(masks.mask_logits.device)  # where the predictions are
            gt = label_tensor(labels, counts.device)
            pred, by_lambda = masks.label_maps(segmenter.ensemble_lambda, labels.shape, sweep)
            maps = [pred[v] for v in VARIANTS]
            if bottleneck:
                found_maps = bottleneck_label_maps(segmenter, image, gt, classes,
                                                   masks.mask_logits, k, ds.ignore_label)
                maps += [found_maps[v] for v in BOTTLENECK_VARIANTS]
            maps += [by_lambda[lam] for lam in sweep]
            counts += confusion_counts(torch.stack(maps), gt, k, ds.ignore_label)
            if len(panels) < overlays:
                panels.append({"image": image, "gt": labels,
                               **{v: m.cpu().numpy() for v, m in pred.items()}})
        on_batch(len(loaded))
    counts = counts.cpu().numpy()
    return (dict(zip(names, counts[:len(names)])),
            dict(zip(sweep, counts[len(names):])), panels)


def variant_scores(conf: dict[str, np.ndarray], ds: EvalSet,
                   similarity: np.ndarray) -> dict[str, dict]:
    """variant -> segmentation scores, per-class IoU keyed by class name, and under "open"
    Open mIoU with the (K, K) class-name similarity, for each variant of `conf`."""
    out = {}
    for v in conf:
        scores = segmentation_scores(conf[v], np.array(ds.seen))
        scores["per_class_iou"] = dict(zip(ds.classes.names, scores["per_class_iou"]))
        scores["open"] = open_segmentation_scores(conf[v], similarity, np.array(ds.seen))
        out[v] = scores
    return out


def lambda_sweep_rows(swept: dict[float, np.ndarray], ds: EvalSet,
                      similarity: np.ndarray) -> list[dict]:
    """One row per λ of the sweep, in increasing λ: the ensemble's mIoU (both formulas)
    over all, seen and unseen classes, pixel accuracy (OVSeg appendix A.5's sensitivity
    to the ensemble weight) and its Open mIoU under the (K, K) name similarity."""
    rows = []
    for lam in sorted(swept):
        s = segmentation_scores(swept[lam], np.array(ds.seen))
        o = open_segmentation_scores(swept[lam], similarity, np.array(ds.seen))
        row = {"lambda": lam, "miou_d2_legacy": s["miou_d2_legacy"], "miou": s["miou"],
               "pixel_accuracy": s["pixel_accuracy"],
               "open_miou_d2_legacy": o["miou_d2_legacy"]}
        for part in ("seen", "unseen"):
            row[f"{part}_miou_d2_legacy"] = s[part]["miou_d2_legacy"]
            row[f"{part}_miou"] = s[part]["miou"]
            row[f"{part}_open_miou_d2_legacy"] = o[part]["miou_d2_legacy"]
        rows.append(row)
    return rows


SWEEP_COLUMNS = ("lambda", "miou_d2_legacy", "seen_miou_d2_legacy", "unseen_miou_d2_legacy",
                 "miou", "seen_miou", "unseen_miou", "pixel_accuracy", "open_miou_d2_legacy",
                 "seen_open_miou_d2_legacy", "unseen_open_miou_d2_legacy")


def lambda_sweep_csv(rows: list[dict]) -> bytes:
    """The sweep's rows as CSV (a DVC plot), 6 decimals; an empty cell where a score is
    undefined (no unseen class in the ground truth)."""
    lines = [",".join(SWEEP_COLUMNS)]
    for r in rows:
        lines.append(",".join("" if r[c] is None else f"{r[c]:.6f}" for c in SWEEP_COLUMNS))
    return ("\n".join(lines) + "\n").encode()
