"""Zero-shot top-1 of CLIP variants on the ground-truth masked crops of an evaluation split:
every class segment of every image, classified among the split's class names. The
adaptation table of OVSeg (FT, MPT, both) in miniature, on regions instead of mIoU."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.clip.mask_classifier import crop_cosines, crops_for_clip
from pipeline.clip.region_probe import accuracy_by_group, outline_control, outline_features
from pipeline.clip.text_classifier import cached_text_classifier
from pipeline.data.class_lists import ClassList, load_class_list
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import Split, iter_index
from pipeline.data.segments import label_segments


@dataclass
class Variant:
    model: torch.nn.Module
    prompts: torch.Tensor | None  # (depth, grid*grid, width) or None
    text: torch.Tensor  # (K, D) unit vectors of the split's classes


@dataclass
class RegionSet:
    """One crop per ground-truth segment, streamed image by image."""

    image_index: int
    label: np.ndarray  # (N,) class index of each segment
    crops: torch.Tensor  # (N, 3, S, S) normalised, background filled
    crop_masks: torch.Tensor  # (N, S, S) bool
    outline_crops: torch.Tensor  # (N, 3, S, S): white mask on the fill, image removed


def split_regions(rows: Iterable, image_dir: Path, label_dir: Path, ignore: int, model,
                  fill: str, device: torch.device | str = "cpu", min_pixels: int = 1
                  ) -> Iterable[RegionSet]:
    """Masked crops of the labelled segments of each image (segments of fewer than
    `min_pixels` pixels are skipped), cut on `device` (where CLIP runs)."""
    for n, row in enumerate(rows):
        labels = read_labels(label_dir / row.label_file)
        segs = [s for s in label_segments(row.image_id, labels, ignore)
                if s.mask.sum() >= min_pixels]
        if not segs:
            continue
        image = torch.from_numpy(read_rgb(image_dir / row.file_name).copy())
        image = image.to(device).permute(2, 0, 1).float() / 255
        masks = torch.from_numpy(np.stack([s.mask for s in segs])).to(device)
        crops, crop_masks, _ = crops_for_clip(model, image, masks, fill)
        white, _, _ = crops_for_clip(model, torch.ones_like(image), masks, fill)
        yield RegionSet(n, np.array([s.label for s in segs]), crops, crop_masks, white)


def predict(variant: Variant, crops: torch.Tensor, crop_masks: torch.Tensor,
            batch_size: int = 256) -> torch.Tensor:
    """(N,) predicted class index of each normalised crop, on the CPU."""
    return crop_cosines(variant.model, crops, crop_masks, variant.text, variant.prompts,
                        batch_size).argmax(dim=1).cpu()


def _batches_of_regions(regions: Iterable[RegionSet], batch_size: int
                        ) -> Iterable[list[RegionSet]]:
    """Consecutive images' region sets, about `batch_size` crops a group: an image has a
    few segments, and a CLIP forward per image and variant was most of the stage's time."""
    group, crops = [], 0
    for r in regions:
        group.append(r)
        crops += len(r.label)
        if crops >= batch_size:
            yield group
            group, crops = [], 0
    if group:
        yield group


def region_accuracy(regions: Iterable[RegionSet], variants: dict[str, Variant],
                    classes: ClassList, batch_size: int = 256,
                    control_steps: int = 600, seed: int = 0) -> dict:
    """{variant: top-1 over all / seen / unseen classes} and two outline-only controls:
    - `<variant>_outline`: the variant on crops of a white image through the same masks,
      so only the outline is left (in the pixels and, with MPT, in the prompts);
    - `outline_only_control`: an MLP that sees only the crop masks, trained on the first
      80% of the images and tested on the rest.
    Both stay near the majority rate unless outlines give the class away."""
    preds = {name: [] for name in variants}
    preds.update({f"{name}_outline": [] for name in variants})
    targets, outlines, image_of = [], [], []
    for group in _batches_of_regions(regions, batch_size):
        crops = torch.cat([r.crops for r in group])
        crop_masks = torch.cat([r.crop_masks for r in group])
        outline_crops = torch.cat([r.outline_crops for r in group])
        for name, v in variants.items():
            preds[name].append(predict(v, crops, crop_masks, batch_size))
            preds[f"{name}_outline"].append(predict(v, outline_crops, crop_masks, batch_size))
        for r in group:
            targets.append(torch.from_numpy(r.label))
            outlines.append(outline_features(r.crop_masks.cpu()))  # the control: CPU
            image_of += [r.image_index] * len(r.label)
    if not targets:
        raise ValueError("no labelled segments in this split")
    target = torch.cat(targets)
    seen = torch.tensor(classes.seen)
    out = {name: accuracy_by_group(torch.cat(p), target, seen) for name, p in preds.items()}
    out["outline_only_control"] = outline_accuracy(torch.cat(outlines), target,
                                                   np.array(image_of), control_steps, seed)
    out["classes"] = len(classes)
    return out


def outline_accuracy(features: torch.Tensor, target: torch.Tensor, image_of: np.ndarray,
                     steps: int, seed: int) -> dict | None:
    """None when the split is too small to hold out images or has a single class."""
    cut = np.quantile(np.unique(image_of), 0.8)
    train = torch.from_numpy(image_of <= cut)
    labels, remapped = torch.unique(target, return_inverse=True)
    if len(labels) < 2 or train.all() or not train.any():
        return None
    acc = outline_control(features[train], remapped[train], features[~train],
                          remapped[~train], len(labels), steps, seed)
    counts = torch.bincount(remapped[~train], minlength=len(labels))
    return {"accuracy": acc, "classes": len(labels), "chance": 1.0 / len(labels),
            "majority": float(counts.max() / counts.sum()), "n_test": int((~train).sum())}


def split_region_accuracy(split: Split, models: dict, tokenizer, text_cache: Path, templates,
                          p, device) -> dict:
    """`region_accuracy` of {row: (CLIP, prompts or None)} on an evaluation split's
    ground-truth crops, cut on `device` with the base row's pixel stats; `p` the adapt
    params section (fill, eval_batch_size, seed)."""
    classes = load_class_list(split.classes)
    variants = {row: Variant(m, prompts, cached_text_classifier(m, tokenizer, classes.names,
                                                                text_cache, templates))
                for row, (m, prompts) in models.items()}
    regions = split_regions(iter_index(split.index), Path(split.image_dir),
                            Path(split.label_dir), split.ignore_label, models["base"][0],
                            p.fill, device)
    return region_accuracy(regions, variants, classes, p.eval_batch_size, seed=p.seed)


def accuracy_line(name: str, result: dict, rows: list[str]) -> str:
    return f"{name}: " + ", ".join(
        f"{row} {result[row]['all']:.3f} (seen {result[row]['seen'] or 0:.3f}, unseen "
        f"{result[row]['unseen'] or 0:.3f})" for row in rows) + \
        f"; outline-only control {(result['outline_only_control'] or {}).get('accuracy')}"
