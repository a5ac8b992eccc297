"""What the finetune, prompt_tune and adaptation_report stages set up alike: validated
params, this rank's device and process group, `adapt.threads` torch threads, the
`adapt.seed` seed, and a progress bar per training phase on rank 0.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.distributed.device import start_ranks
from pipeline.distributed.launch import hand_over_to_torchrun
from pipeline.distributed.process_group import Distributed
from pipeline.params import Params, load_params


def start_adaptation_stage(params_path: str | Path, module: str, argv: list[str] | None
                           ) -> tuple[Params, torch.device, Distributed]:
    """Under `compute.processes` > 1 (and not yet under torchrun) this process starts
    `module` under torchrun and exits with its status instead of returning."""
    params = load_params(params_path)
    hand_over_to_torchrun(module, argv, params.compute)
    device, ddp = start_ranks(params.compute.device)
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
