"""The real-shape fixture trees (tests/real_fixtures.py) are what the real-data path reads:
the COCO tree passes prepare_data's checks, the evaluation trees index with every labelled
image and only those, label values stay in range, captions name classes in the image, and
the same seed writes the same bytes."""

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.data.class_lists import builtin_class_list
from pipeline.data.eval_datasets import EVAL_LAYOUTS, index_eval_dataset
from pipeline.data.image_io import read_labels
from pipeline.data.layouts import iter_index
from pipeline.data.validate import BadItems
from pipeline.mining.nltk_setup import wordnet_reader
from pipeline.mining.nouns import NounExtractor
from pipeline.params import CocoPaths, DataParams
from pipeline.prepare.data_sources import FinalPaths, prepare_coco
from tests.real_fixtures import (
    ADE_SIZES,
    COCO_SIZES,
    PASCAL_SIZES,
    caption_word,
    make_ade20k_150,
    make_all,
    make_coco_stuff,
)

EVAL_SETS = ("ade20k_150", "pascal_context_459", "pascal_context_59")
# Thing names the WordNet-lexicon noun finder misses (no tagger here): WordNet has no
# "stop_sign", and "stop" and "sign" read as verbs. Real COCO captions say "stop sign" too.
MINER_MISSES = {"stop sign"}


def test_coco_tree_passes_prepare_data(real_trees, tmp_path):
    coco = real_trees["coco_stuff_171"]
    skip = BadItems("skip", coco.root)
    p = DataParams(source="coco", coco=CocoPaths(root=str(coco.root)))
    (tmp_path / "world").mkdir()
    (tmp_path / "index/classes").mkdir(parents=True)
    splits, checks, samples_png = prepare_coco(
        p, tmp_path / "world", tmp_path / "index", FinalPaths(tmp_path / "w", tmp_path / "i"),
        lambda root: skip)
    assert checks["skipped"] == {} and checks["checked"] == checks["indexed"] == 6
    rows = list(iter_index(tmp_path / "index/train.parquet"))
    assert [r.file_name for r in rows] == [im.image.name for im in coco.images]
    for row, im in zip(rows, coco.images):
        assert len(row.captions) == 5 and sorted(row.captions) == sorted(im.captions)
        assert (row.width, row.height) in COCO_SIZES
        with Image.open(coco.root / "stuffthingmaps_detectron2/train2017" / row.label_file) as lab:
            assert lab.mode == "L" and lab.size == (row.width, row.height)
        assert len(row.file_name) == len("000000000009.jpg")
    assert samples_png.startswith(b"\x89PNG")


def test_coco_labels_and_captions_json(real_trees):
    coco = real_trees["coco_stuff_171"]
    doc = json.loads((coco.root / "annotations/captions_train2017.json").read_text())
    assert {"id", "file_name", "height", "width"} <= set(doc["images"][0])
    assert len(doc["annotations"]) == 5 * len(doc["images"])
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    for im in coco.images:
        labels = read_labels(im.label)
        values = set(np.unique(labels).tolist())
        assert labels.dtype == np.uint8 and values <= set(range(171)) | {255}
        assert set(im.classes) == values - {255} and set(im.named) <= set(im.classes)
        assert sum(c < 80 for c in im.classes) >= 2  # things, as well as stuff


@pytest.mark.parametrize("name", EVAL_SETS)
def test_eval_trees_index_every_labelled_image(real_trees, name):
    tree = real_trees[name]
    lay = EVAL_LAYOUTS[name]
    on_bad = BadItems("skip", tree.root)
    got, rows = index_eval_dataset(tree.root, name, on_bad)
    assert on_bad.skipped == {} and got == lay
    assert [r.file_name for r in rows] == [im.image.name for im in tree.images]
    assert [r.label_file for r in rows] == [im.label.name for im in tree.images]
    jpegs = sorted(p.name for p in (tree.root / lay.image_dir).glob("*.jpg"))
    listed = {r.file_name for r in rows}
    # Pascal's JPEGImages holds images with no label map; those are not listed
    assert sorted(listed | {p.name for p in tree.unlabelled}) == jpegs
    assert bool(tree.unlabelled) == name.startswith("pascal") and not listed & {
        p.name for p in tree.unlabelled}
    sizes = ADE_SIZES if name.startswith("ade") else PASCAL_SIZES
    k = len(builtin_class_list(lay.classes))
    for row, im in zip(rows, tree.images):
        assert (row.width, row.height) in sizes
        labels = read_labels(im.label)
        assert labels.shape == (row.height, row.width)
        assert labels.dtype == (np.uint16 if lay.label_ext == ".tif" else np.uint8)
        values = set(np.unique(labels).tolist())
        assert values <= set(range(k)) | {lay.ignore_label}
        assert len(values - {lay.ignore_label}) >= 3  # bands and things
    if name == "pascal_context_459":
        with Image.open(tree.images[0].label) as lab:
            assert lab.mode == "I;16"
        assert tree.images[0].stem[:5] == "2008_" and len(tree.images[0].stem) == 11


