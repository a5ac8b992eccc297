"""Which device each process runs its networks on (`compute.device`)."""

from __future__ import annotations

import os

import torch

from pipeline.distributed.process_group import Distributed, init_distributed


def select_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto`: this process's GPU (local rank modulo the GPUs) when CUDA is available, else
    the CPU; `cpu`; `cuda`, which stops with how to fix it when there is no GPU."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("compute.device is cuda, but torch finds no CUDA device "
                         f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}). "
                         "Set compute.device: auto (the CPU when there is no GPU) or cpu, "
                         "or install a CUDA build of torch.")
    device = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def start_ranks(choice: str) -> tuple[torch.device, Distributed]:
    """This process's device and its place in torchrun's process group (if any)."""
    device = select_device(choice, int(os.environ.get("LOCAL_RANK", "0")))
    return device, init_distributed(device)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when `precision` is auto or bf16; a no-op context otherwise
    (the CPU path stays fp32, so its bytes do not depend on the machine's bf16 support)."""
    enabled = device.type == "cuda" and precision in ("auto", "bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
