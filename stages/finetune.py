"""Stage finetune (FT, OVSeg sec. 3.3): train the base CLIP's image tower on the masked-crop
shards with the CLIP contrastive loss, text tower frozen.

deps: models/clip_base, data/shards, params ft, adapt, mpt.order, mpt.enabled
outs: models/clip_ft/ (open_clip local-dir checkpoint + finetune.json),
      metrics/finetune.json, metrics/finetune_loss.csv (+ .png)

When FT is off (`ft.enabled: false`) or comes after MPT (`mpt.order` mpt_then_ft or
simultaneous: prompt_tune trains CLIP then), models/clip_ft is the base CLIP unchanged.
Resumable (data/tmp/finetune/last.pt). Several processes or GPUs:
`torchrun --nproc_per_node 4 -m stages.finetune`.
"""

from __future__ import annotations

import argparse
import json
import time
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
    start_adaptation_stage,
    write_loss_log,
)
from pipeline.adapt.train import MaskedCropEncoder
from pipeline.clip.model import CONFIG_NAME, load_clip, save_clip, tokenizer_for
from pipeline.data.files import atomic_dir, write_json
from pipeline.data.shard_loader import ShardList
from pipeline.params import to_dict

BASE_DIR = Path("models/clip_base")
SHARDS = Path("data/shards")
OUT_DIR = Path("models/clip_ft")
RESUME = Path("data/tmp/finetune/last.pt")
METRICS = Path("metrics/finetune.json")
LOSS_CSV = Path("metrics/finetune_loss.csv")
LOSS_PNG = Path("metrics/finetune_loss.png")
TEXT_CACHE = Path(".cache/text_classifiers")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params, device, ddp = start_adaptation_stage(args.params)
    ft, mpt, a = params.ft, params.mpt, params.adapt
    model = load_clip(BASE_DIR)
    model_cfg = json.loads((BASE_DIR / CONFIG_NAME).read_text())["model_cfg"]
    trains = finetune_plan(ft.enabled, mpt.enabled, mpt.order)
    logs, info = [], {"finetuned": trains}
    t0 = time.time()
    if trains:
        shards = ShardList.from_dir(SHARDS)
        nouns, text = noun_text_features(model, tokenizer_for(BASE_DIR), shards, TEXT_CACHE)
        plan, batch_size, every = phase_plan("ft", ft, mpt, shards.samples)
        tag = fingerprint({"stage": "finetune", "ft": to_dict(ft), "adapt": to_dict(a),
                           "inputs": inputs_digest(BASE_DIR, shards)})
        logs = run_adaptation(MaskedCropEncoder(model), plan, shards,
                              loader_settings(a, model, batch_size), text, nouns, RESUME,
                              tag, every, device, ddp, a.precision, phase="ft")
        info.update(run_summary(plan, batch_size, time.time() - t0), nouns=len(nouns),
                    first_loss=round(logs[0]["loss"], 4), final_loss=final_loss(logs))
    else:
        info["reason"] = ("ft.enabled is false" if not ft.enabled else
                          f"mpt.order is {mpt.order}: prompt_tune trains CLIP")
    if not ddp.main:
        return
    with atomic_dir(OUT_DIR) as out:
        save_clip(model.cpu().eval(), model_cfg, out)
        write_json(out / FT_MARKER, {"finetuned": trains, "from": str(BASE_DIR)})
    write_loss_log(logs, LOSS_CSV, LOSS_PNG, "FT: masked-crop contrastive loss")
    write_json(METRICS, info)
    RESUME.unlink(missing_ok=True)
    print("finetune:", {k: v for k, v in info.items() if k != "reason"} if trains
          else f"skipped ({info['reason']}); {OUT_DIR} is the base CLIP")


if __name__ == "__main__":
    main()
