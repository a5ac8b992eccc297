"""Mask-noun pairs from captions (OVSeg §3.2): each caption noun is paired with the
image's proposal whose masked-crop CLIP embedding is most similar to the noun's text
embedding. The official code never released this step; this follows the paper's text.

`data/pairs.parquet`: one row per (image, caption, noun): `image_id` int64,
`caption_index` int32 (-1 for nouns taken from ground-truth classes), `noun` (as written),
`lemma`, `proposal_id` int32, `similarity` float32 (cosine), `margin` float32 (to the
runner-up proposal; 0 when the image has one proposal).
"""

from __future__ import annotations

import pyarrow as pa
import torch

from pipeline.distributed.precision import full_precision

PAIR_SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("caption_index", pa.int32()),
    ("noun", pa.string()),
    ("lemma", pa.string()),
    ("proposal_id", pa.int32()),
    ("similarity", pa.float32()),
    ("margin", pa.float32()),
])


def best_proposals(region_feats: torch.Tensor, noun_feats: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """region_feats (P, D), noun_feats (N, D), both unit vectors -> for each noun the best
    proposal index (N,), its cosine similarity (N,) and the margin to the second best (N,),
    in float32 under any autocast: the similarities are written to the pairs parquet."""
    with full_precision(region_feats.device):
        sims = noun_feats.float() @ region_feats.float().T  # (N, P)
    top = sims.topk(min(2, sims.shape[1]), dim=1)
    margin = top.values[:, 0] - top.values[:, 1] if sims.shape[1] > 1 \
        else torch.zeros(len(sims), device=sims.device)
    return top.indices[:, 0], top.values[:, 0], margin


def segment_hits(masks: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor
                 ) -> torch.Tensor:
    """masks (P, H, W) bool, labels (H, W), classes (P,) -> (P,) bool: mask p's IoU with
    the segment of class p is at least 0.5 (mining precision, OVSeg Table 2). On the
    masks' device, in integers (2 * intersection >= union is IoU >= 0.5 exactly), nothing
    read back: the mining loop checks pairs while CLIP runs."""
    segments = labels[None] == classes[:, None, None]  # (P, H, W)
    inter = (masks & segments).flatten(1).sum(1)
    union = (masks | segments).flatten(1).sum(1)
    return (union > 0) & (2 * inter >= union)


def lemma_classes(names: list[str], extract) -> dict[str, int]:
    """Noun lemma -> class index, from class names with comma-separated synonyms, each
    name run through the same noun extractor as the captions (so "puppies" and "puppy"
    meet)."""
    out = {}
    for k, name in enumerate(names):
        for syn in name.split(","):
            syn = syn.strip()
            lemmas = [lemma for _, lemma in extract(syn)] or [syn.lower()]
            out.setdefault(lemmas[-1], k)
    return out
