"""OVSeg's two-stage inference arithmetic (OVSeg §3.1): MaskFormer class probabilities,
CLIP's masked-crop probabilities, their geometric ensemble, and MaskFormer's semantic
fusion of per-mask class probabilities into a per-pixel label map.

Masks whose crop is empty (invalid) keep MaskFormer's probabilities in the ensemble
(their CLIP factor is 1, as in OVSeg's code) and are left out of the CLIP-only variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LABEL_MAP_CHUNK = 1 << 25  # (K, rows, W) score elements per argmax block: ~128 MB float32


def maskformer_probs(class_logits: torch.Tensor) -> torch.Tensor:
    """(Q, K + 1) logits with "no object" last -> (Q, K): softmax over all K + 1, then the
    no-object column dropped, not renormalised."""
    return class_logits.softmax(dim=-1)[:, :-1]


def crop_masks(mask_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """(Q, H, W) mask logits -> (Q, H, W) bool masks for the crops: sigmoid > threshold."""
    return mask_logits.sigmoid() > threshold


def ensemble(p_maskformer: torch.Tensor, p_clip: torch.Tensor, valid: torch.Tensor,
             ensemble_lambda: float) -> torch.Tensor:
    """OVSeg §3.1's geometric ensemble, p = p_mf^(1 - λ) * p_clip^λ, (Q, K), with λ =
    `ensemble_lambda` (params eval.ensemble_lambda); invalid masks (valid (Q,) False)
    take p_clip = 1."""
    p_clip = torch.where(valid[:, None], p_clip, torch.ones_like(p_clip))
    return p_maskformer.pow(1 - ensemble_lambda) * p_clip.pow(ensemble_lambda)


def semantic_scores(probs: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """MaskFormer's semantic inference: (Q, K) probabilities and (Q, H, W) mask logits ->
    (K, H, W) scores sum_q probs[q, k] * sigmoid(mask_q)."""
    return torch.einsum("qk,qhw->khw", probs, mask_logits.sigmoid())


def mask_probs(mask_logits: torch.Tensor, size: tuple[int, int] | None = None
               ) -> torch.Tensor:
    """(Q, H, W) mask logits -> (Q, h, w) sigmoid masks, bilinear to `size` (h, w) if given.
    The fused scores are linear in these masks, so fusing the resized masks equals
    resizing the (K, H, W) scores as MaskFormer's sem_seg_postprocess does, at Q maps
    instead of K."""
    m = mask_logits.float().sigmoid()
    if size is not None and tuple(size) != tuple(m.shape[-2:]):
        m = F.interpolate(m[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    return m


def fused_labels(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(Q, K) probabilities and (Q, H, W) sigmoid masks -> (H, W) int64 argmax_k of
    sum_q probs[q, k] * masks[q] (class 0 where there are no masks), in blocks of rows so
    that a large vocabulary at full resolution stays within memory."""
    h, w = masks.shape[-2:]
    if len(probs) == 0:
        return torch.zeros((h, w), dtype=torch.long, device=masks.device)
    rows = max(1, LABEL_MAP_CHUNK // max(1, probs.shape[1] * w))
    return torch.cat([torch.einsum("qk,qhw->khw", probs, masks[:, r:r + rows]).argmax(dim=0)
                      for r in range(0, h, rows)])


def variant_probs(p_maskformer: torch.Tensor, p_clip: torch.Tensor, valid: torch.Tensor,
                  ensemble_lambda: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The paper's Table 6 variants as {name: (probs (Q', K), which masks (Q,) bool)}:
    maskformer (all masks), clip (valid masks only), ensemble (all masks)."""
    every = torch.ones(len(valid), dtype=torch.bool, device=valid.device)
    return {"maskformer": (p_maskformer, every),
            "clip": (p_clip[valid], valid),
            "ensemble": (ensemble(p_maskformer, p_clip, valid, ensemble_lambda), every)}
