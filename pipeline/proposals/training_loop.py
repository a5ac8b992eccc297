"""Training loop of the proposal net (MaskFormer's recipe, OVSeg §4.1): seeded batches that
depend only on (seed, step), so a run resumed from a checkpoint sees exactly the batches an
uninterrupted run would; a per-step lr (poly with warm-up, or cosine) scaled per param
group (the backbone's 0.1); full-model gradient-norm clipping; bf16 autocast on GPU;
optional DistributedDataParallel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.distributed.data_parallel import data_parallel
from pipeline.distributed.precision import autocast
from pipeline.distributed.process_group import Distributed, all_reduce_sum
from pipeline.proposals.loss import FOCAL, LossWeights, MaskLoss, ddp_loss_shares, set_loss
from pipeline.proposals.model import ProposalNet, class_logits
from pipeline.training.loss_log import write_loss_png


def batch_indices(n_images: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The images of global step `step`: an epoch-wise shuffle keyed by (seed, epoch)."""
    per_epoch = max(n_images // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_images)
    return np.resize(order, per_epoch * batch_size)[k * batch_size:(k + 1) * batch_size]


@dataclass(frozen=True)
class StepPlan:
    """The (step, row numbers) of one process's batches from `start` to `steps`, computed
    where they are read (a loader process), so a 120K-step plan costs nothing up front."""

    n_images: int
    batch_size: int
    seed: int
    start: int
    steps: int
    rank: int = 0
    world: int = 1

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __getitem__(self, k: int) -> tuple[int, np.ndarray]:
        if not 0 <= k < len(self):
            raise IndexError(k)
        step = self.start + k
        return step, batch_indices(self.n_images, self.batch_size, self.seed,
                                   step)[self.rank::self.world]

    def __iter__(self):
        return (self[k] for k in range(len(self)))


@dataclass
class ProposalStepLog:
    step: int
    loss: float
    ce: float
    mask: float
    dice: float
    lr: float


# the step log (metrics/live/train_proposals): ProposalStepLog field -> format spec
LOSS_COLUMNS = {"step": "", "loss": ".5f", "ce": ".5f", "mask": ".5f", "dice": ".5f",
                "lr": ".6g"}


def train_proposal_net(
    model: ProposalNet,
    load_batch: Callable[[np.ndarray, int], tuple[torch.Tensor, list[dict]]],
    n_images: int,
    text: torch.Tensor,
    weights: LossWeights,
    optimizer: torch.optim.Optimizer,
    steps: int,
    batch_size: int,
    lr_at: Callable[[int], float],
    seed: int,
    start_step: int = 0,
    ddp: Distributed | None = None,
    on_step: Callable[[ProposalStepLog], None] = lambda log: None,
    mask_loss: MaskLoss = FOCAL,
    grad_clip_norm: float = 0.0,
    precision: str = "fp32",
) -> None:
    """Train from `start_step` to `steps`. `load_batch(indices, step)` -> images
    (B, 3, S, S) in [0, 1] on the model's device and targets (see `loss.layer_loss`); a
    loader with a `stream(plan)` method (training_recipe.BatchLoader) hands the batches
    of the whole StepPlan in order instead, read ahead.
    `lr_at(step)` is the base lr of a step; a param group's "lr_scale" (default 1)
    multiplies it. Under DDP each process takes every world-th image of the global batch, and
    its losses are scaled to its share of the global batch (`loss.ddp_loss_shares`), so the
    averaged gradient is one process's on the whole batch.
    The net runs in `precision` (pipeline/distributed/precision.py); the loss and the
    matching in float32."""
    ddp = ddp or Distributed()
    net = data_parallel(model, ddp)  # SyncBatchNorm on GPUs: small_cnn's BN is live
    model.train()
    plan = StepPlan(n_images, batch_size, seed, start_step, steps, ddp.rank, ddp.world)
    batches = load_batch.stream(plan) if hasattr(load_batch, "stream") else \
        (load_batch(idx, step) for step, idx in plan)
    for step, (images, targets) in zip(range(start_step, steps), batches):
        cur_lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = cur_lr * group.get("lr_scale", 1.0)
        # bf16 for the network; the loss and matching cast to float32 (loss.layer_loss)
        with autocast(images.device, precision):
            outputs = net(images)
        shares = ddp_loss_shares(targets, model.cfg.queries, weights, ddp.world,
                                 lambda x: all_reduce_sum(ddp, x), images.device)
        loss, parts = set_loss(outputs, lambda qt: class_logits(
            qt.float(), text, model.no_object, model.cfg.temperature), targets, weights,
            mask_loss, shares)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip_norm > 0:  # MaskFormer: CLIP_TYPE full_model, CLIP_VALUE 0.01
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        optimizer.step()
        on_step(ProposalStepLog(step, float(loss.detach()), parts["ce"], parts["mask"],
                                parts["dice"], cur_lr))


def write_proposal_loss_png(logs: list[dict], png_path) -> None:
    """metrics/proposals_loss.png: the loss and its CE and dice parts per step."""
    write_loss_png(png_path, logs, ("loss", "ce", "dice"), "proposal net training loss")
