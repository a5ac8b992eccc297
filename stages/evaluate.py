"""Stage evaluate@<dataset>: two-stage open-vocabulary segmentation of an evaluation set
with the pipeline's models, scored as OVSeg scores it (DESIGN sec. 7).

deps: models/proposals, models/clip_base, models/mask_prompts (the adapted CLIP), the
      evaluation set, params eval, proposals.image_size
outs: metrics/eval/<dataset>.json: for the variants maskformer (proposal net alone), clip
      (masked-crop CLIP alone) and ensemble (OVSeg's Table 6): mIoU in both formulas,
      pixel accuracy, per-class IoU, mIoU over classes seen and unseen in training;
      metrics/eval/<dataset>_iou.png (per-class IoU of the ensemble) and
      metrics/eval/<dataset>_predictions.png (a few images beside their predictions)

<dataset> is a synthetic evaluation split of data/index/splits.json (world_full,
world_things) or a real set under eval.root (pipeline/data/eval_datasets.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pipeline.clip.text_classifier import split_synonyms
from pipeline.data.class_lists import ClassList, builtin_class_list, load_class_list
from pipeline.data.eval_datasets import EVAL_LAYOUTS, index_eval_dataset
from pipeline.data.files import atomic_write_bytes, write_json
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import iter_index, read_splits
from pipeline.params import load_params
from pipeline.segment.metrics import confusion_matrix, segmentation_scores
from pipeline.segment.segmenter import load_segmenter
from pipeline.segment.view import class_iou_png, prediction_panels_png

SPLITS = Path("data/index/splits.json")
OUT_DIR = Path("metrics/eval")
VARIANTS = ("maskformer", "clip", "ensemble")


def seen_in_training(classes: ClassList, train: ClassList) -> list[bool]:
    """A class is seen if one of its names is a name of a class labelled in training."""
    trained = {s.lower() for name, seen in zip(train.names, train.seen) if seen
               for s in split_synonyms(name)}
    return [any(s.lower() in trained for s in split_synonyms(n)) for n in classes.names]


def resolve_dataset(name: str, root: str):
    """(class list, image dir, label dir, index rows, ignore label, seen flags)."""
    splits = read_splits(SPLITS)
    train = load_class_list(splits["train"].classes)
    if name in splits and splits[name].role == "eval":
        s = splits[name]
        classes = load_class_list(s.classes)
        return (classes, Path(s.image_dir), Path(s.label_dir), list(iter_index(s.index)),
                s.ignore_label, list(classes.seen))
    if name in EVAL_LAYOUTS:
        lay, rows = index_eval_dataset(root, name)
        classes = builtin_class_list(lay.classes)
        return (classes, Path(root) / lay.image_dir, Path(root) / lay.label_dir, rows,
                lay.ignore_label, seen_in_training(classes, train))
    known = [n for n, s in splits.items() if s.role == "eval"] + list(EVAL_LAYOUTS)
    raise SystemExit(f"unknown evaluation set {name!r} (eval.datasets); known: "
                     f"{', '.join(known)}")


def resized(image: np.ndarray, labels: np.ndarray, short_side: int):
    if not short_side or min(labels.shape) == short_side:
        return image, labels
    h, w = labels.shape
    scale = short_side / min(h, w)
    size = (round(w * scale), round(h * scale))
    return (np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)),
            np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    p = params.eval
    torch.set_num_threads(p.threads)
    classes, image_dir, label_dir, rows, ignore, seen = resolve_dataset(args.dataset, p.root)
    if p.max_images:
        rows = rows[:p.max_images]
    segmenter = load_segmenter(list(classes.names), dtype=p.dtype,
                               net_size=params.proposals.image_size,
                               mask_threshold=p.mask_threshold,
                               ensemble_weight=p.ensemble_lambda, fill=p.fill,
                               batch_size=p.batch_size)
    k = len(classes)
    conf = {v: np.zeros((k, k), dtype=np.int64) for v in VARIANTS}
    panels = []
    bar = tqdm(total=len(rows), desc=f"evaluate {args.dataset}", unit="image", mininterval=2)
    for i in range(0, len(rows), p.images_per_batch):
        loaded = [resized(read_rgb(image_dir / r.file_name),
                          read_labels(label_dir / r.label_file), p.short_side)
                  for r in rows[i:i + p.images_per_batch]]
        preds = segmenter.predict_batch([torch.from_numpy(im.copy()).permute(2, 0, 1).float()
                                         / 255 for im, _ in loaded])
        for (image, labels), pred in zip(loaded, preds):
            pred = {v: m.numpy() for v, m in pred.items()}
            for v in VARIANTS:
                conf[v] += confusion_matrix(pred[v], labels, k, ignore)
            if len(panels) < p.overlays:
                panels.append({"image": image, "gt": labels, **pred})
        bar.update(len(loaded))
    bar.close()
    names = list(classes.names)
    report = {"dataset": args.dataset, "images": len(rows), "classes": k,
              "seen_classes": int(sum(seen)), "ensemble_lambda": p.ensemble_lambda,
              "mask_threshold": p.mask_threshold}
    for v in VARIANTS:
        scores = segmentation_scores(conf[v], np.array(seen))
        scores["per_class_iou"] = dict(zip(names, scores["per_class_iou"]))
        report[v] = scores
    write_json(OUT_DIR / f"{args.dataset}.json", report)
    ens = report["ensemble"]
    atomic_write_bytes(OUT_DIR / f"{args.dataset}_iou.png", class_iou_png(
        names, list(ens["per_class_iou"].values()), seen,
        f"{args.dataset}: ensemble mIoU {ens['miou_d2_legacy']:.3f} (detectron2 <= 0.6)"))
    if panels:
        atomic_write_bytes(OUT_DIR / f"{args.dataset}_predictions.png",
                           prediction_panels_png(panels, names, ignore))
    for v in VARIANTS:
        s = report[v]
        print(f"{args.dataset} {v:>10}: mIoU {s['miou_d2_legacy']:.3f} (gt-only {s['miou']:.3f})"
              f", seen {s['seen']['miou_d2_legacy'] or 0:.3f}, unseen "
              f"{s['unseen']['miou_d2_legacy'] or 0:.3f}, pixel acc {s['pixel_accuracy']:.3f}")


if __name__ == "__main__":
    main()
