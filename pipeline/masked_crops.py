"""Masked crops: the region a mask covers, cut out and resized to CLIP's input size
(OVSeg sec. 3.1): tight bounding box, background pixels filled, image resized bicubic and
mask nearest. An empty mask gives an invalid crop (flagged, never an exception)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

FILLS = ("mean", "zero", "none")


def mask_boxes(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """masks (N, H, W) bool -> boxes (N, 4) int64 as x0, y0, x1, y1 (exclusive), valid (N,)."""
    n, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (N, H), (N, W)
    valid = rows.any(dim=1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).min(dim=1).values
    y1 = torch.where(rows, ar_h, -1).max(dim=1).values + 1
    x0 = torch.where(cols, ar_w, w).min(dim=1).values
    x1 = torch.where(cols, ar_w, -1).max(dim=1).values + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    return torch.where(valid[:, None], boxes, torch.zeros_like(boxes)), valid


def expand_boxes(boxes: torch.Tensor, ratio: float, height: int, width: int) -> torch.Tensor:
    """Grow (N, 4) x0 y0 x1 y1 boxes about their centres by `ratio`, clipped to the image."""
    if ratio == 1.0:
        return boxes
    b = boxes.float()
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    hw, hh = (b[:, 2] - b[:, 0]) * ratio / 2, (b[:, 3] - b[:, 1]) * ratio / 2
    out = torch.stack([(cx - hw).floor(), (cy - hh).floor(), (cx + hw).ceil(), (cy + hh).ceil()],
                      dim=1).long()
    lim = torch.tensor([width, height, width, height])
    return torch.minimum(out.clamp(min=0), lim)


def masked_crops(
    image: torch.Tensor,
    masks: torch.Tensor,
    size: int,
    fill: str = "mean",
    fill_color: torch.Tensor | None = None,
    expand_ratio: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut one crop per mask.

    image: (3, H, W) float in [0, 1]; masks: (N, H, W) bool.
    fill: "mean" fills background with `fill_color` (CLIP's pixel mean, (3,)), "zero" with
    black, "none" leaves the image (for writing unfilled crops).
    Returns crops (N, 3, size, size) in [0, 1], crop masks (N, size, size) bool, valid (N,).
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if fill == "mean" and fill_color is None:
        raise ValueError("fill='mean' needs fill_color (CLIP's pixel mean)")
    n, h, w = masks.shape
    boxes, valid = mask_boxes(masks)
    boxes = expand_boxes(boxes, expand_ratio, h, w)
    crops = image.new_zeros((n, 3, size, size))
    crop_masks = torch.zeros((n, size, size), dtype=torch.bool, device=masks.device)
    color = (fill_color if fill == "mean" else image.new_zeros(3)).to(image).view(3, 1, 1)
    for i in torch.nonzero(valid).flatten().tolist():
        x0, y0, x1, y1 = boxes[i].tolist()
        crop = image[:, y0:y1, x0:x1]
        m = masks[i, y0:y1, x0:x1]
        if fill != "none":
            crop = torch.where(m, crop, color)
        crops[i] = F.interpolate(crop[None], size=(size, size), mode="bicubic",
                                 align_corners=False)[0].clamp_(0, 1)
        crop_masks[i] = F.interpolate(m[None, None].float(), size=(size, size),
                                      mode="nearest")[0, 0] > 0.5
    return crops, crop_masks, valid
