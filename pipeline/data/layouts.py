"""Dataset layouts on disk (COCO captions + COCO-Stuff maps; detectron2 semantic
segmentation) and the image index every later stage reads.

The index is one parquet per split, one row per image: `image_id` int64, `file_name`
(image path relative to the split's image folder), `label_file` (relative to the label
folder), `height`/`width` int32, `captions` list<string>. It streams: later stages read it
in row batches, never the images themselves all at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

INDEX_SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("file_name", pa.string()),
    ("label_file", pa.string()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("captions", pa.list_(pa.string())),
])
INDEX_ROW_GROUP = 8192

COCO_LAYOUT_HELP = """expected a detectron2-prepared COCO layout:
  <root>/<images>/000000000009.jpg ...           (data.coco.images)
  <root>/<captions>  COCO captions JSON with "images" (id, file_name, height, width)
                     and "annotations" (image_id, caption)   (data.coco.captions)
  <root>/<labels>/000000000009.png ...           COCO-Stuff label maps, 255 = ignore,
                     made by detectron2's prepare_coco_stuff (data.coco.labels)"""

SEMSEG_LAYOUT_HELP = """expected a detectron2 semantic-segmentation layout:
  <root>/images/validation/<name>.jpg
  <root>/annotations_detectron2/validation/<name>.png   (same <name>, 255 = ignore)"""


class LayoutError(ValueError):
    """A dataset folder that does not have the expected layout; says what was expected."""


@dataclass(frozen=True)
class IndexRow:
    image_id: int
    file_name: str
    label_file: str
    height: int
    width: int
    captions: tuple[str, ...] = ()


def write_index(path: str | Path, rows: list[IndexRow]) -> None:
    """Write an index parquet, rows sorted by image_id; same rows give the same bytes."""
    rows = sorted(rows, key=lambda r: r.image_id)
    table = pa.table(
        {
            "image_id": [r.image_id for r in rows],
            "file_name": [r.file_name for r in rows],
            "label_file": [r.label_file for r in rows],
            "height": [r.height for r in rows],
            "width": [r.width for r in rows],
            "captions": [list(r.captions) for r in rows],
        },
        schema=INDEX_SCHEMA,
    )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, row_group_size=INDEX_ROW_GROUP, compression="zstd")
    tmp.replace(path)


def iter_index(path: str | Path, batch_size: int = 1024):
    """Yield IndexRow objects from an index parquet, one row batch at a time."""
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_size):
        cols = batch.to_pydict()
        for i in range(batch.num_rows):
            yield IndexRow(cols["image_id"][i], cols["file_name"][i], cols["label_file"][i],
                           cols["height"][i], cols["width"][i], tuple(cols["captions"][i]))


def _fail(msg: str, help_text: str) -> LayoutError:
    return LayoutError(f"{msg}\n{help_text}")


def _raise_bad(reason: str, where: str, detail: str) -> None:
    """The default for a bad entry: stop (pipeline/data/validate.py's BadItems can skip)."""
    raise _fail(f"{where}: {detail}", COCO_LAYOUT_HELP)


def read_coco_index(root: str | Path, images: str, captions: str, labels: str,
                    on_bad=None) -> tuple[list[IndexRow], int]:
    """(index rows, images listed) of a COCO captions + COCO-Stuff layout.

    Checks the folders and the captions JSON's structure (a LayoutError), and its entries:
    duplicate image ids, empty captions, annotations of unknown images and images with no
    caption go to on_bad(reason, where, detail), which raises (the default) or counts them;
    such entries are left out. Reads only the captions JSON (tens of MB for COCO): the
    image and label files are pipeline/data/validate.py's.
    """
    on_bad = on_bad or _raise_bad
    root = Path(root)
    if not root.is_dir():
        raise _fail(f"COCO root not found: {root} (data.coco.root)", COCO_LAYOUT_HELP)
    image_dir, label_dir, cap_path = root / images, root / labels, root / captions
    for p, key in ((image_dir, "images"), (label_dir, "labels")):
        if not p.is_dir():
            raise _fail(f"COCO folder not found: {p} (data.coco.{key})", COCO_LAYOUT_HELP)
    data = _read_captions_json(cap_path)
    listed = [_image_entry(i, img, cap_path) for i, img in enumerate(data["images"])]
    if not listed:
        raise _fail(f"{cap_path} lists no images", COCO_LAYOUT_HELP)
    names: dict[int, list[str]] = {}
    for image_id, file_name, _, _ in listed:
        names.setdefault(image_id, []).append(file_name)
    # Duplicates first: they explain the annotations that then seem to lack an image.
    duplicated = {image_id for image_id, files in names.items() if len(files) > 1}
    for image_id, file_name, _, _ in listed:
        if image_id in duplicated:  # whose captions? neither image can be trusted
            on_bad("duplicate_id", str(image_dir / file_name), f"image id {image_id} is given "
                   f"to {' and '.join(names[image_id])} in {cap_path}")
    caps = _captions_by_image(data["annotations"], set(names), cap_path, on_bad)
    rows = []
    for image_id, file_name, height, width in listed:
        if image_id in duplicated:
            continue
        if not caps.get(image_id):
            on_bad("no_caption", str(image_dir / file_name),
                   f"image {image_id} has no caption in {cap_path}")
            continue
        rows.append(IndexRow(image_id, file_name, str(Path(file_name).with_suffix(".png")),
                             height, width, tuple(caps[image_id])))
    return rows, len(listed)


