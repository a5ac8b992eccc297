"""Stage base_clip: obtain the base CLIP (load a pretrained one, or contrastively pretrain
the small one on the training captions), then probe it on regions.

    python -m stages.base_clip --params params.yaml --index data/index
        --out models/clip_base --metrics metrics/base_clip.json
        --live-log metrics/live/base_clip --loss-png metrics/base_clip_loss.png

--index: the prepared splits (train for pretraining, probe for the zero-shot probe);
--out: the open_clip local-dir checkpoint.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from tqdm import tqdm

from pipeline.clip.model import model_config, pixel_stats, save_clip, tokenizer_for
from pipeline.clip.pretrain import LOSS_COLUMNS, create_base_clip, pretrain_on_captions
from pipeline.clip.region_probe import outline_only_control, zero_shot_probe
from pipeline.clip.text_classifier import TEMPLATE_SETS
from pipeline.data.files import staged_outputs, write_json
from pipeline.data.layouts import read_splits
from pipeline.training.live_log import training_log
from pipeline.training.loss_log import write_loss_png
from stages._start import start_stage

PATHS = ("--index", "--out", "--metrics", "--live-log", "--loss-png")


def main(argv=None) -> None:
    run = start_stage("stages.base_clip", __doc__, argv, PATHS, "clip", networks=True)
    args, p = run.args, run.params.clip  # one process: no torchrun here
    splits = read_splits(args.index / "splits.json")
    cfg = model_config(p.arch)
    model = create_base_clip(p.arch, p.pretrained, run.device)
    tokenizer, size, (mean, std) = tokenizer_for(p.arch), cfg["vision_cfg"]["image_size"], \
        pixel_stats(model)
    t0, logs = time.time(), []
    # the step log through DVCLive, written as the steps run (none when pretrained)
    with training_log(args.live_log, LOSS_COLUMNS) as live:
        if not p.pretrained:
            with tqdm(total=p.steps, desc="pretrain CLIP", unit="step", mininterval=2) as bar:

                def on_step(log):
                    live.log(dataclasses.asdict(log))
                    bar.update(1)
                    bar.set_postfix(loss=f"{log.loss:.3f}", refresh=False)

                logs = pretrain_on_captions(model, splits["train"], tokenizer, size, p, mean,
                                            std, on_step)
    train_seconds = time.time() - t0
    model.eval()
    print("probing masked-crop zero-shot accuracy ...")
    metrics = {
        "arch": p.arch,
        "pretrained": p.pretrained or "contrastive pretraining on the training captions",
        "train_steps": len(logs),
        "train_seconds": round(train_seconds, 1),
        "final_loss": round(float(np.mean([log.loss for log in logs[-20:]])), 4) if logs else None,
        "zero_shot": zero_shot_probe(model, tokenizer, splits["probe"], size, mean, std,
                                     p.probe_batch_size, TEMPLATE_SETS[p.templates]),
        "outline_only_control": outline_only_control(splits["train"], size, p.control_steps,
                                                     p.seed),
    }
    # Every output or none: a failure here leaves the previous model and metrics together.
    with staged_outputs(args.out, args.loss_png, args.metrics) as staged:
        out, loss_png, metrics_path = staged
        out.mkdir()
        save_clip(model, cfg, out)
        write_loss_png(loss_png, [dataclasses.asdict(log) for log in logs], ("loss", "lr"),
                       "base CLIP contrastive pretraining",
                       empty_title=f"no pretraining: loaded {p.pretrained}")
        write_json(metrics_path, metrics)
    zs = metrics["zero_shot"]
    if zs["images"]:
        print(f"zero-shot top-1 (chance {zs['chance']:.3f}): whole "
              f"{zs['whole_image']['all']:.3f}, crop mean-fill "
              f"{zs['masked_crop_mean']['all']:.3f}, crop zero-fill "
              f"{zs['masked_crop_zero']['all']:.3f}")
    else:
        print(f"zero-shot probe: {zs['note']}")
    print("outline-only control:", {k: round(v["accuracy"], 3)
                                    for k, v in metrics["outline_only_control"].items()})


if __name__ == "__main__":
    main()
