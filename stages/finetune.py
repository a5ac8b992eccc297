"""Stage finetune (FT, OVSeg §3.3): train the base CLIP's image tower on the masked-crop
shards with the CLIP contrastive loss, text tower frozen.

    python -m stages.finetune --params params.yaml --clip models/clip_base
        --shards data/shards --text-cache .cache/text_classifiers
        --resume data/tmp/finetune/last.pt --out models/clip_ft
        --metrics metrics/finetune.json --loss-csv metrics/finetune_loss.csv
        --loss-png metrics/finetune_loss.png

--out: an open_clip local-dir checkpoint and finetune.json. When FT is off
(`ft.enabled: false`) or comes after MPT (`mpt.order` mpt_then_ft or simultaneous:
prompt_tune trains CLIP then), it is the base CLIP unchanged. Resumable (--resume).
Several processes or GPUs: `torchrun --nproc_per_node 4 -m stages.finetune` with the
same arguments.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.adapt.adapted_model import FT_MARKER, finetune_plan
from pipeline.adapt.run import (
    final_loss,
    fingerprint,
    inputs_digest,
    loader_settings,
    noun_text_features,
    phase_plan,
    run_adaptation,
    run_summary,
    write_loss_log,
)
from pipeline.adapt.shard_loader import ShardList
from pipeline.adapt.train import MaskedCropEncoder
from pipeline.clip.model import CONFIG_NAME, load_clip, save_clip, tokenizer_for
from pipeline.data.files import staged_outputs, write_json
from pipeline.distributed.process_group import main_first
from pipeline.params import to_dict
from stages._adapt_setup import start_adaptation_stage, step_bars


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--params", "--clip", "--shards", "--text-cache", "--resume", "--out",
                 "--metrics", "--loss-csv", "--loss-png"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    params, device, ddp = start_adaptation_stage(args.params, "stages.finetune", argv)
    ft, mpt, a = params.ft, params.mpt, params.adapt
    model = load_clip(args.clip)
    model_cfg = json.loads((args.clip / CONFIG_NAME).read_text())["model_cfg"]
    trains = finetune_plan(ft.enabled, mpt.enabled, mpt.order)
    logs, info = [], {"finetuned": trains}
    if trains:
        shards = ShardList.from_dir(args.shards)
        nouns, text = main_first(ddp, lambda: noun_text_features(  # once, not by every rank
            model, tokenizer_for(args.clip), shards, args.text_cache, params.clip.templates))
        plan, batch_size, every = phase_plan("ft", ft, mpt, shards.samples)
        tag = fingerprint({"stage": "finetune", "ft": to_dict(ft), "adapt": to_dict(a),
                           "inputs": inputs_digest(args.clip, shards)})
        logs, timing = run_adaptation(MaskedCropEncoder(model), plan, shards,
                                      loader_settings(a, model, batch_size), text, nouns,
                                      args.resume, tag, every, device, ddp, a.precision,
                                      phase="ft", progress=step_bars(ddp))
        info.update(run_summary(plan, batch_size, timing), nouns=len(nouns),
                    first_loss=round(logs[0]["loss"], 4), final_loss=final_loss(logs))
    else:
        info["reason"] = ("ft.enabled is false" if not ft.enabled else
                          f"mpt.order is {mpt.order}: prompt_tune trains CLIP")
    if not ddp.main:
        return
    with staged_outputs(args.out, args.loss_csv, args.loss_png, args.metrics) as staged:
        out, loss_csv, loss_png, metrics_path = staged
        save_clip(model.cpu().eval(), model_cfg, out)
        write_json(out / FT_MARKER, {"finetuned": trains, "from": str(args.clip)})
        write_loss_log(logs, loss_csv, loss_png, "FT: masked-crop contrastive loss")
        write_json(metrics_path, info)
    args.resume.unlink(missing_ok=True)  # only now: a failed write can still resume
    print("finetune:", {k: v for k, v in info.items() if k != "reason"} if trains
          else f"skipped ({info['reason']}); {args.out} is the base CLIP")


if __name__ == "__main__":
    main()
