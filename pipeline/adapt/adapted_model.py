"""The adapted CLIP the pipeline hands to evaluation: a CLIP checkpoint plus optional mask
prompts, named by `models/mask_prompts/adapted.json`.

The stage graph is fixed (finetune, then prompt_tune), but `mpt.order` decides which of
them changes CLIP's weights:
- ft_then_mpt: finetune trains CLIP (models/clip_ft); prompt_tune trains prompts on it;
- mpt_then_ft, simultaneous: finetune passes the base CLIP through, and prompt_tune
  trains the prompts first and then CLIP, or both at once, writing its own CLIP copy
  (models/mask_prompts/clip).
The manifest says which CLIP folder goes with the prompts, so readers need not know.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from pipeline.clip.mask_prompts import load_prompts
from pipeline.clip.model import load_clip
from pipeline.data.files import write_json

MANIFEST = "adapted.json"
PROMPTS_FILE = "mask_prompts.safetensors"
FT_MARKER = "finetune.json"  # in models/clip_ft: whether its weights were finetuned


class AdaptedModelError(ValueError):
    """A corrupt adapted.json or finetune.json; the message names it and the fix."""


def read_json_object(path: Path, stage: str) -> dict:
    """The JSON object in `path`; AdaptedModelError, in one line, if it is anything else
    (empty, cut short, not JSON, not an object). `stage` writes the file."""
    try:
        obj = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdaptedModelError(f"{path} is not valid JSON ({e}); re-run `dvc repro {stage}` "
                                "to write it again") from e
    if not isinstance(obj, dict):
        raise AdaptedModelError(f"{path} holds a JSON {type(obj).__name__}, not an object; "
                                f"re-run `dvc repro {stage}` to write it again")
    return obj


def finetune_plan(ft_enabled: bool, mpt_enabled: bool, order: str) -> bool:
    """Does the finetune stage itself train CLIP? Only when FT comes first (or alone)."""
    return ft_enabled and (order == "ft_then_mpt" or not mpt_enabled)


def prompt_tune_phases(ft_enabled: bool, mpt_enabled: bool, order: str) -> list[str]:
    """What the prompt_tune stage trains, in order: "mpt", "ft" or "simultaneous"."""
    if not mpt_enabled:
        return []
    if not ft_enabled or order == "ft_then_mpt":
        return ["mpt"]
    return ["mpt", "ft"] if order == "mpt_then_ft" else ["simultaneous"]


def was_finetuned(clip_dir: str | Path) -> bool:
    """Did the finetune stage train the CLIP in clip_dir (or pass the base CLIP through)?"""
    marker = Path(clip_dir) / FT_MARKER
    return marker.is_file() and bool(read_json_object(marker, "finetune").get("finetuned"))


def clip_reference(clip_dir: str | Path, manifest_dir: str | Path) -> str:
    """clip_dir as the manifest records it: relative to the manifest's own folder, so the
    pair loads from any working directory and moves together ("../clip_ft", "clip")."""
    return Path(os.path.relpath(Path(clip_dir).resolve(), Path(manifest_dir).resolve())).as_posix()


def write_manifest(out_dir: Path, clip_ref: str, prompts_file: str | None, meta: dict) -> None:
    """clip_ref: from clip_reference(), against the folder the manifest will finally live
    in (not a temporary folder it is written to first)."""
    write_json(Path(out_dir) / MANIFEST, {"clip": clip_ref, "prompts": prompts_file, **meta})


def read_manifest(folder: str | Path) -> dict:
    """The manifest in `folder`: FileNotFoundError if there is none, AdaptedModelError if
    it is corrupt or lacks "clip" (a folder) or "prompts" (a file name or null)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {folder}: run `dvc repro prompt_tune`")
    manifest = read_json_object(path, "prompt_tune")
    if not isinstance(manifest.get("clip"), str) or \
            not isinstance(manifest.get("prompts", ""), (str, type(None))):
        raise AdaptedModelError(f"{path} lacks \"clip\" (a folder name) or has a \"prompts\" "
                                "that is not a file name; re-run `dvc repro prompt_tune` to "
                                "write it again")
    return manifest


def load_adapted(folder: str | Path = "models/mask_prompts"
                 ) -> tuple[torch.nn.Module, torch.Tensor | None, dict]:
    """(CLIP in eval mode, prompts (depth, grid*grid, width) or None, manifest). The
    manifest's CLIP path is relative to `folder`, never to the working directory."""
    manifest = read_manifest(folder)
    model = load_clip(Path(folder) / manifest["clip"]).eval()
    prompts = None
    if manifest.get("prompts"):
        prompts, _ = load_prompts(Path(folder) / manifest["prompts"])
    return model, prompts, manifest
