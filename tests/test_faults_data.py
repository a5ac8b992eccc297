"""Bad data (issue 12, item 4): on a COCO-layout tree with one bad item among good ones,
prepare_data either stops with a message naming the item and the fix and replaces no
output (data.bad_items: stop), or leaves the item out of the index and counts it in the
check metrics (skip). The evaluation sets get the same per-image checks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline.data.eval_datasets import EVAL_LAYOUTS, index_eval_dataset
from pipeline.data.layouts import LayoutError
from pipeline.data.validate import BadItems
from pipeline.prepare import data_sources as prepare
from stages import prepare_data
from tests.conftest import REPO

W, H = 64, 48  # fixture image size (width, height)
IMAGES, LABELS = "train2017", "stuffthingmaps_detectron2/train2017"
CAPTIONS = "annotations/captions_train2017.json"


def name(i: int) -> str:
    return f"{i:012d}"


def make_coco(root, n=4):
    """n good 64x48 JPEGs with L-mode label maps (classes 0..170, 255 = ignore), 5 captions
    each."""
    for d in (IMAGES, LABELS, "annotations"):
        (root / d).mkdir(parents=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), np.uint8)).save(
            root / IMAGES / f"{name(i)}.jpg")
        labels = np.full((H, W), 255, np.uint8)
        labels[:, : W // 2] = 170  # the largest COCO-Stuff class index
        label_png(root, i, labels)
        images.append({"id": i, "file_name": f"{name(i)}.jpg", "height": H, "width": W})
        anns += [{"id": 10 * i + k, "image_id": i, "caption": f"a photo {i} {k}"}
                 for k in range(5)]
    write_captions(root, {"images": images, "annotations": anns})
    return root


def label_png(root, i, array, mode=None):
    Image.fromarray(array, mode).save(root / LABELS / f"{name(i)}.png")


def read_captions(root) -> dict:
    return json.loads((root / CAPTIONS).read_text())


def write_captions(root, data):
    (root / CAPTIONS).write_text(json.dumps(data))


def edit_captions(root, edit):
    data = read_captions(root)
    edit(data)
    write_captions(root, data)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def big_image(root, width, height):
    """Image 2 replaced by a larger one, listing and label map agreeing with it."""
    Image.new("RGB", (width, height), (1, 2, 3)).save(root / IMAGES / f"{name(2)}.jpg")
    label_png(root, 2, np.zeros((height, width), np.uint8))
    edit_captions(root, lambda d: d["images"][1].update(width=width, height=height))


def same_id(data):
    """Image 3 listed under image 2's id (its captions follow it)."""
    data["images"][2]["id"] = 2
    for a in data["annotations"]:
        a["image_id"] = 2 if a["image_id"] == 3 else a["image_id"]


IMG2, LAB2 = f"{IMAGES}/{name(2)}.jpg", f"{LABELS}/{name(2)}.png"
# case: (break the tree (root, monkeypatch), reason, what the message and metrics name,
#        image ids left in the index)
CASES = {
    "truncated_jpeg": (lambda r, m: truncate(r / IMG2), "image_corrupt", IMG2, [1, 3, 4]),
    "zero_byte_jpeg": (lambda r, m: (r / IMG2).write_bytes(b""), "image_empty", IMG2,
                       [1, 3, 4]),
    "not_an_image": (lambda r, m: (r / IMG2).write_text("<html>not found</html>\n"),
                     "image_not_an_image", IMG2, [1, 3, 4]),
    # PIL raises above 2x MAX_IMAGE_PIXELS and only warns above 1x: both are bombs.
    "decompression_bomb": (lambda r, m: (big_image(r, 300, 200),
                                         m.setattr(Image, "MAX_IMAGE_PIXELS", 10000)),
                           "image_too_large", IMG2, [1, 3, 4]),
    "bomb_warning_band": (lambda r, m: (big_image(r, 150, 100),
                                        m.setattr(Image, "MAX_IMAGE_PIXELS", 10000)),
                          "image_too_large", IMG2, [1, 3, 4]),
    "truncated_label": (lambda r, m: truncate(r / LAB2), "label_corrupt", LAB2, [1, 3, 4]),
    "label_wrong_size": (lambda r, m: label_png(r, 2, np.zeros((24, 32), np.uint8)),
                         "label_size", LAB2, [1, 3, 4]),
    "label_wrong_mode": (lambda r, m: label_png(r, 2, np.zeros((H, W, 3), np.uint8)),
                         "label_mode", LAB2, [1, 3, 4]),
    "label_value_above_classes": (lambda r, m: label_png(r, 2, np.full((H, W), 171, np.uint8)),
                                  "label_values", LAB2, [1, 3, 4]),
    "json_size_disagrees": (lambda r, m: edit_captions(
        r, lambda d: d["images"][1].update(width=60)), "listed_size", IMG2, [1, 3, 4]),
    "duplicate_image_id": (lambda r, m: edit_captions(r, same_id), "duplicate_id",
                           f"{IMAGES}/{name(3)}.jpg", [1, 4]),
    "empty_caption": (lambda r, m: edit_captions(
        r, lambda d: d["annotations"][6].update(caption="  ")), "empty_caption",
        f"{CAPTIONS}: annotations[6]", [1, 2, 3, 4]),
    "annotation_of_unknown_image": (lambda r, m: edit_captions(
        r, lambda d: d["annotations"].append({"id": 99, "image_id": 99, "caption": "x"})),
        "unknown_image", f"{CAPTIONS}: annotations[20]", [1, 2, 3, 4]),
    "image_without_caption": (lambda r, m: edit_captions(
        r, lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != 2])),
        "no_caption", IMG2, [1, 3, 4]),
}


