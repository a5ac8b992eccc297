"""Which device each process runs its networks on (`compute.device`)."""

from __future__ import annotations

import os

import torch

from pipeline.distributed.process_group import Distributed, init_distributed


def select_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto`: this process's GPU (its local rank's) when CUDA is available, else the CPU;
    `cpu`; `cuda`, which stops with how to fix it when there is no GPU. A local rank
    beyond the GPUs stops too (NCCL cannot put two ranks on one GPU)."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("compute.device is cuda, but torch finds no CUDA device "
                         f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}). "
                         "Set compute.device: auto (the CPU when there is no GPU) or cpu, "
                         "or install a CUDA build of torch.")
    gpus = torch.cuda.device_count()
    if local_rank >= gpus:
        raise SystemExit(
            f"local rank {local_rank} has no GPU of its own: this machine has {gpus}, and "
            "NCCL cannot run two processes on one GPU. Start at most one process per GPU "
            "(compute.processes: 0, or torchrun --nproc-per-node at most the GPU count), "
            "or set compute.device: cpu.")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def start_ranks(choice: str) -> tuple[torch.device, Distributed]:
    """This process's device and its place in torchrun's process group (if any)."""
    device = select_device(choice, int(os.environ.get("LOCAL_RANK", "0")))
    return device, init_distributed(device)

