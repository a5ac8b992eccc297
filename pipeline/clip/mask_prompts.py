"""Mask prompt tuning (OVSeg §3.3) for open_clip's `VisionTransformer`, without forking it.

CLIP's weights stay frozen; learnable prompts P of shape (depth, grid*grid, width) take the
place of background patch tokens. A patch is foreground if ANY of its pixels is:
- before the class token is prepended and positional embeddings are added, patch token j
  becomes `x_j * m_j + P[0, j] * (1 - m_j)`;
- after block i (0-based), for i + 1 < depth, background patch tokens of block i's output
  are replaced by `P[i + 1]`;
- the class token is never replaced.

`encode_image` runs the tower's own modules (conv1, class and positional embeddings,
ln_pre, resblocks, pooling, projection) in open_clip's order, adding only the replacements.
Prompts live in their own small safetensors file, apart from CLIP's weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.checkpoint import checkpoint

PROMPTS_KEY = "mask_prompts"


def vision_tower(model: nn.Module) -> VisionTransformer:
    """The open_clip ViT image tower of a CLIP model (or the tower itself)."""
    visual = getattr(model, "visual", model)
    if not isinstance(visual, VisionTransformer):
        raise TypeError(f"mask prompt tuning needs open_clip's VisionTransformer image tower, "
                        f"got {type(visual).__name__} (ResNet and timm towers have no patch "
                        "tokens to prompt)")
    return visual


class MaskPrompts(nn.Module):
    """Learnable prompts (depth, grid*grid, width), zero-initialised as in OVSeg's code."""

    def __init__(self, depth: int, num_patches: int, width: int):
        super().__init__()
        self.prompts = nn.Parameter(torch.zeros(depth, num_patches, width))

    @property
    def depth(self) -> int:
        return self.prompts.shape[0]

    @classmethod
    def for_model(cls, model: nn.Module, depth: int) -> MaskPrompts:
        visual = vision_tower(model)
        blocks = len(visual.transformer.resblocks)
        if not 1 <= depth <= blocks:
            raise ValueError(f"mpt.depth must be between 1 and the number of ViT blocks "
                             f"({blocks}), got {depth}")
        gh, gw = visual.grid_size
        return cls(depth, gh * gw, visual.transformer.width)


def patch_foreground(masks: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) bool pixel masks -> (B, gh*gw) bool: does ANY pixel of the patch belong to
    the mask. Equals OVSeg's ceil(avg_pool(mask, kernel=stride=patch)) on binary masks."""
    pooled = F.max_pool2d(masks[:, None].float(), kernel_size=patch_size, stride=patch_size)
    return pooled.flatten(1) > 0


def check_prompts(visual: VisionTransformer, prompts: torch.Tensor) -> None:
    gh, gw = visual.grid_size
    want = (gh * gw, visual.transformer.width)
    if prompts.ndim != 3 or tuple(prompts.shape[1:]) != want:
        raise ValueError(f"mask prompts of shape {tuple(prompts.shape)} do not fit this ViT: "
                         f"expected (depth, {want[0]}, {want[1]})")
    if not 1 <= prompts.shape[0] <= len(visual.transformer.resblocks):
        raise ValueError(f"mask prompt depth {prompts.shape[0]} is not between 1 and the "
                         f"number of ViT blocks ({len(visual.transformer.resblocks)})")


def encode_image(model: nn.Module, images: torch.Tensor, masks: torch.Tensor | None = None,
                 prompts: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP image features (B, D), unnormalised, with background patches prompted.

    images: (B, 3, H, W) normalised; masks: (B, H, W) bool at the image's resolution;
    prompts: (depth, grid*grid, width). With no masks or no prompts this is exactly
    open_clip's `visual(images)`. The inputs go to the tower's device and dtype (bf16
    weights for inference: `precision.weights_dtype`).
    """
    visual = vision_tower(model)
    weight = visual.conv1.weight
    images = images.to(weight.device, weight.dtype, non_blocking=True)
    device = weight.device
    if masks is None or prompts is None:
        return visual(images)
    masks, prompts = masks.to(device, non_blocking=True), prompts.to(device)
    check_prompts(visual, prompts)
    if not isinstance(visual.patch_dropout, nn.Identity) and visual.patch_dropout.training:
        raise ValueError("patch dropout drops tokens, which breaks the patch-to-prompt "
                         "alignment: put the image tower in eval mode for mask prompt tuning")
    x = visual.conv1(images)  # (B, width, gh, gw)
    x = x.flatten(2).transpose(1, 2)  # (B, gh*gw, width)
    prompts = prompts.to(x.dtype)
    keep = patch_foreground(masks, visual.patch_size)[..., None]  # (B, gh*gw, 1)
    x = torch.where(keep, x, prompts[0])
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(visual.patch_dropout(x))  # (B, 1 + gh*gw, width)

    # one select per block over all tokens: the class token's row is always kept
    keep_all = F.pad(keep, (0, 0, 1, 0), value=True)  # (B, 1 + gh*gw, 1)
    padded = F.pad(prompts, (0, 0, 1, 0))  # (depth, 1 + gh*gw, width); row 0 never used
    transformer = visual.transformer
    if not transformer.batch_first:
        x, keep_all, padded = x.transpose(0, 1), keep_all.transpose(0, 1), padded.transpose(0, 1)
    for i, block in enumerate(transformer.resblocks):
        if transformer.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, None, None, None, use_reentrant=False)
        else:
            x = block(x)
        if i + 1 < len(prompts):
            step = padded[i + 1] if transformer.batch_first else padded[:, i + 1:i + 2]
            x = torch.where(keep_all, x, step)
    if not transformer.batch_first:
        x = x.transpose(0, 1)

    pooled, _ = visual._pool(x)
    return pooled @ visual.proj if visual.proj is not None else pooled


def save_prompts(prompts: torch.Tensor, path: str | Path, meta: dict | None = None) -> None:
    """Write prompts (depth, grid*grid, width) as a small safetensors file; `meta` (JSON)
    records e.g. the CLIP architecture and checkpoint they were tuned on."""
    metadata = {"meta": json.dumps(meta or {}, sort_keys=True)}
    save_file({PROMPTS_KEY: prompts.detach().float().contiguous().cpu()}, str(path), metadata)


class PromptsFileError(ValueError):
    """A mask prompts file that cannot be used; the message names it and the fix."""


def load_prompts(path: str | Path) -> tuple[torch.Tensor, dict]:
    """(prompts (depth, grid*grid, width) float32, metadata dict). PromptsFileError, in
    one line, for a file that is not safetensors or holds no prompts."""
    from safetensors import SafetensorError

    def bad(why: str) -> PromptsFileError:
        return PromptsFileError(f"{path}: {why}; re-run `dvc repro prompt_tune` to write it "
                                "again")

    try:
        with safe_open(str(path), framework="pt") as f:
            if PROMPTS_KEY not in f.keys():
                raise bad(f"holds no mask prompts (tensor {PROMPTS_KEY!r} missing)")
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            prompts = f.get_tensor(PROMPTS_KEY)
    except SafetensorError as e:  # random bytes, a JSON file, a torch pickle, cut short
        raise bad(f"not a safetensors file ({e})") from e
    except json.JSONDecodeError as e:
        raise bad(f"its metadata is not JSON ({e})") from e
    if prompts.ndim != 3:
        raise bad(f"its prompts have shape {tuple(prompts.shape)}, not (depth, patches, width)")
    if not isinstance(meta, dict):
        raise bad("its metadata is not a JSON object")
    return prompts, meta
