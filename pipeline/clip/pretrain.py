"""Contrastive pretraining of a small CLIP on images and their captions (open_clip's
loss and tokenizer), for the embedded world where no pretrained CLIP can be downloaded."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from open_clip.loss import ClipLoss

from pipeline.clip.masked_crops import normalize
from pipeline.clip.model import create_clip
from pipeline.data.decoded_cache import DecodedCache
from pipeline.data.image_io import read_rgb
from pipeline.data.layouts import Split, iter_index
from pipeline.distributed.precision import autocast
from pipeline.training.schedules import cosine_lr


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on gains, biases, embeddings and logit_scale (as open_clip trains)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name \
                or "logit_scale" in name or "embedding" in name or "class_embedding" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay}]


def caption_batches(
    num_images: int, num_captions: Callable[[int], int], batch_size: int, steps: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (image indices, caption indices) for `steps` batches: epochs of seeded
    permutations, one random caption of each image per epoch."""
    rng = np.random.default_rng(seed)
    perm, pos = rng.permutation(num_images), 0
    for _ in range(steps):
        if pos + batch_size > num_images:
            perm, pos = rng.permutation(num_images), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        caps = np.array([rng.integers(num_captions(int(i))) for i in idx])
        yield idx, caps


@dataclass
class StepLog:
    step: int
    loss: float
    lr: float
    logit_scale: float


# the step log (metrics/live/base_clip): StepLog field -> format spec
LOSS_COLUMNS = {"step": "", "loss": ".5f", "lr": ".6g", "logit_scale": ".4f"}


def train_clip(
    model: torch.nn.Module,
    load_batch: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]],
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    steps: int,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    on_step: Callable[[StepLog], None] = lambda log: None,
    precision: str = "auto",
) -> list[StepLog]:
    """Train `model` in place with the CLIP contrastive loss; load_batch maps (image
    indices, caption indices) to (images (B, 3, S, S), tokens (B, L)), which go to the
    model's device. The towers run in `precision` (pipeline/distributed/precision.py:
    "auto" is bf16 autocast on CUDA), the loss in float32 (logits at scale up to 100)."""
    device = next(model.parameters()).device
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98),
                            eps=1e-6, foreach=True)  # CUDA's default; on CPU the same bits
    model.train()
    logs = []
    for step, (idx, caps) in enumerate(batches):
        if step >= steps:
            break
        cur_lr = cosine_lr(step, steps, warmup_steps, lr)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        images, tokens = load_batch(idx, caps)
        with autocast(device, precision):
            image_f = model.encode_image(images.to(device, non_blocking=True), normalize=True)
            text_f = model.encode_text(tokens.to(device, non_blocking=True), normalize=True)
        loss = loss_fn(image_f.float(), text_f.float(), model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP clamps the temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        log = StepLog(step, loss.item(), cur_lr, model.logit_scale.exp().item())
        logs.append(log)
        on_step(log)
    model.eval()
    return logs


def create_base_clip(arch: str, pretrained: str, device) -> torch.nn.Module:
    """The CLIP to start from, on `device`; initialised on the CPU, so a seeded run has the
    same initial weights on any device."""
    return create_clip(arch, pretrained).to(device)


def pretrain_on_captions(model: torch.nn.Module, split: Split, tokenizer, size: int, p,
                         mean: torch.Tensor, std: torch.Tensor,
                         on_step: Callable[[StepLog], None] = lambda log: None) -> list[StepLog]:
    """`train_clip` on the images of `split` at `size` and one random caption each per
    epoch (`p`: the clip params section). Each image is decoded once (the world's ~4 epochs
    of 300 steps would decode it 4 times)."""
    rows = list(iter_index(split.index))
    image_dir = Path(split.image_dir)
    decoded = DecodedCache()

    def read(i: int) -> tuple[np.ndarray]:
        return (read_rgb(image_dir / rows[i].file_name, size),)

    def load_batch(idx, caps):
        imgs = np.stack([decoded.get(i, read)[0] for i in idx])  # (B, S, S, 3) uint8
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
        return normalize(x, mean, std), tokenizer([rows[i].captions[c]
                                                   for i, c in zip(idx, caps)])

    batches = caption_batches(len(rows), lambda i: len(rows[i].captions), p.batch_size,
                              p.steps, p.seed)
    return train_clip(model, load_batch, batches, p.steps, p.lr, p.weight_decay,
                      p.warmup_steps, on_step)
