"""Class-agnostic proposal recall: the share of ground-truth segments that some proposal
covers with IoU >= 0.5, whatever class either is given."""

from __future__ import annotations

import numpy as np


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, H, W), (M, H, W) bool -> (N, M) IoU."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def segment_recall(proposals: np.ndarray, segments: np.ndarray, iou: float = 0.5
                   ) -> np.ndarray:
    """(P, H, W) proposals, (G, H, W) ground-truth segments -> (G,) bool: covered?"""
    if len(proposals) == 0 or len(segments) == 0:
        return np.zeros(len(segments), dtype=bool)
    return mask_iou(segments, proposals).max(axis=1) >= iou
