"""Stage base_clip: obtain the base CLIP (load a pretrained one, or contrastively pretrain
the small one on the training captions), then probe it on regions.

deps: data/index (train + probe splits), params clip
outs: models/clip_base/ (open_clip local-dir checkpoint), metrics/base_clip.json,
      metrics/base_clip_loss.csv (+ .png)
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.clip import probe as probe
from pipeline.clip.masked_crops import masked_crops
from pipeline.clip.model import create_clip, model_config, pixel_stats, save_clip, tokenizer_for
from pipeline.clip.pretrain import caption_batches, train_clip
from pipeline.clip.text_classifier import text_classifier
from pipeline.data.class_lists import load_class_list
from pipeline.data.files import atomic_dir, atomic_write_bytes, write_json
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import iter_index, read_splits
from pipeline.params import load_params
from pipeline.training.plots import curves_png

SPLITS = Path("data/index/splits.json")
OUT_DIR = Path("models/clip_base")
METRICS = Path("metrics/base_clip.json")
LOSS_CSV = Path("metrics/base_clip_loss.csv")
LOSS_PNG = Path("metrics/base_clip_loss.png")
CONTROL_IMAGES = 3000  # training label maps mined for the outline-only control
MIN_PROBE_PIXELS = 16


def pretrain(model, split, tokenizer, size, p, mean, std):
    rows = list(iter_index(split.index))
    image_dir = Path(split.image_dir)

    def load_batch(idx, caps):
        imgs = np.stack([read_rgb(image_dir / rows[i].file_name, size) for i in idx])
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


def run_probe(model, tokenizer, splits, size, mean, std, p) -> dict:
    split = splits["probe"]
    classes = load_class_list(split.classes)
    thing_ids = [i for i, t in enumerate(classes.isthing) if t]
    position = {c: k for k, c in enumerate(thing_ids)}
    views = {"whole_image": [], "masked_crop_mean": [], "masked_crop_zero": []}
    targets = []
    for row in iter_index(split.index):
        labels = read_labels(Path(split.label_dir) / row.label_file)
        seg = probe.single_thing_segment(probe.label_segments(row.image_id, labels),
                                         classes.isthing, MIN_PROBE_PIXELS)
        if seg is None:
            continue
        whole, crop_mean, crop_zero, _ = probe.probe_views(
            read_rgb(Path(split.image_dir) / row.file_name), seg.mask, size, mean)
        for key, v in zip(views, (whole, crop_mean, crop_zero)):
            views[key].append(v)
        targets.append(position[seg.label])
    if not targets:
        raise RuntimeError(f"no single-thing probe images in {split.index}")
    classifier = text_classifier(model, tokenizer, [classes.names[i] for i in thing_ids])
    target = torch.tensor(targets)
    seen = torch.tensor([classes.seen[i] for i in thing_ids])
    out = {"classes": len(thing_ids), "chance": 1.0 / len(thing_ids)}
    for key, v in views.items():
        x = probe.normalize(torch.stack(v), mean, std)
        pred = probe.zero_shot_predictions(model, x, classifier, p.probe_batch_size)
        out[key] = probe.accuracy_by_group(pred, target, seen)
    return out


def run_outline_control(splits, size, p) -> dict:
    """Train on masks of the first images of the training split, test on later ones."""
    split = splits["train"]
    classes = load_class_list(split.classes)
    feats = {True: [], False: []}  # isthing -> [(row number, label, features)]
    scanned = 0
    for n, row in enumerate(iter_index(split.index)):
        if n >= CONTROL_IMAGES:
            break
        scanned += 1
        labels = read_labels(Path(split.label_dir) / row.label_file)
        segs = probe.label_segments(row.image_id, labels)
        if not segs:
            continue
        masks = torch.from_numpy(np.stack([s.mask for s in segs]))
        _, crop_masks, _ = masked_crops(torch.zeros(3, *labels.shape), masks, size, fill="zero")
        for s, x in zip(segs, probe.outline_features(crop_masks)):
            feats[classes.isthing[s.label]].append((n, s.label, x))
    cut = int(0.8 * scanned)  # first 80% of the images train the control, the rest test it
    out = {}
    for isthing, name in ((True, "things"), (False, "stuff")):
        items = feats[isthing]
        labels = sorted({lab for _, lab, _ in items})
        if len(labels) < 2:
            continue
        remap = {lab: k for k, lab in enumerate(labels)}

        def tensors(keep, items=items, remap=remap):
            chosen = [(remap[lab], x) for n, lab, x in items if keep(n)]
            return torch.stack([x for _, x in chosen]), torch.tensor([y for y, _ in chosen])

        train_x, train_y = tensors(lambda n: n < cut)
        test_x, test_y = tensors(lambda n: n >= cut)
        acc = probe.outline_control(train_x, train_y, test_x, test_y, len(labels),
                                    p.control_steps, p.seed)
        counts = np.bincount(test_y.numpy(), minlength=len(labels))
        out[name] = {"accuracy": acc, "classes": len(labels), "chance": 1.0 / len(labels),
                     "majority": float(counts.max() / counts.sum()), "n_test": len(test_y)}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_params(args.params).clip
    torch.manual_seed(p.seed)
    torch.set_num_threads(p.threads)
    splits = read_splits(SPLITS)
    cfg = model_config(p.arch)
    model = create_clip(p.arch, p.pretrained)
    tokenizer = tokenizer_for(p.arch)
    size = cfg["vision_cfg"]["image_size"]
    mean, std = pixel_stats(model)
    t0 = time.time()
    logs = []
    if not p.pretrained:
        logs = pretrain(model, splits["train"], tokenizer, size, p, mean, std)
    train_seconds = time.time() - t0
    model.eval()
    with atomic_dir(OUT_DIR) as out:
        save_clip(model, cfg, out)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "loss", "lr", "logit_scale"])
    for log in logs:
        w.writerow([log.step, f"{log.loss:.5f}", f"{log.lr:.6g}", f"{log.logit_scale:.4f}"])
    atomic_write_bytes(LOSS_CSV, buf.getvalue().encode())
    if logs:
        atomic_write_bytes(LOSS_PNG, curves_png(
            [log.step for log in logs], {"loss": [log.loss for log in logs],
                                         "lr": [log.lr for log in logs]},
            "step", "base CLIP contrastive pretraining"))
    else:
        atomic_write_bytes(LOSS_PNG, curves_png([0], {"loss": [0.0]}, "step",
                                                f"no pretraining: loaded {p.pretrained}"))
    print("probing masked-crop zero-shot accuracy ...")
    metrics = {
        "arch": p.arch,
        "pretrained": p.pretrained or "contrastive pretraining on the training captions",
        "train_steps": len(logs),
        "train_seconds": round(train_seconds, 1),
        "final_loss": round(float(np.mean([log.loss for log in logs[-20:]])), 4) if logs else None,
        "zero_shot": run_probe(model, tokenizer, splits, size, mean, std, p),
        "outline_only_control": run_outline_control(splits, size, p),
    }
    write_json(METRICS, metrics)
    zs = metrics["zero_shot"]
    print(f"zero-shot top-1 (chance {zs['chance']:.3f}): whole {zs['whole_image']['all']:.3f}, "
          f"crop mean-fill {zs['masked_crop_mean']['all']:.3f}, "
          f"crop zero-fill {zs['masked_crop_zero']['all']:.3f}")
    print("outline-only control:", {k: round(v["accuracy"], 3)
                                    for k, v in metrics["outline_only_control"].items()})


if __name__ == "__main__":
    main()
