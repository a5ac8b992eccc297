"""The module a training process steps: the model itself in one process; under torchrun, a
DistributedDataParallel wrapper whose live BatchNorm layers see the global batch.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pipeline.distributed.process_group import Distributed


def live_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers that normalise with batch statistics in training
    (a frozen BatchNorm, timm's FrozenBatchNorm2d as detectron2's, is not one)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def with_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every live BatchNorm made a SyncBatchNorm, on CUDA: each process's
    statistics would otherwise come from its own share of the batch (small_cnn's
    BatchNorm at 1/world of the images), so N processes would train another net than one.
    torch's SyncBatchNorm runs on GPUs only: on the CPU (gloo) the layers stay per
    process, with a warning."""
    if not live_batchnorms(model):
        return model
    if torch.device(device).type != "cuda":
        warnings.warn("BatchNorm under several CPU processes normalises each process's "
                      "share of the batch (torch's SyncBatchNorm needs CUDA): the net differs "
                      "from a one-process run; set proposals.freeze_bn: true or run one "
                      "process", stacklevel=2)
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def data_parallel(model: nn.Module, ddp: Distributed) -> nn.Module:
    """The module to call in training: `model` in one process, else DDP over it, after
    `with_sync_batchnorm` on the model's device. The optimizer may hold `model`'s
    parameters from before: the conversion keeps the same Parameter objects."""
    if ddp.world <= 1:
        return model
    device = next(model.parameters()).device
    model = with_sync_batchnorm(model, device)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)
