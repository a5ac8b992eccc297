"""Open mIoU (pipeline/segment/open_metrics.py), the class-name similarities it weighs by
(pipeline/similarity/) and the confusion report (pipeline/segment/confusions.py)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from pipeline.data.class_lists import builtin_class_list
from pipeline.params.fields import ParamsError
from pipeline.params.file import parse_params
from pipeline.segment.confusions import confusions_csv, top_confusions
from pipeline.segment.metrics import confusion_matrix, segmentation_scores
from pipeline.segment.open_metrics import open_class_iou, open_segmentation_scores
from pipeline.similarity.name_similarity import (
    SimilarityError,
    class_name_similarity,
    read_similarity_csv,
    text_cosine_similarity,
)
from pipeline.similarity.synsets import SYNSET_DIR, shipped_synsets
from pipeline.world.classes import EVAL_VOCABS

BENCHMARKS = ("ade20k_150", "ade20k_847", "pascal_context_59", "pascal_context_459",
              "pascal_voc_20")


def random_confusion(rng, k: int) -> np.ndarray:
    pred = rng.integers(0, k, size=(40, 50))
    gt = np.where(rng.random((40, 50)) < 0.6, pred, rng.integers(0, k, size=(40, 50)))
    gt[rng.random((40, 50)) < 0.05] = 255
    gt[gt == k - 1] = 0  # one class only predicted: it counts 0 in the legacy mean
    return confusion_matrix(pred, gt, k)


def random_similarity(rng, k: int) -> np.ndarray:
    s = rng.random((k, k))
    s = (s + s.T) / 2
    np.fill_diagonal(s, 1.0)
    return s


@pytest.mark.parametrize("seed", range(5))
def test_with_the_identity_similarity_open_miou_is_miou_exactly(seed):
    rng = np.random.default_rng(seed)
    k = 7
    conf, seen = random_confusion(rng, k), rng.random(k) < 0.5
    plain, open_ = segmentation_scores(conf, seen), open_segmentation_scores(conf, np.eye(k),
                                                                             seen)
    for key in ("miou", "miou_d2_legacy", "classes_in_gt"):
        assert open_[key] == plain[key]
        for part in ("seen", "unseen"):
            assert open_[part][key] == plain[part][key]


def test_a_hand_computed_matrix_gives_the_papers_value():
    # 3 classes; rows ground truth, columns prediction.
    conf = np.array([[6, 2, 0],   # building: 6 right, 2 called skyscraper
                     [1, 3, 0],   # skyscraper: 1 called building
                     [0, 4, 4]])  # sky: 4 called skyscraper
    s = np.array([[1.0, 0.5, 0.0],
                  [0.5, 1.0, 0.25],
                  [0.0, 0.25, 1.0]])
    # TP_c = sum_p C[c,p] S[c,p]; FN_c = sum_{p!=c} C[c,p](1-S); FP_c = sum_{g!=c} C[g,c](1-S)
    tp = [6 + 2 * 0.5, 3 + 1 * 0.5, 4 + 4 * 0.25]          # 7, 3.5, 5
    fn = [2 * 0.5, 1 * 0.5, 4 * 0.75]                      # 1, 0.5, 3
    fp = [1 * 0.5, 2 * 0.5 + 4 * 0.75, 0.0]                # 0.5, 4, 0
    want = [t / (t + p + n) for t, p, n in zip(tp, fp, fn)]  # 7/8.5, 3.5/8, 5/8
    iou, got_tp, got_fp, got_fn = open_class_iou(conf, s)
    np.testing.assert_allclose(got_tp, tp)
    np.testing.assert_allclose(got_fp, fp)
    np.testing.assert_allclose(got_fn, fn)
    np.testing.assert_allclose(iou, want)
    assert open_segmentation_scores(conf, s)["miou"] == pytest.approx(np.mean(want))
    # partial credit never creates pixels: TP + FN is each class's pixel count
    np.testing.assert_allclose(got_tp + got_fn, conf.sum(axis=1))
    # and never lowers a class below its plain IoU here (each wrong label is partly right)
    plain = segmentation_scores(conf)["per_class_iou"]
    assert all(o >= p for o, p in zip(iou, plain))


@pytest.mark.parametrize("seed", range(5))
def test_partial_credit_never_lowers_a_class_iou_or_the_mean(seed):
    # TP gains what FN loses and FP only shrinks, so each IoU can only rise
    rng = np.random.default_rng(seed)
    conf, s = random_confusion(rng, 6), random_similarity(rng, 6)
    plain = segmentation_scores(conf)
    iou = open_class_iou(conf, s)[0]
    assert all(o >= (p or 0.0) - 1e-12 for o, p in zip(iou, plain["per_class_iou"]))
    assert open_segmentation_scores(conf, s)["miou_d2_legacy"] >= plain["miou_d2_legacy"]


def test_open_iou_matches_a_pixel_by_pixel_count():
    rng = np.random.default_rng(3)
    k = 5
    pred, gt = rng.integers(0, k, (30, 30)), rng.integers(0, k, (30, 30))
    s = random_similarity(rng, k)
    tp, fp, fn = np.zeros(k), np.zeros(k), np.zeros(k)
    for g, p in zip(gt.ravel(), pred.ravel()):
        w = 1.0 if g == p else s[g, p]
        tp[g] += w
        if g != p:
            fn[g] += 1 - w
            fp[p] += 1 - w
    iou = open_class_iou(confusion_matrix(pred, gt, k), s)[0]
    np.testing.assert_allclose(iou, tp / (tp + fp + fn))


def test_a_similarity_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="similarity matrix is"):
        open_class_iou(np.zeros((3, 3), dtype=np.int64), np.eye(4))


# --- the synset files -------------------------------------------------------------------

@pytest.mark.parametrize("dataset", BENCHMARKS)
def test_the_synset_files_cover_every_class_of_the_benchmarks(dataset, wordnet):
    names = builtin_class_list(dataset).names
    shipped = shipped_synsets(dataset)
    missing = [n for n in names if not shipped.get(n)]
    assert not missing, f"{dataset}: classes without a synset in {SYNSET_DIR}/: {missing}"
    for name in names:
        assert wordnet.synset(shipped[name]).pos() == "n", name


def test_the_world_synset_file_covers_both_world_sets(wordnet):
    for vocab in EVAL_VOCABS:
        shipped = shipped_synsets(vocab.name)
        assert all(shipped.get(n) for n in vocab.names), vocab.name


@pytest.mark.parametrize("name, synset", [
    ("plant", "plant.n.02"),                   # flora, not a factory
    ("screen door, screen", "screen_door.n.01"),
    ("pool table, billiard table, snooker table", "pool_table.n.01"),
    ("earth, ground", "land.n.04"),           # the ground, not the planet
])
def test_ade_names_whose_first_sense_is_wrong_are_set_by_hand(name, synset):
    assert shipped_synsets("ade20k_150")[name] == synset


def test_building_and_skyscraper_are_closer_than_building_and_sky(tmp_path):
    names = ["building", "skyscraper", "sky"]
    s, info = class_name_similarity("wordnet_path", names, "ade20k_150", None, tmp_path)
    assert s[0, 1] > s[0, 2] and s[0, 1] == s[1, 0]
    assert info["automatic_synsets"] == 0 and info["without_synset"] == []
    assert len(list(tmp_path.glob("*.npy"))) == 1  # cached
    again, _ = class_name_similarity("wordnet_path", names, "ade20k_150", None, tmp_path)
    np.testing.assert_array_equal(again, s)


def test_path_similarity_equals_nltks(wordnet, tmp_path):
    from pipeline.similarity.wordnet_similarity import path_similarity_matrix

    synsets = list(shipped_synsets("ade20k_150").values())[::4] + [None]
    m = path_similarity_matrix(wordnet, synsets)
    for i, a in enumerate(synsets[:-1]):
        for j, b in enumerate(synsets[:-1]):
            want = wordnet.synset(a).path_similarity(wordnet.synset(b))
            assert m[i, j] == pytest.approx(want, abs=1e-12), (a, b)
    assert m[-1, -1] == 1.0 and not m[-1, :-1].any()


def test_text_cosine_similarity_is_clipped_symmetric_and_one_on_the_diagonal():
    f = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    s = text_cosine_similarity(f)
    np.testing.assert_allclose(s, [[1, 0.6, 0], [0.6, 1, 0], [0, 0, 1]], atol=1e-12)


# --- a user's own matrix -----------------------------------------------------------------

def write(tmp_path, text: str):
    path = tmp_path / "sim.csv"
    path.write_text(text)
    return path


def test_a_users_csv_is_read_with_or_without_a_header(tmp_path):
    names = ["road, route", "sky"]
    m = read_similarity_csv(write(tmp_path, "1,0.25\n0.25,1\n"), names)
    np.testing.assert_array_equal(m, [[1, 0.25], [0.25, 1]])
    with_header = write(tmp_path, '"road, route",sky\n1,0.25\n0.25,1\n')
    np.testing.assert_array_equal(read_similarity_csv(with_header, names), m)
    s, info = class_name_similarity(str(with_header), names, "mine", None, tmp_path)
    np.testing.assert_array_equal(s, m)
    assert info == {"similarity": str(with_header)}


@pytest.mark.parametrize("text, match", [
    ("1,0\n0,1\n0,0\n", r"3 rows of \[2\] values, expected 3 x 3"),
    ("1,0,0\n0,1\n0,0,1\n", r"rows of \[2, 3\] values"),
    ("1,0,0\n0,1,1.5\n0,0,1\n", r"row 2, column 3 is 1.5, outside \[0, 1\]"),
    ("1,0,0\n0,1,-0.1\n0,0,1\n", r"outside \[0, 1\]"),
    ("1,0,0\n0,1,x\n0,0,1\n", "not a number"),
    ("a,b,d\n1,0,0\n0,1,0\n0,0,1\n", "header row names"),
])
def test_a_bad_users_csv_gives_an_error_naming_the_file_and_the_fault(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(SimilarityError, match=match) as e:
        read_similarity_csv(path, ["a", "b", "c"])
    assert str(path) in str(e.value)


def test_a_missing_csv_is_named(tmp_path):
    with pytest.raises(SimilarityError, match="no such similarity file"):
        class_name_similarity(str(tmp_path / "nope.csv"), ["a"], "mine", None, tmp_path)


def test_params_name_a_bad_similarity_and_take_one_per_dataset():
    with pytest.raises(ParamsError, match="eval.open_similarity.*wordnet_path.*'cosine'"):
        parse_params({"eval": {"open_similarity": "cosine"}})
    p = parse_params({"eval": {"per_dataset": {"ade20k_150": {
        "open_similarity": "ade.csv"}}}}).eval
    assert p.open_similarity_for("ade20k_150") == "ade.csv"
    assert p.open_similarity_for("pascal_voc_20") == "wordnet_path"


# --- the confusion report -----------------------------------------------------------------

def test_top_confusions_orders_pairs_by_pixels_and_gives_their_shares():
    conf = np.array([[5, 3, 1],
                     [3, 9, 0],
                     [0, 4, 2]])
    s = np.array([[1, .5, .1], [.5, 1, .2], [.1, .2, 1]])
    rows = top_confusions(conf, s, ["building", "skyscraper", "road, route"], 3)
    assert [(r["ground_truth"], r["predicted"], r["pixels"]) for r in rows] == [
        ("road, route", "skyscraper", 4), ("building", "skyscraper", 3),
        ("skyscraper", "building", 3)]  # ties in class order
    assert rows[0]["share_of_errors"] == pytest.approx(4 / 11)
    assert rows[0]["share_of_class"] == pytest.approx(4 / 6)
    assert rows[1]["similarity"] == 0.5
    back = list(csv.DictReader(io.StringIO(confusions_csv(rows).decode())))
    assert back[0]["ground_truth"] == "road, route" and back[0]["pixels"] == "4"
    assert [int(r["rank"]) for r in back] == [1, 2, 3]


def test_a_perfect_prediction_has_no_confusions():
    assert top_confusions(np.diag([3, 4]), np.eye(2), ["a", "b"], 5) == []


def test_shipped_synset_files_are_valid_json_with_a_gloss_for_each_entry():
    from importlib import resources

    folder = resources.files("pipeline.similarity") / SYNSET_DIR
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))
    assert set(files) >= {f"{d}.json" for d in BENCHMARKS} | {"world.json"}
    for name in files:
        doc = json.loads((folder / name).read_text("utf-8"))
        for c in doc["classes"]:
            assert c["by"] in ("first sense", "first physical sense", "head noun", "hand",
                               "none"), (name, c)
