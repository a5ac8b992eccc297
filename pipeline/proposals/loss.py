"""Set prediction loss of the proposal net (MaskFormer sec. 3.2, as OVSeg trains it):
Hungarian matching of queries to ground-truth segments on class and mask costs, then
cross-entropy over K classes + no-object (no-object weight 0.1), mask BCE (weight 20) and
dice (weight 1) on matched pairs, summed over the decoder layers (auxiliary losses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class LossWeights:
    no_object: float = 0.1
    ce: float = 1.0
    mask: float = 20.0
    dice: float = 1.0


def pairwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) logits, (G, P) float targets -> (Q, G) mean per-pixel BCE of each pair."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P), (G, P) -> (Q, G) dice loss 1 - (2|p.t| + 1) / (|p| + |t| + 1)."""
    p = logits.sigmoid()
    return 1 - (2 * p @ targets.T + 1) / (p.sum(-1)[:, None] + targets.sum(-1)[None] + 1)


@torch.no_grad()
def match(class_prob: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
          masks: torch.Tensor, w: LossWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost assignment of G ground-truth segments to Q >= G queries.

    class_prob (Q, K+1) softmax; mask_logits (Q, P); labels (G,) int; masks (G, P) float.
    Cost = -w.ce * p(label) + w.mask * BCE + w.dice * dice. Returns (query index, gt index).
    """
    if len(labels) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    cost = (-w.ce * class_prob[:, labels] + w.mask * pairwise_bce(mask_logits, masks)
            + w.dice * pairwise_dice(mask_logits, masks))
    q, g = linear_sum_assignment(cost.float().cpu().numpy())
    return torch.as_tensor(q, dtype=torch.long), torch.as_tensor(g, dtype=torch.long)


def layer_loss(logits: torch.Tensor, mask_logits: torch.Tensor, targets: list[dict],
               w: LossWeights) -> dict[str, torch.Tensor]:
    """Losses of one decoder layer's predictions for a batch.

    logits (B, Q, K+1); mask_logits (B, Q, h, w); targets[b] = {"labels" (G,) long,
    "masks" (G, h, w) float at the prediction's resolution}.
    """
    b, q, k1 = logits.shape
    class_target = torch.full((b, q), k1 - 1, dtype=torch.long, device=logits.device)
    pred, gt = [], []
    for i, t in enumerate(targets):
        qi, gi = match(logits[i].softmax(-1), mask_logits[i].flatten(1), t["labels"],
                       t["masks"].flatten(1), w)
        qi, gi = qi.to(logits.device), gi.to(logits.device)
        class_target[i, qi] = t["labels"][gi]
        pred.append(mask_logits[i, qi].flatten(1))
        gt.append(t["masks"][gi].flatten(1))
    class_weight = torch.ones(k1, device=logits.device)
    class_weight[-1] = w.no_object
    ce = F.cross_entropy(logits.transpose(1, 2), class_target, class_weight)
    pred, gt = torch.cat(pred), torch.cat(gt)
    n = max(len(pred), 1)
    if len(pred):
        bce = F.binary_cross_entropy_with_logits(pred, gt, reduction="none").mean(1).sum() / n
        p = pred.sigmoid()
        dice = (1 - (2 * (p * gt).sum(1) + 1) / (p.sum(1) + gt.sum(1) + 1)).sum() / n
    else:
        bce = dice = mask_logits.sum() * 0
    return {"ce": ce, "mask": bce, "dice": dice}


def set_loss(layers: list[dict], logits_fn, targets: list[dict], w: LossWeights
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over all decoder layers; `logits_fn(query_text)` -> (B, Q, K+1).
    Returns the total and the last layer's parts (for logging)."""
    total = 0.0
    for out in layers:
        parts = layer_loss(logits_fn(out["query_text"]), out["mask_logits"], targets, w)
        total = total + w.ce * parts["ce"] + w.mask * parts["mask"] + w.dice * parts["dice"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def segment_targets(labels: torch.Tensor, label_to_class: torch.Tensor, size: tuple[int, int],
                    ignore: int = 255) -> dict[str, torch.Tensor]:
    """One label map (H, W) -> per-class targets at the prediction size (h, w): "labels"
    (G,) class indices, "masks" (G, h, w) area-downsampled pixel shares, and "valid"
    (h, w) the share of labelled (not `ignore`) pixels, so the mask losses can leave
    ignored and padded pixels out (`proposals.mask_loss_pixels`). Pixels of classes that
    map to -1 (not trained on) and `ignore` pixels give no segment."""

    def downsampled(m: torch.Tensor) -> torch.Tensor:  # (N, H, W) bool -> (N, h, w) shares
        m = m.float()[None]
        return (F.interpolate(m, size=size, mode="area") if m.shape[-2:] != size else m)[0]

    valid = downsampled((labels != ignore)[None])[0]
    present = [int(c) for c in torch.unique(labels) if int(c) != ignore
               and int(label_to_class[int(c)]) >= 0]
    if not present:
        return {"labels": torch.zeros(0, dtype=torch.long),
                "masks": torch.zeros(0, *size), "valid": valid}
    masks = downsampled(torch.stack([labels == c for c in present]))  # (G, h, w)
    return {"labels": label_to_class[present].long(), "masks": masks, "valid": valid}
