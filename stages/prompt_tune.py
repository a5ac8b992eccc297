"""Stage prompt_tune (MPT, OVSeg §3.3): learn mask prompts that stand in for the
background patch tokens of masked crops, with CLIP's weights frozen.

    python -m stages.prompt_tune --params params.yaml --clip models/clip_ft
        --shards data/shards --text-cache .cache/text_classifiers
        --resume data/tmp/prompt_tune --out models/mask_prompts
        --metrics metrics/prompt_tune.json --live-log metrics/live/prompt_tune
        --loss-png metrics/prompt_tune_loss.png

--out: mask_prompts.safetensors, adapted.json, and clip/ when this stage also trained CLIP.

`mpt.order` (OVSeg Table 4): ft_then_mpt tunes prompts on the finetuned CLIP;
mpt_then_ft tunes prompts on the base CLIP and then finetunes CLIP with those prompts in
place; simultaneous trains both at once (CLIP at ft.lr, prompts at mpt.lr, for the longer
of ft.epochs and mpt.epochs at ft.batch_size). adapted.json names the CLIP that goes with
the prompts. Resumable per phase (<--resume>/<k>-<phase>.pt).
Several processes or GPUs: `torchrun --nproc_per_node 4 -m stages.prompt_tune` with the
same arguments.
"""

from __future__ import annotations

import json
import shutil

from pipeline.adapt.adapted_model import (
    PROMPTS_FILE,
    clip_reference,
    prompt_tune_phases,
    was_finetuned,
    write_manifest,
)
from pipeline.adapt.phases import tune_phases
from pipeline.adapt.training_run import LOG_FIELDS, write_adaptation_loss_png
from pipeline.clip.mask_prompts import save_prompts
from pipeline.clip.model import CONFIG_NAME, load_clip, save_clip
from pipeline.data.files import staged_outputs, write_json
from pipeline.training.live_log import training_log
from stages._start import start_stage, step_bars

PATHS = ("--clip", "--shards", "--text-cache", "--resume", "--out", "--metrics", "--live-log",
         "--loss-png")


def main(argv=None) -> None:
    run = start_stage("stages.prompt_tune", __doc__, argv, PATHS, "adapt", torchrun=True,
                      networks=True)
    args, params, device, ddp = run.args, run.params, run.device, run.ddp
    ft, mpt = params.ft, params.mpt
    phases = prompt_tune_phases(ft.enabled, mpt.enabled, mpt.order)
    model = load_clip(args.clip)
    prompts, logs, summary = None, [], {"phases": []}
    # the step log through DVCLive, written as the steps run (rank 0's)
    with training_log(args.live_log if ddp.main else None, LOG_FIELDS) as live:
        if phases:
            prompts, logs, summary = tune_phases(model, mpt.depth, phases, params, args.shards,
                                                 args.clip, args.resume, args.text_cache,
                                                 device, ddp, step_bars(ddp), live.log)
    if not ddp.main:
        return
    trains_clip = any(p in ("ft", "simultaneous") for p in phases)
    meta = {"order": mpt.order, "ft_enabled": ft.enabled, "mpt_enabled": mpt.enabled,
            "phases": phases, "clip_finetuned_before": was_finetuned(args.clip)}
    clip_ref = clip_reference(args.out / "clip" if trains_clip else args.clip, args.out)
    with staged_outputs(args.out, args.loss_png, args.metrics) as staged:
        out, loss_png, metrics_path = staged
        out.mkdir()
        if prompts is not None:
            save_prompts(prompts.prompts, out / PROMPTS_FILE,
                         {"depth": mpt.depth, "clip": clip_ref})
        if trains_clip:
            model_cfg = json.loads((args.clip / CONFIG_NAME).read_text())["model_cfg"]
            save_clip(model.cpu().eval(), model_cfg, out / "clip")
        write_manifest(out, clip_ref, PROMPTS_FILE if prompts is not None else None, meta)
        write_adaptation_loss_png(logs, loss_png,
                                  f"prompt_tune ({' then '.join(phases) or 'off'})")
        write_json(metrics_path, {**summary, **meta})
    shutil.rmtree(args.resume, ignore_errors=True)  # only now: a failed write can still resume
    print("prompt_tune:", summary if phases else "mpt.enabled is false: no prompts")


if __name__ == "__main__":
    main()
