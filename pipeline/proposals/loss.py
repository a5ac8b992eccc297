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

import numpy as np
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
    """(..., Q, P) logits, (..., G, P) targets in [0, 1], (..., P) pixel weights -> (..., Q, G)
    weighted mean per-pixel mask loss of every pair (leading dims: a batch of images).
    Linear in the target, so one product per term."""
    w = weight[..., None, :]
    pos = pixel_mask_loss(logits, torch.ones_like(logits), m) * w
    neg = pixel_mask_loss(logits, torch.zeros_like(logits), m) * w
    return (pos @ targets.mT + neg @ (1 - targets).mT) / \
        weight.sum(-1).clamp(min=1e-6)[..., None, None]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor
                  ) -> torch.Tensor:
    """(..., Q, P), (..., G, P), (..., P) -> (..., Q, G) dice loss
    1 - (2|p.t| + 1) / (|p| + |t| + 1), sums over the weighted pixels."""
    w = weight[..., None, :]
    p = logits.sigmoid() * w
    t = targets * w
    return 1 - (2 * p @ targets.mT + 1) / (p.sum(-1)[..., :, None] + t.sum(-1)[..., None, :] + 1)


def matching_cost(class_prob: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
                  masks: torch.Tensor, weight: torch.Tensor, w: LossWeights, m: MaskLoss
                  ) -> torch.Tensor:
    """MaskFormer's HungarianMatcher cost -w.ce p(label) + w.mask mask loss + w.dice dice.

    class_prob (..., Q, K+1) softmax; mask_logits (..., Q, P); labels (..., G) int; masks
    (..., G, P) in [0, 1]; weight (..., P). Returns (..., Q, G)."""
    prob = class_prob.gather(-1, labels[..., None, :].expand(*class_prob.shape[:-1], -1))
    return (-w.ce * prob + w.mask * pairwise_mask_cost(mask_logits, masks, weight, m)
            + w.dice * pairwise_dice(mask_logits, masks, weight))


def mask_weights(target: dict, m: MaskLoss) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's (G, P) mask targets and (P,) pixel weights under `m`."""
    masks = target["masks"].flatten(1)
    valid = target.get("valid")
    if valid is None or not m.labelled_only:
        return masks, torch.ones(masks.shape[1], device=masks.device)
    valid = valid.flatten().to(masks.dtype)
    # class share of the labelled pixels of each cell (cells with none get weight 0)
    return masks / valid.clamp(min=1e-6), valid


@dataclass(frozen=True)
class BatchTargets:
    """A batch's targets padded to its most segments G, built once per step and shared
    by the decoder layers: labels (B, G) long, masks (B, G, P), weight (B, P), and the
    real segment count of each image."""
    labels: torch.Tensor
    masks: torch.Tensor
    weight: torch.Tensor
    counts: tuple[int, ...]

    @classmethod
    def pad(cls, targets: list[dict], m: MaskLoss) -> BatchTargets:
        per_image = [mask_weights(t, m) for t in targets]
        counts = tuple(len(t["labels"]) for t in targets)
        g, pixels = max(counts, default=0), per_image[0][0].shape[1]
        device = per_image[0][0].device
        labels = torch.zeros(len(targets), g, dtype=torch.long, device=device)
        masks = torch.zeros(len(targets), g, pixels, device=device)
        for i, (t, (mk, _)) in enumerate(zip(targets, per_image)):
            labels[i, :counts[i]], masks[i, :counts[i]] = t["labels"], mk
        return cls(labels, masks, torch.stack([wt for _, wt in per_image]), counts)