def test_pc59_maps_are_pc459_maps_with_other_classes_ignored(real_trees):
    names459 = builtin_class_list("pascal_context_459").names
    names59 = builtin_class_list("pascal_context_59").names
    for im459, im59 in zip(real_trees["pascal_context_459"].images,
                           real_trees["pascal_context_59"].images):
        a, b = read_labels(im459.label).astype(np.int64), read_labels(im59.label)
        assert im459.image == im59.image
        for v in np.unique(a):
            want = names59.index(names459[v]) if v < 459 and names459[v] in names59 else 255
            assert set(np.unique(b[a == v]).tolist()) == {want}


def test_captions_name_classes_in_the_image(real_trees):
    coco = real_trees["coco_stuff_171"]
    names = builtin_class_list("coco_stuff_171").names
    wordnet = wordnet_reader()
    extractor = NounExtractor(wordnet) if wordnet is not None else None
    for im in coco.images:
        things = [c for c in im.named if c < 80]
        assert things and set(im.named) <= set(im.classes)
        text = " ".join(im.captions).lower()
        for c in im.named:
            assert caption_word(names[c]) in text
        if extractor is None:  # no WordNet here: the string match above is the check
            continue
        nouns = {lemma for cap in im.captions for _, lemma in extractor.extract(cap)}
        for c in things:  # a thing's name, or its head noun ("cell phone" -> "phone")
            word = caption_word(names[c])
            if word in MINER_MISSES:
                continue
            heads = {wordnet.morphy(w.replace(" ", "_"), "n") or w
                     for w in (word, word.split()[-1])}
            assert {h.replace("_", " ") for h in heads} & nouns, (word, nouns)


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_prefix_stable(tmp_path):
    a = make_all(tmp_path / "a", coco=2, ade=2, pascal=2, seed=3)
    make_all(tmp_path / "b", coco=2, ade=2, pascal=2, seed=3)
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    c = make_all(tmp_path / "c", coco=2, ade=2, pascal=2, seed=4)
    assert c["ade20k_150"].images[0].image.read_bytes() != a["ade20k_150"].images[0].image \
        .read_bytes()
    # the first images of a larger tree are those of a smaller one
    more = make_ade20k_150(tmp_path / "d", 3, seed=3)
    assert [im.image.read_bytes() for im in more.images[:2]] == \
        [im.image.read_bytes() for im in a["ade20k_150"].images]


def test_seconds_per_image(tmp_path):
    for name, tree in make_all(tmp_path, coco=8, ade=4, pascal=4).items():
        print(f"{name}: {tree.seconds / len(tree.images):.4f} s per labelled image")
    tree = make_coco_stuff(tmp_path / "again", 8)  # textures cached: generation alone
    print(f"coco_stuff_171 (warm): {tree.seconds / 8:.4f} s per image")


def test_evaluate_resolves_the_real_sets(real_trees, tmp_path):
    """What evaluate reads: eval.root = the trees' root, each set found by its name."""
    from pipeline.data.layouts import Split
    from pipeline.segment.evaluation import resolve_dataset

    classes = tmp_path / "train.json"
    classes.write_text(json.dumps(builtin_class_list("coco_stuff_171").to_json()))
    splits = {"train": Split("train", "train", "", "", "", str(classes))}
    for name in EVAL_SETS:
        tree = real_trees[name]
        ds = resolve_dataset(name, str(tree.root), splits)
        assert [r.file_name for r in ds.rows] == [im.image.name for im in tree.images]
        assert len(ds.classes) == len(builtin_class_list(name)) and any(ds.seen)
