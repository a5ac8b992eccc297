"""Ground-truth segments of a label map: the pixels of each labelled class, one segment per
class present, in label order (ignored pixels in none). The region probes, the oracle and
ablation proposals, recall and OVSeg Figure 1(c)'s bottleneck all read them from here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Segment:
    """One ground-truth segment: the pixels of one class in one label map."""

    image_id: int
    label: int
    mask: np.ndarray  # (H, W) bool


def class_masks(labels: np.ndarray, ignore: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) label map -> the labelled classes present (N,) int64, in label order, and
    their masks (N, H, W) bool."""
    classes = present_classes(labels, ignore)
    return classes, labels[None] == classes[:, None, None]


def present_classes(labels: np.ndarray, ignore: int = 255) -> np.ndarray:
    """The labelled classes of an (H, W) label map (N,) int64, in label order."""
    if labels.dtype.kind == "u" and labels.itemsize <= 2:  # counting beats sorting
        present = np.flatnonzero(np.bincount(labels.ravel()))
    else:
        present = np.unique(labels)
    return present[present != ignore].astype(np.int64)


def label_segments(image_id: int, labels: np.ndarray, ignore: int = 255) -> list[Segment]:
    """`class_masks` as one Segment per class."""
    classes, masks = class_masks(labels, ignore)
    return [Segment(image_id, int(c), m) for c, m in zip(classes, masks)]
