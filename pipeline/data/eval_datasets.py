"""The real evaluation sets in their detectron2-prepared layouts (OVSeg's prepare scripts):
where the images and label maps are under a datasets root, which class list they use
(`pipeline/classnames/`), and their ignore value.

    ADE20K-150   ADEChallengeData2016/{images,annotations_detectron2}/validation   PNG, 255
    ADE20K-847   ADE20K_2021_17_01/{images,annotations}_detectron2/validation      TIFF u16, 65535
    PC-59        VOCdevkit/VOC2010/JPEGImages + annotations_detectron2/pc59_val    PNG, 255
    PC-459       VOCdevkit/VOC2010/JPEGImages + annotations_detectron2/pc459_val   TIFF u16, 65535
    VOC-20       VOCdevkit/VOC2012/JPEGImages + annotations_detectron2/val         PNG, 255

Each set also answers to the names other code bases register it under (`EVAL_ALIASES`:
ov-seg's, SAN's, CAT-Seg's); the files are still looked for in the layout above.

The label maps list the evaluation images (Pascal's JPEGImages holds every image of the
year, not only the validation ones); each needs its image. Every image and label map is
checked as the training data is (pipeline/data/validate.py): a bad one stops with a
message naming it, or is left out and counted when the caller passes a skipping BadItems.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.data.class_lists import builtin_class_list
from pipeline.data.layouts import IndexRow, LayoutError
from pipeline.data.validate import BadItems, Item, LabelSpec, check_items


@dataclass(frozen=True)
class EvalLayout:
    classes: str  # built-in class list (pipeline/classnames/<classes>.json)
    image_dir: str  # relative to the datasets root
    label_dir: str
    label_ext: str  # ".png" (uint8) or ".tif" (uint16)
    ignore_label: int
    image_ext: str = ".jpg"


EVAL_LAYOUTS = {
    "ade20k_150": EvalLayout("ade20k_150", "ADEChallengeData2016/images/validation",
                             "ADEChallengeData2016/annotations_detectron2/validation",
                             ".png", 255),
    "ade20k_847": EvalLayout("ade20k_847", "ADE20K_2021_17_01/images_detectron2/validation",
                             "ADE20K_2021_17_01/annotations_detectron2/validation",
                             ".tif", 65535),
    "pascal_context_59": EvalLayout("pascal_context_59", "VOCdevkit/VOC2010/JPEGImages",
                                    "VOCdevkit/VOC2010/annotations_detectron2/pc59_val",
                                    ".png", 255),
    "pascal_context_459": EvalLayout("pascal_context_459", "VOCdevkit/VOC2010/JPEGImages",
                                     "VOCdevkit/VOC2010/annotations_detectron2/pc459_val",
                                     ".tif", 65535),
    "pascal_voc_20": EvalLayout("pascal_voc_20", "VOCdevkit/VOC2012/JPEGImages",
                                "VOCdevkit/VOC2012/annotations_detectron2/val", ".png", 255),
}
# Names of the same sets in other code bases' dataset registries -> the name above.
EVAL_ALIASES = {
    # ov-seg (open_vocab_seg/data/datasets/register_*.py; ADE-150 is detectron2's built-in)
    "ade20k_sem_seg_val": "ade20k_150",
    "ade20k_full_sem_seg_val": "ade20k_847",
    "pascal_context_59_sem_seg_val": "pascal_context_59",
    "pascal_context_459_sem_seg_val": "pascal_context_459",
    "pascalvoc20_sem_seg_val": "pascal_voc_20",
    # SAN (san/data/datasets/register_{pcontext,voc}.py; ADE names as ov-seg's)
    "pcontext_sem_seg_val": "pascal_context_59",
    "pcontext_full_sem_seg_val": "pascal_context_459",
    "voc_sem_seg_val": "pascal_voc_20",
    # CAT-Seg's evaluation scripts
    "ade20k_150_test_sem_seg": "ade20k_150",
    "ade20k_full_sem_seg_freq_val_all": "ade20k_847",
    "context_59_test_sem_seg": "pascal_context_59",
    "context_459_test_sem_seg": "pascal_context_459",
    "voc_2012_test_sem_seg": "pascal_voc_20",
}
# PIL modes whose pixels read_labels returns as class indices: uint8 PNG, uint16 TIFF.
LABEL_MODES = {".png": ("L", "P"), ".tif": ("I;16", "I;16L", "I;16B")}


def canonical_eval_name(name: str) -> str:
    """The name in EVAL_LAYOUTS of a real set named by one of its aliases; any other name
    as it is."""
    return EVAL_ALIASES.get(name, name)


def layout_help(name: str) -> str:
    lay = EVAL_LAYOUTS[name]
    return (f"expected the detectron2-prepared {name} layout under the datasets root:\n"
            f"  {lay.image_dir}/<name>{lay.image_ext}\n"
            f"  {lay.label_dir}/<name>{lay.label_ext}   (ignore = {lay.ignore_label})")


def index_eval_dataset(root: str | Path, name: str, on_bad=None,
                       workers: int = 1) -> tuple[EvalLayout, list[IndexRow]]:
    """Validate one evaluation set under `root` and list its images, one row per good label
    map in sorted order (image ids are positions in that order, so a skipped item leaves
    the others' ids alone). `name`: in EVAL_LAYOUTS or an alias. on_bad: a BadItems;
    default: stop at the first bad item."""
    name = canonical_eval_name(name)
    if name not in EVAL_LAYOUTS:
        raise ValueError(f"unknown evaluation set {name!r}; known: {', '.join(EVAL_LAYOUTS)}")
    lay, root = EVAL_LAYOUTS[name], Path(root)
    image_dir, label_dir = root / lay.image_dir, root / lay.label_dir
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise LayoutError(f"folder not found: {folder}\n{layout_help(name)}")
    labels = sorted(label_dir.glob(f"*{lay.label_ext}"))
    if not labels:
        raise LayoutError(f"no {lay.label_ext} label maps in {label_dir}\n{layout_help(name)}")
    on_bad = on_bad or BadItems("stop", root, skip_hint=None)
    spec = LabelSpec(LABEL_MODES[lay.label_ext], len(builtin_class_list(lay.classes)),
                     lay.ignore_label)
    items = [Item(image_dir / (label.stem + lay.image_ext), label) for label in labels]
    rows = [IndexRow(i, items[i].image.name, items[i].label.name, height, width)
            for i, (width, height) in check_items(items, spec, on_bad, workers)]
    if not rows:
        raise LayoutError(f"no label map in {label_dir} passed the checks")
    return lay, rows
