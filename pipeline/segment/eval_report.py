"""What evaluate@<set> writes, from the confusion matrices of one pass: the report
(metrics/eval/<set>.json), the λ sweep beside it, the most confused class pairs, their
pictures and the lines printed.
Under torchrun each rank's matrices are summed exactly first (`merge_ranks`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.distributed.process_group import Distributed, gather_to_main, sum_over_ranks
from pipeline.segment.bottleneck import BOTTLENECK_VARIANTS
from pipeline.segment.confusions import confusions_csv
from pipeline.segment.evaluation import (
    VARIANTS,
    EvalSet,
    lambda_sweep_csv,
    lambda_sweep_rows,
    variant_scores,
)
from pipeline.segment.view import (
    class_iou_png,
    confusions_png,
    lambda_sweep_png,
    prediction_panels_png,
)


def merge_ranks(ddp: Distributed, conf: dict, swept: dict, panels: list, device,
                overlays: int) -> tuple[dict, dict, list]:
    """Exact integer sums of every rank's confusion matrices (per variant, per λ), and the
    first `overlays` overlay panels overall (rank 0 gets them; the others get theirs)."""
    conf = {v: sum_over_ranks(ddp, m, device) for v, m in conf.items()}
    swept = {lam: sum_over_ranks(ddp, m, device) for lam, m in swept.items()}
    panels = [q for share in gather_to_main(ddp, panels) for q in share][:overlays]
    return conf, swept, panels


def evaluation_report(dataset: str, ds: EvalSet, conf: dict[str, np.ndarray], lam: float,
                      threshold: float, short_side: int, similarity: np.ndarray,
                      similarity_info: dict) -> dict:
    """The report of one set: its size and settings, each variant's scores (Open mIoU
    under the (K, K) class-name `similarity` among them) and what `similarity_info` says
    of that similarity."""
    report = {"dataset": dataset, "images": len(ds.rows), "classes": len(ds.classes.names),
              "seen_classes": int(sum(ds.seen)), "ensemble_lambda": lam,
              "mask_threshold": threshold, "short_side": short_side,
              "open_similarity": similarity_info, **variant_scores(conf, ds, similarity)}
    if ds.data_check is not None:  # a real set: what its item check left out
        report["data_check"] = ds.data_check
    return report


def lambda_sweep_report(dataset: str, ds: EvalSet, swept: dict[float, np.ndarray],
                        lam: float, threshold: float, similarity: np.ndarray) -> dict:
    """The ensemble's scores at each λ of the sweep, and the best of them (by mIoU)."""
    rows = lambda_sweep_rows(swept, ds, similarity)
    best = max(rows, key=lambda r: r["miou_d2_legacy"] or 0.0, default=None)
    return {"dataset": dataset, "ensemble_lambda": lam, "mask_threshold": threshold,
            "best": best, "rows": rows}


def report_files(report: dict, sweep: dict, ds: EvalSet, panels: list,
                 confusions: list[dict]) -> dict[str, bytes]:
    """The bytes of the per-class IoU picture ("iou_png"), the λ sweep's CSV and picture
    ("lambda_csv", "lambda_png"), the ensemble's most confused class pairs (`confusions`,
    rows of pipeline/segment/confusions.py: "confusions_csv", "confusions_png") and, when
    there are overlays, the predictions picture ("predictions_png")."""
    names, ens, dataset = list(ds.classes.names), report["ensemble"], report["dataset"]
    similarity = report["open_similarity"]["similarity"]
    out = {"confusions_csv": confusions_csv(confusions),
           "confusions_png": confusions_png(
               confusions, f"{dataset}: the ensemble's most confused class pairs "
                           f"(similarity: {Path(similarity).name})"),
           "iou_png": class_iou_png(
               names, list(ens["per_class_iou"].values()), ds.seen,
               f"{dataset}: ensemble mIoU {ens['miou_d2_legacy']:.3f} (detectron2 <= 0.6)"),
           "lambda_csv": lambda_sweep_csv(sweep["rows"]),
           "lambda_png": lambda_sweep_png(sweep["rows"], sweep["ensemble_lambda"],
                                          f"{dataset}: ensemble mIoU against λ")}
    if panels:
        out["predictions_png"] = prediction_panels_png(panels, names, ds.ignore_label)
    return out


def score_lines(report: dict, bottleneck: bool) -> list[str]:
    """One line per variant: mIoU in both formulas, seen and unseen, pixel accuracy, Open
    mIoU."""
    out = []
    for v in VARIANTS + (BOTTLENECK_VARIANTS if bottleneck else ()):
        s = report[v]
        out.append(f"{report['dataset']} {v:>10}: mIoU {s['miou_d2_legacy']:.3f} (gt-only "
                   f"{s['miou']:.3f}), seen {s['seen']['miou_d2_legacy'] or 0:.3f}, unseen "
                   f"{s['unseen']['miou_d2_legacy'] or 0:.3f}, pixel acc "
                   f"{s['pixel_accuracy']:.3f}, Open mIoU {s['open']['miou_d2_legacy']:.3f}")
    return out


def one_class_warning(dataset: str, conf: np.ndarray, names: list[str]) -> str | None:
    """What an evaluation says whose ensemble labelled every scored pixel of a set that
    holds several classes with one class: conf is its (K, K) confusion matrix (rows: the
    ground truth, columns: the prediction)."""
    predicted = np.flatnonzero(conf.sum(axis=0))
    if len(predicted) != 1 or np.count_nonzero(conf.sum(axis=1)) < 2:
        return None
    return (f"evaluate {dataset}: every scored pixel was labelled {names[predicted[0]]!r}, "
            "though the ground truth holds several classes: the proposal net or CLIP is "
            "likely untrained (metrics/proposals.json, metrics/adaptation.json)")
