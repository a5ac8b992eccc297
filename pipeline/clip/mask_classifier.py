"""Classify mask proposals with CLIP (OVSeg §3.1, eq. for p_hat):
masked crop -> CLIP image tower (+ mask prompts) -> p_hat = softmax_k(100 * cos(v, t_k)).

On CPU the model can run with bf16 weights (`cast_for_inference`): cast the model, not
autocast, since autocast to bf16 is slower than fp32 on CPU. Whether bf16 is faster at all
depends on the CPU (native bf16 instructions); `benchmarks/bench_mask_clip.py` measures it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.clip.mask_prompts import encode_image
from pipeline.clip.masked_crops import masked_crops
from pipeline.clip.model import pixel_stats
from pipeline.distributed.precision import full_precision
from pipeline.distributed.transfers import to_device

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CLIP_LOGIT_SCALE = 100.0  # OVSeg's fixed temperature for masked-crop classification


def cast_for_inference(model: torch.nn.Module, dtype: str) -> torch.nn.Module:
    """The model in eval mode with its weights in `dtype` ("float32" | "bfloat16" | ...)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return model.to(DTYPES[dtype]).eval()


def crop_size(model: torch.nn.Module) -> int:
    size = model.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else int(size)


def crops_for_clip(model, image: torch.Tensor, masks: torch.Tensor, fill: str = "mean",
                   expand_ratio: float = 1.0):
    """Normalised masked crops (N, 3, S, S) float32, crop masks (N, S, S), valid (N,), on
    the device of `image`, which waits for nothing there (`transfers.to_device`)."""
    mean, std = (to_device(s, image.device) for s in pixel_stats(model))
    crops, crop_masks, valid = masked_crops(image, masks, crop_size(model), fill, mean,
                                            expand_ratio)
    crops = (crops - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    return crops, crop_masks, valid


@torch.no_grad()
def crop_cosines(model, crops: torch.Tensor, crop_masks: torch.Tensor,
                 text_features: torch.Tensor, prompts: torch.Tensor | None = None,
                 batch_size: int = 64) -> torch.Tensor:
    """Cosine similarities (N, K) float32, on the crops' device, between CLIP features of
    normalised crops (N, 3, S, S) (with mask prompts, if given) and unit text features
    (K, D). The crops go to the model's device and dtype a batch at a time; the cosines
    are float32 under any autocast (OVSeg scales them by 100 before the softmax). They
    stay on the model's device until all batches are queued: a copy to the host per batch
    would make the host wait for each forward before queuing the next."""
    weight = next(model.parameters())
    out = []
    for i in range(0, len(crops), batch_size):
        feats = encode_image(model, crops[i:i + batch_size].to(weight.device, weight.dtype),
                             crop_masks[i:i + batch_size], prompts)
        with full_precision(feats.device):
            text = text_features.float().to(feats.device)
            cos = F.normalize(feats.float(), dim=-1) @ text.T  # (B, K)
        out.append(cos)
    if not out:
        return torch.zeros(0, len(text_features), device=crops.device)
    return torch.cat(out).to(crops.device)


def classify_masks(model, image: torch.Tensor, masks: torch.Tensor, text_features: torch.Tensor,
                   prompts: torch.Tensor | None = None, fill: str = "mean",
                   expand_ratio: float = 1.0, batch_size: int = 64
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities of each mask's crop.

    image: (3, H, W) float in [0, 1]; masks: (N, H, W) bool; text_features: (K, D) unit
    vectors (`text_classifier`); prompts: (depth, grid*grid, width) mask prompts or None.
    Returns probs (N, K) float32 (rows of invalid, empty masks are zero) and valid (N,),
    on the image's device.
    """
    crops, crop_masks, valid = crops_for_clip(model, image, masks, fill, expand_ratio)
    probs = torch.zeros(len(masks), len(text_features), device=crops.device)
    index = torch.nonzero(valid).flatten()
    cos = crop_cosines(model, crops[index], crop_masks[index], text_features, prompts,
                       batch_size)
    probs[index] = (CLIP_LOGIT_SCALE * cos).softmax(dim=-1)
    return probs, valid
