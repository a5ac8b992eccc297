"""Stage finetune (FT, OVSeg §3.3): train the base CLIP's image tower on the masked-crop
shards with the CLIP contrastive loss, text tower frozen.

    python -m stages.finetune --params params.yaml --clip models/clip_base
        --shards data/shards --text-cache .cache/text_classifiers
        --resume data/tmp/finetune/last.pt --out models/clip_ft
        --metrics metrics/finetune.json --live-log metrics/live/finetune
        --loss-png metrics/finetune_loss.png

--out: an open_clip local-dir checkpoint and finetune.json. When FT is off
(`ft.enabled: false`) or comes after MPT (`mpt.order` mpt_then_ft or simultaneous:
prompt_tune trains CLIP then), it is the base CLIP unchanged. Resumable (--resume).
Several processes or GPUs: `torchrun --nproc_per_node 4 -m stages.finetune` with the
same arguments.
"""

from __future__ import annotations

import json

from pipeline.adapt.adapted_model import FT_MARKER, finetune_plan
from pipeline.adapt.phases import finetune_phase
from pipeline.adapt.training_run import LOG_FIELDS, write_adaptation_loss_png
from pipeline.clip.model import CONFIG_NAME, load_clip, save_clip
from pipeline.data.files import staged_outputs, write_json
from pipeline.training.live_log import training_log
from stages._start import start_stage, step_bars

PATHS = ("--clip", "--shards", "--text-cache", "--resume", "--out", "--metrics", "--live-log",
         "--loss-png")


def main(argv=None) -> None:
    run = start_stage("stages.finetune", __doc__, argv, PATHS, "adapt", torchrun=True,
                      networks=True)
    args, params, ddp = run.args, run.params, run.ddp
    ft, mpt = params.ft, params.mpt
    model = load_clip(args.clip)
    model_cfg = json.loads((args.clip / CONFIG_NAME).read_text())["model_cfg"]
    trains = finetune_plan(ft.enabled, mpt.enabled, mpt.order)
    logs, info = [], {"finetuned": trains}
    # the step log through DVCLive, written as the steps run (rank 0's)
    with training_log(args.live_log if ddp.main else None, LOG_FIELDS) as live:
        if trains:
            logs, summary = finetune_phase(model, params, args.shards, args.clip, args.resume,
                                           args.text_cache, run.device, ddp, step_bars(ddp),
                                           live.log)
            info.update(summary)
        else:
            info["reason"] = ("ft.enabled is false" if not ft.enabled else
                              f"mpt.order is {mpt.order}: prompt_tune trains CLIP")
    if not ddp.main:
        return
    with staged_outputs(args.out, args.loss_png, args.metrics) as staged:
        out, loss_png, metrics_path = staged
        save_clip(model.cpu().eval(), model_cfg, out)
        write_json(out / FT_MARKER, {"finetuned": trains, "from": str(args.clip)})
        write_adaptation_loss_png(logs, loss_png, "FT: masked-crop contrastive loss")
        write_json(metrics_path, info)
    args.resume.unlink(missing_ok=True)  # only now: a failed write can still resume
    print("finetune:", {k: v for k, v in info.items() if k != "reason"} if trains
          else f"skipped ({info['reason']}); {args.out} is the base CLIP")


if __name__ == "__main__":
    main()
