"""Every item of a real dataset checked before it enters the index (issue 12, item 4), so
that no later stage meets a file it cannot read. An image must decode to the end, be no
decompression bomb, convert to RGB and have the size its listing gives; its label map must
decode, be one channel of class indices, have the image's size and hold only class indices
or the ignore value. A bad item either stops the stage with a message that names the file
and the fix, or is left out and counted (`BadItems`, data.bad_items: stop | skip).

Items stream: each image is decoded once, in `workers` processes whose results come back
in input order, and none is kept, so COCO's 118K images pass in constant memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.data.layouts import IndexRow, LayoutError, read_coco_index

POLICIES = ("stop", "skip")
FILES_SHOWN = 5  # paths listed per reason in the metrics: enough to find the pattern
CHUNK = 64  # items per task sent to a worker: amortises the pickling of small tasks
COCO_LABEL_MODES = ("L", "P")  # read_labels gives the class indices of both (uint8)

_IMAGE_FIX = "re-download or re-extract it"
_LABEL_FIX = "re-create it with detectron2's prepare script for this dataset"
FIXES = {  # what the user can do about each reason
    "image_missing": "restore the image, or remove what lists it (captions entry or label map)",
    "image_empty": _IMAGE_FIX,
    "image_not_an_image": _IMAGE_FIX,
    "image_corrupt": _IMAGE_FIX,
    "image_too_large": "replace it with a smaller copy (PIL refuses images over "
                       "Image.MAX_IMAGE_PIXELS as possible decompression bombs)",
    "image_not_rgb": "convert it to an RGB JPEG",
    "listed_size": "correct its height/width in the captions JSON, or replace the image",
    "label_missing": "create its label map (detectron2's prepare script)",
    "label_empty": _LABEL_FIX,
    "label_not_an_image": _LABEL_FIX,
    "label_corrupt": _LABEL_FIX,
    "label_too_large": _LABEL_FIX,
    "label_mode": _LABEL_FIX,
    "label_size": "re-create it from its image with detectron2's prepare script",
    "label_values": "map the dataset's ids to 0..K-1 and the ignore value, as detectron2's "
                    "prepare script does",
    "duplicate_id": "give each image its own id in the captions JSON",
    "empty_caption": "write or delete the caption in the captions JSON",
    "unknown_image": "delete the annotation, or add its image to the JSON's 'images'",
    "no_caption": "add a caption for it to the captions JSON",
}


class BadItemError(LayoutError):
    """A bad file or entry met under data.bad_items: stop; the message names it and the fix."""


class BadItems:
    """What happens to a bad item: 'stop' raises BadItemError, 'skip' counts it by reason.

    Called as on_bad(reason, where, detail); `where` is the file, or the JSON entry, at
    fault. `skip_hint` ends the stop message (None: no skip is offered); `root` makes the
    paths in the metrics relative, so the same tree gives the same bytes wherever it lies.
    """

    def __init__(self, policy: str = "stop", root: str | Path | None = None,
                 skip_hint: str | None = "set data.bad_items: skip to leave it out"):
        if policy not in POLICIES:
            raise ValueError(f"bad_items policy {policy!r}; allowed: {', '.join(POLICIES)}")
        self.policy, self.root, self.skip_hint = policy, root, skip_hint
        self.skipped: Counter = Counter()
        self.files: dict[str, list[str]] = {}

    def __call__(self, reason: str, where: str, detail: str) -> None:
        if self.policy == "stop":
            hint = f", or {self.skip_hint}" if self.skip_hint else ""
            raise BadItemError(f"bad item {where}: {detail}\n  fix: {FIXES[reason]}{hint}")
        self.skipped[reason] += 1
        shown = self.files.setdefault(reason, [])
        if len(shown) < FILES_SHOWN:
            shown.append(self._relative(where))

    def _relative(self, where: str) -> str:
        if self.root is not None and Path(where).is_relative_to(self.root):
            return Path(where).relative_to(self.root).as_posix()
        return where

    def metrics(self, listed: int, indexed: int) -> dict:
        """The check's metrics: images listed, images indexed, and what was left out."""
        return {"policy": self.policy, "checked": listed, "indexed": indexed,
                "skipped": dict(sorted(self.skipped.items())),
                "files": dict(sorted(self.files.items()))}


@dataclass(frozen=True)
class LabelSpec:
    """What a label map may be: its PIL modes, the class count and the ignore value."""

    modes: tuple[str, ...]
    num_classes: int
    ignore: int


@dataclass(frozen=True)
class Item:
    """An image and its label map; size: the (width, height) its listing gives, if any."""

    image: Path
    label: Path
    size: tuple[int, int] | None = None


