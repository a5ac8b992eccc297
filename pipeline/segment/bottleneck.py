"""OVSeg's bottleneck analysis (Figure 1(c)): which of the two stages limits the two-stage
segmenter? Two label maps per image, each with one stage made perfect:

- `gt_masks_clip`: the ground-truth segments (one per labelled class of the image) as the
  masks, each classified by CLIP on its masked crop. The paper: 20.1 mIoU on ADE-150 with
  the pre-trained CLIP, so CLIP on masked crops is the bottleneck. Evaluated with
  `eval.fill: none`, the same segments give its appendix A.1 (crops without the mask,
  background kept: 13.8).
- `proposals_oracle`: the proposal net's masks, each labelled by an oracle with the class
  of the ground-truth segment it overlaps most (IoU), then fused as MaskFormer fuses
  (66.5 mIoU in the paper: the proposals are good enough).
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.segments import class_masks
from pipeline.segment.two_stage import fused_labels

BOTTLENECK_VARIANTS = ("gt_masks_clip", "proposals_oracle")


def segment_label_map(labels: np.ndarray, classes: np.ndarray, predicted: np.ndarray,
                      ignore: int) -> np.ndarray:
    """The label map with each ground-truth segment (pixels of class classes[i]) painted
    predicted[i]; ignored pixels stay 0 (they are never scored)."""
    lut = np.zeros(max(int(labels.max()), int(ignore)) + 1, dtype=np.int64)
    lut[classes] = predicted
    return lut[labels]


def oracle_probs(masks: torch.Tensor, labels: np.ndarray, num_classes: int, ignore: int,
                 threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle classifier of Figure 1(c): (Q, H, W) sigmoid masks at the label map's size
    -> one-hot class probabilities (Q', K) of the masks that overlap a labelled segment,
    and which masks those are (Q,) bool. Each mask, binarised at `threshold`, takes the
    class of the ground-truth segment of highest IoU, ignored pixels counted in neither."""
    classes, segments = class_masks(labels, ignore)
    segments = torch.from_numpy(segments)
    scored = torch.from_numpy(labels != ignore)
    binary = (masks > threshold) & scored  # (Q, H, W)
    if len(classes) == 0 or len(masks) == 0:
        return torch.zeros(0, num_classes), torch.zeros(len(masks), dtype=torch.bool)
    flat_m = binary.flatten(1).float()  # (Q, HW)
    flat_s = segments.flatten(1).float()  # (N, HW)
    inter = flat_m @ flat_s.T  # (Q, N)
    union = flat_m.sum(1, keepdim=True) + flat_s.sum(1)[None] - inter
    iou = inter / union.clamp(min=1)
    best_iou, best = iou.max(dim=1)
    keep = best_iou > 0
    probs = torch.zeros(int(keep.sum()), num_classes)
    probs[torch.arange(len(probs)), torch.from_numpy(classes)[best[keep]]] = 1.0
    return probs, keep


def oracle_label_map(masks: torch.Tensor, labels: np.ndarray, num_classes: int, ignore: int,
                     threshold: float) -> np.ndarray:
    """`proposals_oracle`'s (H, W) label map: the oracle's one-hot classes fused with the
    sigmoid masks (MaskFormer's semantic inference, `fused_labels`)."""
    probs, keep = oracle_probs(masks, labels, num_classes, ignore, threshold)
    return fused_labels(probs, masks[keep]).numpy()
