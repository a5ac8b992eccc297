import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.data.layouts import (
    IndexRow,
    LayoutError,
    index_semseg,
    iter_index,
    read_coco_index,
    write_index,
)
from pipeline.data.validate import BadItems, LabelSpec, check_coco


def make_coco(root, n=3):
    (root / "train2017").mkdir(parents=True)
    (root / "stuffthingmaps_detectron2/train2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for i in range(1, n + 1):
        name = f"{i:012d}"
        Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(root / f"train2017/{name}.jpg")
        Image.fromarray(np.full((4, 6), 255, np.uint8)).save(
            root / f"stuffthingmaps_detectron2/train2017/{name}.png")
        images.append({"id": i, "file_name": f"{name}.jpg", "height": 4, "width": 6})
        anns += [{"id": 10 * i + k, "image_id": i, "caption": f"cap {i} {k} "} for k in range(5)]
    (root / "annotations/captions_train2017.json").write_text(
        json.dumps({"images": images, "annotations": anns}))
    return root


ARGS = ("train2017", "annotations/captions_train2017.json", "stuffthingmaps_detectron2/train2017")


def test_valid_coco_tree_indexes(tmp_path):
    rows, _ = read_coco_index(make_coco(tmp_path), *ARGS)
    assert [r.image_id for r in rows] == [1, 2, 3]
    assert rows[0].captions == tuple(f"cap 1 {k}" for k in range(5))
    assert rows[0].label_file == "000000000001.png" and (rows[0].height, rows[0].width) == (4, 6)


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(LayoutError, match="COCO root not found.*nowhere(.|\n)*expected"):
        read_coco_index(tmp_path / "nowhere", *ARGS)


def test_missing_image_and_label_are_named_or_counted(tmp_path):
    root = make_coco(tmp_path)
    (root / "train2017/000000000002.jpg").unlink()
    (root / "stuffthingmaps_detectron2/train2017/000000000003.png").unlink()
    spec = LabelSpec(("L",), 171, 255)
    with pytest.raises(LayoutError, match="000000000002.jpg: image missing"):
        check_coco(root, *ARGS, spec, BadItems("stop"))
    skip = BadItems("skip", root)
    rows, listed = check_coco(root, *ARGS, spec, skip)
    assert [r.image_id for r in rows] == [1] and listed == 3
    assert skip.metrics(listed, len(rows))["files"] == {
        "image_missing": ["train2017/000000000002.jpg"],
        "label_missing": ["stuffthingmaps_detectron2/train2017/000000000003.png"]}


def test_malformed_captions(tmp_path):
    root = make_coco(tmp_path)
    cap = root / "annotations/captions_train2017.json"
    cap.write_text("{not json")
    with pytest.raises(LayoutError, match="not valid JSON"):
        read_coco_index(root, *ARGS)
    cap.write_text(json.dumps({"images": []}))
    with pytest.raises(LayoutError, match="'images' and 'annotations'"):
        read_coco_index(root, *ARGS)
    cap.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    with pytest.raises(LayoutError, match=r"images\[0\] needs"):
        read_coco_index(root, *ARGS)


def test_semseg_layout(tmp_path):
    img_dir = tmp_path / "images/validation"
    lab_dir = tmp_path / "annotations_detectron2/validation"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    for name in ("b", "a"):
        Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(img_dir / f"{name}.jpg")
        Image.fromarray(np.zeros((5, 7), np.uint8)).save(lab_dir / f"{name}.png")
    rows = index_semseg(tmp_path)
    assert [r.file_name for r in rows] == ["a.jpg", "b.jpg"] and rows[0].width == 7
    (lab_dir / "b.png").unlink()
    with pytest.raises(LayoutError, match="label map missing for b.jpg"):
        index_semseg(tmp_path)


def test_index_round_trip_bytes_and_pandas(tmp_path):
    rows = [IndexRow(3, "c.jpg", "c.png", 4, 5, ("x", "y")), IndexRow(1, "a.jpg", "a.png", 6, 7)]
    write_index(tmp_path / "a.parquet", rows)
    write_index(tmp_path / "b.parquet", rows[::-1])
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert list(iter_index(tmp_path / "a.parquet")) == sorted(rows, key=lambda r: r.image_id)
    df = pd.read_parquet(tmp_path / "a.parquet")
    assert df.image_id.tolist() == [1, 3] and list(df.captions[1]) == ["x", "y"]
    assert pq.read_table(tmp_path / "a.parquet").schema.field("height").type == "int32"


def test_duplicate_id_names_both_files_before_the_captions_it_orphans(tmp_path):
    root = make_coco(tmp_path)
    cap = root / "annotations/captions_train2017.json"
    data = json.loads(cap.read_text())
    data["images"][2]["id"] = 2  # image 3's captions now point at no image
    cap.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match="image id 2 is given to 000000000002.jpg and "
                                          "000000000003.jpg"):
        read_coco_index(root, *ARGS)
