"""The proposal net's input and output at inference, as MaskFormer's: each image resized
with its aspect kept to a given short side, the batch padded to a multiple of the
backbone's largest stride; the mask logits brought back to each image's own size with the
padding cut off first (detectron2 ImageList, MaskFormer's sem_seg_postprocess).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.distributed.transfers import to_device
from pipeline.proposals.augment import MAX_LONG_SIDE, short_side_shape
from pipeline.proposals.model import IMAGENET_MEAN

MASK_STRIDE = 4  # the net's mask logits are at 1/4 of its input


def unit_image(image: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A (3, H, W) image on `device` as float in [0, 1]: a uint8 image (as decoded) goes up
    as bytes, a quarter of float32's, and is scaled there; a float image as it is."""
    image = to_device(image, device)
    return image.float().div(255) if image.dtype == torch.uint8 else image


def net_batch(images: list[torch.Tensor], short_side: int, size_divisor: int
              ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """(3, H, W) images in [0, 1] -> (batch (B, 3, Hp, Wp), each image's resized (h, w)),
    on the images' device (a GPU resizes them there).

    Bilinear resize (antialiased when shrinking) to short side `short_side`, long side at
    most 4x that; padded bottom and right to a multiple of `size_divisor` with the
    ImageNet mean, which the net's normalisation turns to 0 (detectron2 pads normalised
    images with 0)."""
    resized = []
    for im in images:
        h, w = short_side_shape(*im.shape[-2:], short_side, MAX_LONG_SIDE * short_side)
        if (h, w) != tuple(im.shape[-2:]):
            im = F.interpolate(im[None].float(), size=(h, w), mode="bilinear",
                               align_corners=False,
                               antialias=h < im.shape[-2] or w < im.shape[-1])[0].clamp(0, 1)
        resized.append(im)
    sizes = [tuple(im.shape[-2:]) for im in resized]
    hp, wp = (-(-max(s[d] for s in sizes) // size_divisor) * size_divisor for d in (0, 1))
    mean = to_device(torch.tensor(IMAGENET_MEAN, dtype=resized[0].dtype), resized[0].device)
    batch = mean.view(1, 3, 1, 1).repeat(len(resized), 1, hp, wp)  # (B, 3, Hp, Wp)
    for b, im in enumerate(resized):
        batch[b, :, :im.shape[-2], :im.shape[-1]] = im
    return batch, sizes


def masks_to_image(mask_logits: torch.Tensor, size: tuple[int, int],
                   image_size: tuple[int, int]) -> torch.Tensor:
    """(Q, Hp/4, Wp/4) logits of one padded batch entry -> (Q, H, W): bilinear up to the
    padded input, the padding (beyond `size` (h, w)) cut off, bilinear to the image's own
    `image_size` (H, W) (MaskFormer's sem_seg_postprocess)."""
    hp, wp = (MASK_STRIDE * n for n in mask_logits.shape[-2:])
    x = F.interpolate(mask_logits[None].float(), size=(hp, wp), mode="bilinear",
                      align_corners=False)[:, :, :size[0], :size[1]]  # (1, Q, h, w)
    if tuple(x.shape[-2:]) != tuple(image_size):
        x = F.interpolate(x, size=tuple(image_size), mode="bilinear", align_corners=False)
    return x[0]
