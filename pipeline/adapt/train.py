"""Adapting CLIP to masked crops (OVSeg sec. 3.3): FT trains the image tower, MPT trains
only the mask prompts, and both can train together. The loss is open_clip's contrastive
`ClipLoss` between masked-crop features and the frozen text features of the crops' nouns.

Under DDP the loss gathers features with their gradients (`gather_with_grad`), so every
rank computes the loss of the whole global batch and the averaged gradient equals the
single-process gradient of that batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import nn

from pipeline.adapt.shard_loader import Batch
from pipeline.clip.mask_prompts import MaskPrompts, encode_image
from pipeline.clip.pretrain import param_groups
from pipeline.distributed.data_parallel import data_parallel
from pipeline.distributed.precision import autocast
from pipeline.distributed.process_group import Distributed
from pipeline.training.schedules import cosine_lr


@dataclass(frozen=True)
class AdaptPlan:
    """What trains, and how fast. lr and weight decay are per part: OVSeg trains CLIP at
    5e-6 / 0.2 and the prompts at 2e-2 / 0."""

    train_clip: bool
    train_prompts: bool
    steps: int
    warmup_steps: int
    clip_lr: float = 0.0
    clip_weight_decay: float = 0.0
    prompt_lr: float = 0.0
    prompt_weight_decay: float = 0.0

    @property
    def name(self) -> str:
        return {(True, False): "ft", (False, True): "mpt",
                (True, True): "simultaneous"}.get((self.train_clip, self.train_prompts), "none")


class MaskedCropEncoder(nn.Module):
    """CLIP's image tower with optional mask prompts: (images, masks) -> unit features.
    One module, so DistributedDataParallel sees every trainable tensor of either part."""

    def __init__(self, clip: nn.Module, prompts: MaskPrompts | None = None):
        super().__init__()
        self.clip = clip
        self.prompts = prompts

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        prompts = self.prompts.prompts if self.prompts is not None else None
        return F.normalize(encode_image(self.clip, images, masks, prompts), dim=-1)


def set_trainable(encoder: MaskedCropEncoder, plan: AdaptPlan) -> None:
    """Freeze everything but the image tower (FT) and/or the prompts (MPT); the text tower
    and the temperature never train."""
    encoder.requires_grad_(False)
    if plan.train_clip:
        encoder.clip.visual.requires_grad_(True)
    if plan.train_prompts:
        if encoder.prompts is None:
            raise ValueError("the plan trains mask prompts but the encoder has none")
        encoder.prompts.requires_grad_(True)
    encoder.eval()
    if plan.train_clip:
        encoder.clip.visual.train()


def adaptation_optimizer(encoder: MaskedCropEncoder, plan: AdaptPlan) -> torch.optim.AdamW:
    """AdamW over the parts the plan trains (made trainable here, everything else frozen);
    each group keeps its peak lr in 'base_lr'."""
    set_trainable(encoder, plan)
    groups = []
    if plan.train_clip:
        for g in param_groups(encoder.clip.visual, plan.clip_weight_decay):
            groups.append({**g, "lr": plan.clip_lr, "base_lr": plan.clip_lr})
    if plan.train_prompts:
        groups.append({"params": [encoder.prompts.prompts], "lr": plan.prompt_lr,
                       "base_lr": plan.prompt_lr, "weight_decay": plan.prompt_weight_decay})
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("nothing to train: the plan trains neither CLIP nor prompts")
    # foreach: one op over all tensors, as on CUDA by default; on CPU the same bits, fewer
    # Python steps
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6, foreach=True)


@dataclass
class AdaptStepLog:
    step: int
    loss: float
    clip_lr: float
    prompt_lr: float


def train_adaptation(
    encoder: MaskedCropEncoder,
    batches: Iterable[Batch],
    text_features: torch.Tensor,
    noun_index: dict[str, int],
    optimizer: torch.optim.Optimizer,
    plan: AdaptPlan,
    start_step: int = 0,
    ddp: Distributed | None = None,
    precision: str = "auto",
    on_step: Callable[[AdaptStepLog], None] = lambda log: None,
) -> None:
    """Train from `start_step` to `plan.steps`; `batches` yields this process's part of
    each global batch in step order. text_features: (V, D) unit vectors of the nouns."""
    ddp = ddp or Distributed()
    device = text_features.device
    set_trainable(encoder, plan)
    net = data_parallel(encoder, ddp)
    loss_fn = ClipLoss(local_loss=False, gather_with_grad=True, rank=ddp.rank,
                       world_size=ddp.world)
    # CLIP's learned temperature, frozen with the text tower
    logit_scale = encoder.clip.logit_scale.detach().exp().clamp(max=100).to(device)
    step = start_step
    for batch in batches:
        if step >= plan.steps:
            break
        if batch.step != step:
            raise RuntimeError(f"loader gave step {batch.step}, training expected {step}")
        scale = cosine_lr(step, plan.steps, plan.warmup_steps, 1.0)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * scale
        images = batch.images.to(device, non_blocking=True)
        masks = batch.masks.to(device, non_blocking=True)
        text = text_features[torch.tensor([noun_index[n] for n in batch.nouns], device=device)]
        with autocast(device, precision):
            image_features = net(images, masks)
        loss = loss_fn(image_features.float(), text, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"adaptation loss is {loss_value} at step {step}: lower "
                                     "the learning rate")
        on_step(AdaptStepLog(step, loss_value, plan.clip_lr * scale if plan.train_clip else 0.0,
                             plan.prompt_lr * scale if plan.train_prompts else 0.0))
        step += 1
    if step < plan.steps:
        raise RuntimeError(f"the loader ended at step {step} of {plan.steps}")
    encoder.eval()
