"""Create, save and load open_clip models in a self-contained, weights-only format.

A checkpoint folder holds `open_clip_config.json` ({"model_cfg", "preprocess_cfg"}) and
`open_clip_model.safetensors`, which open_clip itself loads:

    open_clip.create_model_and_transforms("local-dir:models/clip_base")

and, for a built-in architecture, also with
`pretrained="models/clip_base/open_clip_model.safetensors"`.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

from pipeline.clip.local_configs import MODEL_CONFIG_DIR
from pipeline.clip.training_attention import use_batch_first_attention

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


def register_model_configs(path: str | Path = MODEL_CONFIG_DIR) -> None:
    """Make the repo's JSON model configs (e.g. ovseg-tiny-vit) known to open_clip."""
    if Path(path).is_dir() and Path(path) not in open_clip.factory._MODEL_CONFIG_PATHS:
        open_clip.add_model_config(path)


def model_config(arch: str) -> dict:
    register_model_configs()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"unknown CLIP architecture {arch!r} (clip.arch); known: "
                         f"{', '.join(open_clip.list_models())}")
    return cfg


def create_clip(arch: str, pretrained: str = "") -> torch.nn.Module:
    """A new CLIP: random weights, or loaded from an open_clip tag or a local checkpoint;
    its blocks train with batch-first attention (training_attention.py)."""
    model_config(arch)
    if pretrained and not Path(pretrained).exists() and \
            not open_clip.get_pretrained_cfg(arch, pretrained):
        raise ValueError(
            f"clip.pretrained = {pretrained!r} is neither a file nor an open_clip tag for "
            f"{arch}; tags: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}")
    if pretrained and Path(pretrained).is_dir():
        return load_clip(pretrained)
    return use_batch_first_attention(open_clip.create_model(arch, pretrained=pretrained or None))


def save_clip(model: torch.nn.Module, model_cfg: dict, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    preprocess = {k: list(v) if isinstance(v, tuple) else v
                  for k, v in model.visual.preprocess_cfg.items()}
    (out_dir / CONFIG_NAME).write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": preprocess}, indent=1, sort_keys=True) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_NAME))


def load_clip(path: str | Path) -> torch.nn.Module:
    path = Path(path)
    if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"no CLIP checkpoint in {path}: expected {CONFIG_NAME} and {WEIGHTS_NAME} "
            "(run `dvc repro base_clip`)")
    return use_batch_first_attention(open_clip.create_model(f"local-dir:{path}"))


def tokenizer_for(path_or_arch: str | Path):
    if Path(path_or_arch).is_dir():
        return open_clip.get_tokenizer(f"local-dir:{path_or_arch}")
    model_config(str(path_or_arch))
    return open_clip.get_tokenizer(str(path_or_arch))


def pixel_stats(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP's normalisation mean and std, each (3,), in [0, 1] pixel units."""
    mean = model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN
    std = model.visual.image_std or open_clip.OPENAI_DATASET_STD
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
