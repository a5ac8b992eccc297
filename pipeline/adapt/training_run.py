"""One resumable adaptation run of a plan (pipeline/adapt/train.py's loop) as the finetune
and prompt_tune stages drive it: shards -> batches, a resumable checkpoint, the loss log.

Resume: every `checkpoint_every` steps rank 0 writes the trainable state, the optimizer
and the log so far to `resume_path`, tagged with a fingerprint of everything that
defines the run. A later run with the same fingerprint continues from the saved step
(the loader skips to that step's batch); any other fingerprint starts afresh.

`progress(desc, start step, total steps)`, a context manager yielding `show(loss)` which
is called after each step, is how a stage shows a run's progress; `no_progress` shows none.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import torch

from pipeline.adapt.shard_loader import Augment, ShardBatches, ShardList, batch_loader
from pipeline.adapt.train import (
    AdaptPlan,
    MaskedCropEncoder,
    adaptation_optimizer,
    train_adaptation,
)
from pipeline.distributed.process_group import Distributed
from pipeline.training import checkpoint, loss_log

# the step log's values -> format spec (pipeline/training/live_log.py rounds by it)
LOG_FIELDS = {"step": "", "phase": "", "loss": ".5f", "clip_lr": ".6g", "prompt_lr": ".6g"}


@dataclass(frozen=True)
class LoaderSettings:
    aug: Augment
    batch_size: int
    seed: int
    workers: int = 0
    buffer: int = 2000


@dataclass(frozen=True)
class Timing:
    """The steps this process ran and the seconds they took: after a resume, only the
    steps since the checkpoint (the earlier ones were timed, if at all, by another run)."""

    steps: int
    seconds: float


@contextlib.contextmanager
def no_progress(desc: str, start: int, total: int):
    yield lambda loss: None


def run_adaptation(encoder: MaskedCropEncoder, plan: AdaptPlan, shards: ShardList,
                   loader: LoaderSettings, text_features: torch.Tensor, nouns: list[str],
                   resume_path: Path, tag: str, checkpoint_every: int, device: torch.device,
                   ddp: Distributed, precision: str = "auto", phase: str = "",
                   keep_final: bool = False, progress=no_progress, record=None
                   ) -> tuple[list[dict], Timing]:
    """Train `encoder` in place by `plan`; returns the per-step log (dicts of LOG_FIELDS)
    of every step, those of a resumed checkpoint included, and the Timing of the steps run
    here. `tag` fingerprints the run's inputs; a checkpoint with another tag is ignored.
    keep_final: also checkpoint the last step, so that a later phase of the same stage can
    be resumed without training this one again. record(row): called with each row of the
    log in order, those of a resumed checkpoint first (the stage's DVCLive log)."""
    phase = phase or plan.name
    record = record or (lambda row: None)
    encoder.to(device)
    optimizer = adaptation_optimizer(encoder, plan)
    start, logs = checkpoint.resume_training(resume_path, encoder, optimizer, tag, device)
    for row in logs:
        record(row)
    dataset = ShardBatches(shards, loader.aug, loader.batch_size, plan.steps, loader.seed,
                           start, ddp.rank, ddp.world, loader.buffer)
    batches = batch_loader(dataset, loader.workers, pin_memory=device.type == "cuda")
    noun_index = {n: i for i, n in enumerate(nouns)}
    ran, t0 = 0, perf_counter()
    with progress(phase, start, plan.steps) as show:

        def on_step(log):
            nonlocal ran
            ran += 1
            logs.append({"phase": phase, **dataclasses.asdict(log)})
            record(logs[-1])
            show(log.loss)
            done = log.step + 1
            if ddp.main and done % checkpoint_every == 0 and done < plan.steps:
                checkpoint.save_training(resume_path, encoder, optimizer, done, logs, tag,
                                         trainable_only=True)

        train_adaptation(encoder, batches, text_features.to(device), noun_index, optimizer,
                         plan, start, ddp, precision, on_step)
    timing = Timing(ran, perf_counter() - t0)
    if keep_final and ddp.main and start < plan.steps:
        checkpoint.save_training(resume_path, encoder, optimizer, plan.steps, logs, tag,
                                 trainable_only=True)
    return logs, timing


def run_summary(plan: AdaptPlan, batch_size: int, timing: Timing) -> dict:
    """Steps and samples of one training phase, for the stage's metrics, and the seconds
    and throughput of the steps this process ran: after a resume, the samples of the
    steps run since the checkpoint over their seconds (not all the phase's samples over
    the resumed run's seconds). No throughput (null) when no step ran here."""
    rate = timing.steps * batch_size / timing.seconds if timing.steps and timing.seconds else None
    return {"steps": plan.steps, "samples": plan.steps * batch_size,
            "train_seconds": round(timing.seconds, 1),
            "samples_per_second": round(rate, 1) if rate is not None else None}


def final_loss(logs: list[dict], last: int = 10) -> float:
    """Mean loss of the last `last` steps."""
    tail = logs[-last:]
    return round(sum(r["loss"] for r in tail) / len(tail), 4)


def write_adaptation_loss_png(logs: list[dict], png_path: Path, title: str) -> None:
    """The loss and learning-rate curves as a PNG (the DVCLive log holds the values). Steps
    count on across phases of a two-phase run."""
    rows = [{**r, "step": i} for i, r in enumerate(logs)]
    curves = ["loss"] + [k for k in ("clip_lr", "prompt_lr") if any(r[k] for r in logs)]
    loss_log.write_loss_png(png_path, rows, curves, title, empty_title=f"{title}: not trained")