@torch.no_grad()
def match_batch(class_prob: torch.Tensor, mask_logits: torch.Tensor, t: BatchTargets,
                w: LossWeights, m: MaskLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimum-cost assignment of each image's ground-truth segments to its Q >= G queries,
    from one batched cost (B, Q, G) brought to the CPU once: class_prob (B, Q, K+1),
    mask_logits (B, Q, P). Returns (image, query, gt) indices of the matched pairs, image
    by image."""
    cost = matching_cost(class_prob, mask_logits.float(), t.labels, t.masks, t.weight, w, m)
    cost = cost.float().cpu().numpy()
    image, query, gt = [], [], []
    for i, n in enumerate(t.counts):
        if n:
            q, g = linear_sum_assignment(cost[i, :, :n])
            image.append(np.full(n, i)), query.append(q), gt.append(g)
    if not image:
        return (torch.zeros(0, dtype=torch.long),) * 3
    return tuple(torch.as_tensor(np.concatenate(a), dtype=torch.long)
                 for a in (image, query, gt))


def layer_loss(logits: torch.Tensor, mask_logits: torch.Tensor, targets: list[dict] | BatchTargets,
               w: LossWeights, m: MaskLoss = FOCAL) -> dict[str, torch.Tensor]:
    """Losses of one decoder layer's predictions for a batch.

    logits (B, Q, K+1); mask_logits (B, Q, h, w); targets[b] = {"labels" (G,) long,
    "masks" (G, h, w) float at the prediction's resolution, optionally "valid" (h, w)}, or
    those padded once (`BatchTargets.pad`). The mask terms are averaged over the matched
    segments of the batch.
    """
    if not isinstance(targets, BatchTargets):
        targets = BatchTargets.pad(targets, m)
    logits, mask_logits = logits.float(), mask_logits.float().flatten(2)  # (B, Q, P)
    b, q, k1 = logits.shape
    image, query, gt = (i.to(logits.device) for i in match_batch(
        logits.softmax(-1), mask_logits, targets, w, m))
    class_target = torch.full((b, q), k1 - 1, dtype=torch.long, device=logits.device)
    class_target[image, query] = targets.labels[image, gt]
    class_weight = torch.ones(k1, device=logits.device)
    class_weight[-1] = w.no_object
    ce = F.cross_entropy(logits.transpose(1, 2), class_target, class_weight)
    if len(image) == 0:
        mask = dice = mask_logits.sum() * 0
        return {"ce": ce, "mask": mask, "dice": dice}
    pred, target = mask_logits[image, query], targets.masks[image, gt]  # (n, P)
    weight = targets.weight[image]  # (n, P): each pair's image's pixel weights
    norm = weight.sum(1).clamp(min=1e-6)
    mask = ((pixel_mask_loss(pred, target, m) * weight).sum(1) / norm).mean()
    p = pred.sigmoid() * weight
    dice = (1 - (2 * (p * target).sum(1) + 1) / (p.sum(1) + (target * weight).sum(1) + 1)).mean()
    return {"ce": ce, "mask": mask, "dice": dice}


def set_loss(layers: list[dict], logits_fn, targets: list[dict], w: LossWeights,
             m: MaskLoss = FOCAL, shares: tuple[float, float] = (1.0, 1.0),
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over all decoder layers; `logits_fn(query_text)` -> (B, Q, K+1).
    `shares` (class, mask) scale this batch's means into its part of a larger batch's
    (`ddp_loss_shares`; 1.0 leaves every bit as it is). Returns the total and the last
    layer's parts, unscaled (for logging)."""
    total, targets = 0.0, BatchTargets.pad(targets, m)
    ce_w, mask_w, dice_w = w.ce * shares[0], w.mask * shares[1], w.dice * shares[1]
    for out in layers:
        parts = layer_loss(logits_fn(out["query_text"]), out["mask_logits"], targets, w, m)
        total = total + ce_w * parts["ce"] + mask_w * parts["mask"] + dice_w * parts["dice"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def ddp_loss_shares(targets: list[dict], queries: int, w: LossWeights, ranks: int,
                    all_ranks_sum, device: torch.device) -> tuple[float, float]:
    """(class, mask) factors that make DistributedDataParallel train as one process on the
    whole batch. DDP averages the ranks' gradients, but each rank's losses are means over
    its own share: the mask and dice terms over its matched segments n_r, the weighted
    cross-entropy over its class weights c_r (1 per matched query, `no_object` per other
    query). Rank r's means times n_r·W/N and c_r·W/C (N, C: sums over the W ranks) average
    to the one-process means, as MaskFormer divides its mask losses by the segments of all
    ranks. `all_ranks_sum(tensor)` sums over the ranks, the tensor on `device` (NCCL
    reduces GPU tensors); one rank: (1.0, 1.0)."""
    if ranks == 1:
        return 1.0, 1.0
    segments = sum(min(len(t["labels"]), queries) for t in targets)  # each matched (Q >= G)
    class_weight = segments + (len(targets) * queries - segments) * w.no_object
    local = torch.tensor([class_weight, segments], dtype=torch.float64, device=device)
    total = all_ranks_sum(local.clone()).clamp(min=1e-12)  # no segment anywhere: no mask loss
    ce_share, mask_share = (local * ranks / total).tolist()
    return ce_share, mask_share


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
