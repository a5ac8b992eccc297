"""Open mIoU (Zhou et al., "Rethinking Evaluation Metrics of Open-Vocabulary
Segmentation", arXiv 2311.03352, TPAMI 2025, §4.1): mIoU that gives a partly right name
partial credit. OVSeg §4.4.2 shows the need: "skyscraper" predicted on a "building" is
scored as wrong as "sky".

From the (K, K) confusion matrix C (rows: ground-truth class g, columns: predicted class p,
ignore pixels left out) and a similarity S in [0, 1] of the class names (S[c, c] = 1),
a pixel of class g labelled p counts S[g, p] as a true positive of g and 1 - S[g, p] as a
false negative of g and a false positive of p:

    TP_c = sum_p C[c, p] S[c, p]                (the diagonal counts in full)
    FN_c = sum_{p != c} C[c, p] (1 - S[c, p])
    FP_c = sum_{g != c} C[g, c] (1 - S[g, c])
    Open IoU_c = TP_c / (TP_c + FP_c + FN_c)

as the authors' evaluator (github.com/qqlu/Entity, Open-Metrics/open_semanticseg/
ow_sem_seg_evaluation.py) computes it on the dataset's summed matrix; the mean over classes
is the plain mIoU's (pipeline/segment/metrics.py: both formulas, seen and unseen), so with
S the identity Open mIoU is mIoU exactly. TP_c + FN_c is still class c's pixel count:
partial credit moves pixels from FN to TP, never creates any.
"""

from __future__ import annotations

import numpy as np

from pipeline.segment.metrics import mious_by_part


def open_class_iou(conf: np.ndarray, similarity: np.ndarray) -> tuple[np.ndarray, ...]:
    """(open IoU, TP, FP, FN), each (K,) float64, of a (K, K) confusion matrix under a
    (K, K) class-name similarity; IoU 0 where a class is in neither the ground truth nor
    the prediction."""
    conf = conf.astype(np.float64)
    s = np.asarray(similarity, dtype=np.float64)
    if s.shape != conf.shape:
        raise ValueError(f"similarity matrix is {s.shape}, the confusion matrix {conf.shape}")
    off = ~np.eye(len(conf), dtype=bool)
    tp = np.diag(conf) + (conf * s * off).sum(axis=1)
    partly_wrong = conf * (1.0 - s) * off
    fn, fp = partly_wrong.sum(axis=1), partly_wrong.sum(axis=0)
    union = tp + fp + fn
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    return iou, tp, fp, fn


def open_segmentation_scores(conf: np.ndarray, similarity: np.ndarray,
                             seen: np.ndarray | None = None) -> dict:
    """Open mIoU in both formulas of `segmentation_scores` (which classes enter the mean
    is decided by the plain pixel counts, as there), over all classes and, when `seen`
    (K,) bool is given, over the seen and the unseen ones."""
    iou = open_class_iou(conf, similarity)[0]
    return mious_by_part(iou, conf.sum(axis=1), conf.sum(axis=0), seen)
