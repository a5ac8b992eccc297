"""Zero-shot text classifier: class names x prompt templates -> one unit vector per class.

Templates are ViLD's 14 (as OVSeg uses). Each (name, template) embedding is L2-normalised,
averaged over templates and comma-separated synonyms, then renormalised.

Large vocabularies (ADE-847 x 14 templates is ~16K prompts) are slow to embed on CPU, so
`cached_text_classifier` keeps each result on disk, keyed by a hash of the text tower's
weights, the class names and the templates: any change to one of them is a new entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

CACHE_TENSOR = "text_classifier"

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

# clip.templates: "vild" is the paper's (§4.1, ViLD's 14); "single" is one prompt, for
# tests and quick runs of big vocabularies on CPU (ADE-847 x 14 is ~12K prompts).
TEMPLATE_SETS = {"vild": VILD_TEMPLATES, "single": ("a photo of a {}.",)}


def split_synonyms(name: str) -> list[str]:
    """"road, route" -> ["road", "route"]."""
    return [s.strip() for s in name.split(",") if s.strip()]


@torch.no_grad()
def text_classifier(model, tokenizer, class_names, templates=VILD_TEMPLATES,
                    batch_size: int = 512) -> torch.Tensor:
    """(K, D) float32 unit vectors, one per class, on the text tower's device. The tokens
    go to that device; under autocast the tower may run in bf16, the averaging does not."""
    device = next(model.parameters()).device
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
        tokens = tokenizer(prompts[i:i + batch_size]).to(device)  # (B, L) int64
        feats.append(model.encode_text(tokens).float())
    feats = torch.nn.functional.normalize(torch.cat(feats), dim=-1)  # (prompts, D)
    counts = torch.tensor([owner.count(k) for k in range(len(class_names))], device=device)
    owner = torch.tensor(owner, device=device)
    sums = feats.new_zeros((len(class_names), feats.shape[1])).index_add_(0, owner, feats)
    means = sums / counts[:, None]  # (K, D)
    return torch.nn.functional.normalize(means, dim=-1)


def text_tower_hash(model: torch.nn.Module) -> str:
    """sha256 of the weights `encode_text` reads: every state-dict entry outside the image
    tower and the logit scale/bias, with its name, dtype and shape. Finetuning the image
    tower (FT) leaves it unchanged, so FT checkpoints share the base model's entries."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith("visual.") or name.startswith("logit_"):
            continue
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def classifier_cache_key(model_hash: str, class_names, templates) -> str:
    blob = json.dumps({"model": model_hash, "classes": list(class_names),
                       "templates": list(templates)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def cached_text_classifier(model, tokenizer, class_names, cache_dir: str | Path,
                           templates=VILD_TEMPLATES, model_hash: str | None = None
                           ) -> torch.Tensor:
    """`text_classifier`, read from `cache_dir` when an entry for the same text weights,
    class names and templates exists, else computed and written there (atomically). On
    the text tower's device either way, so a cache hit and a miss hand back alike."""
    names, templates = list(class_names), list(templates)
    model_hash = model_hash or text_tower_hash(model)
    path = Path(cache_dir) / f"{classifier_cache_key(model_hash, names, templates)}.safetensors"
    meta = {"model": model_hash, "classes": json.dumps(names), "templates": json.dumps(templates)}
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as f:
                if f.metadata() == meta:
                    return f.get_tensor(CACHE_TENSOR).to(next(model.parameters()).device)
        except Exception:  # a corrupt or foreign file: recompute and overwrite it
            pass
    out = text_classifier(model, tokenizer, names, templates)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({CACHE_TENSOR: out.detach().cpu().contiguous()}, str(tmp), meta)
    os.replace(tmp, path)
    return out
