"""One adaptation run as the finetune and prompt_tune stages drive it: shards -> batches,
nouns -> frozen text features, a resumable checkpoint, the loss log.

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
import os
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import torch

from pipeline.adapt.shard_loader import (
    Augment,
    ShardBatches,
    ShardList,
    batch_loader,
    noun_vocabulary,
)
from pipeline.adapt.train import (
    AdaptPlan,
    MaskedCropEncoder,
    adaptation_optimizer,
    train_adaptation,
)
from pipeline.clip.mask_classifier import crop_size
from pipeline.clip.mask_prompts import MaskPrompts
from pipeline.clip.model import WEIGHTS_NAME, pixel_stats, tokenizer_for
from pipeline.clip.text_classifier import TEMPLATE_SETS, cached_text_classifier
from pipeline.data.digests import file_digest, fingerprint
from pipeline.distributed.process_group import Distributed, main_first
from pipeline.params import to_dict
from pipeline.training import checkpoint, loss_log

# loss CSV column -> format spec
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


def steps_for_epochs(samples: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps of `epochs` passes (epochs drop their last incomplete batch)."""
    return max(1, int(round(epochs * (samples // batch_size))))


@contextlib.contextmanager
def no_progress(desc: str, start: int, total: int):
    yield lambda loss: None


def run_adaptation(encoder: MaskedCropEncoder, plan: AdaptPlan, shards: ShardList,
                   loader: LoaderSettings, text_features: torch.Tensor, nouns: list[str],
                   resume_path: Path, tag: str, checkpoint_every: int, device: torch.device,
                   ddp: Distributed, precision: str = "auto", phase: str = "",
                   keep_final: bool = False, progress=no_progress
                   ) -> tuple[list[dict], Timing]:
    """Train `encoder` in place by `plan`; returns the per-step log (dicts of LOG_FIELDS)
    of every step, those of a resumed checkpoint included, and the Timing of the steps run
    here. `tag` fingerprints the run's inputs; a checkpoint with another tag is ignored.
    keep_final: also checkpoint the last step, so that a later phase of the same stage can
    be resumed without training this one again."""
    phase = phase or plan.name
    encoder.to(device)
    optimizer = adaptation_optimizer(encoder, plan)
    start, logs = checkpoint.resume_training(resume_path, encoder, optimizer, tag, device)
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


def write_adaptation_loss_log(logs: list[dict], csv_path: Path, png_path: Path,
                               title: str) -> None:
    """The loss and learning-rate curve as CSV (a DVC plot) and PNG. Steps count on across
    phases of a two-phase run."""
    rows = [{**r, "step": i} for i, r in enumerate(logs)]
    curves = ["loss"] + [k for k in ("clip_lr", "prompt_lr") if any(r[k] for r in logs)]
    loss_log.write_loss_log(csv_path, png_path, rows, LOG_FIELDS, curves, title,
                            empty_title=f"{title}: not trained")


def noun_text_features(model, tokenizer, shards: ShardList, cache_dir: Path,
                       templates: str = "vild") -> tuple[list[str], torch.Tensor]:
    """The shards' nouns and their frozen text features (V, D): the ViLD-template classifier
    the evaluation uses, so training and zero-shot inference see the same text side."""
    nouns = noun_vocabulary(shards)
    if not nouns:
        raise ValueError(f"the shards ({shards.paths[0]} ...) hold no samples: nothing to "
                         "train on (see the mine_pairs stage's metrics)")
    return nouns, cached_text_classifier(model, tokenizer, nouns, cache_dir,
                                         TEMPLATE_SETS[templates])


def loader_settings(p, model, batch_size: int) -> LoaderSettings:
    """Loader of the `adapt` params section for `model`'s input size and pixel stats."""
    if p.scale_min > p.scale_max:
        raise ValueError(f"adapt.scale_min ({p.scale_min}) must not exceed adapt.scale_max "
                         f"({p.scale_max})")
    mean, std = pixel_stats(model)
    aug = Augment(crop_size(model), (p.scale_min, p.scale_max), fill=p.fill,
                  mean=tuple(mean.tolist()), std=tuple(std.tolist()))
    return LoaderSettings(aug, batch_size, p.seed, p.workers, p.shuffle_buffer)


def inputs_digest(clip_dir: Path, shards: ShardList) -> dict:
    """What a resumable checkpoint must match besides params: the starting CLIP's weights
    and the shards."""
    return {"clip": file_digest(Path(clip_dir) / WEIGHTS_NAME),
            "shards": [(Path(p).name, os.path.getsize(p)) for p in shards.paths]}


def phase_plan(phase: str, ft, mpt, samples: int) -> tuple[AdaptPlan, int, int]:
    """(plan, global batch size, checkpoint interval) of one phase."""
    if phase == "mpt":
        return AdaptPlan(False, True, steps_for_epochs(samples, mpt.batch_size, mpt.epochs),
                         mpt.warmup_steps, prompt_lr=mpt.lr,
                         prompt_weight_decay=mpt.weight_decay), mpt.batch_size, \
            mpt.checkpoint_every
    if phase == "ft":
        return AdaptPlan(True, False, steps_for_epochs(samples, ft.batch_size, ft.epochs),
                         ft.warmup_steps, clip_lr=ft.lr, clip_weight_decay=ft.weight_decay), \
            ft.batch_size, ft.checkpoint_every
    epochs = max(ft.epochs, mpt.epochs)
    return AdaptPlan(True, True, steps_for_epochs(samples, ft.batch_size, epochs),
                     ft.warmup_steps, ft.lr, ft.weight_decay, mpt.lr, mpt.weight_decay), \
        ft.batch_size, ft.checkpoint_every


def tune_phases(model, depth: int, phases: list[str], params, shards_dir: Path, clip_dir: Path,
                resume_dir: Path, text_cache: Path, device, ddp, progress=no_progress
                ) -> tuple[MaskPrompts, list[dict], dict]:
    """Run the phases ("mpt", "ft", "simultaneous") one after the other on `model` (loaded
    from clip_dir; trained in place) with new zero prompts of `depth`. Each phase resumes
    from resume_dir/<k>-<phase>.pt. Returns the prompts, the step log and a summary."""
    ft, mpt, a = params.ft, params.mpt, params.adapt
    shards = ShardList.from_dir(shards_dir)
    nouns, text = main_first(ddp, lambda: noun_text_features(  # once, not by every rank
        model, tokenizer_for(clip_dir), shards, text_cache, params.clip.templates))
    encoder = MaskedCropEncoder(model, MaskPrompts.for_model(model, depth))
    inputs = inputs_digest(clip_dir, shards)
    logs, summary = [], {"phases": [], "nouns": len(nouns)}
    for k, phase in enumerate(phases):
        plan, batch_size, every = phase_plan(phase, ft, mpt, shards.samples)
        tag = fingerprint(phases=phases[:k + 1], mpt=to_dict(mpt), ft=to_dict(ft),
                          adapt=to_dict(a), inputs=inputs)
        phase_logs, timing = run_adaptation(
            encoder, plan, shards, loader_settings(a, model, batch_size), text, nouns,
            resume_dir / f"{k}-{phase}.pt", tag, every, device, ddp, a.precision, phase=phase,
            keep_final=k + 1 < len(phases), progress=progress)
        logs += phase_logs
        summary["phases"].append({"phase": phase, **run_summary(plan, batch_size, timing)})
    if logs:
        summary["final_loss"] = final_loss(logs)
    return encoder.prompts, logs, summary


def finetune_phase(model, params, shards_dir: Path, clip_dir: Path, resume_path: Path,
                   text_cache: Path, device, ddp, progress=no_progress
                   ) -> tuple[list[dict], dict]:
    """FT (OVSeg §3.3): `model`'s image tower trained in place on the shards' (masked crop,
    noun) pairs, resumable from `resume_path`. Returns the step log and a summary."""
    ft, mpt, a = params.ft, params.mpt, params.adapt
    shards = ShardList.from_dir(shards_dir)
    nouns, text = main_first(ddp, lambda: noun_text_features(  # once, not by every rank
        model, tokenizer_for(clip_dir), shards, text_cache, params.clip.templates))
    plan, batch_size, every = phase_plan("ft", ft, mpt, shards.samples)
    tag = fingerprint(stage="finetune", ft=to_dict(ft), adapt=to_dict(a),
                      inputs=inputs_digest(clip_dir, shards))
    logs, timing = run_adaptation(MaskedCropEncoder(model), plan, shards,
                                  loader_settings(a, model, batch_size), text, nouns,
                                  resume_path, tag, every, device, ddp, a.precision,
                                  phase="ft", progress=progress)
    return logs, {**run_summary(plan, batch_size, timing), "nouns": len(nouns),
                  "first_loss": round(logs[0]["loss"], 4), "final_loss": final_loss(logs)}
