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


def process_count(processes: int, device: str = "auto") -> int:
    """`compute.processes`, with 0 meaning one per visible GPU: 1 on a machine without
    one, and 1 when `compute.device` is cpu (the GPUs a machine has are no reason to start
    CPU processes)."""
    if processes:
        return processes
    if device == "cpu":
        return 1
    import torch

    return max(torch.cuda.device_count(), 1)


def check_one_gpu_each(processes: int, device: str, gpus: int) -> None:
    """Stop, saying how to fix it, when `processes` ranks of this machine would run on
    `gpus` GPUs with two on one: NCCL refuses two ranks on one GPU."""
    if device == "cpu" or gpus == 0 or processes <= gpus:
        return
    raise SystemExit(
        f"compute.processes is {processes}, but this machine has {gpus} GPU(s) and NCCL "
        f"cannot run two processes on one GPU. Set compute.processes: 0 (one per GPU) or at "
        f"most {gpus}, or compute.device: cpu to run {processes} CPU processes.")


def relaunch_under_torchrun(module: str, argv: list[str] | None, processes: int,
                            device: str = "auto") -> int | None:
    """Run `python -m module argv` as `processes` torchrun workers on this machine and
    return their exit status; None when this process should do the work itself (one
    process, or already a torchrun worker). `--standalone` picks a free port, so two
    stages can run side by side. `device` is `compute.device`."""
    processes = process_count(processes, device)
    if processes <= 1 or under_torchrun():
        return None
    import torch

    check_one_gpu_each(processes, device, torch.cuda.device_count())
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={processes}", "-m", module, *argv]
    print(f"{module}: {processes} processes under torchrun", flush=True)
    return subprocess.run(cmd).returncode


def hand_over_to_torchrun(module: str, argv: list[str] | None, compute) -> None:
    """`relaunch_under_torchrun` with the `compute` params section (processes, device),
    then exit with the workers' status: returns only when this process is to do the
    stage's work itself."""
    code = relaunch_under_torchrun(module, argv, compute.processes, compute.device)
    if code is not None:
        raise SystemExit(code)
