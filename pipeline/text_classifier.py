"""Zero-shot text classifier: class names x prompt templates -> one unit vector per class.

Templates are ViLD's 14 (as OVSeg uses). Each (name, template) embedding is L2-normalised,
averaged over templates and comma-separated synonyms, then renormalised.
"""

from __future__ import annotations

import torch

VILD_TEMPLATES = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)


def split_synonyms(name: str) -> list[str]:
    """"road, route" -> ["road", "route"]."""
    return [s.strip() for s in name.split(",") if s.strip()]


@torch.no_grad()
def text_classifier(model, tokenizer, class_names, templates=VILD_TEMPLATES,
                    batch_size: int = 512) -> torch.Tensor:
    """(K, D) float32 unit vectors, one per class."""
    prompts, owner = [], []
    for k, name in enumerate(class_names):
        synonyms = split_synonyms(name)
        if not synonyms:
            raise ValueError(f"class {k} has an empty name")
        for syn in synonyms:
            for t in templates:
                prompts.append(t.format(syn))
                owner.append(k)
    feats = []
    for i in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[i:i + batch_size])
        feats.append(model.encode_text(tokens).float())
    feats = torch.nn.functional.normalize(torch.cat(feats), dim=-1)
    owner = torch.tensor(owner)
    sums = torch.zeros(len(class_names), feats.shape[1]).index_add_(0, owner, feats)
    means = sums / torch.bincount(owner, minlength=len(class_names))[:, None]
    return torch.nn.functional.normalize(means, dim=-1)
