"""The base CLIP's two region probes over a split's files (OVSeg Figure 1(c) in miniature):
zero-shot top-1 on whole single-thing images vs masked crops of the same things, and the
outline-only control that sees the crop masks alone. The arithmetic is in `probe`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.clip import probe
from pipeline.clip.masked_crops import masked_crops
from pipeline.clip.text_classifier import VILD_TEMPLATES, text_classifier
from pipeline.data.class_lists import load_class_list
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import Split, iter_index
from pipeline.data.segments import label_segments

CONTROL_IMAGES = 3000  # training label maps mined for the outline-only control
MIN_PROBE_PIXELS = 16


def zero_shot_probe(model, tokenizer, split: Split, size: int, mean: torch.Tensor,
                    std: torch.Tensor, batch_size: int, templates=VILD_TEMPLATES) -> dict:
    """Top-1 over the thing classes of `split` (the probe split) on its single-thing images:
    whole image, masked crop mean-filled, masked crop zero-filled; seen and unseen apart.
    A split without single-thing images gives {"images": 0, "note": why} (a real subset
    may have none among its first data.coco.probe_images images)."""
    classes = load_class_list(split.classes)
    thing_ids = [i for i, t in enumerate(classes.isthing) if t]
    position = {c: k for k, c in enumerate(thing_ids)}
    views = {"whole_image": [], "masked_crop_mean": [], "masked_crop_zero": []}
    targets, scanned = [], 0
    for row in iter_index(split.index):
        scanned += 1
        labels = read_labels(Path(split.label_dir) / row.label_file)
        seg = probe.single_thing_segment(label_segments(row.image_id, labels),
                                         classes.isthing, MIN_PROBE_PIXELS)
        if seg is None:
            continue
        whole, crop_mean, crop_zero, _ = probe.probe_views(
            read_rgb(Path(split.image_dir) / row.file_name), seg.mask, size, mean)
        for key, v in zip(views, (whole, crop_mean, crop_zero)):
            views[key].append(v)
        targets.append(position[seg.label])
    if not targets:
        return {"images": 0, "note": f"none of the {scanned} images of {split.index} shows a "
                                     "single thing: no probe (data.coco.probe_images scans more)"}
    classifier = text_classifier(model, tokenizer, [classes.names[i] for i in thing_ids],
                                 templates)
    target = torch.tensor(targets)
    seen = torch.tensor([classes.seen[i] for i in thing_ids])
    out = {"images": len(targets), "classes": len(thing_ids), "chance": 1.0 / len(thing_ids)}
    for key, v in views.items():
        x = probe.normalize(torch.stack(v), mean, std)
        pred = probe.zero_shot_predictions(model, x, classifier, batch_size)
        out[key] = probe.accuracy_by_group(pred, target, seen)
    return out


def outline_only_control(split: Split, size: int, steps: int, seed: int) -> dict:
    """Things and stuff apart: train the control on the masks of the first 80% of the first
    CONTROL_IMAGES images of `split` (the training split), test it on the rest."""
    classes = load_class_list(split.classes)
    feats = {True: [], False: []}  # isthing -> [(row number, label, features)]
    scanned = 0
    for n, row in enumerate(iter_index(split.index)):
        if n >= CONTROL_IMAGES:
            break
        scanned += 1
        labels = read_labels(Path(split.label_dir) / row.label_file)
        segs = label_segments(row.image_id, labels)
        if not segs:
            continue
        masks = torch.from_numpy(np.stack([s.mask for s in segs]))
        _, crop_masks, _ = masked_crops(torch.zeros(3, *labels.shape), masks, size, fill="zero")
        for s, x in zip(segs, probe.outline_features(crop_masks)):
            feats[classes.isthing[s.label]].append((n, s.label, x))
    cut = int(0.8 * scanned)  # first 80% of the images train the control, the rest test it
    out = {}
    for isthing, name in ((True, "things"), (False, "stuff")):
        items = feats[isthing]
        labels = sorted({lab for _, lab, _ in items})
        if len(labels) < 2:
            continue
        remap = {lab: k for k, lab in enumerate(labels)}

        def tensors(keep, items=items, remap=remap):
            chosen = [(remap[lab], x) for n, lab, x in items if keep(n)]
            return torch.stack([x for _, x in chosen]), torch.tensor([y for y, _ in chosen])

        train_x, train_y = tensors(lambda n: n < cut)
        test_x, test_y = tensors(lambda n: n >= cut)
        acc = probe.outline_control(train_x, train_y, test_x, test_y, len(labels), steps, seed)
        counts = np.bincount(test_y.numpy(), minlength=len(labels))
        out[name] = {"accuracy": acc, "classes": len(labels), "chance": 1.0 / len(labels),
                     "majority": float(counts.max() / counts.sum()), "n_test": len(test_y)}
    return out
