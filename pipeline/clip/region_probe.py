"""A CLIP's region probes (OVSeg Figure 1(c) in miniature): zero-shot top-1 on whole
single-thing images vs masked crops of the same things, and the outline-only control, a
classifier that sees the crop masks alone (near chance when outlines carry no class, as a
well-made world requires). The arithmetic first, then the probes over a split's files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.clip.masked_crops import masked_crops, normalize
from pipeline.clip.text_classifier import VILD_TEMPLATES, text_classifier
from pipeline.data.class_lists import load_class_list
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import Split, iter_index
from pipeline.data.segments import Segment, label_segments

CONTROL_IMAGES = 3000  # training label maps mined for the outline-only control
MIN_PROBE_PIXELS = 16


def single_thing_segment(segments: list[Segment], isthing, min_pixels: int) -> Segment | None:
    """The thing segment of an image that shows exactly one thing class, else None."""
    things = [s for s in segments if isthing[s.label]]
    if len(things) != 1 or things[0].mask.sum() < min_pixels:
        return None
    return things[0]


def probe_views(image: np.ndarray, mask: np.ndarray, size: int, mean: torch.Tensor):
    """Whole image and masked crops (mean- and zero-filled) of one object, each (3, S, S)
    in [0, 1], plus the crop mask (S, S) bool."""
    img = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    whole = F.interpolate(img[None], size=(size, size), mode="bicubic",
                          align_corners=False)[0].clamp(0, 1)
    m = torch.from_numpy(mask)[None]
    crop_mean, crop_mask, _ = masked_crops(img, m, size, fill="mean", fill_color=mean)
    crop_zero, _, _ = masked_crops(img, m, size, fill="zero")
    return whole, crop_mean[0], crop_zero[0], crop_mask[0]


@torch.no_grad()
def zero_shot_predictions(model, images: torch.Tensor, classifier: torch.Tensor,
                          batch_size: int = 256) -> torch.Tensor:
    """images (N, 3, S, S) normalised; classifier (K, D) -> predicted class (N,) on the
    CPU. Each batch goes to the model's device."""
    device = next(model.parameters()).device
    preds = []
    for i in range(0, len(images), batch_size):
        f = model.encode_image(images[i:i + batch_size].to(device), normalize=True).float()
        preds.append((f @ classifier.to(device).T).argmax(dim=1).cpu())
    return torch.cat(preds)


def accuracy_by_group(pred: torch.Tensor, target: torch.Tensor, seen: torch.Tensor) -> dict:
    """Top-1 over all samples and split by whether the target class was seen in training."""
    correct = (pred == target).float()
    s = seen[target]
    out = {"all": float(correct.mean()), "n": int(len(target))}
    for name, sel in (("seen", s), ("unseen", ~s)):
        out[name] = float(correct[sel].mean()) if sel.any() else None
        out[f"n_{name}"] = int(sel.sum())
    return out


def outline_features(crop_masks: torch.Tensor, grid: int = 16) -> torch.Tensor:
    """(N, S, S) bool crop masks -> (N, grid*grid) foreground fractions."""
    return F.adaptive_avg_pool2d(crop_masks[:, None].float(), grid).flatten(1)


def outline_control(train_x, train_y, test_x, test_y, num_classes: int, steps: int,
                    seed: int = 0) -> float:
    """Accuracy of a 2-layer MLP that classifies masks from their outline alone. Near chance
    when outlines carry no class information, as a well-made world requires."""
    g = torch.Generator().manual_seed(seed)
    hidden = 128
    w1 = (torch.randn(train_x.shape[1], hidden, generator=g) * train_x.shape[1] ** -0.5)
    w2 = (torch.randn(hidden, num_classes, generator=g) * hidden ** -0.5)
    params = [w1.requires_grad_(), torch.zeros(hidden, requires_grad=True),
              w2.requires_grad_(), torch.zeros(num_classes, requires_grad=True)]
    opt = torch.optim.Adam(params, lr=3e-3, weight_decay=1e-4)

    def forward(x):
        return torch.relu(x @ params[0] + params[1]) @ params[2] + params[3]

    for _ in range(steps):
        loss = F.cross_entropy(forward(train_x), train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((forward(test_x).argmax(1) == test_y).float().mean())


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
        seg = single_thing_segment(label_segments(row.image_id, labels),
                                         classes.isthing, MIN_PROBE_PIXELS)
        if seg is None:
            continue
        whole, crop_mean, crop_zero, _ = probe_views(
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
        x = normalize(torch.stack(v), mean, std)
        pred = zero_shot_predictions(model, x, classifier, batch_size)
        out[key] = accuracy_by_group(pred, target, seen)
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
        for s, x in zip(segs, outline_features(crop_masks)):
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
        acc = outline_control(train_x, train_y, test_x, test_y, len(labels), steps, seed)
        counts = np.bincount(test_y.numpy(), minlength=len(labels))
        out[name] = {"accuracy": acc, "classes": len(labels), "chance": 1.0 / len(labels),
                     "majority": float(counts.max() / counts.sum()), "n_test": len(test_y)}
    return out