def _read_captions_json(cap_path: Path) -> dict:
    if not cap_path.is_file():
        raise _fail(f"COCO captions file not found: {cap_path} (data.coco.captions)",
                    COCO_LAYOUT_HELP)
    try:
        with open(cap_path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(f"COCO captions file is not valid JSON: {cap_path}: {e}",
                    COCO_LAYOUT_HELP) from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise _fail(f"{cap_path}: needs top-level 'images' and 'annotations' lists",
                    COCO_LAYOUT_HELP)
    return data


def _image_entry(i: int, img, cap_path: Path) -> tuple[int, str, int, int]:
    """(id, file_name, height, width) of images[i]; a LayoutError if one is malformed."""
    try:
        return int(img["id"]), str(img["file_name"]), int(img["height"]), int(img["width"])
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(f"{cap_path}: images[{i}] needs id, file_name, height, width ({e})",
                    COCO_LAYOUT_HELP) from e


def _captions_by_image(annotations: list, image_ids: set[int], cap_path: Path,
                       on_bad) -> dict[int, list[str]]:
    """image id -> its stripped captions, in file order; empty captions and annotations of
    images not listed go to on_bad and are left out."""
    caps: dict[int, list[str]] = {}
    for i, ann in enumerate(annotations):
        try:
            image_id, caption = int(ann["image_id"]), ann["caption"]
        except (KeyError, TypeError, ValueError):
            caption = None
        if not isinstance(caption, str):
            raise _fail(f"{cap_path}: annotations[{i}] needs an integer 'image_id' and a "
                        "'caption' string", COCO_LAYOUT_HELP)
        where = f"{cap_path}: annotations[{i}]"
        if image_id not in image_ids:
            on_bad("unknown_image", where, f"its image_id {image_id} is not among the images")
        elif not caption.strip():
            on_bad("empty_caption", where, f"the caption of image {image_id} is empty")
        else:
            caps.setdefault(image_id, []).append(caption.strip())
    return caps


def index_semseg(root: str | Path, image_ext: str = ".jpg") -> list[IndexRow]:
    """Validate a detectron2 semantic-segmentation split and return its index rows
    (image ids are positions in sorted file-name order; no captions)."""
    from PIL import Image

    root = Path(root)
    image_dir = root / "images" / "validation"
    label_dir = root / "annotations_detectron2" / "validation"
    for p in (image_dir, label_dir):
        if not p.is_dir():
            raise _fail(f"folder not found: {p}", SEMSEG_LAYOUT_HELP)
    images = sorted(image_dir.glob(f"*{image_ext}"))
    if not images:
        raise _fail(f"no {image_ext} images in {image_dir}", SEMSEG_LAYOUT_HELP)
    rows = []
    for i, img_path in enumerate(images):
        label = label_dir / (img_path.stem + ".png")
        if not label.is_file():
            raise _fail(f"label map missing for {img_path.name}: {label}", SEMSEG_LAYOUT_HELP)
        with Image.open(img_path) as im:
            width, height = im.size
        rows.append(IndexRow(i, img_path.name, label.name, height, width))
    return rows


@dataclass(frozen=True)
class Split:
    """One split of the prepared data, as listed in data/index/splits.json."""

    name: str
    role: str  # "train" | "probe" | "eval"
    image_dir: str
    label_dir: str
    index: str
    classes: str
    ignore_label: int = 255


def read_splits(path: str | Path) -> dict[str, Split]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {name: Split(name=name, **s) for name, s in data["splits"].items()}