Problem = tuple[str, str, str]  # (reason, where, detail): the arguments of on_bad


def open_decoded(path: Path, kind: str) -> tuple[Image.Image | None, Problem | None]:
    """(the fully decoded image, None), or (None, why not). PIL opens lazily and reports a
    truncated file only on load; LOAD_TRUNCATED_IMAGES stays False so that it does."""
    where = str(path)
    if not path.is_file():
        return None, (f"{kind}_missing", where, "file not found")
    if path.stat().st_size == 0:
        return None, (f"{kind}_empty", where, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; a bomb all the same.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return None, (f"{kind}_too_large", where, f"too many pixels to decode safely: {e}")
    except UnidentifiedImageError:
        return None, (f"{kind}_not_an_image", where, "not an image file PIL can read")
    except Exception as e:  # PIL's decoders raise many types on broken data
        return None, (f"{kind}_corrupt", where,
                      f"does not decode to the end (truncated or corrupt): {e}")
    return im, None


def check_item(item: Item, spec: LabelSpec) -> tuple[tuple[int, int] | None, Problem | None]:
    """(the image's (width, height), the item's first problem or None)."""
    image, problem = open_decoded(item.image, "image")
    if problem:
        if problem[0] == "image_missing":
            problem = (*problem[:2], f"image missing for label map {item.label.name}")
        return None, problem
    size = image.size
    if item.size is not None and size != item.size:
        return size, ("listed_size", str(item.image), f"is {size[0]}x{size[1]} pixels but "
                      f"its listing gives {item.size[0]}x{item.size[1]} (width x height)")
    try:
        if image.mode != "RGB":  # the stages read every image as RGB (image_io.read_rgb)
            image.convert("RGB")
    except (ValueError, OSError) as e:
        return size, ("image_not_rgb", str(item.image), f"mode {image.mode} has no RGB: {e}")
    del image  # only one decoded image at a time
    label, problem = open_decoded(item.label, "label")
    if problem:
        if problem[0] == "label_missing":
            problem = (*problem[:2], f"label map missing for image {item.image.name}")
        return size, problem
    return size, label_problem(label, size, spec, str(item.label))


def label_problem(label: Image.Image, size: tuple[int, int], spec: LabelSpec,
                  where: str) -> Problem | None:
    """Why a decoded label map cannot label an image of `size`, or None."""
    if label.mode not in spec.modes:
        return ("label_mode", where, f"is mode {label.mode}; a label map is one channel of "
                f"class indices (mode {' or '.join(spec.modes)})")
    if label.size != size:
        return ("label_size", where, f"is {label.size[0]}x{label.size[1]} pixels, its image "
                f"{size[0]}x{size[1]}")
    values = np.asarray(label)
    bad = (values >= spec.num_classes) & (values != spec.ignore)
    if bad.any():
        return ("label_values", where, f"holds value {int(values[bad].max())} at "
                f"{int(bad.sum())} pixel(s); allowed: 0..{spec.num_classes - 1} "
                f"({spec.num_classes} classes) and {spec.ignore} (ignore)")
    return None


@contextlib.contextmanager
def _ordered_map(workers: int):
    """A map over `workers` processes that keeps the input order; the builtin map for one.
    fork, as the world renderer: the workers inherit the parent's PIL settings."""
    if workers <= 1:
        yield map
        return
    with mp.get_context("fork").Pool(workers) as pool:  # on exit, even a stop: terminated
        yield partial(pool.imap, chunksize=CHUNK)


def check_items(items: list[Item], spec: LabelSpec, on_bad,
                workers: int = 1) -> list[tuple[int, tuple[int, int]]]:
    """(position, (width, height)) of each good item, in order; each bad one goes to on_bad,
    which raises (stop) or counts it (skip)."""
    good = []
    with _ordered_map(workers) as ordered_map:
        for i, (size, problem) in enumerate(ordered_map(partial(check_item, spec=spec), items)):
            if problem:
                on_bad(*problem)
            else:
                good.append((i, size))
    return good


def check_coco(root: str | Path, images: str, captions: str, labels: str, spec: LabelSpec,
               on_bad, workers: int = 1) -> tuple[list[IndexRow], int]:
    """(the index rows whose entry and files pass, images listed) of a COCO layout."""
    rows, listed = read_coco_index(root, images, captions, labels, on_bad)
    image_dir, label_dir = Path(root) / images, Path(root) / labels
    items = [Item(image_dir / r.file_name, label_dir / r.label_file, (r.width, r.height))
             for r in rows]
    rows = [rows[i] for i, _ in check_items(items, spec, on_bad, workers)]
    if not rows:
        raise LayoutError(f"no image of {Path(root) / captions} passed the checks")
    return rows, listed
