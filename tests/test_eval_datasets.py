import numpy as np
import pytest
from PIL import Image

from pipeline.data.class_lists import builtin_class_list
from pipeline.data.eval_datasets import EVAL_LAYOUTS, index_eval_dataset
from pipeline.data.image_io import read_labels
from pipeline.data.layouts import LayoutError


def make_tree(root, name, stems=("a", "b"), extra_images=("unlabelled",)):
    """A tiny detectron2-prepared tree: 6x8 images, label maps holding class 1, the
    largest class index and the ignore value."""
    lay = EVAL_LAYOUTS[name]
    (root / lay.image_dir).mkdir(parents=True, exist_ok=True)
    (root / lay.label_dir).mkdir(parents=True, exist_ok=True)
    top = builtin_class_list(lay.classes)
    for stem in (*stems, *extra_images):
        Image.new("RGB", (8, 6), (10, 20, 30)).save(root / lay.image_dir / f"{stem}.jpg")
    for stem in stems:
        labels = np.full((6, 8), 1, dtype=np.uint16 if lay.label_ext == ".tif" else np.uint8)
        labels[0, 0] = len(top) - 1
        labels[5, 7] = lay.ignore_label
        Image.fromarray(labels).save(root / lay.label_dir / f"{stem}{lay.label_ext}")
    return lay


@pytest.mark.parametrize("name", sorted(EVAL_LAYOUTS))
def test_each_real_eval_layout_indexes_and_reads(tmp_path, name):
    lay = make_tree(tmp_path, name)
    got, rows = index_eval_dataset(tmp_path, name)
    assert got == lay and [r.file_name for r in rows] == ["a.jpg", "b.jpg"]
    assert (rows[0].height, rows[0].width) == (6, 8)
    labels = read_labels(tmp_path / lay.label_dir / rows[0].label_file)
    n = len(builtin_class_list(lay.classes))
    assert n == {"ade20k_150": 150, "ade20k_847": 847, "pascal_context_59": 59,
                 "pascal_context_459": 459, "pascal_voc_20": 20}[name]
    assert labels[0, 0] == n - 1 and labels[5, 7] == lay.ignore_label and labels[1, 1] == 1


def test_missing_parts_are_named_with_the_expected_layout(tmp_path):
    with pytest.raises(LayoutError, match="folder not found.*ADEChallengeData2016"):
        index_eval_dataset(tmp_path, "ade20k_150")
    lay = make_tree(tmp_path, "pascal_voc_20")
    (tmp_path / lay.image_dir / "b.jpg").unlink()
    with pytest.raises(LayoutError, match="image missing for label map b.png"):
        index_eval_dataset(tmp_path, "pascal_voc_20")
    with pytest.raises(ValueError, match="unknown evaluation set"):
        index_eval_dataset(tmp_path, "cityscapes")


def test_a_real_set_indexes_under_its_ov_seg_and_san_names(tmp_path):
    lay = make_tree(tmp_path, "pascal_context_59")
    for alias in ("pascal_context_59_sem_seg_val", "pcontext_sem_seg_val"):
        got, rows = index_eval_dataset(tmp_path, alias)
        assert got == lay and len(rows) == 2
