"""Stage base_clip: obtain the base CLIP (load a pretrained one, or contrastively pretrain
the small one on the training captions), then probe it on regions.

    python -m stages.base_clip --params params.yaml --index data/index
        --out models/clip_base --metrics metrics/base_clip.json
        --loss-csv metrics/base_clip_loss.csv --loss-png metrics/base_clip_loss.png

--index: the prepared splits (train for pretraining, probe for the zero-shot probe);
--out: the open_clip local-dir checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.clip import probe as probe
from pipeline.clip.model import create_clip, model_config, pixel_stats, save_clip, tokenizer_for
from pipeline.clip.pretrain import LOSS_COLUMNS, caption_batches, train_clip
from pipeline.clip.region_probe import outline_only_control, zero_shot_probe
from pipeline.clip.text_classifier import TEMPLATE_SETS
from pipeline.data.decoded_cache import DecodedCache
from pipeline.data.files import staged_outputs, write_json
from pipeline.data.image_io import read_rgb
from pipeline.data.layouts import iter_index, read_splits
from pipeline.distributed.device import select_device
from pipeline.params import load_params
from pipeline.training.loss_log import write_loss_log


def pretrain(model, split, tokenizer, size, p, mean, std):
    rows = list(iter_index(split.index))
    image_dir = Path(split.image_dir)
    decoded = DecodedCache()  # ~4 epochs of the world's images: each decoded once

    def read(i: int) -> tuple[np.ndarray]:
        return (read_rgb(image_dir / rows[i].file_name, size),)

    def load_batch(idx, caps):
        imgs = np.stack([decoded.get(i, read)[0] for i in idx])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
        return probe.normalize(x, mean, std), tokenizer([rows[i].captions[c]
                                                          for i, c in zip(idx, caps)])

    bar = tqdm(total=p.steps, desc="pretrain CLIP", unit="step", mininterval=2)

    def on_step(log):
        bar.update(1)
        bar.set_postfix(loss=f"{log.loss:.3f}", refresh=False)

    batches = caption_batches(len(rows), lambda i: len(rows[i].captions), p.batch_size,
                              p.steps, p.seed)
    logs = train_clip(model, load_batch, batches, p.steps, p.lr, p.weight_decay,
                      p.warmup_steps, on_step)
    bar.close()
    return logs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--params", "--index", "--out", "--metrics", "--loss-csv", "--loss-png"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    p = params.clip
    device = select_device(params.compute.device)  # one process: no torchrun here
    torch.manual_seed(p.seed)
    torch.set_num_threads(p.threads)
    splits = read_splits(args.index / "splits.json")
    cfg = model_config(p.arch)
    model = create_clip(p.arch, p.pretrained).to(device)  # initialised on the CPU: same weights
    tokenizer = tokenizer_for(p.arch)
    size = cfg["vision_cfg"]["image_size"]
    mean, std = pixel_stats(model)
    t0 = time.time()
    logs = []
    if not p.pretrained:
        logs = pretrain(model, splits["train"], tokenizer, size, p, mean, std)
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
    with staged_outputs(args.out, args.loss_csv, args.loss_png, args.metrics) as staged:
        out, loss_csv, loss_png, metrics_path = staged
        out.mkdir()
        save_clip(model, cfg, out)
        write_loss_log(loss_csv, loss_png, [dataclasses.asdict(log) for log in logs],
                       LOSS_COLUMNS, ("loss", "lr"), "base CLIP contrastive pretraining",
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
