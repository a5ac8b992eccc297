"""OVSeg's adaptation phases (§3.3: FT, MPT, both in either order or at once) from the
params: each phase's plan, its frozen noun text features and loader settings, and the
runs of the phases one after another (pipeline/adapt/training_run.py runs each)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pipeline.adapt.shard_loader import Augment, ShardList, noun_vocabulary
from pipeline.adapt.train import AdaptPlan, MaskedCropEncoder
from pipeline.adapt.training_run import (
    LoaderSettings,
    final_loss,
    no_progress,
    run_adaptation,
    run_summary,
)
from pipeline.clip.mask_classifier import crop_size
from pipeline.clip.mask_prompts import MaskPrompts
from pipeline.clip.model import WEIGHTS_NAME, pixel_stats, tokenizer_for
from pipeline.clip.text_classifier import TEMPLATE_SETS, cached_text_classifier
from pipeline.data.digests import file_digest, fingerprint
from pipeline.distributed.process_group import main_first
from pipeline.params import to_dict


def steps_for_epochs(samples: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps of `epochs` passes (epochs drop their last incomplete batch)."""
    return max(1, int(round(epochs * (samples // batch_size))))


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
                resume_dir: Path, text_cache: Path, device, ddp, progress=no_progress,
                record=None) -> tuple[MaskPrompts, list[dict], dict]:
    """Run the phases ("mpt", "ft", "simultaneous") one after the other on `model` (loaded
    from clip_dir; trained in place) with new zero prompts of `depth`. Each phase resumes
    from resume_dir/<k>-<phase>.pt. Returns the prompts, the step log and a summary;
    record(row) sees each row of the log as run_adaptation makes it."""
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
            keep_final=k + 1 < len(phases), progress=progress, record=record)
        logs += phase_logs
        summary["phases"].append({"phase": phase, **run_summary(plan, batch_size, timing)})
    if logs:
        summary["final_loss"] = final_loss(logs)
    return encoder.prompts, logs, summary


def finetune_phase(model, params, shards_dir: Path, clip_dir: Path, resume_path: Path,
                   text_cache: Path, device, ddp, progress=no_progress, record=None
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
                                  phase="ft", progress=progress, record=record)
    return logs, {**run_summary(plan, batch_size, timing), "nouns": len(nouns),
                  "first_loss": round(logs[0]["loss"], 4), "final_loss": final_loss(logs)}
