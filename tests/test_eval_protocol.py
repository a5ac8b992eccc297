"""The evaluation protocol (issue 17): per-dataset λ and mask threshold, images resized but
scored at the label map's own resolution, the λ sweep from one CLIP pass, dataset aliases."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pipeline.data.class_lists import ClassList
from pipeline.data.eval_datasets import EVAL_ALIASES, EVAL_LAYOUTS, canonical_eval_name
from pipeline.data.layouts import IndexRow
from pipeline.params import ParamsError, parse_params
from pipeline.params.checks import check_eval_datasets
from pipeline.segment.evaluation import (
    EvalSet,
    confusion_by_variant,
    lambda_sweep_csv,
    lambda_sweep_rows,
    resized_image,
)
from pipeline.segment.segmenter import MaskPredictions

REPO = Path(__file__).resolve().parent.parent
COMMITTED = yaml.safe_load((REPO / "params.yaml").read_text())


# per-dataset settings

def test_paper_values_are_the_defaults_and_the_committed_file_keeps_them():
    p = parse_params({}).eval
    assert p.settings_for("ade20k_150") == p.settings_for("ade20k_847") == (0.7, 0.5)
    assert p.settings_for("pascal_context_59") == p.settings_for("pascal_context_459") == \
        (0.6, 0.5)
    assert p.settings_for("pascal_voc_20") == (0.45, 0.5)
    assert p.settings_for("world_full") == (p.ensemble_lambda, p.mask_threshold)
    committed = parse_params(COMMITTED, complete=True).eval
    assert committed.per_dataset == p.per_dataset
    assert committed.settings_for("world_full") == (0.7, 0.4)  # the world's own


def test_an_override_sets_only_its_keys_and_numbers_are_floats():
    p = parse_params({"eval": {"ensemble_lambda": 0.3, "mask_threshold": 0.45, "per_dataset": {
        "ade20k_150": {"mask_threshold": 0.4}, "world_full": {"ensemble_lambda": 1}}}}).eval
    assert p.settings_for("ade20k_150") == (0.3, 0.4)
    assert p.settings_for("world_full") == (1.0, 0.45)
    assert isinstance(p.per_dataset["world_full"]["ensemble_lambda"], float)
    assert p.settings_for("pascal_voc_20") == (0.3, 0.45)  # the file's mapping, not merged


@pytest.mark.parametrize("per_dataset, message", [
    ({"ade20k_150": {"lambda": 0.5}}, "unknown key 'eval.per_dataset.ade20k_150.lambda'; "
                                      "allowed: ensemble_lambda, mask_threshold"),
    ({"ade20k_150": {"ensemble_lambda": 1.5}},
     "'eval.per_dataset.ade20k_150.ensemble_lambda' = 1.5; must be <= 1.0"),
    ({"ade20k_150": {"mask_threshold": "high"}},
     "'eval.per_dataset.ade20k_150.mask_threshold' must be float"),
    ({"ade20k_150": 0.7}, "'eval.per_dataset.ade20k_150' must be a mapping"),
    ([0.7], "'eval.per_dataset' must be dict"),
])
def test_a_bad_override_is_refused_naming_its_key(per_dataset, message):
    with pytest.raises(ParamsError, match=message):
        parse_params({"eval": {"per_dataset": per_dataset}})


@pytest.mark.parametrize("name, message", [
    ("ade20k_151", "'eval.per_dataset.ade20k_151' names no evaluation set; known: world_full"),
    ("ade20k_sem_seg_val", "'eval.per_dataset.ade20k_sem_seg_val': key it by the set's name "
                           "'ade20k_150'"),
])
def test_an_override_of_an_unknown_set_or_by_alias_is_refused(name, message):
    with pytest.raises(ParamsError, match=message):
        check_eval_datasets(["world_full"], "synthetic", {name: {"ensemble_lambda": 0.5}})
    check_eval_datasets(["ade20k_150"], "coco", {"world_full": {}, "ade20k_150": {}})


def test_lambda_sweep_values_are_checked():
    assert parse_params({"eval": {"lambda_sweep": [0, 1]}}).eval.lambda_sweep == [0.0, 1.0]
    assert parse_params({"eval": {"lambda_sweep": []}}).eval.lambda_sweep == []
    with pytest.raises(ParamsError, match=r"'eval.lambda_sweep\[1\]' = 1.2; must be <= 1.0"):
        parse_params({"eval": {"lambda_sweep": [0.5, 1.2]}})
    with pytest.raises(ParamsError, match="'eval.lambda_sweep' repeats a value"):
        parse_params({"eval": {"lambda_sweep": [0.5, 0.5]}})


def test_the_committed_sweep_is_the_paper_grid():
    grid = parse_params(copy.deepcopy(COMMITTED), complete=True).eval.lambda_sweep
    assert grid == [i / 10 for i in range(11)]


# aliases

def test_every_alias_names_a_real_set_and_none_shadows_one():
    assert set(EVAL_ALIASES.values()) == set(EVAL_LAYOUTS)
    assert not set(EVAL_ALIASES) & set(EVAL_LAYOUTS)
    assert canonical_eval_name("ade20k_sem_seg_val") == "ade20k_150"  # ov-seg
    assert canonical_eval_name("ade20k_full_sem_seg_val") == "ade20k_847"
    assert canonical_eval_name("pascalvoc20_sem_seg_val") == "pascal_voc_20"
    assert canonical_eval_name("pcontext_full_sem_seg_val") == "pascal_context_459"  # SAN
    assert canonical_eval_name("world_full") == "world_full"


def test_datasets_accept_aliases_and_refuse_a_set_under_two_names():
    check_eval_datasets(["world_full", "ade20k_sem_seg_val", "pcontext_sem_seg_val",
                         "pascal_context_459"], "synthetic")
    with pytest.raises(ParamsError, match="names a set twice: 'ade20k_150' and "
                                          "'ade20k_sem_seg_val' \\(both ade20k_150\\)"):
        check_eval_datasets(["ade20k_150", "ade20k_sem_seg_val"], "coco")
    with pytest.raises(ParamsError, match="names a set twice: 'voc_sem_seg_val'"):
        check_eval_datasets(["voc_sem_seg_val", "voc_sem_seg_val"], "coco")
    with pytest.raises(ParamsError, match="names 'ade20k_sem_seg_test'"):
        check_eval_datasets(["ade20k_sem_seg_test"], "coco")


# scoring at the label map's resolution

class HalvesSegmenter:
    """Two masks, left and right of the image's middle, classified 0 and 1 by both
    branches: every variant predicts class 0 where x < W / 2."""

    ensemble_lambda = 0.7

    def __init__(self):
        self.sizes = []

    def mask_predictions(self, images):
        out = []
        for im in images:
            h, w = im.shape[-2:]
            self.sizes.append((h, w))
            left = (torch.arange(w) < w / 2).float().expand(h, w)
            logits = torch.stack([left, 1 - left]) * 20 - 10  # (2, h, w)
            out.append(MaskPredictions(torch.eye(2), torch.eye(2), torch.ones(2, dtype=bool),
                                       logits))
        return out


def eval_set(tmp_path, labels: np.ndarray, images: int = 1, seen=(True, False)) -> EvalSet:
    h, w = labels.shape
    rows = []
    for i in range(images):
        Image.new("RGB", (w, h), (90, 120, 40)).save(tmp_path / f"{i}.jpg")
        Image.fromarray(labels.astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(IndexRow(i, f"{i}.jpg", f"{i}.png", h, w))
    k = len(seen)
    classes = ClassList("test", tuple(f"c{i}" for i in range(k)), (True,) * k, tuple(seen))
    return EvalSet(classes, tmp_path, tmp_path, rows, 255, list(seen))


def test_resize_keeps_the_aspect_and_zero_keeps_the_image():
    image = np.zeros((50, 90, 3), dtype=np.uint8)
    assert resized_image(image, 32).shape == (32, 58, 3)  # 90 * 32 / 50 = 57.6
    assert resized_image(image, 0) is image
    assert resized_image(np.zeros((10, 100, 3), np.uint8), 20).shape == (8, 80, 3)  # long 4x


@pytest.mark.parametrize("short_side, seen_size", [(32, (32, 58)), (0, (50, 90))])
def test_predictions_are_scored_on_every_pixel_of_the_original_label_map(
        tmp_path, short_side, seen_size):
    labels = np.zeros((50, 90), dtype=np.uint8)
    labels[:, 45:] = 1
    labels[:10, :30] = 1  # 300 pixels of class 1 predicted as 0
    labels[-5:, -4:] = 255  # 20 ignored pixels of the right half
    seg = HalvesSegmenter()
    conf, swept, panels = confusion_by_variant(seg, eval_set(tmp_path, labels), 1, short_side,
                                               overlays=1)
    assert seg.sizes == [seen_size]
    want = np.array([[45 * 50 - 300, 0], [300, 45 * 50 - 20]])
    for v in ("maskformer", "clip", "ensemble"):
        assert conf[v].tolist() == want.tolist()
    assert swept == {} and panels[0]["ensemble"].shape == (50, 90)
    assert panels[0]["image"].shape == (50, 90, 3)


# the λ sweep

class RandomSegmenter:
    """Seeded random masks and class probabilities; counts its calls (the CLIP passes)."""

    def __init__(self, k: int, ensemble_lambda: float):
        self.k, self.ensemble_lambda, self.calls = k, ensemble_lambda, 0
        self.gen = torch.Generator().manual_seed(0)

    def mask_predictions(self, images):
        self.calls += 1
        out = []
        for im in images:
            q = 6
            valid = torch.rand(q, generator=self.gen) > 0.3
            p_clip = torch.rand(q, self.k, generator=self.gen).softmax(-1) * valid[:, None]
            out.append(MaskPredictions(
                torch.rand(q, self.k + 1, generator=self.gen).softmax(-1)[:, :-1], p_clip,
                valid, 3 * torch.randn(q, *[s // 2 for s in im.shape[-2:]], generator=self.gen)))
        return out


def test_the_sweep_at_the_runs_lambda_equals_the_ensemble_from_one_pass(tmp_path):
    labels = np.random.default_rng(0).integers(0, 4, (12, 20))
    ds = eval_set(tmp_path, labels, images=5, seen=(True, True, False, False))
    seg = RandomSegmenter(4, 0.7)
    conf, swept, _ = confusion_by_variant(seg, ds, 2, 0, overlays=1, sweep=(0.0, 0.3, 0.7, 1.0))
    assert seg.calls == 3  # one pass per batch of images, whatever the number of λ
    assert np.array_equal(swept[0.7], conf["ensemble"])
    assert np.array_equal(swept[0.0], conf["maskformer"])  # p_mf^1 * p_clip^0
    assert all(m.sum() == 5 * 12 * 20 for m in swept.values())
    rows = lambda_sweep_rows(swept, ds, np.eye(4))
    assert [r["lambda"] for r in rows] == [0.0, 0.3, 0.7, 1.0]
    assert rows[2]["unseen_miou_d2_legacy"] is not None
    # with the identity similarity each λ's Open mIoU is its mIoU
    assert all(r["open_miou_d2_legacy"] == r["miou_d2_legacy"] and
               r["unseen_open_miou_d2_legacy"] == r["unseen_miou_d2_legacy"] for r in rows)
    csv = lambda_sweep_csv(rows).decode().splitlines()
    assert csv[0].startswith("lambda,miou_d2_legacy,seen_miou_d2_legacy,unseen_miou_d2_legacy")
    assert len(csv) == 5 and csv[3].startswith("0.700000,")


def test_a_sweep_row_leaves_undefined_scores_empty(tmp_path):
    ds = eval_set(tmp_path, np.zeros((4, 4), dtype=np.uint8), seen=(True, True))
    rows = lambda_sweep_rows({0.5: np.array([[16, 0], [0, 0]])}, ds, np.eye(2))
    assert rows[0]["unseen_miou"] is None and rows[0]["miou"] == 1.0
    assert lambda_sweep_csv(rows).decode().splitlines()[1].split(",")[3] == ""


def test_batches_read_ahead_on_a_thread_give_the_same_matrices(tmp_path):
    """evaluate on a GPU decodes the next batches' files on a thread (read_ahead_batches);
    forced on here: the same matrices, sweep and panels, in the same order."""
    labels = np.random.default_rng(1).integers(0, 4, (12, 20))
    ds = eval_set(tmp_path, labels, images=5, seen=(True, True, False, False))
    runs = [confusion_by_variant(RandomSegmenter(4, 0.7), ds, 2, 0, overlays=3,
                                 sweep=(0.0, 0.5), read_ahead_batches=ahead)
            for ahead in (0, 2)]
    (conf, swept, panels), (conf2, swept2, panels2) = runs
    assert all(np.array_equal(conf[v], conf2[v]) for v in conf)
    assert all(np.array_equal(swept[lam], swept2[lam]) for lam in swept)
    assert len(panels) == len(panels2) == 3
    assert all(np.array_equal(a["ensemble"], b["ensemble"]) for a, b in zip(panels, panels2))


def test_the_matrices_equal_each_images_label_maps_counted_on_the_host(tmp_path):
    """The stage counts every label map where it was made (issue 31); the reference here is
    the old way: each image's label maps on the host, counted cell by cell."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, (12, 20))
    labels[rng.random(labels.shape) < 0.1] = 255
    ds = eval_set(tmp_path, labels, images=5, seen=(True, True, False, False))
    sweep = (0.0, 0.4, 1.0)
    conf, swept, panels = confusion_by_variant(RandomSegmenter(4, 0.7), ds, 2, 0, overlays=2,
                                               sweep=sweep)
    reference = RandomSegmenter(4, 0.7)  # the same seeded predictions, batch by batch
    want = {v: np.zeros((4, 4), np.int64) for v in ("maskformer", "clip", "ensemble", *sweep)}
    first = []
    for start in range(0, 5, 2):
        for found in reference.mask_predictions([torch.zeros(3, 12, 20)] * min(2, 5 - start)):
            pred, by_lambda = found.label_maps(0.7, labels.shape, sweep)
            first.append(pred["ensemble"].numpy())
            for key, m in [*pred.items(), *by_lambda.items()]:
                for g, p in zip(labels.ravel(), m.numpy().ravel()):
                    if g != 255:
                        want[key][g, p] += 1
    assert all(np.array_equal(conf[v], want[v]) for v in conf)
    assert all(np.array_equal(swept[lam], want[lam]) for lam in sweep)
    assert [p["ensemble"].tolist() for p in panels] == [m.tolist() for m in first[:2]]


def test_a_label_file_with_a_class_outside_the_list_is_named(tmp_path):
    labels = np.zeros((12, 20), dtype=np.uint8)
    labels[0, 0] = 9
    ds = eval_set(tmp_path, labels, images=3, seen=(True, True, False, False))
    for ahead in (0, 2):  # raised on the reader thread, where the item would have come
        with pytest.raises(ValueError, match=r"0.png: ground-truth labels outside \[0, 4\) "
                                             r"and not the ignore label 255: \[9\]"):
            confusion_by_variant(RandomSegmenter(4, 0.7), ds, 2, 0, overlays=0,
                                 read_ahead_batches=ahead)
