"""OVSeg Figure 1(c)'s bottleneck variants: ground-truth masks classified by CLIP, and
proposals labelled by the oracle."""

import numpy as np
import torch

from pipeline.data.segments import class_masks, label_segments, present_classes
from pipeline.segment.bottleneck import (
    class_segments,
    oracle_label_map,
    oracle_probs,
    segment_label_map,
)
from pipeline.segment.evaluation import confusion_by_variant
from pipeline.segment.segmenter import MaskPredictions
from tests.test_eval_protocol import eval_set


def brute_force_oracle(masks: np.ndarray, labels: np.ndarray, ignore: int, threshold: float):
    """Per mask: the class of the labelled segment of highest IoU (first on ties), or None
    when it overlaps none; ignored pixels counted in neither set."""
    out = []
    scored = labels != ignore
    for m in masks:
        binary = (m > threshold) & scored
        best, best_iou = None, 0.0
        for c in sorted(set(np.unique(labels)) - {ignore}):
            seg = labels == c
            union = (binary | seg).sum()
            iou = (binary & seg).sum() / union if union else 0.0
            if iou > best_iou:
                best, best_iou = int(c), iou
        out.append(best)
    return out


def test_the_oracle_gives_each_mask_the_class_of_its_best_iou_segment():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (20, 24)).astype(np.uint8)
    labels[:6] = 1
    labels[15:, :10] = 255
    masks = rng.random((9, 20, 24)).astype(np.float32) ** 3
    masks[0] = 0.0  # overlaps nothing
    masks[1] = 0.0
    masks[1][15:, :10] = 1.0  # only ignored pixels: overlaps nothing either
    masks[2] = (labels == 1).astype(np.float32)
    probs, keep = oracle_probs(torch.from_numpy(masks), torch.from_numpy(labels),
                               torch.from_numpy(present_classes(labels)), 5, 255, 0.4)
    want = brute_force_oracle(masks, labels, 255, 0.4)
    assert keep.tolist() == [w is not None for w in want]
    assert probs.argmax(1).tolist() == [w for w in want if w is not None]
    assert torch.equal(probs.sum(1), torch.ones(len(probs)))  # one-hot
    assert want[2] == 1


def test_class_masks_and_painting_them_back():
    labels = np.array([[0, 0, 2], [255, 2, 2]], dtype=np.uint8)
    classes, masks = class_masks(labels, 255)
    assert classes.tolist() == [0, 2] and masks.shape == (2, 2, 3)
    assert (masks[1] == (labels == 2)).all()
    segs = label_segments(7, labels, 255)
    assert [(s.image_id, s.label) for s in segs] == [(7, 0), (7, 2)]
    assert all((s.mask == m).all() for s, m in zip(segs, masks))
    gt = torch.from_numpy(labels)
    assert torch.equal(class_segments(gt, torch.from_numpy(classes)), torch.from_numpy(masks))
    painted = segment_label_map(gt, torch.from_numpy(classes), torch.tensor([3, 1]), 4, 255)
    assert painted.tolist() == [[3, 3, 1], [0, 1, 1]]


def test_present_classes_are_np_uniques_without_the_ignore_label():
    rng = np.random.default_rng(1)
    for dtype, high in ((np.uint8, 256), (np.uint16, 900), (np.int32, 900), (np.int64, 5)):
        labels = rng.integers(0, high, (30, 40)).astype(dtype)
        labels[:3] = 255
        want = [c for c in np.unique(labels) if c != 255]
        got = present_classes(labels, 255)
        assert got.dtype == np.int64 and got.tolist() == want


def test_proposals_equal_to_the_segments_score_perfectly_under_the_oracle():
    labels = np.zeros((8, 8), dtype=np.uint8)
    labels[:, 4:] = 1
    labels[:2, :2] = 255
    segments = torch.from_numpy(class_masks(labels, 255)[1])
    masks = torch.where(segments, 6.0, -6.0).sigmoid()
    pred = oracle_label_map(masks, torch.from_numpy(labels), torch.tensor([0, 1]), 2, 255,
                            0.5).numpy()
    scored = labels != 255
    assert (pred[scored] == labels[scored]).all()


class OracleSegmenter:
    """Proposals are the ground-truth halves; CLIP names every region class 1."""

    ensemble_lambda, mask_threshold = 0.7, 0.4

    def __init__(self, k: int):
        self.k, self.regions = k, []

    def mask_predictions(self, images):
        out = []
        for im in images:
            h, w = im.shape[-2:]
            logits = torch.full((2, h, w), -8.0)
            logits[0, :, : w // 2] = 8.0
            logits[1, :, w // 2:] = 8.0
            p = torch.full((2, self.k), 1.0 / self.k)
            out.append(MaskPredictions(p, p, torch.ones(2, dtype=torch.bool), logits))
        return out

    def classify_regions(self, image, masks):
        self.regions.append((tuple(image.shape), len(masks)))
        probs = torch.zeros(len(masks), self.k)
        probs[:, 1] = 1.0
        return probs


def test_evaluation_scores_both_bottleneck_variants(tmp_path):
    labels = np.zeros((10, 16), dtype=np.uint8)
    labels[:, 8:] = 1
    seg = OracleSegmenter(2)
    ds = eval_set(tmp_path, labels, images=2)
    conf, _, _ = confusion_by_variant(seg, ds, 2, 0, overlays=0, bottleneck=True)
    assert seg.regions == [((3, 10, 16), 2)] * 2  # each image's two segments, at full size
    assert conf["proposals_oracle"].tolist() == [[160, 0], [0, 160]]
    assert conf["gt_masks_clip"].tolist() == [[0, 160], [0, 160]]  # everything called 1
    plain, _, _ = confusion_by_variant(seg, ds, 2, 0, overlays=0)
    assert set(plain) == {"maskformer", "clip", "ensemble"}
