import numpy as np
import pytest
import torch

from pipeline.segment.metrics import (
    check_labels,
    confusion_counts,
    confusion_matrix,
    segmentation_scores,
)
from pipeline.segment.two_stage import (
    crop_masks,
    ensemble,
    fused_labels,
    mask_probs,
    maskformer_probs,
    semantic_scores,
    variant_probs,
)


def hand_example():
    """Two images, 5 classes (class 4 appears nowhere); worked out by hand:
    class 0: tp 2, gt 3, pred 4 -> IoU 2/5;  class 1: tp 2, gt 3, pred 3 -> 2/4;
    class 2: only predicted -> 0;  class 3: only in the ground truth -> 0."""
    gt1 = np.array([[0, 0, 1, 255], [0, 1, 1, 255]])
    pr1 = np.array([[0, 2, 1, 1], [0, 0, 1, 2]])  # the ignored column predicts anything
    gt2, pr2 = np.array([[3, 3]]), np.array([[1, 0]])
    return confusion_matrix(pr1, gt1, 5) + confusion_matrix(pr2, gt2, 5)


def test_both_miou_formulas_on_a_hand_computed_example():
    s = segmentation_scores(hand_example(), seen=np.array([True, True, False, False, True]))
    assert s["per_class_iou"][:4] == pytest.approx([0.4, 0.5, 0.0, 0.0])
    assert s["per_class_iou"][4] is None  # in neither ground truth nor prediction
    assert s["miou"] == pytest.approx((0.4 + 0.5 + 0.0) / 3)  # classes 0, 1, 3 in the gt
    assert s["miou_d2_legacy"] == pytest.approx((0.4 + 0.5 + 0.0) / 4)  # + class 2 predicted
    assert s["pixel_accuracy"] == pytest.approx(4 / 8)
    assert s["seen"]["miou"] == pytest.approx(0.45) and s["seen"]["miou_d2_legacy"] == \
        pytest.approx(0.45)
    assert s["unseen"]["miou"] == 0.0 and s["unseen"]["classes_in_gt"] == 1


def test_confusion_matrix_leaves_ignored_pixels_out_and_names_bad_labels():
    conf = confusion_matrix(np.array([[1, 1]]), np.array([[255, 0]]), 2)
    assert conf.tolist() == [[0, 1], [0, 0]]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([[0]]), np.array([[7]]), 2)


@pytest.mark.parametrize("gt_dtype", [np.uint8, np.int32])
def test_confusion_counts_of_several_maps_equal_a_count_cell_by_cell(gt_dtype):
    """The evaluation counts 3 + bottleneck + sweep label maps of an image in one call, on
    their device; each matrix is the explicit count of (ground truth, prediction) pairs."""
    rng = np.random.default_rng(3)
    k, (h, w) = 6, (17, 23)
    gt = rng.integers(0, k, (h, w)).astype(gt_dtype)
    gt[rng.random((h, w)) < 0.2] = 255
    pred = rng.integers(0, k, (4, h, w))
    counts = confusion_counts(torch.from_numpy(pred), torch.from_numpy(gt), k, 255)
    assert counts.dtype == torch.long and counts.shape == (4, k, k)
    for v in range(4):
        want = np.zeros((k, k), dtype=np.int64)
        for g, p in zip(gt.ravel(), pred[v].ravel()):
            if g != 255:
                want[g, p] += 1
        assert np.array_equal(counts[v].numpy(), want)
    assert torch.equal(confusion_counts(torch.from_numpy(pred[1]), torch.from_numpy(gt), k,
                                        255)[0], counts[1])  # one (H, W) map


def test_confusion_counts_read_nothing_back_from_their_device():
    gt = torch.zeros(5, 7, dtype=torch.uint8, device="meta")
    counts = confusion_counts(torch.zeros(3, 5, 7, dtype=torch.long, device="meta"), gt, 4)
    assert counts.device.type == "meta" and counts.shape == (3, 4, 4)


def test_a_bad_label_is_named_with_its_file():
    with pytest.raises(ValueError, match=r"labels/7.png: ground-truth labels outside \[0, 2\) "
                                         r"and not the ignore label 255: \[7, 9\]"):
        check_labels(np.array([[0, 7, 255, 9]], dtype=np.uint8), 2, 255, "labels/7.png")
    check_labels(np.array([[0, 1, 255]], dtype=np.uint8), 2, 255)


def test_perfect_prediction_scores_one():
    gt = np.random.default_rng(0).integers(0, 4, (8, 8))
    s = segmentation_scores(confusion_matrix(gt, gt, 4))
    assert s["miou"] == s["miou_d2_legacy"] == s["pixel_accuracy"] == 1.0


def test_ensemble_and_fusion_follow_the_formulas():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=g)
    p_mf = maskformer_probs(logits)
    assert torch.allclose(p_mf, torch.exp(logits[:, :5]) / torch.exp(logits).sum(1, True))
    p_clip = torch.rand(4, 5, generator=g).softmax(dim=1)
    valid = torch.tensor([True, False, True, True])
    p = ensemble(p_mf, p_clip, valid, 0.7)
    for q in range(4):
        for k in range(5):
            clip = p_clip[q, k] if valid[q] else 1.0
            assert p[q, k] == pytest.approx(float(p_mf[q, k] ** 0.3 * clip ** 0.7), rel=1e-5)
    masks = torch.randn(4, 3, 2, generator=g)
    scores = semantic_scores(p, masks)
    for k in range(5):
        want = sum(p[q, k] * torch.sigmoid(masks[q]) for q in range(4))
        assert torch.allclose(scores[k], want, atol=1e-6)
    assert torch.equal(fused_labels(p, mask_probs(masks)), scores.argmax(0))
    assert torch.equal(crop_masks(masks, 0.4), torch.sigmoid(masks) > 0.4)


def test_variants_drop_invalid_masks_only_for_clip():
    p_mf, p_clip = torch.full((3, 2), 0.5), torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    valid = torch.tensor([True, False, True])
    v = variant_probs(p_mf, p_clip, valid, 0.5)
    assert torch.equal(v["clip"][0], p_clip[valid]) and v["clip"][1].tolist() == [1, 0, 1]
    assert torch.allclose(v["ensemble"][0][1], p_mf[1] ** 0.5)
    assert v["maskformer"][1].all()
    assert fused_labels(torch.zeros(0, 2), torch.zeros(0, 3, 3)).shape == (3, 3)


def test_fusion_in_row_blocks_and_at_another_size_match_the_whole_map(monkeypatch):
    from pipeline.segment import two_stage

    g = torch.Generator().manual_seed(1)
    p, logits = torch.rand(5, 7, generator=g), torch.randn(5, 9, 11, generator=g)
    whole = semantic_scores(p, logits).argmax(0)
    monkeypatch.setattr(two_stage, "LABEL_MAP_CHUNK", 7 * 11 * 2)  # blocks of 2 rows
    assert torch.equal(fused_labels(p, mask_probs(logits)), whole)
    # at another size: the scores resized bilinearly (sem_seg_postprocess), then argmax
    scores = torch.nn.functional.interpolate(semantic_scores(p, logits)[None], size=(20, 30),
                                             mode="bilinear", align_corners=False)[0]
    got = fused_labels(p, mask_probs(logits, (20, 30)))
    assert got.shape == (20, 30)
    top2 = scores.topk(2, dim=0).values
    clear = (top2[0] - top2[1]) > 1e-4  # ties in float rounding aside
    assert torch.equal(got[clear], scores.argmax(0)[clear])
