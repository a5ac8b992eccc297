"""Checks of params.yaml that span sections or depend on the CLIP's model config.

The per-key checks live with the dataclasses (pipeline/params/schema.py); these are the ones a
single key cannot make: the shard crop size against CLIP's input size, the mask-prompt
depth against CLIP's blocks, the evaluation sets against the data source. The
`check_params` stage runs them before any stage that could delete an output.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.clip.local_configs import local_model_config
from pipeline.params import Params, ParamsError


def clip_vision_config(arch: str, pretrained: str) -> dict:
    """open_clip's `vision_cfg` of the CLIP the pipeline starts from: a local checkpoint
    folder's own config, else the architecture's (the repo's models/configs/ or open_clip's)."""
    folder_config = Path(pretrained) / "open_clip_config.json" if pretrained else None
    if folder_config is not None and folder_config.is_file():
        return json.loads(folder_config.read_text())["model_cfg"]["vision_cfg"]
    local = local_model_config(arch)  # the repo's own: no need to import open_clip
    if local is not None:
        return local["vision_cfg"]
    from pipeline.clip.model import model_config

    try:
        return model_config(arch)["vision_cfg"]
    except ValueError as e:
        raise ParamsError(f"params: 'clip.arch': {e}") from None


def check_across_sections(params: Params) -> None:
    vision = clip_vision_config(params.clip.arch, params.clip.pretrained)
    blocks, image_size = vision["layers"], vision["image_size"]
    image_size = image_size if isinstance(image_size, int) else image_size[0]
    if params.mpt.depth > blocks:
        raise ParamsError(
            f"params: 'mpt.depth' = {params.mpt.depth}; must be between 1 and the number of "
            f"ViT blocks of clip.arch {params.clip.arch!r} ({blocks})")
    if params.shards.crop_size != image_size:
        raise ParamsError(
            f"params: 'shards.crop_size' = {params.shards.crop_size} must equal the input size "
            f"of clip.arch {params.clip.arch!r} ({image_size})")
    for section in ("adapt", "proposals"):
        lo, hi = (getattr(getattr(params, section), k) for k in ("scale_min", "scale_max"))
        if lo > hi:
            raise ParamsError(f"params: '{section}.scale_min' = {lo} is above "
                              f"'{section}.scale_max' = {hi}")
    p = params.proposals
    if p.crop_size % p.size_divisor or p.crop_size % 32:
        raise ParamsError(f"params: 'proposals.crop_size' = {p.crop_size} must be a multiple "
                          f"of 32 (the backbone's largest stride) and of "
                          f"'proposals.size_divisor' = {p.size_divisor}")
    check_eval_datasets(params.eval.datasets, params.data.source, params.eval.per_dataset)


def check_eval_datasets(datasets: list, source: str, per_dataset: dict | None = None) -> None:
    """eval.datasets: known sets for data.source (a real set by its name or an alias),
    none twice, also not under two names; eval.per_dataset: keyed by known canonical
    names."""
    from pipeline.data.eval_datasets import EVAL_ALIASES, EVAL_LAYOUTS, canonical_eval_name
    from pipeline.world.classes import EVAL_VOCABS

    world = tuple(v.name for v in EVAL_VOCABS)
    synthetic = world if source == "synthetic" else ()
    known = synthetic + tuple(EVAL_LAYOUTS)
    if not datasets:
        raise ParamsError(f"params: 'eval.datasets' is empty; name at least one of: "
                          f"{', '.join(known)}")
    for name in datasets:
        if name not in known and name not in EVAL_ALIASES:
            raise ParamsError(f"params: 'eval.datasets' names {name!r}; known with "
                              f"data.source {source!r}: {', '.join(known)}; or a real set's "
                              f"ov-seg / SAN / CAT-Seg name: {', '.join(EVAL_ALIASES)}")
    seen = {}
    for name in datasets:
        canonical = canonical_eval_name(name)
        if canonical in seen:
            first = seen[canonical]
            what = repr(name) if first == name else f"{first!r} and {name!r} (both {canonical})"
            raise ParamsError(f"params: 'eval.datasets' names a set twice: {what}")
        seen[canonical] = name
    for name in per_dataset or {}:
        if name in EVAL_ALIASES:
            raise ParamsError(f"params: 'eval.per_dataset.{name}': key it by the set's name "
                              f"{EVAL_ALIASES[name]!r}, not an alias")
        if name not in world + tuple(EVAL_LAYOUTS):
            raise ParamsError(f"params: 'eval.per_dataset.{name}' names no evaluation set; "
                              f"known: {', '.join(world + tuple(EVAL_LAYOUTS))}")


# Values of the synthetic world's params.yaml that are wrong at real scale (issue 17: they
# used to carry into a real run silently). Warnings, not errors: an ablation may mean one.
WORLD_ONLY = {
    "proposals.backbone": ("small_cnn", "timm:resnet101c or timm:swin_base_patch4_window12_384"),
    "clip.arch": ("ovseg-tiny-vit", "ViT-B-16 or ViT-L-14 with clip.pretrained openai"),
    "ft.lr": (1e-3, "5e-6 (OVSeg §4.1)"),
    "mine.max_images": (4000, "0, every image"),
    "proposals.queries": (16, "100"),
}


def real_data_warnings(params: Params) -> list[str]:
    """With data.source coco: each value left at the synthetic world's, with the paper's."""
    if params.data.source != "coco":
        return []
    out = []
    for key, (world_value, paper) in WORLD_ONLY.items():
        section, name = key.split(".")
        if getattr(getattr(params, section), name) == world_value:
            out.append(f"params: '{key}' = {world_value!r} is the synthetic world's value "
                       f"and data.source is coco; the paper uses {paper} (presets/)")
    return out