def params_file(path, root, bad_items, workers=1, **data):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update({"source": "coco", "bad_items": bad_items, "workers": workers, **data})
    raw["data"]["coco"]["root"] = str(root)
    path.write_text(yaml.safe_dump(raw))
    return path


def run_stage(tmp_path, root, bad_items, workers=1):
    """prepare_data on `root` with outputs under tmp_path/out, a prior index in place."""
    out = tmp_path / "out"
    (out / "data/index").mkdir(parents=True, exist_ok=True)
    (out / "data/index/prior.txt").write_text("the previous index")
    prepare_data.main([
        "--params", str(params_file(tmp_path / "params.yaml", root, bad_items, workers)),
        "--world", str(out / "data/world"), "--index", str(out / "data/index"),
        "--samples", str(out / "metrics/world_samples.png"),
        "--check-metrics", str(out / "metrics/data_check.json")])
    return out


def indexed(out) -> dict[int, list[str]]:
    table = pq.read_table(out / "data/index/train.parquet").to_pydict()
    return dict(zip(table["image_id"], table["captions"]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_item_stops_with_its_name_or_is_skipped_and_counted(tmp_path, monkeypatch, case):
    break_tree, reason, named, kept = CASES[case]
    root = make_coco(tmp_path / "coco")
    break_tree(root, monkeypatch)

    with pytest.raises(SystemExit) as stop:
        run_stage(tmp_path, root, "stop")
    message = str(stop.value.code)
    assert named.split("/")[-1] in message  # the full path, or a name in the JSON
    assert "fix:" in message and "data.bad_items: skip" in message
    out = tmp_path / "out"  # nothing replaced or created
    assert sorted(p.name for p in (out / "data").iterdir()) == ["index"]
    assert [p.name for p in (out / "data/index").iterdir()] == ["prior.txt"]
    assert not [f for f in out.rglob("*") if f.is_file() and f.name != "prior.txt"]

    out = run_stage(tmp_path, root, "skip")
    rows = indexed(out)
    assert sorted(rows) == kept
    assert all(c.strip() for caps in rows.values() for c in caps)
    check = json.loads((out / "metrics/data_check.json").read_text())
    assert check["checked"] == 4 and check["indexed"] == len(kept)
    assert check["skipped"][reason] >= 1 and named in check["files"][reason]
    assert not (out / "data/index/prior.txt").exists()


def test_skips_are_the_same_on_a_pool_of_workers(tmp_path):
    root = make_coco(tmp_path / "coco", n=6)
    truncate(root / IMG2)
    label_png(root, 5, np.full((H, W), 200, np.uint8))
    with pytest.raises(SystemExit, match=f"{name(2)}.jpg: does not decode"):  # first in order
        run_stage(tmp_path, root, "stop", workers=2)
    checks = []
    for workers in (1, 2):
        out = run_stage(tmp_path, root, "skip", workers)
        assert sorted(indexed(out)) == [1, 3, 4, 6]
        checks.append((out / "metrics/data_check.json").read_bytes())
    assert checks[0] == checks[1]
    assert json.loads(checks[0])["skipped"] == {"image_corrupt": 1, "label_values": 1}


def test_clean_coco_tree_passes_and_counts_nothing(tmp_path):
    out = run_stage(tmp_path, make_coco(tmp_path / "coco"), "stop")
    assert sorted(indexed(out)) == [1, 2, 3, 4]
    check = json.loads((out / "metrics/data_check.json").read_text())
    assert check == {"checked": 4, "files": {}, "indexed": 4, "policy": "stop", "skipped": {}}
    assert (out / "metrics/world_samples.png").is_file()


def test_synthetic_world_writes_the_check_metrics(tmp_path):
    small = {"source": "synthetic", "train_images": 8, "eval_images": 4, "probe_images": 4}
    out = tmp_path / "out"
    prepare_data.main([
        "--params", str(params_file(tmp_path / "params.yaml", "unused", "stop", **small)),
        "--world", str(out / "data/world"), "--index", str(out / "data/index"),
        "--samples", str(out / "metrics/world_samples.png"),
        "--check-metrics", str(out / "metrics/data_check.json")])
    check = json.loads((out / "metrics/data_check.json").read_text())
    assert check["checked"] == check["indexed"] == 8 and check["skipped"] == {}
    splits = json.loads((out / "data/index/splits.json").read_text())
    assert "bad_items" not in splits["params"]  # a clean tree: same index under either


def test_a_failure_late_in_prepare_data_leaves_every_old_output(tmp_path, monkeypatch):
    """The world, the index pointing into it, the samples picture and the check metrics
    are replaced together or not at all (issue 12: a failed run used to leave a new world
    under the old index)."""
    small = {"source": "synthetic", "train_images": 8, "eval_images": 4, "probe_images": 4}
    out = tmp_path / "out"
    argv = ["--params", str(params_file(tmp_path / "params.yaml", "unused", "stop", **small)),
            "--world", str(out / "data/world"), "--index", str(out / "data/index"),
            "--samples", str(out / "metrics/world_samples.png"),
            "--check-metrics", str(out / "metrics/data_check.json")]
    prepare_data.main(argv)
    before = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    (tmp_path / "params.yaml").write_text((tmp_path / "params.yaml").read_text()
                                          .replace("seed: 0", "seed: 7", 1))

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(prepare, "sample_grid_png", fail)  # after the world is written
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_data.main(argv)
    after = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    assert after == before  # nothing replaced, no temporary left


def eval_tree(root, name, values):
    """An evaluation set of three 8x6 images; label map b holds `values`."""
    lay = EVAL_LAYOUTS[name]
    (root / lay.image_dir).mkdir(parents=True)
    (root / lay.label_dir).mkdir(parents=True)
    dtype = np.uint16 if lay.label_ext == ".tif" else np.uint8
    for stem in "abc":
        Image.new("RGB", (8, 6), (10, 20, 30)).save(root / lay.image_dir / f"{stem}.jpg")
        labels = np.array(values if stem == "b" else [[1, lay.ignore_label]], dtype)
        Image.fromarray(np.resize(labels, (6, 8))).save(
            root / lay.label_dir / f"{stem}{lay.label_ext}")
    return lay


@pytest.mark.parametrize("name, values", [("ade20k_847", [[846, 65535, 900]]),
                                          ("ade20k_150", [[149, 255, 150]])])
def test_eval_label_values_are_checked_against_the_class_count(tmp_path, name, values):
    lay = eval_tree(tmp_path, name, values)
    with pytest.raises(LayoutError, match=f"b{lay.label_ext}: holds value {values[0][2]}"):
        index_eval_dataset(tmp_path, name)
    skip = BadItems("skip", tmp_path)
    _, rows = index_eval_dataset(tmp_path, name, on_bad=skip)
    assert [(r.image_id, r.file_name) for r in rows] == [(0, "a.jpg"), (2, "c.jpg")]
    assert skip.metrics(3, len(rows))["files"] == {"label_values": [f"{lay.label_dir}/b"
                                                                    f"{lay.label_ext}"]}


def test_eval_broken_image_is_named(tmp_path):
    lay = eval_tree(tmp_path, "pascal_voc_20", [[1]])
    truncate(tmp_path / lay.image_dir / "c.jpg")
    with pytest.raises(LayoutError, match="c.jpg: does not decode to the end"):
        index_eval_dataset(tmp_path, "pascal_voc_20")


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_evaluate_stops_on_or_counts_a_bad_item_of_a_real_set(tmp_path, policy):
    """The evaluate stage's view of a real set: under skip the bad label map is left out
    and counted in the report's data_check; under stop it is named."""
    from pipeline.data.class_lists import builtin_class_list
    from pipeline.data.layouts import Split
    from pipeline.segment.evaluation import resolve_dataset

    eval_tree(tmp_path / "datasets", "ade20k_150", [[151, 1]])  # 151: above the class count
    classes = tmp_path / "train.json"
    classes.write_text(json.dumps(builtin_class_list("coco_stuff_171").to_json()))
    splits = {"train": Split("train", "train", "x", "x", "x.parquet", str(classes))}
    if policy == "stop":
        with pytest.raises(ValueError, match="b.png"):
            resolve_dataset("ade20k_150", str(tmp_path / "datasets"), splits, policy)
        return
    ds = resolve_dataset("ade20k_150", str(tmp_path / "datasets"), splits, policy)
    assert [r.file_name for r in ds.rows] == ["a.jpg", "c.jpg"]
    assert ds.data_check["skipped"] == {"label_values": 1} and ds.data_check["checked"] == 3
