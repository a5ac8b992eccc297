"""Stage prompt_tune (MPT, OVSeg sec. 3.3): learn mask prompts that stand in for the
background patch tokens of masked crops, with CLIP's weights frozen.

deps: models/clip_ft, data/shards, params mpt, ft, adapt
outs: models/mask_prompts/ (mask_prompts.safetensors, adapted.json, and clip/ when this
      stage also trained CLIP), metrics/prompt_tune.json, metrics/prompt_tune_loss.csv (+ .png)

`mpt.order` (OVSeg Table 4): ft_then_mpt tunes prompts on the finetuned CLIP;
mpt_then_ft tunes prompts on the base CLIP and then finetunes CLIP with those prompts in
place; simultaneous trains both at once (CLIP at ft.lr, prompts at mpt.lr, for the longer
of ft.epochs and mpt.epochs at ft.batch_size). adapted.json names the CLIP that goes with
the prompts. Resumable per phase (data/tmp/prompt_tune/<phase>.pt).
Several processes or GPUs: `torchrun --nproc_per_node 4 -m stages.prompt_tune`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from pipeline.adapt.adapted_model import (
    PROMPTS_FILE,
    clip_reference,
    prompt_tune_phases,
    was_finetuned,
    write_manifest,
)
from pipeline.adapt.run import start_adaptation_stage, tune_phases, write_loss_log
from pipeline.clip.mask_prompts import save_prompts
from pipeline.clip.model import CONFIG_NAME, load_clip, save_clip
from pipeline.data.files import atomic_dir, write_json

CLIP_DIR = Path("models/clip_ft")
SHARDS = Path("data/shards")
OUT_DIR = Path("models/mask_prompts")
RESUME_DIR = Path("data/tmp/prompt_tune")
METRICS = Path("metrics/prompt_tune.json")
LOSS_CSV = Path("metrics/prompt_tune_loss.csv")
LOSS_PNG = Path("metrics/prompt_tune_loss.png")
TEXT_CACHE = Path(".cache/text_classifiers")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params, device, ddp = start_adaptation_stage(args.params)
    ft, mpt = params.ft, params.mpt
    phases = prompt_tune_phases(ft.enabled, mpt.enabled, mpt.order)
    model = load_clip(CLIP_DIR)
    prompts, logs, summary = None, [], {"phases": []}
    if phases:
        prompts, logs, summary = tune_phases(model, mpt.depth, phases, params, SHARDS,
                                             CLIP_DIR, RESUME_DIR, TEXT_CACHE, device, ddp)
    if not ddp.main:
        return
    trains_clip = any(p in ("ft", "simultaneous") for p in phases)
    meta = {"order": mpt.order, "ft_enabled": ft.enabled, "mpt_enabled": mpt.enabled,
            "phases": phases, "clip_finetuned_before": was_finetuned(CLIP_DIR)}
    clip_ref = clip_reference(OUT_DIR / "clip" if trains_clip else CLIP_DIR, OUT_DIR)
    with atomic_dir(OUT_DIR) as out:
        if prompts is not None:
            save_prompts(prompts.prompts, out / PROMPTS_FILE,
                         {"depth": mpt.depth, "clip": clip_ref})
        if trains_clip:
            model_cfg = json.loads((CLIP_DIR / CONFIG_NAME).read_text())["model_cfg"]
            save_clip(model.cpu().eval(), model_cfg, out / "clip")
        write_manifest(out, clip_ref, PROMPTS_FILE if prompts is not None else None, meta)
    write_loss_log(logs, LOSS_CSV, LOSS_PNG, f"prompt_tune ({' then '.join(phases) or 'off'})")
    write_json(METRICS, {**summary, **meta})
    shutil.rmtree(RESUME_DIR, ignore_errors=True)
    print("prompt_tune:", summary if phases else "mpt.enabled is false: no prompts")


if __name__ == "__main__":
    main()
