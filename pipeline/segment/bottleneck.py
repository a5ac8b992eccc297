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

import torch

from pipeline.segment.two_stage import fused_labels

BOTTLENECK_VARIANTS = ("gt_masks_clip", "proposals_oracle")


def class_segments(gt: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool masks of the ground truth's classes `classes` (N,), on `gt`'s device
    (the classes come from the host, `pipeline.data.segments.present_classes`, so that
    nothing is read back)."""
    return gt[None] == classes.to(gt.dtype)[:, None, None]


def segment_label_map(gt: torch.Tensor, classes: torch.Tensor, predicted: torch.Tensor,
                      num_classes: int, ignore: int) -> torch.Tensor:
    """The (H, W) int64 label map with each ground-truth segment (pixels of class
    classes[i]) painted predicted[i]; ignored pixels stay 0 (they are never scored). gt
    holds classes of [0, K) and `ignore` only (`metrics.check_labels`)."""
    lut = torch.zeros(max(num_classes, ignore + 1), dtype=torch.long, device=gt.device)
    lut[classes.to(gt.device)] = predicted.to(gt.device)
    return lut[gt.long()]


def oracle_probs(masks: torch.Tensor, gt: torch.Tensor, classes: torch.Tensor,
                 num_classes: int, ignore: int, threshold: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle classifier of Figure 1(c): (Q, H, W) sigmoid masks at the label map's size
    and the (H, W) ground truth with its classes (N,) -> one-hot class probabilities
    (Q', K) of the masks that overlap a labelled segment, and which masks those are (Q,)
    bool, on the masks' device. Each mask, binarised at `threshold`, takes the class of
    the ground-truth segment of highest IoU, ignored pixels counted in neither."""
    device = masks.device
    gt, classes = gt.to(device), classes.to(device)
    binary = (masks > threshold) & (gt != ignore)  # (Q, H, W)
    if len(classes) == 0 or len(masks) == 0:
        return (torch.zeros(0, num_classes, device=device),
                torch.zeros(len(masks), dtype=torch.bool, device=device))
    flat_m = binary.flatten(1).float()  # (Q, HW)
    flat_s = class_segments(gt, classes).flatten(1).float()  # (N, HW)
    # 0/1 products summed in float32: exact below 2^24 pixels an image
    inter = flat_m @ flat_s.T  # (Q, N)
    union = flat_m.sum(1, keepdim=True) + flat_s.sum(1)[None] - inter
    iou = inter / union.clamp(min=1)
    best_iou, best = iou.max(dim=1)
    keep = best_iou > 0
    probs = torch.zeros(int(keep.sum()), num_classes, device=device)
    probs[torch.arange(len(probs), device=device), classes[best[keep]]] = 1.0
    return probs, keep


def oracle_label_map(masks: torch.Tensor, gt: torch.Tensor, classes: torch.Tensor,
                     num_classes: int, ignore: int, threshold: float) -> torch.Tensor:
    """`proposals_oracle`'s (H, W) int64 label map, on the masks' device: the oracle's
    one-hot classes fused with the sigmoid masks (MaskFormer's semantic inference,
    `fused_labels`)."""
    probs, keep = oracle_probs(masks, gt, classes, num_classes, ignore, threshold)
    return fused_labels(probs, masks[keep])
