"""OVSeg's two-stage inference arithmetic (OVSeg §3.1): MaskFormer class probabilities,
CLIP's masked-crop probabilities, their geometric ensemble, and MaskFormer's semantic
fusion of per-mask class probabilities into a per-pixel label map.

Masks whose crop is empty (invalid) keep MaskFormer's probabilities in the ensemble
(their CLIP factor is 1, as in OVSeg's code) and are left out of the CLIP-only variant.
"""

from __future__ import annotations

import torch


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


def label_map(probs: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """(H, W) int64 class of each pixel (class 0 where there are no masks)."""
    if len(probs) == 0:
        return torch.zeros(mask_logits.shape[-2:], dtype=torch.long)
    return semantic_scores(probs, mask_logits).argmax(dim=0)


def variant_probs(p_maskformer: torch.Tensor, p_clip: torch.Tensor, valid: torch.Tensor,
                  ensemble_lambda: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The paper's Table 6 variants as {name: (probs (Q', K), which masks (Q,) bool)}:
    maskformer (all masks), clip (valid masks only), ensemble (all masks)."""
    every = torch.ones(len(valid), dtype=torch.bool, device=valid.device)
    return {"maskformer": (p_maskformer, every),
            "clip": (p_clip[valid], valid),
            "ensemble": (ensemble(p_maskformer, p_clip, valid, ensemble_lambda), every)}
