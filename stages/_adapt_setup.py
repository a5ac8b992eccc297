"""What the finetune, prompt_tune and adaptation_report stages set up alike: validated
params, this rank's device and process group, `adapt.threads` torch threads, the
`adapt.seed` seed, and a progress bar per training phase on rank 0.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.params import Params, load_params
from pipeline.training.distributed import Distributed, init_distributed


def run_device() -> tuple[torch.device, Distributed]:
    """The GPU of this rank when there is one, else the CPU; joins torchrun's group."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ddp = init_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", ddp.rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device, ddp


def start_adaptation_stage(params_path: str | Path) -> tuple[Params, torch.device, Distributed]:
    params = load_params(params_path)
    device, ddp = run_device()
    torch.set_num_threads(params.adapt.threads)
    torch.manual_seed(params.adapt.seed)  # after the process group, before any model
    return params, device, ddp


def step_bars(ddp: Distributed):
    """`progress` for pipeline.adapt.run: one tqdm bar per phase, shown on rank 0 only."""

    @contextlib.contextmanager
    def progress(desc: str, start: int, total: int):
        with tqdm(total=total, initial=start, desc=desc, unit="step", mininterval=2,
                  disable=not ddp.main) as bar:
            def show(loss: float) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

            yield show

    return progress
