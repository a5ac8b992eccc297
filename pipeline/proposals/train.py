"""Training loop of the proposal net: seeded batches that depend only on (seed, step), so
a run resumed from a checkpoint sees exactly the batches an uninterrupted run would;
AdamW with linear warm-up and cosine decay; optional DistributedDataParallel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.proposals.loss import LossWeights, set_loss
from pipeline.proposals.model import ProposalNet, class_logits
from pipeline.training.distributed import Distributed
from pipeline.training.schedules import cosine_lr


def batch_indices(n_images: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The images of global step `step`: an epoch-wise shuffle keyed by (seed, epoch)."""
    per_epoch = max(n_images // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_images)
    return np.resize(order, per_epoch * batch_size)[k * batch_size:(k + 1) * batch_size]


@dataclass
class ProposalStepLog:
    step: int
    loss: float
    ce: float
    mask: float
    dice: float
    lr: float


# metrics/proposals_loss.csv: ProposalStepLog field -> format spec
LOSS_COLUMNS = {"step": "", "loss": ".5f", "ce": ".5f", "mask": ".5f", "dice": ".5f",
                "lr": ".6g"}


def train_proposal_net(
    model: ProposalNet,
    load_batch: Callable[[np.ndarray], tuple[torch.Tensor, list[dict]]],
    n_images: int,
    text: torch.Tensor,
    weights: LossWeights,
    optimizer: torch.optim.Optimizer,
    steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    seed: int,
    start_step: int = 0,
    ddp: Distributed | None = None,
    on_step: Callable[[ProposalStepLog], None] = lambda log: None,
) -> None:
    """Train from `start_step` to `steps`. `load_batch(indices)` -> images (B, 3, S, S) in
    [0, 1] on the model's device and targets (see `proposal_loss.layer_loss`). Under DDP
    each process takes every world-th image of the global batch."""
    ddp = ddp or Distributed()
    net = model
    if ddp.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    model.train()
    for step in range(start_step, steps):
        idx = batch_indices(n_images, batch_size, seed, step)[ddp.rank::ddp.world]
        images, targets = load_batch(idx, step)
        cur_lr = cosine_lr(step, steps, warmup_steps, lr)
        for group in optimizer.param_groups:
            group["lr"] = cur_lr
        outputs = net(images)
        loss, parts = set_loss(outputs, lambda qt: class_logits(
            qt, text, model.no_object, model.cfg.temperature), targets, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        on_step(ProposalStepLog(step, float(loss.detach()), parts["ce"], parts["mask"],
                                parts["dice"], cur_lr))
