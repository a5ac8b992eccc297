"""The repo's own CLIP architectures: models/configs/<arch>.json, in open_clip's model-config
format, read without importing open_clip (about 5 s of torch, torchvision and open_clip):
check_params validates `mpt.depth` against the number of ViT blocks before any stage runs,
and every `dvc exp run` starts with it."""

from __future__ import annotations

import json
from pathlib import Path

MODEL_CONFIG_DIR = Path(__file__).resolve().parents[2] / "models" / "configs"


def local_model_config(arch: str, config_dir: Path = MODEL_CONFIG_DIR) -> dict | None:
    """The config of `arch` when the repo ships it, else None (an open_clip built-in)."""
    path = Path(config_dir) / f"{arch}.json"
    return json.loads(path.read_text()) if path.is_file() else None
