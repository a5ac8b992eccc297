"""What proposal-net training is built from: the net of the `proposals` params, the classes
labelled in training (the seen classes: OVSeg §3.1 trains the proposal generator on them
alone), and the loader of a batch of images with their per-segment targets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.data.class_lists import load_class_list
from pipeline.data.decoded_cache import DEFAULT_BUDGET_BYTES, DecodedCache
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import Split
from pipeline.data.loader_processes import batches_in_order
from pipeline.params import ProposalParams
from pipeline.proposals.augment import augment
from pipeline.proposals.backbones import load_backbone_weights
from pipeline.proposals.loss import LossWeights, MaskLoss, segment_targets
from pipeline.proposals.model import ProposalNet, ProposalNetConfig
from pipeline.training.schedules import cosine_lr, poly_lr


def net_config(p: ProposalParams, text_dim: int) -> ProposalNetConfig:
    return ProposalNetConfig(backbone=p.backbone, width=p.width, hidden=p.hidden,
                             queries=p.queries, decoder_layers=p.decoder_layers, heads=p.heads,
                             text_dim=text_dim, temperature=p.temperature,
                             dim_feedforward=p.dim_feedforward, dropout=p.dropout,
                             freeze_bn=p.freeze_bn, input_size=p.crop_size)


def build_net(p: ProposalParams, text_dim: int) -> ProposalNet:
    """A new net; its backbone downloaded when `proposals.backbone_weights` is "download",
    read from that file when it names one (ValueError for a file that does not fit)."""
    net = ProposalNet(net_config(p, text_dim), pretrained_backbone=p.backbone_weights == "download")
    if p.backbone_weights not in ("", "download"):
        load_backbone_weights(net.backbone, p.backbone_weights)
    return net


NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: ProposalNet, weight_decay: float, backbone_lr_multiplier: float
                 ) -> list[dict]:
    """AdamW groups as MaskFormer builds them (detectron2's optimizer with
    BACKBONE_MULTIPLIER, WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0): the backbone's params
    at "lr_scale" = the multiplier, normalisation layers and learned embeddings (queries,
    no-object) without weight decay. Frozen params are left out."""
    no_decay = {id(p) for m in model.modules() if isinstance(m, NORM_TYPES)
                for p in m.parameters(recurse=False)}
    no_decay |= {id(model.query_embed), id(model.no_object)}
    backbone = {id(p) for p in model.backbone.parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in backbone, id(p) in no_decay), []).append(p)
    return [{"params": ps, "lr_scale": backbone_lr_multiplier if in_backbone else 1.0,
             "weight_decay": 0.0 if skip_decay else weight_decay}
            for (in_backbone, skip_decay), ps in sorted(groups.items())]


def build_optimizer(model: ProposalNet, p: ProposalParams) -> torch.optim.AdamW:
    # foreach (CUDA's default): on CPU the same bits as the per-tensor loop, and ~5 % of a
    # training step less over the net's ~100 small tensors
    return torch.optim.AdamW(param_groups(model, p.weight_decay, p.backbone_lr_multiplier),
                             lr=p.lr, weight_decay=p.weight_decay, foreach=True)


def lr_schedule(p: ProposalParams) -> Callable[[int], float]:
    """step -> base lr: poly (MaskFormer's WarmupPolyLR) or cosine, with warm-up."""
    if p.lr_schedule == "poly":
        return functools.partial(poly_lr, total=p.steps, warmup=p.warmup_steps, base_lr=p.lr,
                                 power=p.poly_power)
    return functools.partial(cosine_lr, total=p.steps, warmup=p.warmup_steps, base_lr=p.lr)


def loss_settings(p: ProposalParams) -> tuple[LossWeights, MaskLoss]:
    return (LossWeights(p.no_object_weight, 1.0, p.mask_weight, p.dice_weight),
            MaskLoss(p.mask_loss, p.focal_alpha, p.focal_gamma,
                     labelled_only=p.mask_loss_pixels == "labelled"))


def training_classes(split: Split) -> tuple[list[str], torch.Tensor]:
    """Names of the classes labelled in training, and label value -> class index (-1: not
    trained on)."""
    classes = load_class_list(split.classes)
    seen = [i for i, s in enumerate(classes.seen) if s]
    lut = torch.full((256,), -1, dtype=torch.long)
    lut[seen] = torch.arange(len(seen))
    return [classes.names[i] for i in seen], lut


class BatchLoader:
    """load_batch(row numbers, step) -> (images (B, 3, C, C) in [0, 1], per-image targets
    at C/4, the net's mask resolution), on `device`; C = proposals.crop_size. Each image
    is augmented (augment.py) with a generator keyed by (seed, step, row number), so a
    batch depends on the step alone and a resumed run sees the same batches.

    `stream(plan)`: the batches of a training run's (step, row numbers) in order, read
    and augmented by `workers` loader processes ahead of the step (issue 31: at 512 or 640
    pixels the JPEG decode and augmentation would otherwise stall the GPU between steps);
    0 builds them in this process, as `__call__` does. The batches are the same either way:
    each depends only on its step and rows."""

    def __init__(self, rows, split: Split, lut: torch.Tensor, p: ProposalParams,
                 device: torch.device, workers: int = 0):
        self.rows, self.split, self.lut, self.p = rows, split, lut, p
        self.device, self.workers = device, workers
        # 1.6 epochs of the world's images in 1000 steps; each loader process keeps its own
        # cache, so they share the one budget of a process
        self.decoded = DecodedCache(DEFAULT_BUDGET_BYTES // max(workers, 1))

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return (read_rgb(Path(self.split.image_dir) / self.rows[i].file_name),
                read_labels(Path(self.split.label_dir) / self.rows[i].label_file))

    def host_batch(self, idx: np.ndarray, step: int
                   ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """The batch on the host: what a loader process builds."""
        p = self.p
        pairs = [augment(*self.decoded.get(int(i), self._read),
                         np.random.default_rng([p.seed, step, int(i)]), p.crop_size,
                         p.scale_min, p.scale_max, p.single_category_max_area, p.flip,
                         p.color_jitter, self.split.ignore_label) for i in idx]
        images = np.stack([image for image, _ in pairs])  # (B, C, C, 3)
        images = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
        pred_size = (p.crop_size // 4, p.crop_size // 4)
        targets = [segment_targets(torch.from_numpy(labels.copy()), self.lut, pred_size,
                                   self.split.ignore_label) for _, labels in pairs]
        return images, targets

    def to_device(self, batch):
        images, targets = batch
        return (images.to(self.device, non_blocking=True),
                [{k: v.to(self.device, non_blocking=True) for k, v in t.items()}
                 for t in targets])

    def __call__(self, idx: np.ndarray, step: int):
        return self.to_device(self.host_batch(idx, step))

    def stream(self, plan) -> Iterator:
        """The batches of `plan` ((step, row numbers) items, with len) in order."""
        for batch in batches_in_order(_PlannedBatches(self, plan), self.workers,
                                      pin_memory=self.device.type == "cuda"):
            yield self.to_device(batch)


class _PlannedBatches(torch.utils.data.Dataset):
    """Item k: the host batch of plan[k], built in a loader process."""

    def __init__(self, loader: BatchLoader, plan):
        self.loader, self.plan = loader, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int):
        step, idx = self.plan[k]
        return self.loader.host_batch(idx, step)


def batch_loader(rows, split: Split, lut: torch.Tensor, p: ProposalParams,
                 device: torch.device, workers: int = 0) -> BatchLoader:
    """The proposal net's training batches of `rows` of `split` (BatchLoader)."""
    return BatchLoader(rows, split, lut, p, device, workers)
