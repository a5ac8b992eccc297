"""Stage evaluate@<dataset>: two-stage open-vocabulary segmentation of an evaluation set
with the pipeline's models, scored as OVSeg scores it (pipeline/segment/evaluation.py).

    python -m stages.evaluate --dataset world_full --params params.yaml --index data/index
        --proposals models/proposals --base-clip models/clip_base
        --adapted models/mask_prompts --text-cache .cache/text_classifiers
        --metrics metrics/eval/world_full.json --iou-png metrics/eval/world_full_iou.png
        --predictions-png metrics/eval/world_full_predictions.png
        --lambda-json metrics/eval/world_full_lambda.json
        --lambda-csv metrics/eval/world_full_lambda.csv
        --lambda-png metrics/eval/world_full_lambda.png

--adapted: the adapted CLIP (its adapted.json names the CLIP folder that goes with the
prompts). --metrics: for the variants maskformer (proposal net alone), clip (masked-crop
CLIP alone) and ensemble (OVSeg's Table 6), and with eval.bottleneck OVSeg Figure 1(c)'s
gt_masks_clip (ground-truth segments classified by CLIP) and proposals_oracle (proposals
labelled by the ground truth): mIoU in both formulas, pixel accuracy,
per-class IoU, mIoU over classes seen and unseen in training; --iou-png: per-class IoU of
the ensemble; --predictions-png: a few images beside their predictions; --lambda-*: the
ensemble's mIoU (all, seen, unseen) at each λ of eval.lambda_sweep, from the same pass.
The report records the λ and mask threshold used: eval.per_dataset's for the set, else
eval.ensemble_lambda and eval.mask_threshold. Images go in at eval.short_side; the
predictions are scored at the label maps' own resolution.

Under `compute.processes` > 1 (or torchrun) each process scores a contiguous share of the
image batches and rank 0 sums the confusion matrices: the same report as one process.

<dataset> is an evaluation split of the index (world_full, world_things) or a real set
under eval.root, by its name or an ov-seg / SAN alias (pipeline/data/eval_datasets.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.data.eval_datasets import canonical_eval_name
from pipeline.data.files import atomic_write_bytes, staged_outputs, write_json
from pipeline.data.layouts import read_splits
from pipeline.distributed.device import start_ranks
from pipeline.distributed.launch import hand_over_to_torchrun
from pipeline.distributed.process_group import gather_to_main, sum_over_ranks
from pipeline.params import load_params
from pipeline.segment.bottleneck import BOTTLENECK_VARIANTS
from pipeline.segment.evaluation import (
    VARIANTS,
    confusion_by_variant,
    lambda_sweep_csv,
    lambda_sweep_rows,
    resolve_dataset,
    variant_scores,
)
from pipeline.segment.segmenter import load_segmenter
from pipeline.segment.view import class_iou_png, lambda_sweep_png, prediction_panels_png


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    for flag in ("--params", "--index", "--proposals", "--base-clip", "--adapted",
                 "--text-cache", "--metrics", "--iou-png", "--predictions-png", "--lambda-json",
                 "--lambda-csv", "--lambda-png"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    hand_over_to_torchrun("stages.evaluate", argv, params.compute)
    p = params.eval
    torch.set_num_threads(p.threads)
    device, ddp = start_ranks(params.compute.device)
    try:
        ds = resolve_dataset(args.dataset, p.root, read_splits(args.index / "splits.json"),
                             params.data.bad_items)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if p.max_images:
        ds.rows = ds.rows[:p.max_images]
    lam, threshold = p.settings_for(canonical_eval_name(args.dataset))
    segmenter = load_segmenter(list(ds.classes.names), args.proposals, args.adapted,
                               args.base_clip, args.text_cache, dtype=p.dtype,
                               templates=params.clip.templates,
                               short_side=params.proposals.short_side,
                               size_divisor=params.proposals.size_divisor,
                               mask_threshold=threshold, ensemble_lambda=lam, fill=p.fill,
                               batch_size=p.batch_size, device=device)
    bar = tqdm(total=len(ds.rows), desc=f"evaluate {args.dataset}", unit="image",
               mininterval=2, disable=not ddp.main)
    conf, swept, panels = confusion_by_variant(segmenter, ds, p.images_per_batch,
                                               p.short_side, p.overlays, bar.update,
                                               tuple(p.lambda_sweep), p.bottleneck,
                                               ddp.rank, ddp.world)
    bar.close()
    # Exact integer sums over the ranks' shares; the overlays are the first images overall.
    conf = {v: sum_over_ranks(ddp, m, device) for v, m in conf.items()}
    swept = {lam: sum_over_ranks(ddp, m, device) for lam, m in swept.items()}
    panels = [q for share in gather_to_main(ddp, panels) for q in share][:p.overlays]
    if not ddp.main:
        return
    names = list(ds.classes.names)
    report = {"dataset": args.dataset, "images": len(ds.rows), "classes": len(names),
              "seen_classes": int(sum(ds.seen)), "ensemble_lambda": lam,
              "mask_threshold": threshold, "short_side": p.short_side,
              **variant_scores(conf, ds)}
    if ds.data_check is not None:  # a real set: what its item check left out
        report["data_check"] = ds.data_check
    ens = report["ensemble"]
    iou_png = class_iou_png(
        names, list(ens["per_class_iou"].values()), ds.seen,
        f"{args.dataset}: ensemble mIoU {ens['miou_d2_legacy']:.3f} (detectron2 <= 0.6)")
    predictions_png = prediction_panels_png(panels, names, ds.ignore_label) if panels else None
    rows = lambda_sweep_rows(swept, ds)
    best = max(rows, key=lambda r: r["miou_d2_legacy"] or 0.0, default=None)
    sweep = {"dataset": args.dataset, "ensemble_lambda": lam, "mask_threshold": threshold,
             "best": best, "rows": rows}
    with staged_outputs(args.metrics, args.iou_png, args.predictions_png, args.lambda_json,
                        args.lambda_csv, args.lambda_png) as staged:
        metrics_path, iou_path, predictions_path, *sweep_paths = staged
        write_json(metrics_path, report)
        atomic_write_bytes(iou_path, iou_png)
        write_json(sweep_paths[0], sweep)
        atomic_write_bytes(sweep_paths[1], lambda_sweep_csv(rows))
        atomic_write_bytes(sweep_paths[2], lambda_sweep_png(
            rows, lam, f"{args.dataset}: ensemble mIoU against λ"))
        if predictions_png is not None:  # no overlays asked for: the old picture stays
            atomic_write_bytes(predictions_path, predictions_png)
    for v in VARIANTS + (BOTTLENECK_VARIANTS if p.bottleneck else ()):
        s = report[v]
        print(f"{args.dataset} {v:>10}: mIoU {s['miou_d2_legacy']:.3f} (gt-only {s['miou']:.3f})"
              f", seen {s['seen']['miou_d2_legacy'] or 0:.3f}, unseen "
              f"{s['unseen']['miou_d2_legacy'] or 0:.3f}, pixel acc {s['pixel_accuracy']:.3f}")


if __name__ == "__main__":
    main()
