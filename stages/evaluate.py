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
        --similarity-cache .cache/name_similarity
        --confusions-csv metrics/eval/world_full_confusions.csv
        --confusions-png metrics/eval/world_full_confusions.png

--adapted: the adapted CLIP (its adapted.json names the CLIP folder that goes with the
prompts). --metrics: for the variants maskformer (proposal net alone), clip (masked-crop
CLIP alone) and ensemble (OVSeg's Table 6), and with eval.bottleneck OVSeg Figure 1(c)'s
gt_masks_clip (ground-truth segments classified by CLIP) and proposals_oracle (proposals
labelled by the ground truth): mIoU in both formulas, pixel accuracy,
per-class IoU, mIoU over classes seen and unseen in training; --iou-png: per-class IoU of
the ensemble; --predictions-png: a few images beside their predictions; --lambda-*: the
ensemble's mIoU (all, seen, unseen) at each λ of eval.lambda_sweep, from the same pass.
Every variant and λ also gets Open mIoU (pipeline/segment/open_metrics.py) under the
class-name similarity eval.open_similarity names (WordNet matrices cached in
--similarity-cache); --confusions-*: the ensemble's eval.confusions most mislabelled class
pairs, each with the similarity of the two names.
The report records the λ and mask threshold used: eval.per_dataset's for the set, else
eval.ensemble_lambda and eval.mask_threshold. Images go in at eval.short_side; the
predictions are scored at the label maps' own resolution.

Under `compute.processes` > 1 (or torchrun) each process scores a contiguous share of the
image batches and rank 0 sums the confusion matrices: the same report as one process.

<dataset> is an evaluation split of the index (world_full, world_things) or a real set
under eval.root, by its name or an ov-seg / SAN alias (pipeline/data/eval_datasets.py).
"""

from __future__ import annotations

from tqdm import tqdm

from pipeline.data.eval_datasets import canonical_eval_name
from pipeline.data.files import atomic_write_bytes, staged_outputs, write_json
from pipeline.data.layouts import read_splits
from pipeline.data.read_ahead import depth_on
from pipeline.segment.confusions import top_confusions
from pipeline.segment.eval_report import (
    evaluation_report,
    lambda_sweep_report,
    merge_ranks,
    one_class_warning,
    report_files,
    score_lines,
)
from pipeline.segment.evaluation import (
    READ_AHEAD_BATCHES,
    confusion_by_variant,
    resolve_dataset,
)
from pipeline.segment.segmenter import load_segmenter, segmenter_settings
from pipeline.similarity.name_similarity import SimilarityError, class_name_similarity
from stages._start import speak_up, start_stage

PATHS = ("--index", "--proposals", "--base-clip", "--adapted", "--text-cache", "--metrics",
         "--iou-png", "--predictions-png", "--lambda-json", "--lambda-csv", "--lambda-png",
         "--similarity-cache", "--confusions-csv", "--confusions-png")


def main(argv=None) -> None:
    run = start_stage("stages.evaluate", __doc__, argv, PATHS, "eval", torchrun=True,
                      networks=True,
                      options=lambda ap: ap.add_argument("--dataset", required=True))
    args, params, p, ddp = run.args, run.params, run.params.eval, run.ddp
    try:
        ds = resolve_dataset(args.dataset, p.root, read_splits(args.index / "splits.json"),
                             params.data.bad_items)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if p.max_images:
        ds.rows = ds.rows[:p.max_images]
    canonical, names = canonical_eval_name(args.dataset), list(ds.classes.names)
    settings = segmenter_settings(params, canonical)
    lam, threshold = settings.ensemble_lambda, settings.mask_threshold
    segmenter = load_segmenter(names, settings, args.proposals, args.adapted,
                               args.base_clip, args.text_cache, p.dtype,
                               params.clip.templates, run.device)
    try:  # before the long pass: a bad similarity file stops the stage at once
        similarity, similarity_info = class_name_similarity(
            p.open_similarity_for(canonical), names, canonical,
            segmenter.clip_text.float().cpu().numpy(), args.similarity_cache)
    except SimilarityError as e:
        raise SystemExit(str(e)) from None
    with tqdm(total=len(ds.rows), desc=f"evaluate {args.dataset}", unit="image",
              mininterval=2, disable=not ddp.main) as bar:
        passes = confusion_by_variant(segmenter, ds, p.images_per_batch, p.short_side,
                                      p.overlays, bar.update, tuple(p.lambda_sweep),
                                      p.bottleneck, ddp.rank, ddp.world,
                                      depth_on(run.device, READ_AHEAD_BATCHES))
    conf, swept, panels = merge_ranks(ddp, *passes, run.device, p.overlays)
    if not ddp.main:
        return
    report = evaluation_report(args.dataset, ds, conf, lam, threshold, p.short_side,
                               similarity, similarity_info)
    speak_up(one_class_warning(args.dataset, conf["ensemble"], names), params)
    sweep = lambda_sweep_report(args.dataset, ds, swept, lam, threshold, similarity)
    confusions = top_confusions(conf["ensemble"], similarity, names, p.confusions)
    files = report_files(report, sweep, ds, panels, confusions)
    with staged_outputs(args.metrics, args.iou_png, args.predictions_png, args.lambda_json,
                        args.lambda_csv, args.lambda_png, args.confusions_csv,
                        args.confusions_png) as staged:
        (metrics_path, iou_path, predictions_path, sweep_json, sweep_csv, sweep_png,
         confusions_csv, confusions_png) = staged
        write_json(metrics_path, report)
        write_json(sweep_json, sweep)
        for path, key in ((iou_path, "iou_png"), (sweep_csv, "lambda_csv"),
                          (sweep_png, "lambda_png"), (predictions_path, "predictions_png"),
                          (confusions_csv, "confusions_csv"),
                          (confusions_png, "confusions_png")):
            if key in files:  # no overlays asked for: the old predictions picture stays
                atomic_write_bytes(path, files[key])
    print("\n".join(score_lines(report, p.bottleneck)))


if __name__ == "__main__":
    main()
