"""`dvc repro` runs each heavy stage as `python -m stages.<name> ...`; with
`compute.processes` above 1 (or 0 on a machine with several GPUs) that process starts the
stage again under torchrun, one worker per process (per GPU), and waits for them. A stage
already started by torchrun (several machines: `torchrun --nnodes ... -m stages.<name> ...`
on each) runs as it is."""

from __future__ import annotations

import os
import subprocess
import sys


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def process_count(processes: int) -> int:
    """`compute.processes`, with 0 meaning one per visible GPU (1 on a machine without)."""
    if processes:
        return processes
    import torch

    return max(torch.cuda.device_count(), 1)


def relaunch_under_torchrun(module: str, argv: list[str] | None, processes: int) -> int | None:
    """Run `python -m module argv` as `processes` torchrun workers on this machine and
    return their exit status; None when this process should do the work itself (one
    process, or already a torchrun worker). `--standalone` picks a free port, so two
    stages can run side by side."""
    processes = process_count(processes)
    if processes <= 1 or under_torchrun():
        return None
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={processes}", "-m", module, *argv]
    print(f"{module}: {processes} processes under torchrun", flush=True)
    return subprocess.run(cmd).returncode


def hand_over_to_torchrun(module: str, argv: list[str] | None, processes: int) -> None:
    """`relaunch_under_torchrun`, then exit with the workers' status: returns only when this
    process is to do the stage's work itself."""
    code = relaunch_under_torchrun(module, argv, processes)
    if code is not None:
        raise SystemExit(code)
