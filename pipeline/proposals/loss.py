"""Set prediction loss of the proposal net (MaskFormer §3.2, as OVSeg §3.1 trains it):
Hungarian matching of queries to ground-truth segments on class and mask costs, then
cross-entropy over K classes + no-object (no-object weight 0.1), mask loss (sigmoid focal,
weight 20; BCE as an option) and dice (weight 1) on matched pairs, summed over the decoder
layers (auxiliary losses). The matching costs are the same terms as the losses.

Pixels: each image's targets carry "valid" (h, w), the share of labelled (not ignore-label)
pixels in each stride-4 cell. With `MaskLoss.labelled_only`, mask terms are weighted by it,
so ignored pixels (255, and the crop's padding) enter no loss term and no matching cost; a
target is then the class's share of the labelled pixels. Without it (MaskFormer's own code)
every pixel counts, ignored ones as background of every segment.
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


@dataclass(frozen=True)
class MaskLoss:
    kind: str = "focal"  # "focal" (MaskFormer) or "bce"
    alpha: float = 0.25  # focal: weight of the positive pixels (-1: none)
    gamma: float = 2.0  # focal: exponent of (1 - p_t)
    labelled_only: bool = True  # ignored pixels leave the mask terms


FOCAL = MaskLoss()  # MaskFormer's


def pixel_mask_loss(logits: torch.Tensor, targets: torch.Tensor, m: MaskLoss) -> torch.Tensor:
    """Per-pixel mask loss, same shape as `logits`: BCE, or the sigmoid focal loss
    alpha_t (1 - p_t)^gamma BCE (Lin et al. 2017; torchvision.ops.sigmoid_focal_loss)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if m.kind == "bce":
        return bce
    p = logits.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_t) ** m.gamma
    if m.alpha >= 0:
        loss = (m.alpha * targets + (1 - m.alpha) * (1 - targets)) * loss
    return loss


def pairwise_mask_cost(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                       m: MaskLoss) -> torch.Tensor:
    """(Q, P) logits, (G, P) targets in [0, 1], (P,) pixel weights -> (Q, G) weighted mean
    per-pixel mask loss of every pair. Linear in the target, so one product per term."""
    pos = pixel_mask_loss(logits, torch.ones_like(logits), m) * weight
    neg = pixel_mask_loss(logits, torch.zeros_like(logits), m) * weight
    return (pos @ targets.T + neg @ (1 - targets).T) / weight.sum().clamp(min=1e-6)


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor
                  ) -> torch.Tensor:
    """(Q, P), (G, P), (P,) -> (Q, G) dice loss 1 - (2|p.t| + 1) / (|p| + |t| + 1), sums
    over the weighted pixels."""
    p = logits.sigmoid() * weight
    t = targets * weight
    return 1 - (2 * p @ targets.T + 1) / (p.sum(-1)[:, None] + t.sum(-1)[None] + 1)


def mask_weights(target: dict, m: MaskLoss) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's (G, P) mask targets and (P,) pixel weights under `m`."""
    masks = target["masks"].flatten(1)
    valid = target.get("valid")
    if valid is None or not m.labelled_only:
        return masks, torch.ones(masks.shape[1], device=masks.device)
    valid = valid.flatten().to(masks.dtype)
    # class share of the labelled pixels of each cell (cells with none get weight 0)
    return masks / valid.clamp(min=1e-6), valid


@torch.no_grad()
def match(class_prob: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
          masks: torch.Tensor, weight: torch.Tensor, w: LossWeights, m: MaskLoss
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost assignment of G ground-truth segments to Q >= G queries.

    class_prob (Q, K+1) softmax; mask_logits (Q, P); labels (G,) int; masks (G, P) in
    [0, 1]; weight (P,). Cost = -w.ce p(label) + w.mask mask loss + w.dice dice
    (MaskFormer's HungarianMatcher). Returns (query index, gt index).
    """
    if len(labels) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    mask_logits = mask_logits.float()
    cost = (-w.ce * class_prob[:, labels] + w.mask * pairwise_mask_cost(
        mask_logits, masks, weight, m) + w.dice * pairwise_dice(mask_logits, masks, weight))
    q, g = linear_sum_assignment(cost.float().cpu().numpy())
    return torch.as_tensor(q, dtype=torch.long), torch.as_tensor(g, dtype=torch.long)


def layer_loss(logits: torch.Tensor, mask_logits: torch.Tensor, targets: list[dict],
               w: LossWeights, m: MaskLoss = FOCAL) -> dict[str, torch.Tensor]:
    """Losses of one decoder layer's predictions for a batch.

    logits (B, Q, K+1); mask_logits (B, Q, h, w); targets[b] = {"labels" (G,) long,
    "masks" (G, h, w) float at the prediction's resolution, optionally "valid" (h, w)}.
    The mask terms are averaged over the matched segments of the batch.
    """
    logits, mask_logits = logits.float(), mask_logits.float()
    b, q, k1 = logits.shape
    class_target = torch.full((b, q), k1 - 1, dtype=torch.long, device=logits.device)
    mask_terms, dice_terms = [], []
    for i, t in enumerate(targets):
        masks, weight = mask_weights(t, m)
        pred_all = mask_logits[i].flatten(1)
        qi, gi = match(logits[i].softmax(-1), pred_all, t["labels"], masks, weight, w, m)
        qi, gi = qi.to(logits.device), gi.to(logits.device)
        class_target[i, qi] = t["labels"][gi]
        if len(qi) == 0:
            continue
        pred, gt = pred_all[qi], masks[gi]  # (n, P)
        norm = weight.sum().clamp(min=1e-6)
        mask_terms.append((pixel_mask_loss(pred, gt, m) * weight).sum(1) / norm)
        p, tw = pred.sigmoid() * weight, gt * weight
        dice_terms.append(1 - (2 * (p * gt).sum(1) + 1) / (p.sum(1) + tw.sum(1) + 1))
    class_weight = torch.ones(k1, device=logits.device)
    class_weight[-1] = w.no_object
    ce = F.cross_entropy(logits.transpose(1, 2), class_target, class_weight)
    if mask_terms:
        mask, dice = torch.cat(mask_terms).mean(), torch.cat(dice_terms).mean()
    else:
        mask = dice = mask_logits.sum() * 0
    return {"ce": ce, "mask": mask, "dice": dice}


def set_loss(layers: list[dict], logits_fn, targets: list[dict], w: LossWeights,
             m: MaskLoss = FOCAL) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over all decoder layers; `logits_fn(query_text)` -> (B, Q, K+1).
    Returns the total and the last layer's parts (for logging)."""
    total = 0.0
    for out in layers:
        parts = layer_loss(logits_fn(out["query_text"]), out["mask_logits"], targets, w, m)
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
