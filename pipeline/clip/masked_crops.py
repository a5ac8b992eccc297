"""Masked crops: the region a mask covers, cut out and resized to CLIP's input size
(OVSeg sec. 3.1): tight bounding box, optionally expanded, background pixels filled, image
resized bicubic and mask nearest. An empty mask gives an invalid crop (flagged, never an
exception).

Small images (the synthetic world, and any image on GPU) are cropped a chunk of masks at
a time: a bicubic resize of a box is a matrix product `Ry @ box @ Rx^T` whose rows hold the
same 4 taps and weights that `F.interpolate(mode="bicubic", align_corners=False)` uses, so
the batched crops match the per-box ones to float rounding. Large images on CPU go one box
at a time, since each box then touches only its own pixels. On a GPU the products run over
the whole image for every mask, the empty ones included and zeroed after ("whole"): no
value is read back to the host (no window bounds, no list of valid masks), so cutting the
next image's crops never waits for the CLIP forward queued before it (issue 31).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.distributed.precision import full_precision

FILLS = ("mean", "zero", "none")
CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic convolution constant
CHUNK_FLOATS = 1 << 24  # bounds the filled windows of a chunk of masks, (n, 3, H, W)
MATMUL_MAX_PIXELS = 160 * 160  # above this, on CPU, one box at a time is faster (benchmark)
METHODS = ("auto", "matmul", "loop", "whole")


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) in [0, 1] -> CLIP input, with CLIP's pixel mean and std (3,) each. The
    one place the pipeline does this (the probe, pretraining and the FT/MPT loader), so
    every CLIP sees its inputs scaled the same way."""
    return (images - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


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
    limits = (width, height, width, height)  # python ints: no copy to the device
    return torch.stack([out[:, k].clamp(0, limit) for k, limit in enumerate(limits)], dim=1)


def cubic_taps(start: torch.Tensor, length: torch.Tensor, size: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights of a bicubic resize of [start, start + length) to `size`.

    start, length: (N,) int64. Returns index (N, size, 4) int64 into the full axis and
    weight (N, size, 4) float32: the taps of PyTorch's bicubic kernel (align_corners=False,
    no antialias), whose source positions are clamped to the box's edge pixels.
    """
    scale = length.float() / size  # float32 as PyTorch computes it
    real = scale[:, None] * (torch.arange(size, device=start.device, dtype=torch.float32)
                             + 0.5) - 0.5  # (N, size)
    base = real.floor()
    t = (real - base).clamp(0, 1)
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weight = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)
    offsets = torch.arange(-1, 3, device=start.device)
    local = (base.long()[..., None] + offsets).clamp(min=0)
    local = torch.minimum(local, (length - 1)[:, None, None])
    return start[:, None, None] + local, weight


def nearest_taps(start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size) int64 source indices of PyTorch's `nearest` resize of each box axis."""
    scale = length.float() / size
    local = (torch.arange(size, device=start.device, dtype=torch.float32) * scale[:, None])
    local = torch.minimum(local.floor().long(), (length - 1)[:, None])
    return start[:, None] + local


def resize_matrices(start: torch.Tensor, length: torch.Tensor, size: int, full: int
                    ) -> torch.Tensor:
    """(N, size, full) float32: row i of matrix n is output pixel i's bicubic weights over
    the full axis, so `R @ x` resizes box n of x's axis to `size` (taps clamped at the box's
    edges add up on the edge pixel, as in PyTorch's kernel)."""
    index, weight = cubic_taps(start, length, size)  # (N, size, 4)
    out = weight.new_zeros((len(start), size, full))
    return out.scatter_add_(2, index, weight)


def _crops_by_matmul(image, masks, boxes, size, color):
    """Crops (n, 3, size, size), crop masks (n, size, size) of n valid boxes, all at once:
    crop = Ry @ filled @ Rx^T over the window that holds every box of the chunk."""
    left, top = int(boxes[:, 0].min()), int(boxes[:, 1].min())
    right, bottom = int(boxes[:, 2].max()), int(boxes[:, 3].max())
    return _crops_in_window(image, masks, boxes, size, color, top, left, bottom, right)


def _crops_in_window(image, masks, boxes, size, color, top, left, bottom, right):
    """`_crops_by_matmul` over the window [top, bottom) x [left, right), which holds every
    box."""
    n = len(boxes)
    window = image[:, top:bottom, left:right]  # (3, Hc, Wc)
    if color is not None:
        window = torch.where(masks[:, None, top:bottom, left:right], window,
                             color.view(3, 1, 1))  # (n, 3, Hc, Wc)
    ry = resize_matrices(boxes[:, 1] - top, boxes[:, 3] - boxes[:, 1], size, bottom - top)
    rx = resize_matrices(boxes[:, 0] - left, boxes[:, 2] - boxes[:, 0], size, right - left)
    hc, wc = bottom - top, right - left
    # columns first, as one (n, 3*Hc, Wc) @ (n, Wc, S) product without broadcast copies
    x = window.expand(n, 3, hc, wc).reshape(n, 3 * hc, wc) @ rx.transpose(1, 2)
    x = x.view(n, 3, hc, size).transpose(1, 2).reshape(n, hc, 3 * size)  # (n, Hc, 3*S)
    crops = (ry @ x).view(n, size, 3, size).transpose(1, 2)  # (n, 3, S, S)
    return crops.clamp_(0, 1), _nearest_masks(masks, boxes, size)


def _crops_by_loop(image, masks, boxes, size, color):
    """The same crops one box at a time: less work than the matmul when boxes are much
    smaller than the image (each crop only touches its own box)."""
    crops = image.new_empty((len(boxes), 3, size, size))
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        crop = image[:, y0:y1, x0:x1]
        if color is not None:
            crop = torch.where(masks[i, y0:y1, x0:x1], crop, color.view(3, 1, 1))
        crops[i] = F.interpolate(crop[None], size=(size, size), mode="bicubic",
                                 align_corners=False)[0]
    return crops.clamp_(0, 1), _nearest_masks(masks, boxes, size)


def _nearest_masks(masks, boxes, size):
    x0, y0, x1, y1 = boxes.unbind(1)
    rows = nearest_taps(y0, y1 - y0, size)  # (n, S)
    cols = nearest_taps(x0, x1 - x0, size)
    n = torch.arange(len(boxes), device=masks.device)
    return masks[n[:, None, None], rows[:, :, None], cols[:, None, :]]


def masked_crops(
    image: torch.Tensor,
    masks: torch.Tensor,
    size: int,
    fill: str = "mean",
    fill_color: torch.Tensor | None = None,
    expand_ratio: float = 1.0,
    method: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut one crop per mask.

    image: (3, H, W) float in [0, 1]; masks: (N, H, W) bool.
    fill: "mean" fills background with `fill_color` (CLIP's pixel mean, (3,)), "zero" with
    black, "none" leaves the image (for writing unfilled crops).
    Returns crops (N, 3, size, size) in [0, 1], crop masks (N, size, size) bool, valid (N,).
    Invalid (empty-mask) crops are all zero. method: "matmul" resizes a chunk of masks as
    two batched matrix products, "loop" one box at a time, "whole" as "matmul" over the
    whole image without reading a value back; "auto": "whole" off the CPU, else by size.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if fill == "mean" and fill_color is None:
        raise ValueError("fill='mean' needs fill_color (CLIP's pixel mean)")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if image.ndim != 3 or image.shape[0] != 3 or masks.ndim != 3 \
            or masks.shape[1:] != image.shape[1:]:
        raise ValueError(f"expected image (3, H, W) and masks (N, H, W) of the same H, W; "
                         f"got {tuple(image.shape)} and {tuple(masks.shape)}")
    n, h, w = masks.shape
    masks = masks.bool()
    image = image.float()
    boxes, valid = mask_boxes(masks)
    boxes = expand_boxes(boxes, expand_ratio, h, w)
    crops = image.new_zeros((n, 3, size, size))
    crop_masks = torch.zeros((n, size, size), dtype=torch.bool, device=masks.device)
    color = None
    if fill != "none":
        color = (fill_color if fill == "mean" else image.new_zeros(3)).to(image)
    if method == "auto":
        method = "whole" if image.device.type != "cpu" else \
            "matmul" if h * w <= MATMUL_MAX_PIXELS else "loop"
    chunk = max(1, CHUNK_FLOATS // (3 * h * w + 3 * size * w))
    # Pixels, not a network: float32 under any autocast of the caller (a bf16 resize
    # would move crop values by up to 1/128 and could not be stored in `crops`).
    if method == "whole":
        # every mask, an empty one given a 1-pixel box (its taps must stay in range)
        boxes = torch.cat([boxes[:, :2], torch.where(valid[:, None], boxes[:, 2:], 1)], 1)
        with full_precision(image.device):
            for i in range(0, n, chunk):
                part = slice(i, i + chunk)
                cut, cut_masks = _crops_in_window(image, masks[part], boxes[part], size,
                                                  color, 0, 0, h, w)
                crops[part] = torch.where(valid[part, None, None, None], cut, 0)
                crop_masks[part] = cut_masks & valid[part, None, None]
        return crops, crop_masks, valid
    index = torch.nonzero(valid).flatten()
    crop_fn = _crops_by_matmul if method == "matmul" else _crops_by_loop
    with full_precision(image.device):
        for i in range(0, len(index), chunk):
            sel = index[i:i + chunk]
            crops[sel], crop_masks[sel] = crop_fn(image, masks[sel], boxes[sel], size, color)
    return crops, crop_masks, valid
