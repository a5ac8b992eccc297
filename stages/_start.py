"""What every stage does first, in one place, so that a stage script reads as its dvc.yaml
entry: its arguments (the paths its cmd passes), then calls.

`start_stage` parses the arguments and loads params.yaml, each key validated. A stage that
runs on several processes (`torchrun=True`) is handed over to torchrun first
(`compute.processes`, pipeline/distributed/launch.py) and joins its process group; a stage
that runs networks (`networks=True`) gets this rank's device (`compute.device`). Then
torch's CPU threads and seed are the stage's params section's (`threads`, `seed`), set
after the process group and before any model is built.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.params import Params, load_params


@dataclass
class Stage:
    args: argparse.Namespace
    params: Params
    device: Any = None  # torch.device: torch is imported only by stages that use it
    ddp: Any = None  # pipeline.distributed.process_group.Distributed, or None: one process

    @property
    def main(self) -> bool:
        return self.ddp is None or self.ddp.main


def stage_arguments(doc: str, argv: list[str] | None, paths: Iterable[str],
                    options: Callable[[argparse.ArgumentParser], None] | None = None
                    ) -> argparse.Namespace:
    """`--flag PATH` for each of `paths` (all required, as dvc.yaml passes them), plus what
    `options(parser)` adds."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    if options is not None:
        options(ap)
    for flag in paths:
        ap.add_argument(flag, type=Path, required=True)
    return ap.parse_args(argv)


def start_stage(module: str, doc: str, argv: list[str] | None, paths: Iterable[str],
                section: str | None = None, torchrun: bool = False, networks: bool = False,
                options: Callable[[argparse.ArgumentParser], None] | None = None) -> Stage:
    """Arguments and params, then (see the module's docstring) torchrun, device, threads
    and seed. Under torchrun with `compute.processes` > 1 the first process starts the
    workers and exits with their status instead of returning."""
    args = stage_arguments(doc, argv, ("--params", *paths), options)
    params = load_params(args.params)
    if not (torchrun or networks):  # a data stage: no torch to import (about 3 s)
        return Stage(args, params)
    import torch

    from pipeline.distributed.device import select_device, start_ranks
    from pipeline.distributed.launch import hand_over_to_torchrun
    from pipeline.distributed.process_group import Distributed

    device, ddp = torch.device("cpu"), Distributed()
    if torchrun:
        hand_over_to_torchrun(module, argv, params.compute)
        device, ddp = start_ranks(params.compute.device if networks else "cpu")
    else:
        device = select_device(params.compute.device)
    own = getattr(params, section) if section else None
    if hasattr(own, "threads"):
        torch.set_num_threads(own.threads)
    if hasattr(own, "seed"):
        torch.manual_seed(own.seed)
    return Stage(args, params, device, ddp)


def bars(stage: Stage, unit: str):
    """progress(iterable, desc): a tqdm bar on rank 0, the bare iterable on the others."""
    def progress(items, desc: str):
        return tqdm(items, desc=desc, unit=unit, mininterval=2) if stage.main else items
    return progress


def step_bars(ddp):
    """`progress` for pipeline/adapt/training_run.py: a tqdm bar per training phase, on
    rank 0 only."""

    @contextlib.contextmanager
    def progress(desc: str, start: int, total: int):
        with tqdm(total=total, initial=start, desc=desc, unit="step", mininterval=2,
                  disable=not ddp.main) as bar:
            def show(loss: float) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

            yield show

    return progress


def speak_up(warning: str | None, params: Params) -> None:
    """A whole run's output that is empty or degenerate (`warning` names what and the likely
    cause): a stop before anything is written (`compute.empty_outputs: stop`), or the
    warning on stderr (`warn`). None: nothing to say."""
    if warning is None:
        return
    if params.compute.empty_outputs == "stop":
        raise SystemExit(f"error: {warning}\nNothing was written (compute.empty_outputs: stop). "
                         "Fix the cause, or write the output anyway with "
                         "`dvc exp run -S compute.empty_outputs=warn`.")
    print(f"warning: {warning}", file=sys.stderr)
